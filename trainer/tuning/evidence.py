"""How far a study's numbers can be trusted: the validation split's positive labels
against the noise of the AUC that ranks the trials, and the trials behind the
parameter importances.

The validation AUC chooses between trials, and with few positive labels it moves
by chance as much as trials differ: Hanley and McNeil's standard error (1982) is
about 0.08 with the sample's 16 positives of 200 validation rows, and about 0.02
with 200 positives. Below MIN_VALIDATION_POSITIVES a worker says so once, and
`fab tune_report` with it. PED-ANOVA ranks keys by how their values split good
trials from the rest; from a handful of trials one more can reorder it, so below
STEADY_IMPORTANCE_TRIALS the report says the ranking is rough.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from trainer.data import storage
from trainer.package.layout import DATASET_FILE

MIN_VALIDATION_POSITIVES = 200  # a standard error of about 0.02 at AUC 0.7
STEADY_IMPORTANCE_TRIALS = 10


@dataclass(frozen=True)
class ValidationSplit:
    """A trial's validation split, as its package's dataset.json records it."""

    rows: int
    positives: int
    fraction: float  # validation_fraction

    @classmethod
    def of_package(cls, package_uri: str) -> ValidationSplit:
        with storage.open_for_reading(package_uri) as stream, zipfile.ZipFile(stream) as archive:
            split = json.loads(archive.read(DATASET_FILE))["split"]
        rows = split["validation"]["rows"]
        return cls(rows, round(rows * split["validation"]["label_rate"]), split["validation_fraction"])

    def as_attr(self) -> dict[str, Any]:
        """As a trial's user attribute `validation_split` (the report reads it back)."""
        return asdict(self)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC measured on these label counts."""
    auc = min(max(auc, 0.5), 0.99)  # below 0.5 it mirrors; at 1.0 the formula says 0
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc ** 2) + (negatives - 1) * (q2 - auc ** 2)) / (
        positives * negatives)
    return math.sqrt(variance)


def validation_warning(split: ValidationSplit, auc: float) -> str | None:
    """One line when the split has too few positives for its AUC to tell trials apart; None when it has enough."""
    if split.positives >= MIN_VALIDATION_POSITIVES or not 0 < split.positives < split.rows:
        return None
    error = auc_standard_error(auc, split.positives, split.rows - split.positives)
    rows_needed = math.ceil(MIN_VALIDATION_POSITIVES * split.rows / split.positives / split.fraction)
    return (f"warning: the validation split has {split.positives} positive labels (of {split.rows:,} rows), so its "
            f"AUC, which ranks the trials, varies by about ±{error:.2f} by chance (one standard error at AUC "
            f"{auc:.2f}): trials closer than that are not told apart; for {MIN_VALIDATION_POSITIVES} or more "
            f"positives, tune on about {rows_needed:,} rows at this click rate, or raise validation_fraction "
            f"(now {split.fraction:g})")


def study_validation_warning(trials: list[FrozenTrial]) -> str | None:
    """validation_warning for the completed trial with the fewest validation positives, if any recorded one."""
    recorded = [(ValidationSplit(**t.user_attrs["validation_split"]), t.value) for t in trials
                if t.state == TrialState.COMPLETE and "validation_split" in t.user_attrs]
    if not recorded:
        return None
    split, auc = min(recorded, key=lambda pair: pair[0].positives)
    return validation_warning(split, auc)


def importance_line(importances: dict[str, float], trials: int) -> str:
    """The importances with the trial count they come from, and below STEADY_IMPORTANCE_TRIALS a caveat."""
    shares = ", ".join(f"{key} {share:.2f}" for key, share in importances.items())
    line = f"importance (PED-ANOVA over {trials} completed trials): {shares}"
    if trials < STEADY_IMPORTANCE_TRIALS:
        line += (f"; rough with under {STEADY_IMPORTANCE_TRIALS} trials, where one more trial can reorder it: "
                 "run more before dropping a key from the search")
    return line
