"""BigQuery's NDJSON values, decoded by what the trainer does with their column.

BigQuery's export writes INT64 as strings ("3"; other writers use numbers),
BOOL as true/false, FLOAT64 as numbers or the strings "NaN", "Infinity" and
"-Infinity", TIMESTAMP as "YYYY-MM-DD HH:MM:SS[.ffffff] UTC", and NULL as
null or no key at all. Each role accepts every form its values can take:

- label: 0 or 1 as a number or a string, or true/false; null, NaN or anything
  else is refused (a row without a label cannot train);
- numeric: numbers, numeric strings, booleans (1/0); null and non-finite
  values are missing, which preprocessing fills with the training mean, and
  so are numbers too large for float32 (1e40), which `beyond_float32` counts;
- categorical, text, row id: strings; numbers and booleans become their
  strings, so a categorical id written as 3 and as "3" is one category; an
  empty categorical string is missing, like a null (a serving request cannot
  send a null string, and sends "" for an unknown value);
- time (`split_time_column`): TIMESTAMP strings, or ISO 8601 with a zone;
  null or unparsable is refused (the row could not be placed in a split).

The decoders take whole Arrow arrays; a refused value raises `BadValue` with
its row, which the reader turns into one line naming the file and the line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.config import NetConfig
from trainer.errors import DatasetError

LABEL, NUMERIC, CATEGORICAL, TEXT, ROW_ID, TIME = "label", "numeric", "categorical", "text", "row_id", "time"
LABEL_ONES, LABEL_ZEROS = ["1", "true"], ["0", "false"]
TIMESTAMP_EXAMPLE = "2026-10-13 18:53:18 UTC"


class BadValue(Exception):  # noqa: N818 - a value, not an error of the program
    """A value its column's role refuses; `row` counts within the decoded array."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(problem)
        self.row, self.problem = row, problem


@dataclass(frozen=True)
class ColumnRoles:
    """Which columns the config reads, by what the trainer does with them."""

    label: str | None  # None when scoring: a package's input has no label
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    text: str | None
    row_id: str | None
    time: str | None = None

    @classmethod
    def of(cls, config: NetConfig, *, with_label: bool, with_row_id: bool = True) -> ColumnRoles:
        """The columns to read. Training and scoring read the row id (scores carry it, so a training set
        without it makes a package whose scores have none); `with_row_id=False` is for rows only
        evaluated (fab compare's test rows, fab push's gate), which may lack it."""
        # Only training splits by time; scoring input needs no timestamp.
        time = (config.split_time_column or None) if with_label else None
        roles = cls(
            label=config.label_column if with_label else None,
            categorical=config.categorical_columns,
            numeric=config.numeric_columns,
            text=config.text_column or None,
            row_id=(config.id_column or None) if with_row_id else None,
            time=time,
        )
        if time and time in [c for c, role in roles.by_column() if role != TIME]:
            raise DatasetError(f"split_time_column '{time}' is also a feature or label column; "
                               "name a separate TIMESTAMP column")
        return roles

    @property
    def scoring(self) -> bool:
        return self.label is None

    def by_column(self) -> list[tuple[str, str]]:
        """Every column read, with its role; the row id last."""
        pairs = [(self.label, LABEL), (self.text, TEXT), (self.time, TIME)]
        pairs += [(c, CATEGORICAL) for c in self.categorical] + [(c, NUMERIC) for c in self.numeric]
        pairs.append((self.row_id, ROW_ID))
        return [(column, role) for column, role in pairs if column]

    def all(self) -> list[str]:
        """Every column read: some row must have each (a value when training; the key, even null, when
        scoring)."""
        return [column for column, _ in self.by_column()]


def decode(column: pa.Array, name: str, role: str) -> pa.Array:
    """The column's values in the trainer's types: label int8, numbers float32
    (null where missing), strings, timestamps in UTC."""
    return _DECODERS[role](column, name)


def _label(column: pa.Array, name: str) -> pa.Array:
    if column.null_count:
        raise BadValue(_first(column.is_null()), f"label '{name}' is missing (null or no key); every row needs 0 or 1")
    if pa.types.is_boolean(column.type):
        return column.cast(pa.int8())
    if pa.types.is_string(column.type):
        ones, zeros = pc.is_in(column, pa.array(LABEL_ONES)), pc.is_in(column, pa.array(LABEL_ZEROS))
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        ones, zeros = pc.equal(column, 1), pc.equal(column, 0)  # NaN equals neither: refused
    else:
        raise BadValue(0, f"label '{name}' holds {column.type} values; it must be 0 or 1 (or true/false)")
    valid = pc.or_(ones, zeros)
    if not pc.all(valid).as_py():
        bad = _first(pc.invert(valid))
        raise BadValue(bad, f"label '{name}' is {column[bad].as_py()!r}; it must be 0 or 1 (or true/false)")
    return ones.cast(pa.int8())


