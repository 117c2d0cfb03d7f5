"""Run metrics: pyformance timers and meters, the per-epoch progress line,
and the per-epoch table written as `metrics.csv` and `metrics.png` (the
package's TensorBoard events are the live ones: `trainer.training.tensorboard`).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    # pyformance 0.4 (2017) declares a pkg_resources namespace at import.
    warnings.simplefilter("ignore")
    from pyformance import MetricsRegistry

if TYPE_CHECKING:  # matplotlib is imported only when a plot is drawn
    from matplotlib.figure import Figure

# Each split's figures after each epoch, from the epoch's final weights (callbacks.EpochEvaluation).
LINE_METRICS = ("logloss", "auc", "accuracy")
# Keras' `loss`, training split only: the mean over the epoch's batches of what each step minimised
# (log-loss plus any L2 penalty), each batch with the weights of its moment. It is not train_logloss.
MEAN_BATCH_LOSS = "mean_batch_loss"
EPOCH_METRICS = (MEAN_BATCH_LOSS, *LINE_METRICS)
SPLITS_PER_EPOCH = ("train", "validation")  # the test split is scored once, at the end
# metrics.png's panels and their y-labels; accuracy only when the config asks (plot_accuracy).
PLOT_PANELS = {"logloss": "log-loss", "auc": "AUC", "accuracy": "accuracy (at 0.5)"}


# The seconds of each epoch the epoch line, metrics.csv and the manifest report.
EPOCH_SECONDS = ("training", "compile", "evaluation", "epoch")


class RunMetrics:
    """A run's pyformance registry plus the wall time of each pipeline stage.

    Rates are never pyformance meters: a meter divides its count by the time
    since it was created, up to the snapshot, not by the time the events took
    (a 2,000-row load of 0.075 s read 346 rows/s at the end of the run). A
    counted quantity keeps its own seconds instead, and its rate is the count
    over them. Timers hold durations only; their `*_rate` keys, events per
    second of wall time since the timer was made, are left out of the snapshot.
    """

    def __init__(self) -> None:
        self.registry = MetricsRegistry()
        self.stage_seconds: dict[str, float] = {}
        self.counted_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with self.registry.timer(f"stage.{name}").time():
            yield
        # Unrounded here: a rate over a fast stage's seconds needs every digit (the manifest rounds).
        self.stage_seconds[name] = time.perf_counter() - started

    def count(self, name: str, n: int, seconds: float) -> None:
        """Count `n` events (rows loaded, examples trained) done in `seconds` of their own; repeated
        calls add up, so the rate is every event over every second spent on them."""
        self.registry.counter(name).inc(n)
        self.counted_seconds[name] = self.counted_seconds.get(name, 0.0) + seconds

    def time(self, name: str, seconds: float) -> None:
        """One duration into a pyformance timer (its count, sum, percentiles); an unknown one is skipped."""
        if math.isfinite(seconds):
            self.registry.timer(name).hist.add(seconds)

    def snapshot(self) -> dict[str, Any]:
        metrics = {name: {key: value for key, value in values.items() if not key.endswith("_rate")}
                   for name, values in self.registry.dump_metrics().items()}
        for name, seconds in self.counted_seconds.items():
            count = metrics[name]["count"]
            metrics[name].update(seconds=round(seconds, 4), per_second=round(count / max(seconds, 1e-9), 1))
        epoch_totals = {part: round(metrics[f"epoch.{part}_seconds"]["sum"], 3)
                        for part in EPOCH_SECONDS if f"epoch.{part}_seconds" in metrics}
        stages = {name: round(seconds, 3) for name, seconds in self.stage_seconds.items()}
        return {"stage_seconds": stages, "epoch_seconds": epoch_totals, "pyformance": metrics}


@dataclass(frozen=True)
class StepCall:
    """One call of Keras' train function: `steps` batches (steps_per_execution, fewer at an epoch's
    end) in `seconds`; `new_shape` when one of its batch shapes had not been trained on before."""

    steps: int
    seconds: float
    new_shape: bool


def split_compile_seconds(calls: Sequence[StepCall]) -> tuple[float, float]:
    """(training seconds, compile seconds) of an epoch's train-function calls.

    A batch shape's first call also traces the step and, with XLA, compiles it:
    the first call of a process, and the first with the epoch's smaller last
    batch. Every other call is steady, so the compile time of a new-shape call
    is what it took beyond its steps at the median steady seconds per step of
    the same epoch (no extra steps are run to measure it, and it needs no
    later epoch, so epoch 1's line has it). Training seconds are all the
    calls' seconds minus that. An epoch with new shapes but no steady call (at
    8 steps per call, one of under 17 steps) cannot be split: compile is NaN
    (unknown) and training includes it.
    """
    total = sum(call.seconds for call in calls)
    steady = [call.seconds / call.steps for call in calls if not call.new_shape and call.steps]
    if not any(call.new_shape for call in calls):
        return total, 0.0
    if not steady:
        return total, math.nan
    per_step = statistics.median(steady)
    compile_seconds = sum(max(0.0, call.seconds - call.steps * per_step) for call in calls if call.new_shape)
    return total - compile_seconds, compile_seconds


# Rows of the log-loss and accuracy computed at a time: their float64 temporaries stay this size.
METRIC_BLOCK_ROWS = 1 << 20


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Exact log-loss, AUC (ties counted half) and accuracy at 0.5.

    Memory: the clipped probabilities and a sorted copy of the negatives' (about 16 bytes a row), not
    the ranks of every row and a float64 array per term of the log-loss: the test split of 20M rows is
    4M rows, whose metrics must not cost more than its scores."""
    clicked = labels.reshape(-1) == 1
    p = np.clip(probabilities.reshape(-1).astype(np.float64), 1e-7, 1 - 1e-7)
    positives = int(clicked.sum())
    negatives = len(clicked) - positives
    # Undefined with one class only (never packaged: such splits are refused before training).
    auc = _auc(p, clicked, positives, negatives) if positives and negatives else float("nan")
    logloss, correct = 0.0, 0
    for start in range(0, len(p), METRIC_BLOCK_ROWS):
        chunk, hit = p[start:start + METRIC_BLOCK_ROWS], clicked[start:start + METRIC_BLOCK_ROWS]
        logloss -= float(np.log(np.where(hit, chunk, 1 - chunk)).sum())  # y log p + (1 - y) log(1 - p)
        correct += int(np.count_nonzero((chunk > 0.5) == hit))
    rows = len(p) or float("nan")
    return {"logloss": logloss / rows, "auc": float(auc), "accuracy": correct / rows}


