"""Fit a compiled model with Keras callbacks: per-epoch train/validation
metrics, TensorBoard, optional early stopping, a NaN guard and exact resume.

Resuming: `backup.ExactBackup` saves the weights, optimizer state, early
stopping's state and the epoch after every epoch into the run's work folder;
a run started again with the same arguments finds that folder, restores it
before `fit` and continues from its last completed epoch, on the same batches
(`batches`), to the same model. When fit ends, the trained (best) model is
kept in the folder until the package is published, so a kill or a failed
upload after training loses none of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TextIO

import keras
import tensorflow as tf

from trainer import spend_onednn_boolean_notice
from trainer.config import NetConfig
from trainer.errors import TrainerError
from trainer.faults import logical_cpus
from trainer.training.backup import ExactBackup, ResumableEarlyStopping, backed_up_epochs
from trainer.training.batches import StreamedBatches
from trainer.training.callbacks import DivergenceGuard, EpochEvaluation, EpochReport, EpochTensorBoard, KillPoint
from trainer.training.encoded import EncodedSplit
from trainer.training.metrics import RunMetrics

# batch_size = 0 picks 1/64 of the training rows within these bounds: 64 steps
# per epoch up to 262K training rows, more beyond, where the batch stays at
# 4096. On 1M rows 4096 trains as fast as 8192 (the matmuls already fill both
# cores) and matches a batch-1024 fit's validation AUC at every epoch, where
# 8192 trailed it after epoch 1 (bench/bench_train.py). 1/16 (16 steps per
# epoch) underfitted 100K rows in 8 epochs; 1/128 was no better there and
# slower on 1M (bench/bench_batch.py). Figures: the README's benchmarks.
AUTO_BATCH_RANGE = (64, 4096)
AUTO_BATCH_STEPS = 64
# A run's lock is tried this many times, this far apart, before it counts as held by another process.
LOCK_TRIES = 10
LOCK_RETRY_S = 0.05


def effective_batch_size(config: NetConfig, train_rows: int) -> int:
    if config.batch_size:
        return config.batch_size
    low, high = AUTO_BATCH_RANGE
    return max(low, min(high, train_rows // AUTO_BATCH_STEPS))


def one_step_warning(config: NetConfig, train_rows: int, batch_size: int) -> str | None:
    """A warning when one batch holds the whole training split: each epoch is then a single step, and
    the run ends nearly untrained without any error to show for it."""
    if batch_size < train_rows:
        return None
    steps = f"each epoch is one step ({config.epochs} in all), too few for the model to learn"
    if not config.batch_size:  # the auto batch's floor: the split itself is too small
        return f"warning: the {train_rows:,} training rows fit in one batch of {batch_size}: {steps}; use more rows"
    auto = effective_batch_size(replace(config, batch_size=0), train_rows)
    return (f"warning: batch size {batch_size} is at least the {train_rows:,} training rows: {steps}; "
            f"set batch_size below {train_rows:,}, or 0 for the auto batch ({auto} here)")


def _locked(lock: IO[str]) -> bool:
    """Take the exclusive lock on an open file, without waiting; False when another process holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _locked_within_tries(lock: IO[str]) -> bool:
    """`_locked`, tried a few times: another run starting may be probing this lock (`in_use`) for an instant."""
    for _ in range(LOCK_TRIES):
        if _locked(lock):
            return True
        time.sleep(LOCK_RETRY_S)
    return False


@dataclass(frozen=True)
class FitOutcome:
    """What a finished fit decided: the epoch whose weights are packaged (from 1) and whether XLA compiled it."""

    best_epoch: int
    xla: bool


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

    @property
    def encoded(self) -> Path:
        """The run's encoded splits (`trainer.training.encoded`), written again by a rerun."""
        return self.root / "encoded"

    @property
    def lock_file(self) -> Path:
        return self.root / "run.lock"

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the run's folder for this process: a second process training
        the same run would overwrite the first one's backups."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("w") as lock:
            if not _locked_within_tries(lock):
                raise TrainerError(
                    f"the same run (same config, same data) is already training in another process, "
                    f"using {self.root}; wait for it to finish or change the config"
                )
            yield

    def in_use(self) -> bool:
        """Whether a process holds the run now (training it); the lock is taken and let go at once."""
        if not self.lock_file.exists():
            return False
        with self.lock_file.open("a") as lock:
            if not _locked(lock):
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
        return False

    @property
    def trained(self) -> Path:
        return self.root / "trained"

    @property
    def trained_model(self) -> Path:
        return self.trained / "model.keras"

    def completed_epochs(self) -> int:
        """Epochs a killed earlier attempt finished (0 when starting fresh)."""
        return backed_up_epochs(self.backup)

    def finished_training(self) -> FitOutcome | None:
        """What an earlier attempt's finished fit left, if it got that far (then only packaging remains)."""
        facts = self.trained / "training.json"
        return FitOutcome(**json.loads(facts.read_text())) if facts.exists() else None

    def keep_trained(self, model: keras.Model, outcome: FitOutcome) -> None:
        """Keep the model that will be packaged, written whole before it counts (one rename)."""
        partial = self.root / "trained.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        model.save(partial / self.trained_model.name)
        (partial / "training.json").write_text(json.dumps(asdict(outcome)))
        os.replace(partial, self.trained)
        shutil.rmtree(self.backup, ignore_errors=True)  # the trained model supersedes it


