"""Splitting the rows into train, validation and test.

Early stopping, the restore of the best weights and tuning read only the
validation split; the test split is scored once, on the packaged weights, so
its metric is held out from every choice the run makes.

A parsed dataset (trainer.data.parsed) is split row by row without holding its
rows: `plan_splits` gives a `SplitPlan`, which tells each batch's rows their
split. A random split hashes each row, by its `id_column` when it has one
(else by all its values), with a key drawn from `split_seed` alone (different
weight seeds are compared on the same rows): a row keeps its split when rows
are added or the shards reordered, variants reading other features split
alike, identical rows share one, and the sizes are binomial around the
fractions. A time split
(`split_time_column`) puts the newest rows in test and the next newest in
validation (a ranker is judged on traffic it has not seen), as many as the
fractions say; rows with the same timestamp keep their file order, so the
split is the same on every run. Its cuts are found by counting passes over the
cached time column, not by sorting it in memory.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from trainer.config import NetConfig
from trainer.data.dataset import to_frame
from trainer.data.parsed import ParsedDataset
from trainer.data.values import ColumnRoles
from trainer.errors import DatasetError

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2  # a row's split in a SplitPlan: its index in SPLITS
TIME_BUCKETS = 1 << 16  # a time split's histogram: each counting pass narrows the time range 65,536 times


def _held_out_sizes(rows: int, config: NetConfig) -> tuple[int, int]:
    n_test = max(1, round(rows * config.test_fraction))
    n_validation = max(1, round(rows * config.validation_fraction))
    if n_test + n_validation >= rows:
        raise DatasetError(
            f"{rows} rows leave nothing to train on with test_fraction={config.test_fraction} and "
            f"validation_fraction={config.validation_fraction}; use more data or smaller fractions"
        )
    return n_test, n_validation


class SplitPlan(ABC):
    """Which split each row of a parsed dataset is in, decided batch by batch."""

    @abstractmethod
    def of(self, batch: pa.RecordBatch, first_row: int) -> np.ndarray:
        """The split (TRAIN, VALIDATION or TEST) of each row of `batch`, whose first row is row `first_row`
        of the dataset (counted from 0 in file order)."""


@dataclass(frozen=True)
class RandomSplitPlan(SplitPlan):
    """A row's split is drawn from a hash of the row, seeded by split_seed: of its id (`id_column`) when it
    has one, else of all its values. A row keeps its split when rows are added or the shards reordered,
    variants that read other feature columns split alike, and identical rows share one (no duplicate in
    train and test). Split sizes are binomial around the fractions."""

    columns: tuple[str, ...]
    id_column: str | None
    hash_key: str  # pandas' 16-character siphash key, from split_seed
    test_fraction: float
    validation_fraction: float

    def of(self, batch: pa.RecordBatch, first_row: int) -> np.ndarray:
        if not self.id_column:
            hashes = self._hash(batch, self.columns)
        else:
            hashes = self._hash(batch, (self.id_column,))
            if batch.column(self.id_column).null_count:  # rows without an id go by their values
                missing = batch.column(self.id_column).is_null().to_numpy(zero_copy_only=False)
                hashes = hashes.copy()  # pandas (copy-on-write) hands back a read-only view
                hashes[missing] = self._hash(batch.filter(missing), self.columns)
        draws = (hashes >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # uniform in [0, 1)
        held_out = np.where(draws < self.test_fraction, TEST, VALIDATION)
        return np.where(draws < self.test_fraction + self.validation_fraction, held_out, TRAIN).astype(np.int8)

    def _hash(self, batch: pa.RecordBatch, columns: tuple[str, ...]) -> np.ndarray:
        # Strings as dictionaries: pandas hashes each distinct value once, to the hash of the value itself.
        hashable = pa.table({c: _hashable(batch.column(c)) for c in columns}).to_pandas()
        return pd.util.hash_pandas_object(hashable, index=False, hash_key=self.hash_key).to_numpy()


@dataclass(frozen=True)
class TimeSplitPlan(SplitPlan):
    """The rows from `validation_cut` on (oldest first; equal times in file order) are validation, those
    from `test_cut` on test: the newest n_test and the n_validation before them, as `split_dataset` cuts."""

    column: str
    validation_cut: tuple[int, int]  # (time in microseconds, row)
    test_cut: tuple[int, int]

    def of(self, batch: pa.RecordBatch, first_row: int) -> np.ndarray:
        times, rows = _micros(batch.column(self.column)), first_row + np.arange(batch.num_rows)
        split = np.full(batch.num_rows, TRAIN, np.int8)
        split[_from(self.validation_cut, times, rows)] = VALIDATION
        split[_from(self.test_cut, times, rows)] = TEST
        return split


def plan_splits(parsed: ParsedDataset, config: NetConfig) -> SplitPlan:
    """The split of every row, without holding the rows: by `split_time_column` (counting passes over the
    cached time column), else at random by row hash."""
    n_test, n_validation = _held_out_sizes(parsed.rows, config)
    if not config.split_time_column:
        seed_key = hashlib.sha256(f"split_seed={config.split_seed}".encode()).hexdigest()[:16]
        names = parsed.schema.names
        id_column = config.id_column if config.id_column in names else None
        return RandomSplitPlan(tuple(names), id_column, seed_key, config.test_fraction, config.validation_fraction)
    column = config.split_time_column
    if column not in parsed.schema.names:
        raise DatasetError(f"split_time_column '{column}' is not a column of the dataset; set it to a TIMESTAMP "
                           f"column, or to '' for a random split")
    oldest, newest = _time_bounds(parsed, column)
    cut = functools.partial(_cut_at, parsed, column, oldest, newest)
    return TimeSplitPlan(column, cut(parsed.rows - n_test - n_validation), cut(parsed.rows - n_test))


def numbered_batches(parsed: ParsedDataset, columns: list[str] | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The parsed batches with the row number of each one's first row."""
    first_row = 0
    for batch in parsed.batches(columns):
        yield first_row, batch
        first_row += batch.num_rows


