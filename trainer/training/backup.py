"""Exact resume: after every epoch, all the state the next epoch depends on,
written as one unit.

Keras' `BackupAndRestore` saves the weights (with the optimizer's state) and
the epoch, but not early stopping's state, nor the dropout layers' seed
generators, and it writes the weights and the epoch one after the other.
`ExactBackup` adds both, writes them into a folder of their own and then
points `latest.json` at that folder with one rename: a kill at any moment
leaves either the previous epoch's backup or this one's, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import keras
import numpy as np

POINTER = "latest.json"
WEIGHTS = "model.weights.h5"
ARRAYS = "state.npz"
# A test hook, read here so that kills land at fixed points, not at a time:
# "epoch:N" after epoch N's backup, "backup:N" inside it (its files written,
# not yet pointed to), "packaging" before the package is published.
KILL_POINT_VARIABLE = "FAB_TEST_KILL_AT"  # not TRAINER_: that prefix is for config keys


def kill_point(point: str) -> None:
    """SIGKILL this process if the test hook names `point`."""
    if os.environ.get(KILL_POINT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def backed_up_epochs(backup_dir: Path) -> int:
    """Epochs the last backup holds (0 when there is none)."""
    pointer = backup_dir / POINTER
    return json.loads(pointer.read_text())["epoch"] if pointer.exists() else 0


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping whose state can be saved and restored with the backup."""

    def state(self) -> dict[str, Any]:
        return {"best": None if self.best is None else float(self.best), "wait": self.wait,
                "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}

    def restore(self, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_weights = best_weights

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch > 0


class ExactBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore with early stopping's state and the seed generators, written atomically.

    Put it after the early stopping callback: that one's epoch-end state is
    then what gets saved, and its reset at train begin comes before the restore.
    """

    def __init__(self, backup_dir: Path, early_stopping: ResumableEarlyStopping | None, epochs: int) -> None:
        # The backup outlives fit: the run's folder is removed once its package is published.
        super().__init__(str(backup_dir), delete_checkpoint=False)
        self.root, self.early_stopping, self.epochs = backup_dir, early_stopping, epochs

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._load_model()  # no fallback to a previous file needed: the pointer only names complete backups

    def _seed_states(self) -> list[keras.Variable]:
        # model.variables adds the dropout layers' SeedGenerator states to model.weights.
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def _load_model(self) -> None:
        pointer = self.root / POINTER
        if not pointer.exists():
            return
        state = json.loads(pointer.read_text())
        folder = self.root / state["folder"]
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(folder / WEIGHTS)
        with np.load(folder / ARRAYS) as arrays:
            for i, variable in enumerate(self._seed_states()):
                variable.assign(arrays[f"seed_{i}"])
            best = [arrays[f"best_{i}"] for i in range(state["best_weights"])] if state["best_weights"] else None
        if self.early_stopping is not None and state["early_stopping"]:
            self.early_stopping.restore(state["early_stopping"], best)
        # A run that early stopping had ended trains no further epoch (as Keras' BackupAndRestore does).
        stopped = self.early_stopping is not None and self.early_stopping.stopped
        self.model._initial_epoch = self.epochs if stopped else state["epoch"]

    def _save_model(self) -> None:
        epoch = self._current_epoch
        folder = self.root / f"epoch-{epoch}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.model.save_weights(folder / WEIGHTS)
        best = (self.early_stopping.best_weights if self.early_stopping is not None else None) or []
        arrays = {f"seed_{i}": np.asarray(v) for i, v in enumerate(self._seed_states())}
        np.savez(folder / ARRAYS, **arrays, **{f"best_{i}": w for i, w in enumerate(best)})
        kill_point(f"backup:{epoch}")
        state = {"epoch": epoch, "folder": folder.name, "best_weights": len(best),
                 "early_stopping": self.early_stopping.state() if self.early_stopping is not None else None}
        partial = self.root / f"{POINTER}.partial"
        partial.write_text(json.dumps(state))
        os.replace(partial, self.root / POINTER)  # the one step that makes this epoch's backup current
        for old in self.root.glob("epoch-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
