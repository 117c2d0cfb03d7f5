"""The fitting pass: the preprocessing, fitted block by block over the split rows, in bounded memory.

`PreprocessingFitter.add` takes each decoded Arrow block (trainer.data.ndjson's columns) with its rows'
split ids; `result` then gives the fitted `Preprocessor` (trainer.data.features says what it holds), and
what the package needs beside it:

- the vocabularies (rows per distinct value, counted by pyarrow's group_by per block), numbered by
  descending count, ties by value;
- per number, the count, mean and sum of squared deviations of each block, merged with Chan's formula
  (stable: no sum of squares to cancel), and the range;
- the title vocabulary: each distinct training title tokenized by spaCy once, its tokens weighted by its
  rows; then how the serving export's tokenizer rules agree with spaCy on those titles (its overrides);
- the data contract (model/data_contract.json; `trainer.serving.contract` reads it): null rates on the training split,
  and the unseen rate of the validation split's values against the vocabulary, counted at the end from
  the validation split's value counts (the vocabulary is only known then);
- distinct values per categorical column over every row (dataset.json).

Memory holds these counters, one entry per distinct value, and the tokens of each distinct title;
nothing per row. Block counts wait in a list and join the running total only once they outnumber it,
so merging costs a constant number of passes over the distinct values, however many blocks there are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainer.config import NetConfig
from trainer.data.features import EMPTY_TEXT_TOKEN, Preprocessor, tokenize
from trainer.data.splits import SPLITS, TRAIN, VALIDATION

if TYPE_CHECKING:
    from trainer.serving.tokenizer import Agreement

# Distinct training titles tokenized (and compared with the serving rules) at a time: memory holds their
# tokens, not every title's.
TITLE_CHUNK = 8192
# Block counts held before they are merged into a total smaller than this.
PENDING_ROWS = 1 << 20


@dataclass(frozen=True)
class FittedPreprocessing:
    preprocessor: Preprocessor
    overrides: dict[str, list[str]]  # training titles whose spaCy tokens differ from the TF rules'
    agreement: Agreement | None  # the rules against spaCy on the training titles (manifest); None without text
    contract: dict[str, Any]  # model/data_contract.json (trainer.serving.contract reads it)
    distinct_values: dict[str, int]  # per categorical column, over all rows (dataset.json)


class _Tally:
    """Rows per (value, split) over blocks, a null value included, and a key that orders values as they first
    appeared: the block's first row plus the value's rank among the block's values (Arrow's dictionary
    encoding numbers them in order of appearance), so that earlier blocks sort first."""

    def __init__(self) -> None:
        self.total: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add(self, values: pa.Array, split_ids: np.ndarray, first_row: int) -> None:
        encoded = pc.dictionary_encode(values, null_encoding="encode")
        # One count per (value, split): a bincount of the value codes and split ids, no hashing per pair.
        pairs = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64) * len(SPLITS) + split_ids
        counts = np.bincount(pairs, minlength=len(encoded.dictionary) * len(SPLITS))
        present = np.flatnonzero(counts)
        codes = present // len(SPLITS)
        self.pending.append(pa.table({"value": encoded.dictionary.take(codes),
                                      "split": pa.array((present % len(SPLITS)).astype(np.int8)),
                                      "rows": counts[present], "first_row": first_row + codes}))
        self.pending_rows += len(present)
        if self.pending_rows > max(PENDING_ROWS, self.total.num_rows if self.total else 0):
            self.total = self.table()
            self.pending, self.pending_rows = [], 0

    def table(self) -> pa.Table:
        """Columns value, split, rows and first_row; one row per (value, split) seen."""
        tables = ([self.total] if self.total is not None else []) + self.pending
        if not tables:
            return pa.table({"value": pa.array([], pa.string()), "split": pa.array([], pa.int8()),
                             "rows": pa.array([], pa.int64()), "first_row": pa.array([], pa.int64())})
        grouped = pa.concat_tables(tables).group_by(["value", "split"]).aggregate(
            [("rows", "sum"), ("first_row", "min")])
        return pa.table({"value": grouped["value"], "split": grouped["split"], "rows": grouped["rows_sum"],
                         "first_row": grouped["first_row_min"]})


@dataclass
class _Moments:
    """Count, mean, sum of squared deviations and range of the numbers seen, merged block by block."""

    count: int = 0
    mean: float = 0.0
    squares: float = 0.0  # sum of squared deviations from the mean
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, numbers: np.ndarray) -> None:
        if not len(numbers):
            return
        block_mean = float(numbers.mean())
        block_squares = float(np.square(numbers - block_mean).sum())
        total = self.count + len(numbers)
        delta = block_mean - self.mean
        # Chan et al.'s pairwise update: exact in real numbers, and stable in floating point.
        self.squares += block_squares + delta * delta * self.count * len(numbers) / total
        self.mean += delta * len(numbers) / total
        self.count = total
        self.low, self.high = min(self.low, float(numbers.min())), max(self.high, float(numbers.max()))

    def standardisation(self) -> tuple[float, float]:
        """Mean and standard deviation (ddof 0): 0 and 1 without numbers, std 1 for a constant."""
        if not self.count:
            return 0.0, 1.0
        std = float(np.sqrt(self.squares / self.count)) if self.high > self.low else 0.0
        return self.mean, std or 1.0

    def range(self) -> tuple[float, float]:
        # No number at all: any value is outside it; its mean (0) is then what it scores as.
        return (self.low, self.high) if self.count else (0.0, 0.0)


@dataclass
class PreprocessingFitter:
    """Feed every block of the dataset with its split ids. The TRAIN rows fit the preprocessing; the
    VALIDATION rows give the contract's unseen rates; every row counts in `distinct_values`."""

    config: NetConfig
    train_rows: int = 0
    rows: int = 0
    categories: dict[str, _Tally] = field(init=False)
    numbers: dict[str, _Moments] = field(init=False)
    train_nulls: Counter[str] = field(default_factory=Counter)  # numeric columns
    titles: _Tally = field(init=False)  # training titles, null as ""

    def __post_init__(self) -> None:
        self.categories = {c: _Tally() for c in self.config.categorical_columns}
        self.numbers = {c: _Moments() for c in self.config.numeric_columns}
        self.titles = _Tally()

    def add(self, batch: pa.RecordBatch, split_ids: np.ndarray) -> None:
        train = split_ids == TRAIN
        for column, tally in self.categories.items():
            tally.add(_strings(batch.column(column)), split_ids, self.rows)
        for column, moments in self.numbers.items():
            values = batch.column(column).filter(train).to_numpy(zero_copy_only=False).astype(np.float64)
            numbers = values[~np.isnan(values)]  # null (and NaN) is missing, as pandas skips it
            moments.add(numbers)
            self.train_nulls[column] += len(values) - len(numbers)
        if self.config.text_column:
            titles = pc.fill_null(_strings(batch.column(self.config.text_column)), "").filter(train)
            # Training titles only: they fit the title vocabulary; the contract counts their "" rows.
            self.titles.add(titles, split_ids[train], self.rows)
        self.train_rows += int(train.sum())
        self.rows += batch.num_rows

    def result(self) -> FittedPreprocessing:
        config = self.config
        pre = Preprocessor(config.categorical_columns, config.numeric_columns, config.text_column)
        counts = {c: tally.table() for c, tally in self.categories.items()}
        for column, table in counts.items():
            train = table.filter(pc.and_(pc.equal(table["split"], TRAIN), pc.is_valid(table["value"])))
            pre.vocabularies[column] = _most_frequent(train["value"], train["rows"], config.min_category_count,
                                                      config.max_categories)
        if config.numeric_columns:
            pre.numeric_mean, pre.numeric_std = map(list, zip(*(m.standardisation() for m in self.numbers.values())))
            pre.numeric_min, pre.numeric_max = map(list, zip(*(m.range() for m in self.numbers.values())))
        titles = self.titles.table().sort_by("first_row")  # in the order training first saw them
        agreement = None
        if config.text_column:
            agreement = self._fit_titles(pre, titles["value"].to_pylist(), titles["rows"].to_numpy())
        return FittedPreprocessing(pre, agreement.overrides if agreement else {}, agreement,
                                   self._contract(pre, counts, titles),
                                   {c: _distinct(table["value"]) for c, table in counts.items()})

    def _fit_titles(self, pre: Preprocessor, titles: list[str], rows: np.ndarray) -> Agreement:
        """The title vocabulary and sequence length, from each distinct training title's tokens, and the
        serving rules' agreement with spaCy. A chunk of titles at a time: only their counts and the titles
        the rules split differently are kept, not every title's tokens."""
        from trainer.serving.tokenizer import Agreement, agreement  # TensorFlow: only text columns import it

        token_rows: Counter[str] = Counter()
        longest, overrides = 1, {}
        for start in range(0, len(titles), TITLE_CHUNK):
            chunk = titles[start:start + TITLE_CHUNK]
            tokens_by_title = tokenize(chunk)
            for tokens, count in zip(tokens_by_title, rows[start:start + TITLE_CHUNK].tolist()):
                longest = max(longest, len(tokens))
                for token in tokens:
                    token_rows[token] += count
            overrides.update(agreement(chunk, tokens_by_title).overrides)
        pre.token_vocabulary = _most_frequent(pa.array(list(token_rows), pa.string()),
                                              pa.array(list(token_rows.values()), pa.int64()),
                                              self.config.text_min_count, self.config.text_max_vocabulary)
        pre.sequence_length = min(longest, self.config.text_max_tokens)
        pre.empty_text_token = EMPTY_TEXT_TOKEN
        return Agreement(len(titles), overrides)

    def _contract(self, pre: Preprocessor, counts: dict[str, pa.Table], titles: pa.Table) -> dict[str, Any]:
        """model/data_contract.json's dict: per column its training null rate, and the vocabulary with the validation
        split's unseen rate, or the numbers' statistics."""
        columns: dict[str, Any] = {}
        for column, table in counts.items():
            columns[column] = {"kind": "categorical", **_null_and_unseen_rates(table, pre.vocabularies[column],
                                                                               self.train_rows),
                               "vocabulary": pre.vocabularies[column]}
        for i, column in enumerate(pre.numeric_columns):
            columns[column] = {"kind": "numeric", "null_rate": _share(self.train_nulls[column], self.train_rows),
                               "mean": pre.numeric_mean[i], "std": pre.numeric_std[i],
                               "min": pre.numeric_min[i], "max": pre.numeric_max[i]}
        if pre.text_column:
            empty = _sum(titles.filter(pc.equal(titles["value"], ""))["rows"])
            columns[pre.text_column] = {"kind": "text", "null_rate": _share(empty, self.train_rows)}
        return {"columns": columns}


def _null_and_unseen_rates(table: pa.Table, vocabulary: list[str], train_rows: int) -> dict[str, Any]:
    """The training split's null rate, and the validation split's share of values outside the vocabulary."""
    split, value = table["split"], table["value"]
    train_nulls = _sum(table.filter(pc.and_(pc.equal(split, TRAIN), pc.is_null(value)))["rows"])
    validation = table.filter(pc.and_(pc.equal(split, VALIDATION), pc.is_valid(value)))
    unseen = validation.filter(pc.invert(pc.is_in(validation["value"], pa.array(vocabulary, pa.string()))))
    seen_rows = _sum(validation["rows"])
    return {"null_rate": _share(train_nulls, train_rows),
            "oov_rate": _sum(unseen["rows"]) / seen_rows if seen_rows else None}


def _most_frequent(values: pa.Array, counts: pa.Array, min_count: int, max_size: int) -> list[str]:
    """Values counted at least `min_count` times, most frequent first, ties by value (as Python orders
    strings: UTF-8's byte order is code point order), at most `max_size`."""
    table = pa.table({"value": values, "count": counts})
    kept = table.filter(pc.greater_equal(table["count"], min_count))
    ordered = kept.sort_by([("count", "descending"), ("value", "ascending")])
    return ordered["value"].slice(0, max_size).to_pylist()


def _strings(column: pa.Array) -> pa.Array:
    """Strings, also from a dictionary-encoded column (the same values, counted the same)."""
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _distinct(values: pa.ChunkedArray) -> int:
    return int(pc.count_distinct(values, mode="only_valid").as_py())


def _sum(values: pa.ChunkedArray) -> int:
    return int(pc.sum(values).as_py() or 0)


def _share(count: int, rows: int) -> float:
    # As pandas' mean of a boolean column: NaN with no row.
    return count / rows if rows else float("nan")


def fit_frame(train: pd.DataFrame, config: NetConfig) -> FittedPreprocessing:
    """The fitting pass over rows held in memory (a DataFrame `load_dataset` reads), all of them training rows."""
    batch = pa.RecordBatch.from_pandas(train, preserve_index=False)
    fitter = PreprocessingFitter(config)
    fitter.add(batch, np.full(batch.num_rows, TRAIN, np.int8))
    return fitter.result()