def _auc(p: np.ndarray, clicked: np.ndarray, positives: int, negatives: int) -> float:
    """The Mann-Whitney statistic over positives x negatives: per positive, the negatives scored below it,
    and half those scored equal, from the negatives' scores sorted once."""
    negatives_sorted = p[~clicked]
    negatives_sorted.sort()
    scored = p[clicked]
    below = np.searchsorted(negatives_sorted, scored, side="left")
    equal = np.searchsorted(negatives_sorted, scored, side="right") - below
    return (int(below.sum()) + int(equal.sum()) / 2) / (positives * negatives)


def format_epoch_line(epoch: int, epochs: int, logs: dict[str, Any]) -> str:
    def part(prefix: str) -> str:
        return " ".join(f"{name} {logs[prefix + name]:.4f}" for name in LINE_METRICS if prefix + name in logs)

    return f"epoch {epoch}/{epochs}  train: {part('')}  |  validation: {part('val_')}  |  {_speed(logs)}"


# The epoch's seconds outside its named parts are shown from here up, so the parts add up to the
# total within this (and their rounding).
OTHER_SHOWN_SECONDS = 0.05


def _speed(logs: dict[str, Any]) -> str:
    """`7.2 s: training 0.05 s at 28,000 examples/s, compile 6.3 s, evaluation 0.88 s, other 0.12 s`
    (compile when there was one; other when it reaches OTHER_SHOWN_SECONDS)."""
    compile_seconds = logs.get("compile_seconds", 0.0)
    training = "training+compile" if math.isnan(compile_seconds) else "training"
    parts = [f"{training} {_seconds(logs['training_seconds'])} at {logs['examples_per_second']:,.0f} examples/s"]
    if compile_seconds > 0:
        parts.append(f"compile {_seconds(compile_seconds)}")
    if "evaluation_seconds" in logs:
        parts.append(f"evaluation {_seconds(logs['evaluation_seconds'])}")
    if (other := _other_seconds(logs)) >= OTHER_SHOWN_SECONDS:
        parts.append(f"other {_seconds(other)}")
    return f"{_seconds(logs['epoch_seconds'])}: " + ", ".join(parts)


