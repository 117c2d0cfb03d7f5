"""The run's own Keras callbacks: per-epoch evaluation, the epoch line, the NaN guard, a test hook."""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import keras
import numpy as np

from trainer.config import NetConfig
from trainer.errors import TrainingDivergedError
from trainer.training.arrays import SplitArrays, predict
from trainer.training.backup import kill_point
from trainer.training.metrics import RunMetrics, binary_metrics, format_epoch_line


class EpochEvaluation(keras.callbacks.Callback):
    """Train and validation metrics from the epoch's final weights, once per epoch.

    Keras would update AUC, log-loss and accuracy inside every training step:
    about 40% of a step's time on these CPUs. Instead the model scores the
    validation split and a fixed sample of the training split (as large as
    the validation split) at the end of each epoch, so both are measured
    alike, from the same weights. `loss` stays Keras' mean training loss over
    the epoch. The test split is not looked at here: it is scored once, on
    the packaged weights. Keras' `val_` prefix is the validation split.
    """

    def __init__(self, train: SplitArrays, validation: SplitArrays, seed: int) -> None:
        super().__init__()
        rows = np.random.default_rng(seed).permutation(len(train))[: len(validation)]
        rows.sort()
        self.train_sample = SplitArrays({k: v[rows] for k, v in train.inputs.items()}, train.labels[rows])
        self.validation = validation

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        logs.update(binary_metrics(self.train_sample.labels, predict(self.model, self.train_sample.inputs)))
        validation = binary_metrics(self.validation.labels, predict(self.model, self.validation.inputs))
        logs.update({f"val_{name}": value for name, value in validation.items()})
        logs["val_loss"] = validation["logloss"]


class DivergenceGuard(keras.callbacks.Callback):
    """Stops the run with a clear message the moment the loss is NaN or infinite."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(
                f"training diverged: loss became {float(loss)} in epoch {self._epoch + 1}, batch {batch + 1}; "
                f"lower learning_rate (now {self.config.learning_rate}) or check the numeric columns "
                f"for extreme values"
            )


class EpochReport(keras.callbacks.Callback):
    """Times each epoch into pyformance, adds its speed to the epoch's logs
    (so the CSV has it) and prints one readable line per epoch."""

    def __init__(self, run_metrics: RunMetrics, train_rows: int, epochs: int, out: TextIO) -> None:
        super().__init__()
        self.run_metrics, self.train_rows, self.epochs, self.out = run_metrics, train_rows, epochs, out
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.run_metrics.registry.timer("epoch").hist.add(seconds)
        self.run_metrics.count("examples_trained", self.train_rows, seconds)
        logs = logs if logs is not None else {}
        logs["epoch_seconds"] = seconds
        logs["examples_per_second"] = self.train_rows / seconds
        print(format_epoch_line(epoch + 1, self.epochs, logs), file=self.out, flush=True)


class KillPoint(keras.callbacks.Callback):
    """The test hook `FAB_TEST_KILL_AT=epoch:N`: SIGKILL after epoch N is backed up (put it last)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        kill_point(f"epoch:{epoch + 1}")
