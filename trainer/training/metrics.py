"""Run metrics: pyformance timers and meters, the per-epoch progress line,
and the per-epoch table written as `metrics.csv`, `metrics.png` and the
package's TensorBoard events.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    # pyformance 0.4 (2017) declares a pkg_resources namespace at import.
    warnings.simplefilter("ignore")
    from pyformance import MetricsRegistry

EPOCH_METRICS = ("loss", "auc", "logloss", "accuracy")
LINE_METRICS = ("logloss", "auc", "accuracy")
SPLITS_PER_EPOCH = ("train", "validation")  # the test split is scored once, at the end


class RunMetrics:
    """A run's pyformance registry plus the wall time of each pipeline stage."""

    def __init__(self) -> None:
        self.registry = MetricsRegistry()
        self.stage_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with self.registry.timer(f"stage.{name}").time():
            yield
        self.stage_seconds[name] = round(time.perf_counter() - started, 3)

    def count(self, meter: str, n: int, seconds: float) -> None:
        """Mark `n` events on a meter and record their rate over `seconds` as a gauge."""
        self.registry.meter(meter).mark(n)
        self.registry.gauge(f"{meter}_per_second").set_value(round(n / max(seconds, 1e-9), 1))

    def snapshot(self) -> dict[str, Any]:
        return {"stage_seconds": self.stage_seconds, "pyformance": self.registry.dump_metrics()}


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Exact log-loss, AUC (by ranks, ties averaged) and accuracy at 0.5."""
    y = labels.reshape(-1).astype(np.float64)
    p = np.clip(probabilities.reshape(-1).astype(np.float64), 1e-7, 1 - 1e-7)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives and negatives:
        ranks = pd.Series(p).rank(method="average").to_numpy()
        auc = (ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    else:
        auc = float("nan")  # undefined with one class only
    return {
        "logloss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "auc": float(auc),
        "accuracy": float(np.mean((p > 0.5) == (y == 1))),
    }


def format_epoch_line(epoch: int, epochs: int, logs: dict[str, Any]) -> str:
    def part(prefix: str) -> str:
        return " ".join(f"{name} {logs[prefix + name]:.4f}" for name in LINE_METRICS if prefix + name in logs)

    return (
        f"epoch {epoch}/{epochs}  train: {part('')}  |  validation: {part('val_')}  |  "
        f"{logs['epoch_seconds']:.1f} s, {logs['examples_per_second']:,.0f} examples/s"
    )


def epoch_table(keras_csv: Path) -> pd.DataFrame:
    """The CSVLogger's rows, one per finished epoch, with train_/validation_ names.

    A run resumed after a kill may have logged an epoch twice (the row is
    written before the backup); the last row of each epoch wins.
    """
    table = pd.read_csv(keras_csv).drop_duplicates("epoch", keep="last").sort_values("epoch")
    table["epoch"] = table["epoch"] + 1

    def rename(name: str) -> str:
        if name.startswith("val_"):
            return "validation_" + name[4:]
        return f"train_{name}" if name in EPOCH_METRICS else name

    table = table.rename(columns=rename).reset_index(drop=True)
    ordered = ["epoch"] + [f"{split}_{name}" for split in SPLITS_PER_EPOCH for name in EPOCH_METRICS]
    return table[[c for c in ordered if c in table] + [c for c in table if c not in ordered]]


def plot_epochs(table: pd.DataFrame, path: Path, title: str) -> None:
    """Train vs validation curves per epoch, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(EPOCH_METRICS), figsize=(4 * len(EPOCH_METRICS), 3.4))
    for axis, name in zip(axes, EPOCH_METRICS):
        for split, style in zip(SPLITS_PER_EPOCH, ("-o", "--s")):
            if f"{split}_{name}" in table:
                axis.plot(table["epoch"], table[f"{split}_{name}"], style, label=split, markersize=3)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_tensorboard(table: pd.DataFrame, logdir: Path) -> None:
    """The epoch table as TensorBoard scalars (train/ and validation/ runs, Keras' `epoch_` tags).

    Written from the final, deduplicated table, so a resumed run's package shows
    one coherent history rather than a killed attempt's events beside the rerun's.
    """
    import tensorflow as tf

    for split in SPLITS_PER_EPOCH:
        writer = tf.summary.create_file_writer(str(logdir / split))
        with writer.as_default():
            for row in table.itertuples(index=False):
                for name in EPOCH_METRICS:
                    value = getattr(row, f"{split}_{name}", None)
                    if value is not None and np.isfinite(value):
                        tf.summary.scalar(f"epoch_{name}", float(value), step=int(row.epoch))
        writer.close()
