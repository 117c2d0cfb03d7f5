"""The plots of a tuning study's report: `history.png` (validation AUC by trial number)
and `importances.png` (which searched keys mattered, by PED-ANOVA).

`trainer.tuning.report` calls `write_plots`; this module never imports report,
so the two cannot form an import cycle. Nothing here trains or changes the study.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from trainer.tuning.evidence import STEADY_IMPORTANCE_TRIALS

if TYPE_CHECKING:  # matplotlib is imported only when a plot is drawn (see _pyplot)
    from matplotlib.figure import Figure

MIN_TRIALS_FOR_IMPORTANCES = 2


@dataclass(frozen=True)
class StudyPlots:
    """What `write_plots` wrote, and the importances it drew (the report prints them too)."""

    history_png: Path
    importances_png: Path | None  # None when there was nothing to rank
    importances: dict[str, float]  # searched key -> share of importance, largest first


def write_plots(study: optuna.Study, trials: list[FrozenTrial], folder: Path, notes: list[str]) -> StudyPlots:
    """Write history.png and (with enough trials) importances.png to `folder`; say in `notes` what was skipped."""
    history_png = folder / "history.png"
    plot_history(trials, history_png, title=f"{study.study_name}: validation AUC by trial")
    importances = param_importances(study, trials, notes)
    importances_png = None
    if importances:
        importances_png = folder / "importances.png"
        completed = sum(t.state == TrialState.COMPLETE for t in trials)
        rough = f" (rough: fewer than {STEADY_IMPORTANCE_TRIALS})" if completed < STEADY_IMPORTANCE_TRIALS else ""
        plot_importances(importances, importances_png,
                         title=f"{study.study_name}: PED-ANOVA, {completed} trials{rough}")
    return StudyPlots(history_png=history_png, importances_png=importances_png, importances=importances)


def last_report(trial: FrozenTrial) -> tuple[int, float]:
    """The last epoch a trial reported and its validation AUC."""
    epoch = max(trial.intermediate_values)
    return epoch, trial.intermediate_values[epoch]


def param_importances(study: optuna.Study, trials: list[FrozenTrial], notes: list[str]) -> dict[str, float]:
    """Importance of each searched key that varied, or {} (with a note saying why)."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(completed) < MIN_TRIALS_FOR_IMPORTANCES:
        notes.append(f"importances skipped: {len(completed)} completed trial(s), need {MIN_TRIALS_FOR_IMPORTANCES}")
        return {}
    varied = sorted({k for t in completed for k in t.params if len({repr(c.params.get(k)) for c in completed}) > 1})
    if not varied:
        notes.append("importances skipped: no searched key took more than one value in the completed trials")
        return {}
    with warnings.catch_warnings():
        # PED-ANOVA warns that few trials give rough numbers; every young study has few.
        warnings.simplefilter("ignore")
        # PED-ANOVA needs only numpy; fANOVA and mean-decrease-impurity need scikit-learn.
        # Returned largest first, shares summing to 1.
        return optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=varied)


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in containers
    from matplotlib import pyplot as plt

    return plt


def plot_history(trials: list[FrozenTrial], path: Path, title: str) -> None:
    """Test AUC per trial number: completed dots, best so far as a step line,
    pruned trials at their last reported AUC, failed trials as dotted lines."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4))
    completed = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    if completed:
        numbers, values = [t.number for t in completed], [t.value for t in completed]
        axis.plot(numbers, values, "o", label="complete")
        axis.step(numbers, pd.Series(values).cummax(), where="post", label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        axis.plot([t.number for t in pruned], [last_report(t)[1] for t in pruned], "v", color="gray",
                  label="pruned (last reported)")
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    if failed:
        # No AUC to place them by: a dotted line across the whole height, whatever the y range.
        axis.vlines(failed, 0, 1, transform=axis.get_xaxis_transform(), colors="red", linestyles=":",
                    label="failed")
    if completed or pruned or failed:
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: never over a point
    else:
        axis.text(0.5, 0.5, "no finished trial yet", ha="center", va="center", transform=axis.transAxes)
    axis.xaxis.get_major_locator().set_params(integer=True)  # trial numbers: no 2.5
    axis.set_xlabel("trial")
    axis.set_ylabel("validation AUC")
    axis.grid(alpha=0.3)
    _save(plt, fig, path, title)


def plot_importances(importances: dict[str, float], path: Path, title: str) -> None:
    """Horizontal bars, the most important key on top."""
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, axis = plt.subplots(figsize=(7, 1.2 + 0.4 * len(names)))
    axis.barh(names, [importances[n] for n in names])
    axis.set_xlabel("share of importance")
    axis.grid(alpha=0.3, axis="x")
    _save(plt, fig, path, title)


def _save(plt: ModuleType, fig: Figure, path: Path, title: str) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)  # pyplot keeps every open figure alive; a long study report would pile them up
