"""Exact resume: after every epoch, all the state the next epoch depends on,
written as one unit.

Keras' `BackupAndRestore` saves the weights (with the optimizer's state) and
the epoch, but not early stopping's state, nor the dropout layers' seed
generators, and it writes the weights and the epoch one after the other.
`ExactBackup` saves all of them into a folder of their own and then points
`latest.json` at that folder with one rename: a kill at any moment leaves
either the previous epoch's backup or this one's, never a mix. It uses
public Keras only: `restore` runs before `fit` and says which epoch to start
from (`fit(initial_epoch=...)`), the callback saves after each epoch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from trainer.faults import fault_point

POINTER = "latest.json"
WEIGHTS = "model.weights.h5"
ARRAYS = "state.npz"


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


def seed_states(model: keras.Model) -> list[keras.Variable]:
    """The dropout layers' SeedGenerator states: in model.variables, not in model.weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class ExactBackup(keras.callbacks.Callback):
    """Saves the weights, optimizer state, seed generators and early stopping's state after every epoch.

    Call `restore(model, epochs)` before `fit` and pass what it returns as
    `initial_epoch`. Put the callback after the early stopping callback: that
    one's epoch-end state is then what gets saved, and its reset at train
    begin comes before this callback puts the restored state back.
    """

    def __init__(self, backup_dir: Path, early_stopping: ResumableEarlyStopping | None) -> None:
        super().__init__()
        self.root, self.early_stopping = backup_dir, early_stopping
        # Early stopping's restored state and best weights, held until on_train_begin.
        self.restored_stopping: tuple[dict[str, Any], list[np.ndarray] | None] | None = None

    def restore(self, model: keras.Model, epochs: int) -> int:
        """Load the last backup into `model` (nothing if there is none); the epoch fit starts from."""
        pointer = self.root / POINTER
        if not pointer.exists():
            return 0
        state = json.loads(pointer.read_text())
        folder = self.root / state["folder"]
        if model.optimizer is not None and not model.optimizer.built:
            # The slots must exist to be loaded; under the model's strategy, as fit would build them.
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)
        model.load_weights(folder / WEIGHTS)  # no fallback needed: the pointer only names complete backups
        with np.load(folder / ARRAYS) as arrays:
            for i, variable in enumerate(seed_states(model)):
                variable.assign(arrays[f"seed_{i}"])
            best = [arrays[f"best_{i}"] for i in range(state["best_weights"])] if state["best_weights"] else None
        if self.early_stopping is None or not state["early_stopping"]:
            return state["epoch"]
        self.restored_stopping = state["early_stopping"], best
        # A run that early stopping had ended trains no further epoch (as Keras' BackupAndRestore does).
        return epochs if state["early_stopping"]["stopped_epoch"] > 0 else state["epoch"]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Early stopping's own on_train_begin has just reset it.
        if self.early_stopping is not None and self.restored_stopping is not None:
            self.early_stopping.restore(*self.restored_stopping)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.save(epoch + 1)

    def save(self, epoch: int) -> None:
        """This epoch's backup, written whole into its own folder, then made current by one rename."""
        folder = self.root / f"epoch-{epoch}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.model.save_weights(folder / WEIGHTS)
        best = (self.early_stopping.best_weights if self.early_stopping is not None else None) or []
        arrays = {f"seed_{i}": np.asarray(v) for i, v in enumerate(seed_states(self.model))}
        np.savez(folder / ARRAYS, **arrays, **{f"best_{i}": w for i, w in enumerate(best)})
        fault_point(f"backup:{epoch}")
        state = {"epoch": epoch, "folder": folder.name, "best_weights": len(best),
                 "early_stopping": self.early_stopping.state() if self.early_stopping is not None else None}
        partial = self.root / f"{POINTER}.partial"
        partial.write_text(json.dumps(state))
        os.replace(partial, self.root / POINTER)  # the one step that makes this epoch's backup current
        for old in self.root.glob("epoch-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