def describe_device(require_gpu: bool) -> str:
    """The devices TensorFlow will train on, in words; fails if a GPU was required but none is seen.
    It only describes: `split_cpu_for_tests` comes first when the CPU is to be split."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if require_gpu:
            raise TrainerError(
                "a GPU was asked for (--gpu) but TensorFlow sees none: check `nvidia-smi` and that the "
                "CUDA build of TensorFlow is installed, or drop --gpu to train on the CPU"
            )
        if _cpu_split() > 1:  # only the test hook splits the CPU
            cpus = replica_devices()
            return f"CPU ({os.cpu_count()} cores) as {len(cpus)} logical devices, mirrored: {_short(cpus)}"
        return f"CPU ({os.cpu_count()} cores)"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", "unknown model") for gpu in gpus]
    if len(gpus) == 1:
        return f"GPU:0 ({names[0]})"
    listed = ", ".join(f"GPU:{index} ({name})" for index, name in enumerate(names))
    return f"{len(gpus)} GPUs, mirrored: {listed}"


def split_cpu_for_tests() -> None:
    """The test hook FAB_TEST_LOGICAL_CPUS=N (`trainer.faults`): the CPU as N logical devices, so the
    multi-device path runs on a machine without GPUs. It must run before TensorFlow initialises its devices."""
    if (count := logical_cpus()) < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is None:  # a tuning worker's next trial: already split
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def _cpu_split() -> int:
    """Logical devices the CPU is configured as (0: not split), read without starting TensorFlow's runtime."""
    return len(tf.config.get_logical_device_configuration(tf.config.list_physical_devices("CPU")[0]) or [])


def replica_devices() -> list[str]:
    """The devices one run trains on: every GPU TensorFlow sees, else the CPU (or the hook's logical CPUs)."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in gpus or tf.config.list_logical_devices("CPU")]


def training_strategy() -> tf.distribute.Strategy | None:
    """MirroredStrategy over the devices when there are several (one model copy each, gradients
    summed); None for one device, where Keras' default path is kept exactly as it was."""
    # Physical devices first: listing logical ones starts TensorFlow's runtime, which one device leaves to Keras.
    if len(tf.config.list_physical_devices("GPU")) < 2 and _cpu_split() < 2:
        return None
    return tf.distribute.MirroredStrategy(replica_devices())


def _short(devices: Sequence[str]) -> str:
    return ", ".join(name.rsplit("device:", 1)[-1] for name in devices)


def fit_model(
    model: keras.Model,
    train: EncodedSplit,
    validation: EncodedSplit,
    config: NetConfig,
    work: WorkFolders,
    run_metrics: RunMetrics,
    out: TextIO,
    batch_size: int,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitOutcome:
    """Train for `config.epochs` (resuming a killed attempt), reporting each epoch;
    the model ends with the best validation epoch's weights, kept in the work folder."""
    batches = StreamedBatches(train, batch_size, config.seed, config.shuffle_buffer_rows)
    # Train and validation measured alike: a fixed sample of the training rows, as many as validation has.
    train_sample = train.sample(len(validation), config.seed, work.encoded / "train_sample")
    early_stopping = ResumableEarlyStopping(
        monitor="val_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
    ) if config.early_stopping_patience else None
    backup = ExactBackup(work.backup, early_stopping)
    initial_epoch = backup.restore(model, config.epochs)  # 0 when starting fresh
    callbacks: list[keras.callbacks.Callback] = [
        batches,
        DivergenceGuard(config),
        EpochEvaluation(train_sample, validation),
        EpochReport(run_metrics, len(train), batch_size, config.epochs, out),  # after EpochEvaluation: its seconds
        # The CSV row is written before the backup: a kill between the two
        # repeats an epoch's row (deduplicated later) instead of losing it.
        keras.callbacks.CSVLogger(str(work.keras_csv), append=True),
        # Live curves with real wall times, in the work folder a rerun resumes (trainer.training.tensorboard).
        EpochTensorBoard(work.tensorboard),  # after EpochReport: its seconds and examples/s are in the logs
        *([early_stopping] if early_stopping else []),
        *extra_callbacks,  # after EpochEvaluation: they see the epoch's validation metrics
        backup,  # after early stopping: saves its epoch-end state, and restores it after its reset
        KillPoint(),
    ]
    # shuffle=False: the batches come shuffled by epoch (fit would warn that it ignores shuffle=True).
    spend_onednn_boolean_notice()
    model.fit(batches.dataset, epochs=config.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
              shuffle=False, verbose=0)
    # Without early stopping every epoch runs and the last one's weights are kept.
    stopping_chose = early_stopping is not None and early_stopping.best_weights is not None
    best_epoch = early_stopping.best_epoch + 1 if stopping_chose else config.epochs
    outcome = FitOutcome(best_epoch=best_epoch, xla=bool(model.jit_compile))
    work.keep_trained(model, outcome)
    return outcome
