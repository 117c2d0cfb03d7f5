"""Runs side by side: a package carries its run's live TensorBoard logs (real wall times, examples/s,
the learning rate, an HParams session with the packaged weights' metrics); `fab tensorboard` lays
every package of a folder, its tuning studies' included, under one folder for a real TensorBoard
server, whose HParams and scalars endpoints list every run; `fab runs` shows each run's dataset,
sorts, filters and lists the tuning packages.

The folder: the session's package, one more trained with another learning rate, and the session's
package copied where `fab tune` keeps a study's best package (runs/tune/<study>/).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tensorflow as tf
from conftest import PROJECT_ROOT, QUICK, TrainedPackage, clean_env
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from launch.program import make_program
from trainer.package.layout import DATASET_FILE, MANIFEST_FILE, METRICS_FILE, TENSORBOARD_FOLDER
from trainer.run import TrainRequest, TrainResult, train
from trainer.training.tensorboard import package_logs

FAB = Path(sys.executable).parent / "fab"
SERVER_TIMEOUT_S = 120
OTHER_RATE = 0.02  # the second run's learning rate (deep_v1's is 0.005)
Scalars = dict[tuple[str, str], list[tuple[int, float, float]]]  # (run, tag) -> [(step, wall time, value)]


@dataclass(frozen=True)
class RunsFolder:
    path: Path
    first: TrainedPackage  # the session's package, also copied as a study's
    other: TrainResult  # trained with OTHER_RATE


@pytest.fixture(scope="module")
def runs_folder(trained: TrainedPackage, sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> RunsFolder:
    folder = tmp_path_factory.mktemp("side-by-side") / "runs"
    folder.mkdir()
    shutil.copy(trained.zip_path, folder)
    other = train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(folder),
                               environ={**QUICK, "TRAINER_LEARNING_RATE": str(OTHER_RATE)}), io.StringIO())
    study = folder / "tune" / "deep_v1"
    study.mkdir(parents=True)
    shutil.copy(trained.zip_path, study)
    return RunsFolder(folder, trained, other)


def events_of(folder: Path) -> dict[str, list[event_pb2.Event]]:
    """Every event under `folder`, by run (its folder relative to `folder`; "." for `folder` itself)."""
    runs: dict[str, list[event_pb2.Event]] = {}
    for path in sorted(folder.rglob("*tfevents*")):
        run = path.parent.relative_to(folder).as_posix()
        runs.setdefault(run, []).extend(event_pb2.Event.FromString(r) for r in RawEventFileLoader(str(path)).Load())
    return runs


def scalars_of(folder: Path) -> Scalars:
    scalars: Scalars = {}
    for run, events in events_of(folder).items():
        for event in events:
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tensor_util.make_ndarray(value.tensor))
                    scalars.setdefault((run, value.tag), []).append((event.step, event.wall_time, number))
    return scalars


def session_hparams_of(events: list[event_pb2.Event]) -> dict[str, Any]:
    for event in events:
        for value in event.summary.value:
            if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                info = hparams_metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                return {name: getattr(v, v.WhichOneof("kind")) for name, v in info.hparams.items()}
    raise AssertionError("no HParams session")


def test_a_package_holds_its_runs_live_logs_with_its_hparams_session(trained: TrainedPackage,
                                                                     tmp_path: Path) -> None:
    with zipfile.ZipFile(trained.zip_path) as archive:
        archive.extractall(tmp_path)
        table = pd.read_csv(archive.open(METRICS_FILE))
        manifest = json.loads(archive.read(MANIFEST_FILE))
        dataset = json.loads(archive.read(DATASET_FILE))
    logs = tmp_path / TENSORBOARD_FOLDER
    scalars = scalars_of(logs)
    auc = scalars[("train", "epoch_auc")]
    assert [step for step, _, _ in auc] == [1, 2], "one point per epoch, numbered as the epoch line numbers it"
    # Written as each epoch ended: the two points are epoch 2's seconds apart, not one packaging instant.
    assert auc[1][1] - auc[0][1] >= 0.9 * table["epoch_seconds"][1]
    assert [v for _, _, v in scalars[("train", "epoch_examples_per_second")]] == \
        pytest.approx(table["examples_per_second"].tolist(), rel=1e-5)
    assert [v for _, _, v in scalars[("train", "epoch_learning_rate")]] == pytest.approx([0.005, 0.005])
    assert [v for _, _, v in scalars[("validation", "epoch_auc")]] == \
        pytest.approx(table["validation_auc"].tolist(), rel=1e-5)

    hparams = session_hparams_of(events_of(logs)["."])
    assert (hparams["variant"], hparams["learning_rate"], hparams["epochs"]) == ("deep_v1", 0.005, 2)
    assert hparams["dataset"] == f"sample_2k.json {dataset['sha256'][:12]}"
    [(step, _, test_auc)] = scalars[(".", "test_auc")]
    assert (step, test_auc) == (manifest["best_epoch"], pytest.approx(manifest["test_metrics"]["auc"], rel=1e-6))


def test_packaging_keeps_each_epoch_once_the_last_written(tmp_path: Path) -> None:
    """A killed attempt logged epoch 2 before its backup; the rerun trained epoch 2 again, then epoch 3."""
    live = tmp_path / "live"
    for steps, value in (((1, 2), 0.5), ((2, 3), 0.7)):  # the killed attempt's file, then the rerun's
        writer = tf.summary.create_file_writer(str(live / "validation"))
        with writer.as_default():
            for step in steps:
                tf.summary.scalar("epoch_auc", value, step=step)
        writer.close()
        time.sleep(0.01)
    package_logs(live, tmp_path / "package")
    assert len(list((tmp_path / "package" / "validation").glob("*tfevents*"))) == 1
    points = scalars_of(tmp_path / "package")[("validation", "epoch_auc")]
    assert [(step, value) for step, _, value in points] == [(1, 0.5), (2, pytest.approx(0.7)), (3, pytest.approx(0.7))]
    written = scalars_of(live)[("validation", "epoch_auc")]
    assert [wall for _, wall, _ in points] == [max(w for s, w, _ in written if s == step) for step in (1, 2, 3)]


def run_fab_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *words: str) -> list[str]:
    """`fab WORDS` run in this process from the project folder; its printed lines."""
    monkeypatch.chdir(PROJECT_ROOT)
    capsys.readouterr()
    make_program().run(["fab", *words], exit=False)
    return capsys.readouterr().out.splitlines()


def test_fab_runs_shows_datasets_sorts_filters_and_lists_tuning_packages(
    runs_folder: RunsFolder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, other = runs_folder.first.result, runs_folder.other
    header, *rows = run_fab_here(monkeypatch, capsys, "runs", "--output", str(runs_folder.path),
                                 "--sort", "validation_auc")
    assert header.split()[9:13] == ["dataset", "rows", "sha256", "study"]
    with zipfile.ZipFile(other.package_uri) as archive:
        sha = json.loads(archive.read(DATASET_FILE))["sha256"]
    cells = [row.split() for row in rows]  # the written time is two cells: date and time
    assert {tuple(c[10:13]) for c in cells} == {("sample_2k.json", "2,000", sha[:12])}
    listed = [(c[0], c[13]) for c in cells]
    by_auc = sorted([(first.run_id, "-"), (first.run_id, "deep_v1"), (other.run_id, "-")],
                    key=lambda r: -(first if r[0] == first.run_id else other).validation_metrics["auc"])
    assert [run for run, _ in listed] == [run for run, _ in by_auc], "best validation AUC first"
    assert sorted(listed) == sorted(by_auc), "the study's package is listed with its study"

    assert run_fab_here(monkeypatch, capsys, "runs", "--output", str(runs_folder.path), "--variant", "rnn_v1") == \
        [f"no packages of variant rnn_v1 in {runs_folder.path} (its packages' variants: deep_v1)"]


def test_fab_tensorboard_no_serve_lays_out_the_folder_anew_and_prints_the_command(
    runs_folder: RunsFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "board"
    args = ("tensorboard", "--output", str(runs_folder.path), "--logdir", str(logdir), "--no-serve")
    run_fab_here(monkeypatch, capsys, *args)
    gone = logdir / "a package removed since"
    gone.mkdir()
    assert run_fab_here(monkeypatch, capsys, *args) == [
        f"3 package(s) of {runs_folder.path} (1 from tuning studies) laid out in {logdir}, one run each",
        f"tensorboard --logdir {logdir} --host 127.0.0.1 --port 6006"]
    assert not gone.exists()
    runs = {run for run in events_of(logdir) if not run.endswith(("/train", "/validation"))}
    first, other = runs_folder.first.result.run_id, runs_folder.other.run_id
    quick = "batch_size=128 epochs=2 xla=false"
    assert runs == {".", f"{first} {quick}", f"tune/deep_v1/{first} {quick}",
                    f"{other} batch_size=128 epochs=2 learning_rate=0.02 xla=false"}


@contextlib.contextmanager
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Ctrl-C reaches the fab started here as it does in a terminal: a suite started in the background by a
    shell without job control (`make test &`) ignores SIGINT, a child inherits that, and `stop` would wait
    forever. A handled SIGINT is the default again in the child."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


class Server:
    """`fab tensorboard --port 0` as a user starts it, its TensorBoard's address read from what it prints."""

    def __init__(self, output: Path) -> None:
        with ctrl_c_as_in_a_terminal():
            self.process = subprocess.Popen([str(FAB), "tensorboard", "--output", str(output), "--port", "0"],
                                            cwd=PROJECT_ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def url(self) -> str:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            found = [line.split(" at ")[1].split()[0] for line in self.lines if line.startswith("TensorBoard ")]
            if found:
                return found[0].rstrip("/")
            time.sleep(0.2)
        raise AssertionError(f"TensorBoard did not start:\n{''.join(self.lines)}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        return self.process.wait(timeout=60)


def get(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


SESSION_GROUPS = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                  "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}


def sessions_when_loaded(url: str, count: int) -> dict[str, dict[str, Any]]:
    """The HParams sessions by run name, once TensorBoard has loaded `count` of them."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        groups = get(f"{url}/data/plugin/hparams/session_groups", SESSION_GROUPS)["sessionGroups"]
        sessions = {session["name"]: {**group["hparams"], **{m["name"]["tag"]: m["value"] for m in
                                                             session["metricValues"]}}
                    for group in groups for session in group["sessions"]}
        if len(sessions) >= count or time.monotonic() > deadline:
            return sessions
        time.sleep(1)


def test_fab_tensorboard_serves_every_package_side_by_side_with_hparams(runs_folder: RunsFolder) -> None:
    server = Server(runs_folder.path)
    try:
        url = server.url()
        sessions = sessions_when_loaded(url, 3)
        experiment = get(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""})
        tags = get(f"{url}/data/plugin/scalars/tags")
    finally:
        status = server.stop()
    assert status == 0, "".join(server.lines)
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):  # Ctrl-C stopped TensorBoard too
        probe.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))

    first, other = runs_folder.first.result, runs_folder.other
    names = {name.split()[0]: values for name, values in sessions.items()}  # the run id, without the overrides
    assert set(names) == {first.run_id, f"tune/deep_v1/{first.run_id}", other.run_id}
    assert names[other.run_id]["learning_rate"] == OTHER_RATE and names[first.run_id]["learning_rate"] == 0.005
    assert names[other.run_id]["test_auc"] == pytest.approx(other.test_metrics["auc"], rel=1e-6)
    learning_rate = next(h for h in experiment["hparamInfos"] if h["name"] == "learning_rate")
    assert learning_rate["domainInterval"] == {"minValue": 0.005, "maxValue": OTHER_RATE}
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"validation_auc", "test_auc"}
    other_train = next(run for run in tags if run.startswith(other.run_id) and run.endswith("/train"))
    assert {"epoch_auc", "epoch_examples_per_second", "epoch_learning_rate"} <= set(tags[other_train])
    assert sum(run.endswith("/validation") for run in tags) == 3


def test_fab_tensorboard_on_a_port_in_use_is_one_line(runs_folder: RunsFolder, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            make_program().run(["fab", "tensorboard", "--output", str(runs_folder.path),
                                "--logdir", str(tmp_path / "board"), "--port", str(port)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --port {port}: already in use on 127.0.0.1 (another TensorBoard?); pass another --port, "
        "or --port 0 for any free one"]
    assert not (tmp_path / "board").exists(), "refused before laying out the logs"
