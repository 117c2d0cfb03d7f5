"""`fab tune`, its workers and their reliability, with real Optuna storages.

Studies are small: as few trials as each claim needs, of two epochs on the 2K
sample without XLA (conftest.QUICK), over a space of fast networks. Several
workers share a study in a real PostgreSQL (tests/service_fixtures.py); remote
workers are started by `fab -H` over a real sshd on 127.0.0.1, in the trainer
image and as a plain process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import optuna
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, QUICK
from docker_fixtures import BuiltImage
from optuna.trial import FrozenTrial, TrialState
from service_fixtures import Postgres, Sshd

from launch.engine import connect
from trainer.package.listing import list_runs
from trainer.tuning.study import DEFAULT_STORAGE_FILE, storage_url
from trainer.tuning.worker import trial_label

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]

FAST_SPACE = {"learning_rate": {"log_uniform": [0.003, 0.03]}, "hidden_width": {"choice": [32, 64]},
              "hidden_layers": {"int": [1, 2]}}
STUDY_TIMEOUT_S = 420


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(FAST_SPACE))
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def _tune_args(study: str, storage: str, space: Path, output: Path, dataset: Path, trials: int,
               **more: str | bool) -> list[str]:
    """`fab tune` with these options (`define_only=True` is the flag --define-only)."""
    options = {"variant": "deep_v1", "study": study, "storage": storage, "space": space, "output": output,
               "dataset": dataset, "trials": trials, **more}
    args = ["tune"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def _trials(url: str, study: str, *states: TrialState) -> list[FrozenTrial]:
    trials = optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)
    return [t for t in trials if not states or t.state in states]


def _finished(url: str, study: str) -> list[FrozenTrial]:
    return _trials(url, study, TrialState.COMPLETE, TrialState.PRUNED)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = STUDY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def _zips(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.zip"))


def test_fab_tune_runs_a_study_keeps_the_best_package_and_continues_on_rerun(
    run_fab: Runner, sqlite_url: str, space_file: Path, tmp_path: Path, sample_path: Path
) -> None:
    output = tmp_path / "runs" / "tune" / "quick"  # where fab tune puts study quick's packages by default
    args = _tune_args("quick", sqlite_url, space_file, output, sample_path, 2, sampler="random")
    proc = run_fab(*args, env=QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "study 'quick' has 2 finished trials (target 2)" in proc.stdout
    # Optuna's line after each trial: how it ended, its time, the best so far and how far the study is.
    ended = re.findall(r"^trial (\d+) finished with validation auc ([\d.]+) in [\d.]+ s; best is trial (\d+) with "
                       r"validation auc ([\d.]+) \[(\d)/2 trials finished\]$", proc.stdout, re.MULTILINE)
    assert [(trial, done) for trial, _, _, _, done in ended] == [("0", "1"), ("1", "2")], proc.stdout
    assert ended[0][2:4] == ended[0][0:2] and float(ended[1][3]) == max(float(auc) for _, auc, *_ in ended)
    assert "fab tune_report --study quick" in proc.stdout
    # The sample's validation split has 16 clicks in 200 rows: said once, not per trial.
    small_split = "warning: the validation split has 20 positive labels (of 188 rows), so its AUC, which ranks"
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(small_split), warnings

    completed = _trials(sqlite_url, "quick", TrialState.COMPLETE)
    assert len(completed) == 2
    for trial in completed:  # each trial trained with its own values, two epochs each, reported per epoch
        assert set(trial.params) == set(FAST_SPACE) and 0.003 <= trial.params["learning_rate"] <= 0.03
        assert trial.user_attrs["epochs"] == 2 and sorted(trial.intermediate_values) == [1, 2]
        assert 0.0 <= trial.value <= 1.0
    best = max(completed, key=lambda t: t.value)
    assert _zips(output) == [Path(best.user_attrs["package"])], "only the best trial's package is kept"
    assert Path(best.user_attrs["package"]).name.startswith(f"deep_v1-quick-trial{best.number}-")
    with zipfile.ZipFile(best.user_attrs["package"]) as archive:  # the objective reads validation only
        manifest = json.loads(archive.read("manifest.json"))
        per_epoch = pd.read_csv(archive.open("metrics.csv"))["validation_auc"].tolist()
    assert best.value == manifest["validation_metrics"]["auc"]
    assert [best.intermediate_values[epoch] for epoch in (1, 2)] == pytest.approx(per_epoch)
    assert best.user_attrs["test_auc"] == manifest["test_metrics"]["auc"]  # recorded, held out of the search
    [listed] = list_runs(str(tmp_path / "runs"))  # fab runs lists a study's package with its study
    assert (listed.run_id, listed.study, listed.overrides["learning_rate"]) == \
        (manifest["run_id"], "quick", (best.params["learning_rate"], "environment"))
    assert not (output / ".work").exists() or not any((output / ".work").iterdir())

    again = run_fab(*args, env=QUICK)
    assert again.returncode == 0 and "this worker ran 0" in again.stdout
    assert len(_trials(sqlite_url, "quick")) == 2, "the same command again must not start over"

    more = run_fab(*_tune_args("quick", sqlite_url, space_file, output, sample_path, 3, sampler="random"),
                   env=QUICK)
    assert more.returncode == 0, more.stderr[-2000:]
    assert len(_finished(sqlite_url, "quick")) == 3
    assert [t.value for t in _trials(sqlite_url, "quick")[:2]] == [t.value for t in completed]

    report = run_fab("tune_report", "--study", "quick", "--storage", sqlite_url, "--output", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    best = max(_trials(sqlite_url, "quick", TrialState.COMPLETE), key=lambda t: t.value)
    variant = json.loads(report.stdout[report.stdout.index("{"):report.stdout.index("\n}") + 2])
    assert variant == {"deep_v1_tuned": {"network": "deep_v1", "xla": False, "epochs": 2, "batch_size": 128,
                                         **best.params}}
    assert f"best package: {best.user_attrs['package']}" in report.stdout
    assert any(line.startswith(small_split) for line in report.stdout.splitlines())
    assert "importance (PED-ANOVA over 3 completed trials): " in report.stdout
    assert "; rough with under 10 trials, where one more trial can reorder it" in report.stdout
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"leaderboard.csv", "history.png", "importances.png"}


def test_tpe_with_hyperband_finishes_its_study(
    run_fab: Runner, sqlite_url: str, space_file: Path, tmp_path: Path, sample_path: Path
) -> None:
    # Four trials: TPE's first three are random start-up trials, the fourth is its own. Hyperband's
    # first rung is epoch 1, so a trial may be pruned there.
    args = _tune_args("tpe", sqlite_url, space_file, tmp_path / "trials", sample_path, 4, sampler="tpe",
                      pruner="hyperband")
    proc = run_fab(*args, env=QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finished = _finished(sqlite_url, "tpe")
    assert len(finished) == 4 and all(t.intermediate_values for t in finished)
    study = optuna.load_study(study_name="tpe", storage=sqlite_url)
    assert (study.user_attrs["sampler"], study.user_attrs["pruner"]) == ("tpe", "hyperband")


def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(
    run_fab: Runner, sqlite_url: str, tmp_path: Path, sample_path: Path
) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"choice": [0.01, 1e30]}}))
    output = tmp_path / "trials"
    define = run_fab(*_tune_args("nan", sqlite_url, space, output, sample_path, 1, define_only=True), env=QUICK)
    assert define.returncode == 0, define.stderr
    study = optuna.load_study(study_name="nan", storage=sqlite_url)
    for learning_rate in (1e30, 0.01):  # the first trial diverges, the next one finishes the study
        study.enqueue_trial({"learning_rate": learning_rate})

    proc = run_fab(*_tune_args("nan", sqlite_url, space, output, sample_path, 1), env=QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = _trials(sqlite_url, "nan", TrialState.FAIL)
    assert len(failed) == 1 and failed[0].params == {"learning_rate": 1e30}
    assert "training diverged" in failed[0].user_attrs["failure"]
    assert [t.params for t in _trials(sqlite_url, "nan", TrialState.COMPLETE)] == [{"learning_rate": 0.01}]


def test_a_study_whose_trials_all_fail_stops_with_one_line(
    run_fab: Runner, sqlite_url: str, tmp_path: Path, sample_path: Path, lines_of: Lines
) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"choice": [1e30]}}))
    proc = run_fab(*_tune_args("doomed", sqlite_url, space, tmp_path / "out", sample_path, 3), env=QUICK)
    assert proc.returncode == 2
    assert lines_of(proc)[-1].startswith("error: 5 trials in a row failed, the last with: training diverged")
    assert len(_trials(sqlite_url, "doomed", TrialState.FAIL)) == 5


@pytest.mark.parametrize(("more", "env", "message"), [
    ({"sampler": "grid"}, {}, "error: --sampler grid: unknown; use one of tpe, random"),
    ({"pruner": "asha"}, {}, "error: --pruner asha: unknown; use one of median, hyperband, none"),
    ({"trials": 0}, {}, "error: --trials 0: a study needs at least one trial"),
    ({"variant": "deep_v9"}, {}, "error: unknown variant 'deep_v9'"),
    ({}, {"TRAINER_LEARNING_RATE": "0.1"}, "error: TRAINER_LEARNING_RATE fixes a key that"),
    ({}, {"TRAINER_EPOCS": "2"}, "error: unknown key 'epocs' (environment TRAINER_EPOCS); did you mean 'epochs'?"),
])
def test_bad_tune_arguments_are_one_line_before_any_trial(
    run_fab: Runner, sqlite_url: str, space_file: Path, tmp_path: Path, sample_path: Path, lines_of: Lines,
    more: dict[str, str | int], env: dict[str, str], message: str,
) -> None:
    proc = run_fab(*_tune_args("bad", sqlite_url, space_file, tmp_path / "out", sample_path, **{"trials": 2, **more}),
                   env=env)
    assert proc.returncode == 2 and len(lines_of(proc)) == 1, lines_of(proc)
    assert lines_of(proc)[0].startswith(message)


def test_a_missing_dataset_or_unreachable_storage_is_one_line(
    run_fab: Runner, sqlite_url: str, space_file: Path, tmp_path: Path, lines_of: Lines
) -> None:
    missing = run_fab(*_tune_args("s", sqlite_url, space_file, tmp_path, tmp_path / "none.json", 2))
    assert missing.returncode == 2 and lines_of(missing) == [f"error: {tmp_path / 'none.json'}: no such file; "
                                                             "check the path or pass --dataset PATH"]
    closed = "postgresql://tuner:secret@127.0.0.1:9/studies"  # the discard port: nothing listens
    unreachable = run_fab(*_tune_args("s", closed, space_file, tmp_path, Path("data/sample_2k.json"), 2))
    assert unreachable.returncode == 2 and len(lines_of(unreachable)) == 1, lines_of(unreachable)
    line = lines_of(unreachable)[0]
    assert line.startswith("error: cannot open the study storage postgresql://***@127.0.0.1:9/studies")
    assert "secret" not in line


def test_a_study_defined_again_differently_is_refused(
    run_fab: Runner, sqlite_url: str, space_file: Path, tmp_path: Path, sample_path: Path, lines_of: Lines
) -> None:
    args = {"study": "same", "storage": sqlite_url, "space": space_file, "output": tmp_path / "out",
            "dataset": sample_path, "trials": 2, "define_only": True}
    assert run_fab(*_tune_args(**args)).returncode == 0
    other = run_fab(*_tune_args(**args, sampler="random", pruner="none"))
    assert other.returncode == 2
    assert lines_of(other) == ["error: study 'same' exists with another sampler, pruner; continue it with the same "
                               "arguments (fab tune_report --study same shows them) or pass a new --study NAME"]


def test_the_default_storage_is_a_file_under_runs() -> None:
    assert storage_url("") == f"sqlite:///{DEFAULT_STORAGE_FILE.resolve()}"
    assert DEFAULT_STORAGE_FILE.parts[0] == "runs"


# --- many workers: PostgreSQL, SSH, Docker, SIGKILL -------------------------------------------------------------


@pytest.fixture
def shared_study(postgres: Postgres, run_fab: Runner, space_file: Path, tmp_path: Path,
                 sample_path: Path) -> Callable[..., str]:
    """`shared_study(name, trials, **TRAINER_overrides)`: a study defined in a fresh PostgreSQL database; its URL."""

    def define(name: str, trials: int, **overrides: str) -> str:
        url = postgres.new_database(name)
        args = _tune_args(name, url, space_file, tmp_path / "trials", sample_path, trials, sampler="random",
                          define_only=True)
        proc = run_fab(*args, env={**QUICK, **overrides})
        assert proc.returncode == 0, proc.stderr
        return url

    return define


@dataclass
class StartedWorkers:
    """The workers a test starts, each ended at teardown by its own id, never by a name pattern
    that could reach another job's: its processes, the processes and containers fab started over SSH."""

    processes: list[subprocess.Popen] = field(default_factory=list)
    over_ssh: list[tuple[int, str]] = field(default_factory=list)  # (pid, study); the sshd is on this machine
    containers: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)  # the worker processes' logs, in this machine's /tmp

    def record(self, tune_workers: subprocess.CompletedProcess, study: str) -> None:
        """The workers `fab tune_workers` says it started: each line names its container or pid."""
        self.over_ssh += [(int(pid), study) for pid in re.findall(r": worker process (\d+) in ", tune_workers.stdout)]
        self.containers += re.findall(r": worker container (\S+) \(", tune_workers.stdout)
        self.logs += [Path(log) for log in re.findall(r"; log: (/\S+)$", tune_workers.stdout, re.MULTILINE)]

    def end(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for pid, study in self.over_ssh:
            _kill_worker_process(pid, study)
        for log in self.logs:
            log.unlink(missing_ok=True)
        if self.containers:
            engine = connect()
            for name in self.containers:
                with contextlib.suppress(docker.errors.NotFound):
                    engine.containers.get(name).remove(force=True)


def _kill_worker_process(pid: int, study: str) -> None:
    """SIGKILL the worker `pid` if it still runs. Started under nohup, it is no child of ours: once
    it ends its pid can be reused, so its command line must still be the study's worker."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"\0".join([b"trainer", b"tune", b"--study", study.encode()]) in command:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def worker_cleanup() -> Iterator[StartedWorkers]:
    """Workers a test leaves behind are ended: those it records in the StartedWorkers given."""
    started = StartedWorkers()
    yield started
    started.end()


def _checkout_with_venv(folder: Path) -> Path:
    """A --workdir for a worker process: this checkout's trainer and the venv running the tests, linked
    (the checkout itself may have no .venv of its own)."""
    folder.mkdir()
    (folder / "trainer").symlink_to(PROJECT_ROOT / "trainer")
    (folder / ".venv").symlink_to(sys.prefix)
    return folder


def test_two_workers_over_ssh_finish_a_study_together(
    built: BuiltImage, sshd: Sshd, shared_study: Callable[..., str], run_fab: Runner,
    engine: docker.DockerClient, tmp_path: Path, worker_cleanup: StartedWorkers, lines_of: Lines,
) -> None:
    url = shared_study("ssh-two", 6)  # enough trials that the slower-starting container surely takes some
    in_docker = run_fab(*sshd.fab_args, "tune_workers", "--study", "ssh-two", "--storage", url)
    worker_cleanup.record(in_docker, "ssh-two")
    assert in_docker.returncode == 0, in_docker.stdout + in_docker.stderr
    assert f"{sshd.host.split('@')[1].split(':')[0]}: worker container trainer-tune-ssh-two-" in in_docker.stdout
    as_process = run_fab(*sshd.fab_args, "tune_workers", "--study", "ssh-two", "--storage", url, "--no-docker",
                         "--workdir", str(_checkout_with_venv(tmp_path / "checkout")))
    worker_cleanup.record(as_process, "ssh-two")
    assert as_process.returncode == 0, as_process.stdout + as_process.stderr
    started_lines = in_docker.stdout + as_process.stdout
    assert (len(worker_cleanup.containers), len(worker_cleanup.over_ssh)) == (1, 1), started_lines

    _wait_for(lambda: len(_finished(url, "ssh-two")) >= 6, "two workers to finish 6 trials")
    container = engine.containers.get(worker_cleanup.containers[0])
    assert container.wait(timeout=120)["StatusCode"] == 0, container.logs()[-3000:].decode()
    workers = {t.user_attrs["worker"] for t in _trials(url, "ssh-two")}
    assert len(workers) == 2, f"both workers should have run trials: {workers}"
    assert len(_finished(url, "ssh-two")) == 6
    completed = _trials(url, "ssh-two", TrialState.COMPLETE)
    best = max(completed, key=lambda t: t.value)
    assert _zips(tmp_path / "trials") == [Path(best.user_attrs["package"])]
    assert all(os.stat(p).st_uid == os.getuid() for p in _zips(tmp_path / "trials"))
    stop = run_fab(*sshd.fab_args, "tune_workers", "--study", "ssh-two", "--storage", url, "--stop")
    assert stop.returncode == 0 and "stopped 0 worker container(s) of study 'ssh-two'" in stop.stdout


def test_a_worker_process_over_ssh_says_its_pid_and_finishes_the_study(
    sshd: Sshd, shared_study: Callable[..., str], run_fab: Runner, tmp_path: Path, worker_cleanup: StartedWorkers,
) -> None:
    url = shared_study("ssh-process", 2)
    workdir = _checkout_with_venv(tmp_path / "checkout")
    started = run_fab(*sshd.fab_args, "tune_workers", "--study", "ssh-process", "--storage", url, "--no-docker",
                      "--workdir", str(workdir))
    worker_cleanup.record(started, "ssh-process")
    assert started.returncode == 0, started.stdout + started.stderr
    assert len(worker_cleanup.over_ssh) == 1, started.stdout
    pid, _ = worker_cleanup.over_ssh[0]

    _wait_for(lambda: len(_finished(url, "ssh-process")) >= 2, "the worker to finish 2 trials")
    # The pid printed is the worker's own (what a user would kill), not a shell's around it.
    assert {t.user_attrs["worker"] for t in _trials(url, "ssh-process")} == {f"{socket.gethostname()}/{pid}"}


def test_tune_workers_needs_hosts_and_a_shared_storage(run_fab: Runner, sshd: Sshd, lines_of: Lines,
                                                       sqlite_url: str) -> None:
    no_hosts = run_fab("tune_workers", "--study", "s", "--storage", "postgresql://u@h/db")
    assert lines_of(no_hosts) == ["error: name the hosts to start workers on: fab -H host1,host2 tune_workers ..."]
    local_file = run_fab(*sshd.fab_args, "tune_workers", "--study", "s", "--storage", sqlite_url)
    assert local_file.returncode == 2
    assert lines_of(local_file)[0].startswith("error: workers on other hosts need a shared storage")


def _start_worker(start_python: Callable[..., subprocess.Popen], study: str, url: str, log: Path,
                  started: StartedWorkers) -> subprocess.Popen:
    process = start_python("-m", "trainer", "tune", "--study", study, "--storage", url, stderr=log.open("w"))
    started.processes.append(process)
    return process


def _freeze_mid_trial(worker: subprocess.Popen, url: str, study: str) -> int:
    """Stops the worker (SIGSTOP) at a moment it is running a trial, and returns that trial's
    number: a signal sent next reaches it mid-trial, however fast its trials are."""
    deadline = time.monotonic() + STUDY_TIMEOUT_S
    while True:
        worker.send_signal(signal.SIGSTOP)
        running = [t.number for t in _trials(url, study, TrialState.RUNNING)
                   if t.user_attrs.get("worker", "").endswith(f"/{worker.pid}")]
        if running:
            return running[0]
        worker.send_signal(signal.SIGCONT)
        assert worker.poll() is None and time.monotonic() < deadline, "the worker ran no trial"
        time.sleep(0.5)


def test_a_worker_killed_mid_study_loses_nothing_and_its_trial_is_retried(
    shared_study: Callable[..., str], start_python: Callable[..., subprocess.Popen], tmp_path: Path,
    worker_cleanup: StartedWorkers,
) -> None:
    # Four trials are enough: the dead worker's trial counts as running until its heartbeat is stale,
    # so the survivor reaches the target only through its retry, whatever it ran meanwhile.
    url = shared_study("kill", 4)
    doomed = _start_worker(start_python, "kill", url, tmp_path / "doomed.log", worker_cleanup)
    survivor = _start_worker(start_python, "kill", url, tmp_path / "survivor.log", worker_cleanup)

    _wait_for(lambda: len(_finished(url, "kill")) >= 1, "a first finished trial")
    killed_trial = _freeze_mid_trial(doomed, url, "kill")
    before = {t.number: (t.state, t.value) for t in _finished(url, "kill")}
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()

    assert survivor.wait(timeout=STUDY_TIMEOUT_S) == 0, (tmp_path / "survivor.log").read_text()[-3000:]
    trials = {t.number: t for t in _trials(url, "kill")}
    assert all((trials[n].state, trials[n].value) == kept for n, kept in before.items()), "a finished trial changed"
    assert trials[killed_trial].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retries) == 1 and retries[0].params == trials[killed_trial].params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(_finished(url, "kill")) == 4


def test_a_stopped_worker_queues_its_trial_for_the_others(
    shared_study: Callable[..., str], start_python: Callable[..., subprocess.Popen], tmp_path: Path,
    worker_cleanup: StartedWorkers,
) -> None:
    url = shared_study("stop", 3, TRAINER_EPOCHS="500", TRAINER_EARLY_STOPPING_PATIENCE="0")  # minutes a trial
    worker = _start_worker(start_python, "stop", url, tmp_path / "worker.log", worker_cleanup)
    stopped_trial = _freeze_mid_trial(worker, url, "stop")
    worker.send_signal(signal.SIGTERM)  # what `docker stop` and fab tune_workers --stop send
    worker.send_signal(signal.SIGCONT)
    assert worker.wait(timeout=60) == 130, (tmp_path / "worker.log").read_text()[-3000:]
    assert "is queued for the next worker" in worker.stdout.read()
    # Queued at once, not a grace period later when the heartbeat would have noticed.
    waiting = _trials(url, "stop", TrialState.WAITING)
    assert len(waiting) == 1 and waiting[0].system_attrs["failed_trial"] == stopped_trial


def test_a_study_named_after_its_variant_names_trial_packages_once() -> None:
    assert trial_label("deep_v1", "deep_v1", 7) == "trial7"  # deep_v1-trial7-..., not deep_v1-deep_v1-trial7-...
    assert trial_label("ctr-nov", "deep_v1", 7) == "ctr-nov-trial7"
