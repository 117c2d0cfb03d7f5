"""The speed a run reports: training steps apart from compilation and evaluation, and true rates."""

from __future__ import annotations

import io
import json
import math
import re
import time
import zipfile
from typing import Any

import keras
import pandas as pd
import pytest

from trainer.data.synthetic.writer import generate
from trainer.run import TrainRequest, TrainResult, train
from trainer.training.metrics import StepCall, format_epoch_line, split_compile_seconds

ROWS = 10_000
EPOCHS = 3
# A validation split twice the training split, evaluated every epoch and timed apart.
BIG_VALIDATION = {"TRAINER_EPOCHS": str(EPOCHS), "TRAINER_VALIDATION_FRACTION": "0.6",
                  "TRAINER_TEST_FRACTION": "0.1", "TRAINER_EARLY_STOPPING_PATIENCE": "0"}
SECONDS_COLUMNS = ["training_seconds", "compile_seconds", "evaluation_seconds", "epoch_seconds"]


# Work in each epoch besides its steps, more than they take, so an examples/s that counted the
# epoch's whole time would fall far short (evaluating even this validation split takes hundredths).
OTHER_WORK_S = 0.3


class StepsOnlyClock(keras.callbacks.Callback):
    """The test's own measure of each epoch's train-function calls, nothing else; it also
    does OTHER_WORK_S of other work as each epoch begins."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(0.0)
        time.sleep(OTHER_WORK_S)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds[-1] += time.perf_counter() - self._started


class Run:
    def __init__(self, result: TrainResult, log: str, clock: StepsOnlyClock) -> None:
        self.log, self.clock = log, clock
        with zipfile.ZipFile(result.package_uri) as archive:
            self.table = pd.read_csv(archive.open("metrics.csv")).set_index("epoch")
            self.manifest = json.loads(archive.read("manifest.json"))
        self.train_rows = int(re.search(r"^([\d,]+) train /", log, re.MULTILINE)[1].replace(",", ""))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("speed")
    generate(ROWS, folder / "ctr.json", seed=0)
    log, clock = io.StringIO(), StepsOnlyClock()
    request = TrainRequest("deep_v1", str(folder / "ctr.json"), str(folder / "runs"), environ=BIG_VALIDATION,
                           callbacks=(clock,))
    return Run(train(request, log), log.getvalue(), clock)


def test_the_epoch_line_shows_training_rate_compile_and_evaluation_apart(run: Run) -> None:
    speed = r"\|  [\d.]+ s: training [\d.]+ s at [\d,]+ examples/s{compile}, evaluation [\d.]+ s(, other [\d.]+ s)?$"
    assert re.search(r"^epoch 1/3  train: .*" + speed.format(compile=r", compile [\d.]+ s"), run.log, re.MULTILINE), \
        run.log
    for epoch in (2, 3):  # compiled once: later epochs have no compile part
        assert re.search(rf"^epoch {epoch}/3  train: .*" + speed.format(compile=""), run.log, re.MULTILINE), run.log


def test_the_epoch_lines_parts_add_up_and_every_long_step_is_announced(run: Run) -> None:
    lines = run.log.splitlines()
    epoch_lines = [line for line in lines if re.match(r"epoch \d+/\d+  train: ", line)]
    assert len(epoch_lines) == EPOCHS
    for line in epoch_lines:
        total, parts = line.rsplit("|  ", 1)[1].split(": ", 1)
        seconds = [float(figure) for figure in re.findall(r"([\d.]+) s\b", parts)]
        # Each figure is rounded (to 0.01 s below 1 s, to 0.1 s above) and `other` is shown from 0.05 s.
        assert sum(seconds) == pytest.approx(float(total.removesuffix(" s")), abs=0.05 * (len(seconds) + 1)), line
    # Before the first epoch's seconds of compiling, and after the last epoch, a line as each long step starts.
    order = ["compiling the training step with XLA ...", "epoch 1/3  train: ", "epoch 3/3  train: ",
             "scoring the weights of epoch ", "exporting the serving model (model/serving/1/) ...",
             "writing the package (metrics.png, TensorBoard events, the zip) ...", "package "]
    found = [next((n for n, line in enumerate(lines) if line.startswith(start)), None) for start in order]
    assert None not in found and found == sorted(found), run.log


def test_metrics_csv_has_each_epochs_seconds_apart(run: Run) -> None:
    table = run.table
    assert {*SECONDS_COLUMNS, "examples_per_second"} <= set(table.columns)
    assert table.loc[1, "compile_seconds"] > 0.2  # XLA compiling deep_v1's step takes seconds
    assert (table.loc[2:, "compile_seconds"] == 0).all()
    parts = table[["training_seconds", "compile_seconds", "evaluation_seconds"]].sum(axis=1)
    assert (table["epoch_seconds"] >= parts).all()
    rate = run.train_rows / table["training_seconds"]
    assert table["examples_per_second"].to_numpy() == pytest.approx(rate.to_numpy(), rel=1e-3)


def test_examples_per_second_counts_the_training_steps_only(run: Run) -> None:
    table = run.table
    assert (table["epoch_seconds"] > 2 * table["training_seconds"]).all(), "OTHER_WORK_S is too short"
    for epoch in (2, 3):
        steps_only = run.train_rows / run.clock.seconds[epoch - 1]
        assert table.loc[epoch, "examples_per_second"] == pytest.approx(steps_only, rel=0.25)
        # What the line showed before: the rows over the whole epoch, evaluation included.
        assert run.train_rows / table.loc[epoch, "epoch_seconds"] < 0.6 * steps_only
    # Epoch 1 less its compile time trains like the later epochs (with it, it read 100x slower).
    assert table.loc[1, "examples_per_second"] > table.loc[2:, "examples_per_second"].median() / 3


def test_manifest_rates_are_counts_over_their_own_seconds(run: Run) -> None:
    manifest = run.manifest
    loaded = manifest["pyformance"]["rows_loaded"]
    assert loaded["count"] == ROWS
    assert loaded["per_second"] == pytest.approx(ROWS / manifest["stage_seconds"]["load"], rel=0.05)
    trained = manifest["pyformance"]["examples_trained"]
    assert trained["count"] == EPOCHS * run.train_rows
    assert trained["per_second"] == pytest.approx(trained["count"] / run.table["training_seconds"].sum(), rel=0.05)
    assert manifest["epoch_seconds"]["compile"] == pytest.approx(run.table["compile_seconds"].sum(), abs=1e-3)
    assert manifest["epoch_seconds"]["evaluation"] == pytest.approx(run.table["evaluation_seconds"].sum(), abs=1e-3)
    # Rates over the time since a meter was made, until the snapshot, are not in the manifest.
    assert not [key for values in manifest["pyformance"].values() for key in values if key.endswith("_rate")]


def test_an_epoch_too_short_to_split_off_its_compile_time_says_so() -> None:
    # Two calls, both meeting a new batch shape (the first, and the smaller last batch): no steady call.
    training, compile_seconds = split_compile_seconds([StepCall(8, 4.0, True), StepCall(3, 2.0, True)])
    assert (training, math.isnan(compile_seconds)) == (6.0, True)
    logs = {"training_seconds": training, "compile_seconds": compile_seconds, "examples_per_second": 1400 / training,
            "evaluation_seconds": 0.5, "epoch_seconds": 6.7}
    # What the parts leave of the epoch's 6.7 s is named.
    assert format_epoch_line(1, 2, logs).endswith(
        "6.7 s: training+compile 6.0 s at 233 examples/s, evaluation 0.50 s, other 0.20 s")
