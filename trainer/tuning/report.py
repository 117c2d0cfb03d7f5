"""The report of a tuning study: what `fab tune_report --study NAME` writes and prints.

`write_report` turns a loaded Optuna study into a leaderboard (`leaderboard.csv`,
one row per trial, best first) and the plots `trainer.tuning.plots` draws
(`history.png`, `importances.png`), and finds the best trial's variant, ready to
paste into configs/variant_config.json. `format_report` renders that as the text
the task prints. Nothing here trains or changes the study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from trainer.config import parse_env_value
from trainer.data import storage
from trainer.errors import TrainerError
from trainer.tuning.evidence import importance_line, study_validation_warning
from trainer.tuning.plots import last_report, write_plots

# Leaderboard order: finished results first, then what is still to come.
STATE_WORDS = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
PRINTED_ROWS = 20
NOTE_WIDTH = 60
# Wide or rarely read in a terminal; the CSV keeps them.
CSV_ONLY_COLUMNS = ("test_logloss", "test_accuracy", "run_id", "package")


@dataclass
class TuningReport:
    """What `write_report` wrote and found; `format_report` prints it."""

    study_name: str
    variant: str
    target_trials: int | None
    counts: dict[str, int]  # state word -> trials, every state in STATE_WORDS order
    leaderboard: pd.DataFrame
    csv: Path
    history_png: Path
    importances_png: Path | None  # None when there was nothing to rank
    importances: dict[str, float]  # searched key -> share of importance, largest first
    best_trial: int | None
    best_value: float | None  # its validation AUC, the objective
    best_test_auc: float | None  # its held-out test AUC, read by nothing that chose
    best_variant: dict[str, dict[str, Any]] | None  # {"<variant>_tuned": {key: JSON value}}
    best_package: str | None
    best_package_exists: bool | None  # None where it could not be checked (see notes)
    notes: list[str] = field(default_factory=list)  # what the report skipped, and why

    @property
    def finished(self) -> int:
        """Trials that gave a result, complete or pruned (a failed trial is retried)."""
        return self.counts["complete"] + self.counts["pruned"]


def write_report(study: optuna.Study, folder: Path) -> TuningReport:
    """Write leaderboard.csv, history.png and (with enough trials) importances.png to `folder`."""
    attrs = study.user_attrs
    if "variant" not in attrs or "variant_keys" not in attrs:
        raise TrainerError(f"study '{study.study_name}' has no variant attributes; was it made by `fab tune`?")
    folder.mkdir(parents=True, exist_ok=True)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in STATE_WORDS]
    leaderboard = leaderboard_table(trials, param_order=list(attrs.get("space", {})))
    csv = folder / "leaderboard.csv"
    leaderboard.to_csv(csv, index=False)
    notes: list[str] = []  # the plots' skips first, then the package check's, as the report prints them
    plots = write_plots(study, trials, folder, notes)
    notes += filter(None, [study_validation_warning(trials)])
    best = best_trial(trials)
    package = best.user_attrs.get("package") if best else None
    return TuningReport(
        study_name=study.study_name,
        variant=attrs["variant"],
        target_trials=attrs.get("trials"),
        counts={word: sum(t.state == state for t in trials) for state, word in STATE_WORDS.items()},
        leaderboard=leaderboard,
        csv=csv,
        history_png=plots.history_png,
        importances_png=plots.importances_png,
        importances=plots.importances,
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
        best_test_auc=best.user_attrs.get("test_auc") if best else None,
        best_variant=tuned_variant(attrs, best.params) if best else None,
        best_package=package,
        best_package_exists=_package_exists(package, notes) if package else None,
        notes=notes,
    )


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial with the highest validation AUC (the objective); the earlier one on a tie."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(completed, key=lambda t: t.value, default=None)  # max keeps the first of equals


def tuned_variant(attrs: dict[str, Any], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The variant that reproduces a trial: its base variant's keys, the keys the
    study fixed through TRAINER_* (stored as env strings, so typed here), its params."""
    try:
        fixed = {key: parse_env_value(key, raw) for key, raw in attrs.get("fixed_overrides", {}).items()}
    except (KeyError, ValueError) as exc:  # a key renamed or retyped since the study began
        raise TrainerError(f"the study's fixed overrides no longer parse ({exc}); edit the variant by hand") from None
    keys = {**attrs["variant_keys"], **fixed, **params}
    return {f"{attrs['variant']}_tuned": {key: _json_value(value) for key, value in keys.items()}}


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):  # list keys parse to tuples; JSON writes them as lists
        return list(value)
    return value.item() if hasattr(value, "item") else value  # numpy scalars from a sampler


def _package_exists(uri: str, notes: list[str]) -> bool | None:
    try:
        return storage.exists(uri)
    except TrainerError as exc:  # e.g. no cloud credentials: the rest of the report still stands
        notes.append(f"could not check the best package: {exc}")
        return None


