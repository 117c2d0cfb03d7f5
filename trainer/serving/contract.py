"""The data contract: what each column looked like in training, and how the
rows being scored compare with it.

A package keeps, per column, the null rate of the training split, the
out-of-vocabulary rate of the validation split (rows unseen by the
vocabulary fitted on the training split: what new data looks like), and for
numbers their mean, standard deviation, minimum and maximum
(`trainer.data.fitting` fits them in its pass over the rows). `fab score`
profiles its input batch by batch with the same definitions and writes a
drift summary. A column is flagged when it moved past these thresholds:

- null rate: up by 10 points or more;
- out-of-vocabulary rate: at least doubled (where training's rate was over
  a third, so that doubling is near impossible: half of the rest became
  unseen), and up by 1 point or more (0.1% to 0.2% is noise, not drift);
- mean: moved by more than 3 training standard deviations;
- range: more than 1% of the numbers outside the training range (they are
  clipped to it, in training and in the export alike, and always counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NULL_RATE_POINTS = 0.10
OOV_RATE_POINTS = 0.01
MEAN_SHIFT_STDS = 3.0
OUT_OF_RANGE_SHARE = 0.01


@dataclass
class ColumnProfile:
    """Running counts of one column over the batches seen so far."""

    rows: int = 0
    nulls: int = 0
    unseen: int = 0  # categorical: non-null values outside the vocabulary
    total: float = 0.0  # numeric: sum, sum of squares, extremes of the non-null numbers
    squares: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    below: int = 0  # numeric: clipped up to the training minimum
    above: int = 0

    @property
    def numbers(self) -> int:
        return self.rows - self.nulls

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "null_rate": _rate(self.nulls, self.rows)}
        if self.numbers and self.high >= self.low:
            mean = self.total / self.numbers
            out.update(mean=mean, std=float(np.sqrt(max(self.squares / self.numbers - mean * mean, 0.0))),
                       min=self.low, max=self.high, below_training_min=self.below, above_training_max=self.above)
        return out


@dataclass
class Profile:
    """Per-column profiles of the rows scored, against a package's contract."""

    contract: dict[str, Any]
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    # Each vocabulary as an Arrow array, made once rather than once per block (they reach 200,000 values).
    vocabulary_arrays: dict[str, pa.Array] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.vocabulary_arrays = {c: pa.array(terms["vocabulary"], pa.string())
                              for c, terms in self.contract["columns"].items() if terms["kind"] == "categorical"}

    def add(self, batch: dict[str, pa.Array]) -> None:
        for column, terms in self.contract["columns"].items():
            values = batch[column]
            profile = self.columns.setdefault(column, ColumnProfile())
            profile.rows += len(values)
            profile.nulls += _missing_count(values, terms["kind"])
            if terms["kind"] == "categorical":
                profile.unseen += _unseen_count(values, self.vocabulary_arrays[column])
            elif terms["kind"] == "numeric":
                _add_numbers(profile, values, terms)

    def summary(self) -> dict[str, Any]:
        return {"columns": {c: {"scored": p.summary(), "training": _public(self.contract["columns"][c]),
                                **({"unseen_rate": _rate(p.unseen, p.numbers)}
                                   if self.contract["columns"][c]["kind"] == "categorical" else {})}
                            for c, p in self.columns.items()},
                "thresholds": {"null_rate_points": NULL_RATE_POINTS, "oov_rate": "doubled, or half the rest unseen",
                               "oov_rate_points": OOV_RATE_POINTS, "mean_shift_stds": MEAN_SHIFT_STDS,
                               "out_of_range_share": OUT_OF_RANGE_SHARE},
                "drift": self.drift_lines()}

    def drift_lines(self) -> list[str]:
        """One line per column past a threshold."""
        lines = []
        for column, profile in self.columns.items():
            reasons = _drift_reasons(profile, self.contract["columns"][column])
            if reasons:
                lines.append(f"drift: column '{column}': " + "; ".join(reasons))
        return lines


def _missing_count(values: pa.Array, kind: str) -> int:
    empty = pc.is_nan(values.fill_null(0.0)) if kind == "numeric" else pc.equal(values, "")
    return values.null_count + int(pc.sum(empty).as_py() or 0)


def _unseen_count(values: pa.Array, vocabulary: pa.Array) -> int:
    known = pc.is_in(values, value_set=vocabulary)
    valid = pc.and_(pc.is_valid(values), pc.not_equal(values, ""))
    return int(pc.sum(pc.and_(valid, pc.invert(known))).as_py() or 0)


def _add_numbers(profile: ColumnProfile, values: pa.Array, terms: dict[str, Any]) -> None:
    numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
    numbers = numbers[np.isfinite(numbers)]
    if not len(numbers):
        return
    profile.total += float(numbers.sum())
    profile.squares += float(np.square(numbers).sum())
    profile.low, profile.high = min(profile.low, float(numbers.min())), max(profile.high, float(numbers.max()))
    profile.below += int((numbers < terms["min"]).sum())
    profile.above += int((numbers > terms["max"]).sum())


def _drift_reasons(profile: ColumnProfile, terms: dict[str, Any]) -> list[str]:
    reasons = []
    null_rate = _rate(profile.nulls, profile.rows)
    if null_rate is not None and null_rate - terms["null_rate"] >= NULL_RATE_POINTS:
        reasons.append(f"null rate {null_rate:.1%}, {terms['null_rate']:.1%} in training")
    if terms["kind"] == "categorical" and (oov := _rate(profile.unseen, profile.numbers)) is not None:
        trained = terms["oov_rate"] or 0.0
        rise = oov - trained
        if rise >= max(min(trained, (1 - trained) / 2), OOV_RATE_POINTS):
            reasons.append(f"unseen values {oov:.1%} of rows, {trained:.1%} on the validation split")
    if terms["kind"] == "numeric" and profile.numbers:
        mean = profile.total / profile.numbers
        if abs(mean - terms["mean"]) > MEAN_SHIFT_STDS * terms["std"]:
            reasons.append(f"mean {mean:.4g}, {terms['mean']:.4g} ± {terms['std']:.4g} in training")
        outside = profile.below + profile.above
        if outside > OUT_OF_RANGE_SHARE * profile.numbers:
            reasons.append(f"{outside:,} numbers ({outside / profile.numbers:.1%}) outside the training range "
                           f"[{terms['min']:.4g}, {terms['max']:.4g}], scored as its nearest end")
    return reasons


def _public(terms: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in terms.items() if k != "vocabulary"}


def _rate(count: int, rows: int) -> float | None:
    return count / rows if rows else None
