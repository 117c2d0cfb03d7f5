"""The run's own Keras callbacks: per-epoch evaluation, the epoch line, the NaN guard, TensorBoard's
steps, a test hook."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

import keras

from trainer.config import NetConfig
from trainer.errors import TrainingDivergedError
from trainer.faults import fault_point
from trainer.training.encoded import EncodedSplit, predict_split
from trainer.training.metrics import (
    EPOCH_SECONDS,
    MEAN_BATCH_LOSS,
    RunMetrics,
    StepCall,
    binary_metrics,
    format_epoch_line,
    split_compile_seconds,
)


class EpochEvaluation(keras.callbacks.Callback):
    """Train and validation metrics from the epoch's final weights, once per epoch.

    Keras would update AUC, log-loss and accuracy inside every training step:
    a large share of a step's time on these CPUs (see the README's
    benchmarks). Instead the model scores the validation split and a fixed
    sample of the training split (as large as the validation split) at the
    end of each epoch, so both are measured alike, from the same weights.
    `loss` stays Keras' mean training loss over the epoch. The test split is
    not looked at here: it is scored once, on the packaged weights. Keras'
    `val_` prefix is the validation split. Its own seconds go into the logs
    as `evaluation_seconds`.
    """

    def __init__(self, train_sample: EncodedSplit, validation: EncodedSplit) -> None:
        super().__init__()
        self.train_sample, self.validation = train_sample, validation

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        logs = logs if logs is not None else {}
        logs.update(split_metrics(self.model, self.train_sample))
        logs.update({f"val_{name}": value for name, value in split_metrics(self.model, self.validation).items()})
        logs["evaluation_seconds"] = time.perf_counter() - started


def split_metrics(model: keras.Model, split: EncodedSplit) -> dict[str, float]:
    """AUC, log-loss and accuracy of the model on a split, read block by block."""
    scores, labels = predict_split(model, split)
    return binary_metrics(labels, scores)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops the run with a clear message the moment the loss is NaN or infinite."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(
                f"training diverged: loss became {float(loss)} in epoch {self.epoch + 1}, batch {batch + 1}; "
                f"lower learning_rate (now {self.config.learning_rate}) or check the numeric columns "
                f"for extreme values"
            )


class EpochReport(keras.callbacks.Callback):
    """Each epoch's seconds, apart, into its logs (so the CSV has them), pyformance and one printed line.

    - `training_seconds`: the train-function calls, timed one by one from
      `on_train_batch_begin` to `on_train_batch_end`, minus their compile
      time; `examples_per_second` is the training rows over it. The steps are
      done by batch end: a callback with `on_train_batch_end` (this one) makes
      Keras call them in line, after turning the loss into a Python number.
    - `compile_seconds`: tracing and XLA compiling in the calls that met a new
      batch shape (`metrics.split_compile_seconds` says how it is estimated).
    - `evaluation_seconds`: EpochEvaluation's scoring (put it before this).
    - `epoch_seconds`: the epoch's wall time, all of the above included; the
      line names what is left of it as `other` (`metrics.format_epoch_line`).

    The run's first call compiles for seconds before any epoch can end, so a
    line says so as it starts.
    """

    def __init__(self, run_metrics: RunMetrics, train_rows: int, batch_size: int, epochs: int, out: TextIO) -> None:
        super().__init__()
        self.run_metrics, self.train_rows, self.epochs, self.out = run_metrics, train_rows, epochs, out
        self.batch_size = batch_size
        self.steps_per_epoch = math.ceil(train_rows / batch_size)
        self.trained_shapes: set[int] = set()  # batch sizes this process has already compiled
        self.calls: list[StepCall] = []
        self.epoch_started = self.call_started = 0.0
        self.call_first_step = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.perf_counter()
        self.calls = []

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.trained_shapes and batch == 0:
            print(f"compiling the training step{' with XLA' if self.model.jit_compile else ''} ...", file=self.out,
                  flush=True)
        self.call_first_step = batch
        self.call_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self.call_started
        # Keras reports the call's last step as first + steps_per_execution - 1, even past the epoch's end.
        end = min(batch + 1, self.steps_per_epoch)
        shapes = {self.batch_rows(step) for step in range(self.call_first_step, end)}
        self.calls.append(StepCall(end - self.call_first_step, seconds, not shapes <= self.trained_shapes))
        self.trained_shapes |= shapes

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        training, compile_seconds = split_compile_seconds(self.calls)
        logs.update(training_seconds=training, compile_seconds=compile_seconds,
                    examples_per_second=self.train_rows / max(training, 1e-9))
        logs.setdefault("evaluation_seconds", math.nan)
        logs["epoch_seconds"] = time.perf_counter() - self.epoch_started
        for part in EPOCH_SECONDS:
            self.run_metrics.time(f"epoch.{part}_seconds", logs[f"{part}_seconds"])
        self.run_metrics.count("examples_trained", self.train_rows, training)
        print(format_epoch_line(epoch + 1, self.epochs, logs), file=self.out, flush=True)

    def batch_rows(self, step: int) -> int:
        return min(self.batch_size, self.train_rows - step * self.batch_size)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, live at each epoch's end (`trainer.training.tensorboard`), numbering
    the step as the epoch line and metrics.csv number the epoch: from 1 (Keras counts from 0)."""

    def __init__(self, logdir: Path) -> None:
        super().__init__(log_dir=str(logdir), write_graph=False, profile_batch=0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch + 1, tensorboard_scalars(logs or {}))


def tensorboard_scalars(logs: dict[str, Any]) -> dict[str, Any]:
    """The epoch's logs named as metrics.csv names them: Keras' `loss` is the mean batch loss, not a
    log-loss to draw beside the validation split's."""
    return {(MEAN_BATCH_LOSS if name == "loss" else name): value for name, value in logs.items()}


class KillPoint(keras.callbacks.Callback):
    """The test hook `FAB_TEST_KILL_AT=epoch:N`: SIGKILL after epoch N is backed up (put it last)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        fault_point(f"epoch:{epoch + 1}")