def split_batches(parsed: ParsedDataset, plan: SplitPlan, split: str) -> Iterator[pa.RecordBatch]:
    """One split's rows, in file order."""
    for first_row, batch in numbered_batches(parsed):
        yield batch.filter(plan.of(batch, first_row) == SPLITS.index(split))


def split_frame(parsed: ParsedDataset, plan: SplitPlan, split: str, roles: ColumnRoles) -> pd.DataFrame:
    """One split's rows as `load_dataset`'s DataFrame holds them (for small splits: it is held whole)."""
    return to_frame(pa.Table.from_batches(list(split_batches(parsed, plan, split)), parsed.schema), roles)


def _hashable(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type):
        return column.dictionary_encode()
    return _micros(column) if pa.types.is_timestamp(column.type) else column


def _micros(column: pa.Array) -> np.ndarray:
    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _from(cut: tuple[int, int], times: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which rows come at or after the cut in the oldest-first order, equal times in file order."""
    return (times > cut[0]) | ((times == cut[0]) & (rows >= cut[1]))


def _time_bounds(parsed: ParsedDataset, column: str) -> tuple[int, int]:
    oldest, newest, nulls = np.iinfo(np.int64).max, np.iinfo(np.int64).min, 0
    for batch in parsed.batches([column]):
        nulls += batch.column(0).null_count
        times = _micros(batch.column(0).drop_null())
        if len(times):
            oldest, newest = min(oldest, int(times.min())), max(newest, int(times.max()))
    if nulls:
        raise DatasetError(f"split_time_column '{column}' is null in {nulls:,} rows, which a time split cannot "
                           f"place; fill them in, or set split_time_column to '' for a random split")
    return oldest, newest


def _cut_at(parsed: ParsedDataset, column: str, oldest: int, newest: int, position: int) -> tuple[int, int]:
    """The (time, row) of the row at `position` in the oldest-first order (a stable sort's), found by
    counting: histogram passes narrow the time range to the time at that position, then one pass finds
    which of the rows at that time (in file order) it is. Memory holds a batch and the histogram."""
    low, high, before = oldest, newest, 0  # `before`: rows older than `low`
    while low < high:
        width = -(-(high - low + 1) // TIME_BUCKETS)
        counts = np.zeros(TIME_BUCKETS, np.int64)
        for batch in parsed.batches([column]):
            times = _micros(batch.column(0))
            inside = times[(times >= low) & (times <= high)]
            counts += np.bincount((inside - low) // width, minlength=TIME_BUCKETS)
        cumulative = np.cumsum(counts)
        bucket = int(np.searchsorted(cumulative, position - before, side="right"))
        before += int(cumulative[bucket - 1]) if bucket else 0
        low, high = low + bucket * width, min(high, low + (bucket + 1) * width - 1)
    tie = position - before  # rows at this time before the one at `position`
    for first_row, batch in numbered_batches(parsed, [column]):
        at_time = np.flatnonzero(_micros(batch.column(0)) == low)
        if tie < len(at_time):
            return low, first_row + int(at_time[tie])
        tie -= len(at_time)
    raise AssertionError(f"no row at position {position} of {parsed.rows}")  # the counts say there is one


@dataclass
class _Counts:
    rows: int = 0
    positives: int = 0
    oldest: np.datetime64 | None = None
    newest: np.datetime64 | None = None

    def classes(self) -> str:
        present = [str(label) for label, n in ((0, self.rows - self.positives), (1, self.positives)) if n]
        return ", ".join(present) or "none"


class SplitStats:
    """Each split's rows, positive labels and time range, counted batch by batch."""

    def __init__(self, config: NetConfig) -> None:
        self.label, self.time = config.label_column, config.split_time_column or None
        self._counts = [_Counts() for _ in SPLITS]

    def add(self, batch: pa.RecordBatch, split_ids: np.ndarray) -> None:
        labels = batch.column(self.label).to_numpy()
        times = batch.column(self.time).to_numpy() if self.time else None
        for split_id in range(len(SPLITS)):
            mask = split_ids == split_id
            self._add(split_id, labels[mask], times[mask] if times is not None else None)

    def _add(self, split_id: int, labels: np.ndarray, times: np.ndarray | None) -> None:
        counts = self._counts[split_id]
        counts.rows += len(labels)
        counts.positives += int(np.count_nonzero(labels))
        if times is not None and len(times):
            oldest, newest = times.min(), times.max()
            counts.oldest = oldest if counts.oldest is None else min(counts.oldest, oldest)
            counts.newest = newest if counts.newest is None else max(counts.newest, newest)

    def rows(self, name: str) -> int:
        return self._counts[SPLITS.index(name)].rows

    def check(self, config: NetConfig) -> None:
        """Refuse, before training, a split whose metrics cannot be computed: AUC needs both label classes."""
        everything = _Counts(sum(c.rows for c in self._counts), sum(c.positives for c in self._counts))
        if everything.positives in (0, everything.rows):
            raise DatasetError(
                f"all {everything.rows:,} rows have label {everything.classes()} in '{config.label_column}': a "
                f"model needs both classes to learn from; check label_column and the dataset's query"
            )
        for name, counts in zip(SPLITS, self._counts):
            if not counts.rows:
                raise DatasetError(f"the {name} split has none of the {everything.rows:,} rows: its metrics cannot "
                                   f"be computed; {_remedy(name, config)}")
            if counts.positives in (0, counts.rows):
                raise DatasetError(
                    f"the {name} split has {counts.rows:,} row{'s' if counts.rows > 1 else ''} and only label class "
                    f"{counts.classes()}: its AUC cannot be computed; {_remedy(name, config)}"
                )

    def describe(self, config: NetConfig) -> dict[str, Any]:
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
        for name, counts in zip(SPLITS, self._counts):
            described[name] = {"rows": counts.rows,
                               "label_rate": counts.positives / counts.rows if counts.rows else float("nan")}
            if config.split_time_column:
                described[name]["time_range"] = [_iso(counts.oldest), _iso(counts.newest)]
        return described


def _remedy(split: str, config: NetConfig) -> str:
    if split == "train":  # the held-out splits took every row of one class
        return "use more data, or smaller validation_fraction and test_fraction"
    key = f"{split}_fraction"
    advice = f"use more data or raise {key} (now {getattr(config, key)})"
    return advice + (", or split at random (split_time_column '')" if config.split_time_column else "")


def _iso(value: np.datetime64 | None) -> str | None:
    return None if value is None else pd.Timestamp(value).tz_localize("UTC").isoformat()