def _other_seconds(logs: dict[str, Any]) -> float:
    """The epoch's wall time outside training, compile and evaluation: Keras' loop between the
    train-function calls, the epoch's batch iterator and the other callbacks' per-batch work."""
    named = [logs.get(f"{part}_seconds", 0.0) for part in ("training", "compile", "evaluation")]
    return logs["epoch_seconds"] - sum(seconds for seconds in named if math.isfinite(seconds))


def _seconds(seconds: float) -> str:
    # Steps of a small epoch take hundredths of a second; whole epochs, seconds.
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def epoch_table(keras_csv: Path) -> pd.DataFrame:
    """The CSVLogger's rows, one per finished epoch, with train_/validation_ names.

    Keras' `loss` becomes train_mean_batch_loss.
    A run resumed after a kill may have logged an epoch twice (the row is
    written before the backup); the last row of each epoch wins.
    """
    table = pd.read_csv(keras_csv).drop_duplicates("epoch", keep="last").sort_values("epoch")
    table["epoch"] = table["epoch"] + 1

    def rename(name: str) -> str:
        if name == "loss":
            return f"train_{MEAN_BATCH_LOSS}"
        if name.startswith("val_"):
            return "validation_" + name[4:]
        return f"train_{name}" if name in EPOCH_METRICS else name

    table = table.rename(columns=rename).reset_index(drop=True)
    ordered = ["epoch"] + [f"{split}_{name}" for split in SPLITS_PER_EPOCH for name in EPOCH_METRICS]
    return table[[c for c in ordered if c in table] + [c for c in table if c not in ordered]]


def plot_epochs(table: pd.DataFrame, path: Path, title: str, packaged_epoch: int, accuracy: bool = False) -> None:
    """metrics.png: `epoch_figure` saved."""
    fig = epoch_figure(table, title, packaged_epoch, accuracy)
    fig.savefig(path, dpi=100)
    from matplotlib import pyplot as plt

    plt.close(fig)  # pyplot keeps every open figure alive


def epoch_figure(table: pd.DataFrame, title: str, packaged_epoch: int, accuracy: bool = False) -> Figure:
    """Train vs validation per epoch, one panel per metric (accuracy only when asked: at a low click
    rate it sits at the base rate), the packaged epoch marked, whole epochs on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [name for name in PLOT_PANELS if accuracy or name != "accuracy"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.9), squeeze=False)
    for axis, name in zip(axes[0], names):
        for split, style in zip(SPLITS_PER_EPOCH, ("-o", "--s")):
            if f"{split}_{name}" in table:
                axis.plot(table["epoch"], table[f"{split}_{name}"], style, label=split, markersize=3)
        if name == "logloss" and f"train_{MEAN_BATCH_LOSS}" in table:
            axis.plot(table["epoch"], table[f"train_{MEAN_BATCH_LOSS}"], ":", color="gray",
                      label="train, mean batch loss (during the epoch)")
        axis.axvline(packaged_epoch, color="tab:green", linewidth=1, label=f"packaged: epoch {packaged_epoch}")
        axis.set_xlim(0.5, max(table["epoch"].max(), packaged_epoch) + 0.5)  # the marker clear of the frame
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(PLOT_PANELS[name])
        axis.grid(alpha=0.3)
    # One legend under the panels, where it hides no curve.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize="small", frameon=False)
    fig.suptitle(f"{title}: weights of epoch {packaged_epoch} packaged")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig

