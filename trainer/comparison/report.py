"""The printed comparison: who is who, the config diff, the data, the metrics side
by side, the plot's path and each measured AUC difference, in that order."""

from __future__ import annotations

from trainer.comparison.bootstrap import AucDifference
from trainer.comparison.read import PackageRecord

# (label, where in the manifest, key): the rows of the metrics table.
METRIC_ROWS = (
    ("epochs trained", None, "epochs_trained"),
    ("best_epoch", None, "best_epoch"),
    ("validation auc", "validation_metrics", "auc"),
    ("validation logloss", "validation_metrics", "logloss"),
    ("test auc", "test_metrics", "auc"),
    ("test logloss", "test_metrics", "logloss"),
    ("test accuracy", "test_metrics", "accuracy"),
)


def format_packages(records: list[PackageRecord]) -> list[str]:
    """The letters the rest of the report uses, each with its run and where it is."""
    return ["packages:"] + [f"  {r.letter} {r.run_id}  ({r.uri})" for r in records]


def format_metrics(records: list[PackageRecord]) -> list[str]:
    """One row per metric, one column per package."""
    width = max(len(label) for label, _, _ in METRIC_ROWS)
    cells = [[_cell(r.manifest, section, key) for r in records] for _, section, key in METRIC_ROWS]
    column = max(8, *(len(c) for row in cells for c in row))
    header = f"  {'':<{width}}  " + "  ".join(f"{r.letter:>{column}}" for r in records)
    lines = ["metrics:", header.rstrip()]
    for (label, _, _), row in zip(METRIC_ROWS, cells):
        lines.append(f"  {label:<{width}}  " + "  ".join(f"{c:>{column}}" for c in row))
    return lines


def _cell(manifest: dict, section: str | None, key: str) -> str:
    value = manifest[section].get(key) if section else manifest[key]  # a metric an older trainer did not record: -
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_difference(baseline: PackageRecord, other: PackageRecord, measured: AucDifference) -> str:
    """`B - A: auc +0.0120 [95% CI +0.0040, +0.0200] on 400 shared test rows: B is better`."""
    verdict = measured.verdict
    said = f"{other.letter} is {verdict}" if verdict in ("better", "worse") else verdict
    return (f"  {other.letter} - {baseline.letter}: auc {measured.difference:+.4f} "
            f"[{measured.confidence:.0%} CI {measured.low:+.4f}, {measured.high:+.4f}] "
            f"on {measured.rows:,} shared test rows ({measured.resamples:,} paired bootstrap resamples): {said}")


def format_not_shared(records: list[PackageRecord], grouped: set[str]) -> list[str]:
    """A line for each package that shares its test split with none of the others."""
    alone = [r.letter for r in records if r.letter not in grouped]
    if not alone:
        return []
    if len(alone) == len(records):
        return ["  not computed: no two packages share a test split (the same dataset sha256 and split)"]
    return [f"  {', '.join(alone)}: not computed: shares its test split with no other package"]
