"""Fit a compiled model with Keras callbacks: per-epoch train/test metrics,
TensorBoard, optional early stopping, a NaN guard and resumability.

Resuming: Keras' `BackupAndRestore` saves the weights, optimizer state and
epoch number after every epoch into the run's work folder; a run started
again with the same arguments finds that folder and continues from its last
completed epoch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import keras
import tensorflow as tf

from trainer.config import NetConfig
from trainer.errors import TrainerError
from trainer.training.arrays import SplitArrays
from trainer.training.callbacks import DivergenceGuard, EpochEvaluation, EpochReport
from trainer.training.metrics import RunMetrics

# batch_size = 0 picks 1/16 of the training rows within these bounds: large
# batches keep the CPU's matrix units busy on big data, while the 2K sample
# still gets 16 steps per epoch.
AUTO_BATCH_RANGE = (64, 8192)
AUTO_BATCH_STEPS = 16


def effective_batch_size(config: NetConfig, train_rows: int) -> int:
    if config.batch_size:
        return config.batch_size
    low, high = AUTO_BATCH_RANGE
    return max(low, min(high, train_rows // AUTO_BATCH_STEPS))


@dataclass(frozen=True)
class WorkFolders:
    """The run's local working files: kept until the package is written."""

    root: Path

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def keras_csv(self) -> Path:
        return self.root / "epochs.csv"

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the run's folder for this process: a second process training
        the same run would overwrite the first one's backups."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "run.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrainerError(
                    f"the same run (same config, same data) is already training in another process, "
                    f"using {self.root}; wait for it to finish or change the config"
                ) from None
            yield

    def completed_epochs(self) -> int:
        """Epochs a killed earlier attempt finished (0 when starting fresh)."""
        metadata = self.backup / "training_metadata.json"
        return json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0


def describe_device(require_gpu: bool) -> str:
    """The device TensorFlow will train on, in words; fails if a GPU was required but none is seen."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if require_gpu:
            raise TrainerError(
                "a GPU was asked for (--gpu) but TensorFlow sees none: check `nvidia-smi` and that the "
                "CUDA build of TensorFlow is installed, or drop --gpu to train on the CPU"
            )
        return f"CPU ({os.cpu_count()} cores)"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "unknown model")
    return f"GPU:0 ({name})" + (f" and {len(gpus) - 1} more" if len(gpus) > 1 else "")


def fit_model(
    model: keras.Model,
    train: SplitArrays,
    test: SplitArrays,
    config: NetConfig,
    work: WorkFolders,
    run_metrics: RunMetrics,
    out: TextIO,
    batch_size: int,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.callbacks.History:
    """Train for `config.epochs` (resuming a killed attempt), reporting each epoch."""
    callbacks: list[keras.callbacks.Callback] = [
        DivergenceGuard(config),
        EpochEvaluation(train, test, config.seed),
        EpochReport(run_metrics, len(train), config.epochs, out),
        # The CSV row is written before the backup: a kill between the two
        # repeats an epoch's row (deduplicated later) instead of losing it.
        keras.callbacks.CSVLogger(str(work.keras_csv), append=True),
        keras.callbacks.TensorBoard(log_dir=str(work.tensorboard), write_graph=False, profile_batch=0),
        keras.callbacks.BackupAndRestore(str(work.backup), double_checkpoint=True),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    callbacks += extra_callbacks  # after EpochEvaluation: they see the epoch's test metrics
    return model.fit(
        train.inputs,
        train.labels,
        batch_size=batch_size,
        epochs=config.epochs,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
