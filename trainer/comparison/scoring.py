"""The shared test rows of a group of packages, rebuilt from the data and scored by each.

The dataset named in dataset.json is loaded with the package's own config, its
hash checked against the recorded one, and split as the run split it; the test
split's size is checked against the record too. Then the rows are the very rows
each package was tested on, and their AUCs are the manifests' test AUCs. Data
that cannot be read, or has changed, is a reason printed instead of an interval.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trainer import import_tensorflow_quietly
from trainer.comparison.datasets import TestGroup
from trainer.comparison.read import PackageRecord
from trainer.config import NetConfig, config_from_json_dict
from trainer.data.parsed import parse_dataset
from trainer.data.splits import plan_splits, split_frame
from trainer.data.values import ColumnRoles
from trainer.errors import TrainerError
from trainer.package.layout import REBUILT_TEST_ROWS, ROW_HASH_SPLIT, supports


@dataclass(frozen=True)
class ScoredTest:
    """The test labels and each package's scores for them, by package letter."""

    labels: np.ndarray
    scores: dict[str, np.ndarray]


@dataclass
class TestRowsCache:
    """Each distinct (dataset hash, split, columns read) is loaded and split once, however many packages share it."""

    frames: dict[tuple[str, ColumnRoles], pd.DataFrame | str] = field(default_factory=dict)

    def test_rows(self, group: TestGroup, record: PackageRecord) -> pd.DataFrame | str:
        config = config_from_json_dict(record.config).config
        key = (group.key, ColumnRoles.of(config, with_label=True, with_row_id=False))
        if key not in self.frames:
            progress(f"rebuilding {record.letter}'s test split from {record.dataset['source']}")
            self.frames[key] = rebuild_test_rows(record, config)
        return self.frames[key]


def progress(step: str) -> None:
    """A line on stderr as each slow step starts (a dataset rebuilt, a model loaded: seconds each), so the
    report on stdout does not sit silent meanwhile."""
    print(f"compare: {step} ...", file=sys.stderr, flush=True)


def score_group(group: TestGroup, cache: TestRowsCache) -> ScoredTest | str:
    """Every package of the group scored on the shared test rows, or why they cannot be."""
    labels, scores = None, {}
    for record in group.records:
        rows = cache.test_rows(group, record)
        if isinstance(rows, str):
            return rows
        if labels is None:
            labels = rows[config_from_json_dict(record.config).config.label_column].to_numpy()
        progress(f"scoring {record.letter} on {len(rows):,} test rows with its serving model")
        scores[record.letter] = score_rows(record.uri, rows)
    return ScoredTest(labels, scores)


def rebuild_test_rows(record: PackageRecord, config: NetConfig) -> pd.DataFrame | str:
    """The package's test split rebuilt from its dataset, or one line saying why it cannot be."""
    recorded = record.dataset
    source = recorded["source"]
    if not rebuildable(record.format_version, recorded["split"]):
        return (f"{record.letter} (package format version {record.format_version}) was split into train and test "
                "by an older trainer, whose split this one does not rebuild")
    try:
        parsed = parse_dataset(source, config)
        test = split_frame(parsed, plan_splits(parsed, config), "test",
                           ColumnRoles.of(config, with_label=True, with_row_id=False))  # rows scored, not named
    except (TrainerError, OSError) as exc:
        return f"the dataset {source} does not load ({exc})"
    if parsed.source.sha256 != recorded["sha256"]:
        return (f"the dataset {source} has changed since {record.letter} was trained "
                f"(sha256 {parsed.source.sha256[:12]}, recorded {recorded['sha256'][:12]})")
    expected = recorded["split"]["test"]["rows"]
    if len(test) != expected:
        return (f"the test split rebuilt from {source} has {len(test):,} rows, and {record.letter}'s "
                f"dataset.json records {expected}")
    return test


def rebuildable(version: int, split: dict) -> bool:
    """Whether this trainer splits the package's data as its run did: a time split since format 2, a random
    one since rows were split by their hash (format 8)."""
    if split.get("method") == "time":
        return supports(version, REBUILT_TEST_ROWS)
    return supports(version, ROW_HASH_SPLIT)


def score_rows(package_uri: str, rows: pd.DataFrame) -> np.ndarray:
    """A package's click probabilities for raw rows (this loads its model, from gs:// a download)."""
    import_tensorflow_quietly()
    from trainer.package.loader import load_package

    return np.asarray(load_package(package_uri).score_frame(rows)).reshape(-1)
