"""Splitting the loaded rows into train, validation and test.

Early stopping, the restore of the best weights and tuning read only the
validation split; the test split is scored once, on the packaged weights, so
its metric is held out from every choice the run makes.

A random split is seeded by `split_seed` alone, so different weight seeds
can be compared on the same rows. A time split (`split_time_column`) puts the
newest rows in test and the next newest in validation: a ranker is judged on
traffic it has not seen. Rows with the same timestamp keep their file order,
so the split is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainer.config import NetConfig
from trainer.errors import DatasetError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(name, getattr(self, name)) for name in SPLITS]


def split_dataset(frame: pd.DataFrame, config: NetConfig) -> Splits:
    """Train, validation and test rows: by time when `split_time_column` is set, else seeded at random."""
    n_test, n_validation = _held_out_sizes(len(frame), config)
    if config.split_time_column:
        order = _oldest_first(frame, config.split_time_column)
    else:
        order = np.random.default_rng(config.split_seed).permutation(len(frame))
    # Held-out rows come from the end of the order: for a time split, the newest.
    test_rows = order[len(order) - n_test:]
    validation_rows = order[len(order) - n_test - n_validation: len(order) - n_test]
    train_rows = order[: len(order) - n_test - n_validation]
    splits = Splits(*(frame.iloc[np.sort(rows)].reset_index(drop=True)
                      for rows in (train_rows, validation_rows, test_rows)))
    check_splits(splits, config)
    return splits


def _held_out_sizes(rows: int, config: NetConfig) -> tuple[int, int]:
    n_test = max(1, round(rows * config.test_fraction))
    n_validation = max(1, round(rows * config.validation_fraction))
    if n_test + n_validation >= rows:
        raise DatasetError(
            f"{rows} rows leave nothing to train on with test_fraction={config.test_fraction} and "
            f"validation_fraction={config.validation_fraction}; use more data or smaller fractions"
        )
    return n_test, n_validation


def _oldest_first(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        raise DatasetError(f"split_time_column '{column}' is not a column of the dataset; set it to a TIMESTAMP "
                           f"column, or to '' for a random split")
    times = frame[column]
    if times.isna().any():
        raise DatasetError(f"split_time_column '{column}' is null in {int(times.isna().sum()):,} rows, which a time "
                           f"split cannot place; fill them in, or set split_time_column to '' for a random split")
    # A stable sort: equal timestamps keep their order in the file.
    return np.argsort(times.to_numpy(), kind="stable")


def check_splits(splits: Splits, config: NetConfig) -> None:
    """Refuse, before training, a split whose metrics cannot be computed: AUC needs both label classes."""
    everything = pd.concat([rows[config.label_column] for _, rows in splits.items()])
    if everything.nunique() < 2:
        raise DatasetError(
            f"all {len(everything):,} rows have label {_classes(everything)} in '{config.label_column}': a model "
            f"needs both classes to learn from; check label_column and the dataset's query"
        )
    for name, rows in splits.items():
        if rows[config.label_column].nunique() < 2:
            raise DatasetError(
                f"the {name} split has {len(rows):,} row{'s' if len(rows) > 1 else ''} and only label class "
                f"{_classes(rows[config.label_column])}: its AUC cannot be computed; {_remedy(name, config)}"
            )


def _classes(labels: pd.Series) -> str:
    return ", ".join(str(int(c)) for c in sorted(labels.unique())) or "none"


def _remedy(split: str, config: NetConfig) -> str:
    if split == "train":  # the held-out splits took every row of one class
        return "use more data, or smaller validation_fraction and test_fraction"
    key = f"{split}_fraction"
    advice = f"use more data or raise {key} (now {getattr(config, key)})"
    return advice + (", or split at random (split_time_column '')" if config.split_time_column else "")


def describe_splits(splits: Splits, config: NetConfig) -> dict[str, Any]:
    """dataset.json's record of the split: how it was made, and each split's size, label rate and time range."""
    described: dict[str, Any] = {
        "method": "time" if config.split_time_column else "random",
        "validation_fraction": config.validation_fraction,
        "test_fraction": config.test_fraction,
    }
    if config.split_time_column:
        described["time_column"] = config.split_time_column
    else:
        described["seed"] = config.split_seed
    for name, rows in splits.items():
        described[name] = {"rows": len(rows), "label_rate": float(rows[config.label_column].mean())}
        if config.split_time_column:
            times = rows[config.split_time_column]
            described[name]["time_range"] = [_iso(times.min()), _iso(times.max())]
    return described


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
