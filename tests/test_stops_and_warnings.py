"""What a run no longer keeps silent (issue 24's sweep): Ctrl-C on `fab train`, the unfinished runs a
stopped one leaves behind, a batch that holds the whole training split, numbers too large for float32.

One real `fab train --local` is stopped with SIGINT (the user's Ctrl-C) after its second epoch; one
short run in this process then starts in the same output folder, on the sample with some numbers of
1e40 and a batch of 4096 (the sample has 1,398 training rows).
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, QUICK, clean_env

from trainer.interrupts import EXIT_INTERRUPTED, STOPPED_LINE
from trainer.run import TrainRequest, TrainResult, train
from trainer.training.fit import WorkFolders

FAB = Path(sys.executable).parent / "fab"
STOPPED_ENV = {**QUICK, "TRAINER_EPOCHS": "50", "TRAINER_EARLY_STOPPING_PATIENCE": "0"}
TOO_LARGE_ROWS = (2, 7, 11)  # sample rows whose position becomes 1e40


@dataclass(frozen=True)
class StoppedRun:
    status: int
    lines: list[str]  # stdout and stderr, as a terminal shows them
    work: WorkFolders  # its work folder, left in <output>/.work


@dataclass(frozen=True)
class SecondRun:
    result: TrainResult
    lines: list[str]


@contextlib.contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started within get SIGINT's default action, as from a terminal: an ignored signal stays
    ignored across exec (pytest run as a background job ignores SIGINT), a handled one is reset."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stops") / "runs"


@pytest.fixture(scope="module")
def stopped_run(output: Path, sample_path: Path) -> StoppedRun:
    """`fab train --local`, and Ctrl-C once its second epoch line is printed (the first epoch's backup is written)."""
    command = [str(FAB), "train", "--local", "--dataset", str(sample_path), "--output", str(output)]
    with interruptible_children(), subprocess.Popen(command, cwd=PROJECT_ROOT, env=clean_env(STOPPED_ENV),
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                    text=True) as proc:
        watchdog = threading.Timer(300, proc.kill)
        watchdog.start()
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("epoch 2/"):
                    proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=60)
        finally:
            watchdog.cancel()
    [work] = [WorkFolders(folder) for folder in (output / ".work").iterdir()]
    return StoppedRun(status, lines, work)


@pytest.fixture(scope="module")
def second_run(stopped_run: StoppedRun, output: Path, sample_path: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> SecondRun:
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    for number in TOO_LARGE_ROWS:
        rows[number]["position"] = 1e40
    dataset = tmp_path_factory.mktemp("too_large") / "rows.json"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    log = io.StringIO()
    environ = {**QUICK, "TRAINER_EPOCHS": "1", "TRAINER_BATCH_SIZE": "4096"}
    result = train(TrainRequest("deep_v1", dataset=str(dataset), output=str(output), environ=environ), log)
    return SecondRun(result, log.getvalue().splitlines())


def test_ctrl_c_on_fab_train_says_stopped_exits_130_and_keeps_the_backup(stopped_run: StoppedRun) -> None:
    shown = "\n".join(stopped_run.lines)
    assert stopped_run.status == EXIT_INTERRUPTED, shown
    assert stopped_run.lines[-1] == STOPPED_LINE, shown
    assert "Traceback" not in shown
    assert stopped_run.work.completed_epochs() >= 1  # a rerun resumes from it


def test_a_new_run_names_the_unfinished_one_and_leaves_it_to_resume(
    stopped_run: StoppedRun, second_run: SecondRun
) -> None:
    run_id = json.loads((stopped_run.work.root / "run.json").read_text())["run_id"]
    notes = [line for line in second_run.lines if line.startswith("note: unfinished run")]
    assert len(notes) == 1, second_run.lines
    epochs = stopped_run.work.completed_epochs()
    assert notes[0].startswith(f"note: unfinished run {run_id} (stopped after epoch {epochs}, "), notes[0]
    assert ("the same command resumes it (variant deep_v1, TRAINER_BATCH_SIZE=128, TRAINER_EARLY_STOPPING_PATIENCE=0, "
            "TRAINER_EPOCHS=50, TRAINER_XLA=false, data sample_2k.json sha256 ") in notes[0]
    assert notes[0].endswith(f"`rm -r {stopped_run.work.root}` drops it")
    assert stopped_run.work.completed_epochs() == epochs  # the new run kept it, finished and removed only its own
    assert [p.name for p in stopped_run.work.root.parent.iterdir()] == [stopped_run.work.root.name]


def test_a_batch_holding_the_whole_training_split_is_warned(second_run: SecondRun) -> None:
    assert ("warning: batch size 4096 is at least the 1,398 training rows: each epoch is one step (1 in all), too "
            "few for the model to learn; set batch_size below 1,398, or 0 for the auto batch (64 here)"
            ) in second_run.lines


def test_numbers_too_large_for_float32_are_counted_and_named(second_run: SecondRun) -> None:
    warnings = [line for line in second_run.lines if "too large for float32" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), second_run.lines
    assert f"{len(TOO_LARGE_ROWS)} in 'position'" in warnings[0]
    with zipfile.ZipFile(second_run.result.package_uri) as package:
        dataset = json.loads(package.read("dataset.json"))
    assert dataset["numbers_beyond_float32"] == {"position": len(TOO_LARGE_ROWS), "item_age_hours": 0}