def _numeric(column: pa.Array, name: str) -> pa.Array:
    values = _float64(column, name).cast(pa.float32())
    # "NaN", "Infinity" and numbers beyond float32 carry no usable value: missing,
    # like a null, so preprocessing gives them the training mean.
    return pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float32()))


def beyond_float32(column: pa.Array, name: str) -> int:
    """How many of a numeric column's values are finite numbers too large for float32 (beyond about
    ±3.4e38, such as 1e40): decoded as missing, they are counted so that the run can say so."""
    numbers = _float64(column, name)
    too_large = pc.and_(pc.is_finite(numbers), pc.invert(pc.is_finite(numbers.cast(pa.float32()))))
    return int(pc.sum(too_large).as_py() or 0)


def _float64(column: pa.Array, name: str) -> pa.Array:
    try:
        return column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _first_failing(column, lambda one: one.cast(pa.float64()))
        raise BadValue(bad, f"column '{name}' is numeric in the config but holds {column[bad].as_py()!r}; "
                            "fix the data or move the column to categorical_columns") from None


def _string(column: pa.Array, name: str) -> pa.Array:
    if pa.types.is_string(column.type):
        return column
    try:
        # Numbers and booleans as their text: 3 and "3" become the same value.
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise BadValue(_first(column.is_valid()), f"column '{name}' holds {column.type} values; "
                                                   "expected strings, numbers or booleans") from None


def _category(column: pa.Array, name: str) -> pa.Array:
    strings = _string(column, name)
    return pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)


def _timestamp(column: pa.Array, name: str) -> pa.Array:
    what = f"column '{name}' (split_time_column)"
    if column.null_count:
        raise BadValue(_first(column.is_null()), f"{what} is missing (null or no key); every row needs a "
                                                  f"TIMESTAMP such as '{TIMESTAMP_EXAMPLE}' to be split by time")
    zoned = _zoned(column) if pa.types.is_string(column.type) else column
    try:
        return zoned.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _first_failing(zoned, lambda one: one.cast(pa.timestamp("us", tz="UTC")))
        raise BadValue(bad, f"{what} holds {column[bad].as_py()!r}, not a TIMESTAMP such as "
                            f"'{TIMESTAMP_EXAMPLE}'; fix that row or drop it") from None


def _zoned(column: pa.Array) -> pa.Array:
    # BigQuery's " UTC" suffix as the ISO offset Arrow's parser knows.
    return pc.replace_substring_regex(column, pattern=" UTC$", replacement="+00:00")


_DECODERS: dict[str, Callable[[pa.Array, str], pa.Array]] = {
    LABEL: _label, NUMERIC: _numeric, CATEGORICAL: _category, TEXT: _string, ROW_ID: _string, TIME: _timestamp,
}


# Each role's decoded type, whatever type the file's values had.
DECODED_TYPES = {LABEL: pa.int8(), NUMERIC: pa.float32(), CATEGORICAL: pa.string(), TEXT: pa.string(),
                 ROW_ID: pa.string(), TIME: pa.timestamp("us", tz="UTC")}


def decoded_schema(roles: ColumnRoles) -> pa.Schema:
    """The decoded columns' schema: the same for every file and block of a dataset."""
    return pa.schema([(column, DECODED_TYPES[role]) for column, role in roles.by_column()])


def from_python(values: list[Any], name: str, role: str) -> pa.Array:
    """One column of parsed JSON values as an Arrow array, for rows pyarrow
    could not type (a column mixing numbers and strings); `decode` follows."""
    kinds = {type(v) for v in values if v is not None}
    for row, value in enumerate(values):
        if isinstance(value, (dict, list)):
            kind = "an object" if isinstance(value, dict) else "an array"
            raise BadValue(row, f"column '{name}' holds {kind}; expected a scalar value")
    if len(kinds) <= 1 or kinds <= {int, float}:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, OverflowError):
            pass  # an integer beyond int64: as text below
    return pa.array([_as_text(v, role) for v in values], pa.string())


def _as_text(value: Any, role: str) -> str | None:
    """A scalar as the string its column would hold had the writer used one."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ("1" if value else "0") if role == NUMERIC else ("true" if value else "false")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))  # as Arrow writes 3.0: "3"
    return str(value)


def _first(mask: pa.Array) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _first_failing(column: pa.Array, convert: Callable[[pa.Array], Any]) -> int:
    """The first row `convert` refuses; only runs once a whole array was refused."""
    for row in range(len(column)):
        try:
            convert(column.slice(row, 1))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return row
    return 0