def leaderboard_table(trials: list[FrozenTrial], param_order: list[str]) -> pd.DataFrame:
    """One row per trial, best first: completed by validation AUC, then pruned, failed,
    running and waiting trials by number. Params follow the search space's order."""
    seen = {key for t in trials for key in t.params}
    params = [k for k in param_order if k in seen] + sorted(seen - set(param_order))
    rank = {state: i for i, state in enumerate(STATE_WORDS)}
    ordered = sorted(trials, key=lambda t: (rank[t.state], -(t.value or 0.0), t.number))
    # validation_auc chose the best trial; the test columns are held out, read by no sampler or pruner.
    columns = ["trial", "state", "validation_auc", "test_auc", "test_logloss", "test_accuracy", *params,
               "epochs_trained", "duration_s", "worker", "run_id", "package", "note"]
    # Built as objects, then typed: a blank cell (a waiting trial's params) must not turn 128 into 128.0.
    table = pd.DataFrame([_row(t) for t in ordered], columns=columns, dtype=object)
    integers = [c for c in columns if _all_integers(table[c])]
    return table.astype(dict.fromkeys(integers, "Int64")).infer_objects()


def _all_integers(column: pd.Series) -> bool:
    values = column.dropna()
    return len(values) > 0 and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _row(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    # A pruned trial records no epoch count; it trained one epoch per reported value.
    epochs = attrs.get("epochs", len(trial.intermediate_values) or None)
    return {
        "trial": trial.number,
        "state": STATE_WORDS[trial.state],
        "validation_auc": trial.value,
        "test_auc": attrs.get("test_auc"),
        "test_logloss": attrs.get("test_logloss"),
        "test_accuracy": attrs.get("test_accuracy"),
        **trial.params,
        "epochs_trained": epochs,
        "duration_s": round(trial.duration.total_seconds(), 1) if trial.duration is not None else None,
        "worker": attrs.get("worker"),
        "run_id": attrs.get("run_id"),
        "package": attrs.get("package"),
        "note": _note(trial),
    }


def _note(trial: FrozenTrial) -> str:
    parts = []
    if "failed_trial" in trial.system_attrs:
        parts.append(f"retry of trial {trial.system_attrs['failed_trial']}")
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        epoch, auc = last_report(trial)
        parts.append(f"pruned at epoch {epoch} (validation AUC {auc:.4f})")
    if trial.state == TrialState.FAIL:  # a worker that died or was stopped records no reason
        parts.append(trial.user_attrs.get("failure") or "its worker stopped or died mid-trial")
    return "; ".join(parts)


def format_report(report: TuningReport, study_name: str) -> str:
    """The text `fab tune_report` prints."""
    lines = [_header(report, study_name), ""]
    if report.leaderboard.empty:
        lines.append("no trials yet: start a worker on this study to run some")
    else:
        lines.append(_table(report.leaderboard.head(PRINTED_ROWS)))
        more = len(report.leaderboard) - PRINTED_ROWS
        if more > 0:
            lines.append(f"... and {more} more trial(s) in {report.csv}")
        lines.append("")
        lines += _best_lines(report) if report.best_variant else [f"no completed trial yet: {_counts(report)}"]
        if report.importances:
            lines.append(importance_line(report.importances, report.counts["complete"]))
        lines += report.notes
    written = [report.csv, report.history_png, *([report.importances_png] if report.importances_png else [])]
    lines.append("wrote " + ", ".join(str(p) for p in written))
    return "\n".join(lines)


def _header(report: TuningReport, study_name: str) -> str:
    target = f"/{report.target_trials}" if report.target_trials else ""
    return (f"study {study_name}: variant {report.variant}, {report.finished}{target} trials finished"
            f" ({_counts(report) or 'none started'})")


def _counts(report: TuningReport) -> str:
    return ", ".join(f"{n} {word}" for word, n in report.counts.items() if n)


def _table(leaderboard: pd.DataFrame) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    shown = leaderboard.drop(columns=list(CSV_ONLY_COLUMNS))
    cells = [[str(c) for c in shown.columns]]
    cells += [[_cell(c, v) for c, v in row.items()] for _, row in shown.iterrows()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(shown.columns))]
    right = [pd.api.types.is_numeric_dtype(shown[c]) for c in shown.columns]
    return "\n".join(
        "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)).rstrip()
        for row in cells
    )


def _cell(column: Any, value: Any) -> str:
    if pd.isna(value):
        return ""
    if column in ("validation_auc", "test_auc"):
        return f"{value:.4f}"
    if column == "duration_s":
        return f"{value:.1f}"
    if column == "note" and len(value) > NOTE_WIDTH:
        return value[: NOTE_WIDTH - 3] + "..."
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _held_out(report: TuningReport) -> str:
    return f" (held-out test AUC {report.best_test_auc:.4f})" if report.best_test_auc is not None else ""


def _best_lines(report: TuningReport) -> list[str]:
    lines = [
        f"best: trial {report.best_trial}, validation AUC {report.best_value:.4f}{_held_out(report)}; "
        "as a variant for "
        "configs/variant_config.json:",
        json.dumps(report.best_variant, indent=2),
    ]
    if report.best_package is None:
        lines.append("best package: none recorded")
    elif report.best_package_exists is False:
        lines.append(f"best package: {report.best_package} (no longer exists)")
    else:
        lines.append(f"best package: {report.best_package}")
    return lines

