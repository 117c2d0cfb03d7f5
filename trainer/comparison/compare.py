"""`fab compare A B [C ...]` (`python -m trainer compare`): the stages, top to bottom.

    read each package's small members -> config diff -> datasets and splits -> metrics
    -> overlaid curves (PNG) -> for each group sharing a test split: scores -> paired bootstrap
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from trainer.comparison.bootstrap import AucDifference, paired_auc_difference
from trainer.comparison.configs import ConfigDiff, config_diff, format_config_diff
from trainer.comparison.datasets import format_datasets, test_groups
from trainer.comparison.plots import default_plot_path, plot_curves
from trainer.comparison.read import PackageRecord, read_records
from trainer.comparison.report import format_difference, format_metrics, format_not_shared, format_packages
from trainer.comparison.scoring import ScoredTest, TestRowsCache, score_group
from trainer.config import DEFAULT_OUTPUT
from trainer.outputs import check_output_file


@dataclass
class Comparison:
    """What was printed, for a caller that reads the numbers (the tests, a notebook)."""

    records: list[PackageRecord]
    config: ConfigDiff
    plot: Path
    differences: dict[str, AucDifference] = field(default_factory=dict)  # by letter, vs its group's first
    not_computed: list[str] = field(default_factory=list)  # why an interval is missing


def compare_packages(uris: list[str], plot_path: str = "", out: TextIO = sys.stdout) -> Comparison:
    """Print the comparison of the packages (the first is the baseline); returns it."""
    if plot_path:
        check_output_file(plot_path, example="compare.png")
    records = read_records(uris)
    diff = config_diff(records)
    for lines in (format_packages(records), format_config_diff(diff, records), format_datasets(records),
                  format_metrics(records)):
        print("\n".join(lines), file=out)
    plot = plot_curves(records, Path(plot_path) if plot_path else default_plot_path(records, DEFAULT_OUTPUT))
    print(f"curves: {plot}  (validation AUC and loss per epoch)", file=out)
    comparison = Comparison(records, diff, plot)
    print("auc difference on shared test rows:", file=out)
    _measure(comparison, out)
    return comparison


def _measure(comparison: Comparison, out: TextIO) -> None:
    """Each group of packages sharing a test split: the others' AUC minus the group's first, with an interval."""
    cache, grouped = TestRowsCache(), set()
    for group in test_groups(comparison.records):
        grouped |= {r.letter for r in group.records}
        scored = score_group(group, cache)
        if isinstance(scored, str):
            comparison.not_computed.append(scored)
            letters = ", ".join(r.letter for r in group.records)
            print(f"  {letters}: not computed: {scored}", file=out)
            continue
        _print_differences(comparison, group.records, scored, out)
    for line in format_not_shared(comparison.records, grouped):
        print(line, file=out)


def _print_differences(comparison: Comparison, records: list[PackageRecord], scored: ScoredTest,
                       out: TextIO) -> None:
    baseline = records[0]
    for other in records[1:]:
        measured = paired_auc_difference(scored.labels, scored.scores[baseline.letter], scored.scores[other.letter])
        comparison.differences[other.letter] = measured
        print(format_difference(baseline, other, measured), file=out)
