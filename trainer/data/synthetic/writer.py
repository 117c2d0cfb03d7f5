"""Impressions into export rows: a DataFrame of BigQuery's representation, and NDJSON files of it.

Rows are made in chunks of `CHUNK_ROWS`, each from its own random stream, so
`generate` can write any number of rows in flat memory and `generate_frame`
returns exactly the rows `generate` writes. Strings come from lookup tables
and pyarrow kernels, and each NDJSON chunk is written as one buffer slice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from trainer.data import synthetic
from trainer.data.synthetic.titles import CATEGORIES
from trainer.data.synthetic.world import (
    COUNTRY_SHARES,
    DEFAULT_CATALOG,
    PLATFORMS,
    POSITIONS,
    WINDOW_DAYS,
    WINDOW_START,
    Catalog,
    Impressions,
    IntArray,
    SyntheticDataError,
    World,
    click_probability,
    sample_impressions,
    shared_world,
)
from trainer.errors import TrainerError
from trainer.outputs import check_output_file

COLUMNS = (
    "impression_id",
    "event_time",
    "publisher_id",
    "item_id",
    "category",
    "country",
    "platform",
    "hour",
    "day_of_week",
    "position",
    "item_age_hours",
    "title",
    "is_click",
)
CHUNK_ROWS = 250_000
ID_DIGITS = 10


def generate_frame(rows: int, seed: int = 0, catalog: Catalog = DEFAULT_CATALOG) -> pd.DataFrame:
    """`rows` impressions in export representation: strings and one float column.

    Rows come in chunks of `CHUNK_ROWS`, each from its own random stream, so
    the frame is exactly what `generate` writes for the same arguments.
    """
    _check_arguments(rows, seed)
    frames = [_chunk_frame(seed, index, start, stop, catalog) for index, start, stop in _chunks(rows)]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def write_ndjson(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as BigQuery-style NDJSON, atomically (temp file, then rename)."""
    with _atomic_output(path) as out:
        _write_lines(out, frame)


def generate(rows: int, path: Path, seed: int = 0, catalog: Catalog = DEFAULT_CATALOG) -> None:
    """Generate and write `rows` impressions chunk by chunk, so memory stays flat."""
    _check_arguments(rows, seed)
    check_output_file(str(path), "--out", example="rows.json")  # before minutes of generating, not after
    with _atomic_output(path) as out:
        for index, start, stop in _chunks(rows):
            _write_lines(out, _chunk_frame(seed, index, start, stop, catalog))


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m trainer.data.synthetic --rows N [--seed S] [--items ...] --out FILE`.

    A value out of range ends as one `error:` line and status 2, as `python -m trainer` does.
    """
    args = _parser().parse_args(argv)
    try:
        catalog = Catalog(items=args.items, publishers=args.publishers, item_zipf=args.item_zipf)
        generate(args.rows, args.out, args.seed, catalog)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    # The help text is the package's summary line, so the two cannot drift.
    description = synthetic.__doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m trainer.data.synthetic", description=description)
    parser.add_argument("--rows", type=int, required=True, help="number of impressions")
    parser.add_argument("--seed", type=int, default=0, help="picks the impressions drawn")
    parser.add_argument("--out", type=Path, required=True, help="NDJSON file to write")
    parser.add_argument("--items", type=int, default=DEFAULT_CATALOG.items,
                        help="distinct item ids in the catalog (default: %(default)s)")
    parser.add_argument("--publishers", type=int, default=DEFAULT_CATALOG.publishers,
                        help="distinct publisher ids (default: %(default)s)")
    parser.add_argument("--item-zipf", type=float, default=DEFAULT_CATALOG.item_zipf,
                        help="Zipf exponent of item popularity, >= 0 (0 is uniform; default: %(default)s)")
    return parser


# --- chunks -----------------------------------------------------------------


def _check_arguments(rows: int, seed: int) -> None:
    # A ValueError for callers, and a user's error (one line) at the command lines.
    if rows < 0:
        raise SyntheticDataError(f"rows must be >= 0, got {rows}")
    if seed < 0:
        raise SyntheticDataError(f"seed must be >= 0, got {seed}")


def _chunks(rows: int) -> Iterator[tuple[int, int, int]]:
    # An empty request still yields one (empty) chunk so callers get columns.
    starts = range(0, max(rows, 1), CHUNK_ROWS)
    for index, start in enumerate(starts):
        yield index, start, min(start + CHUNK_ROWS, rows)


def _chunk_frame(seed: int, index: int, start: int, stop: int, catalog: Catalog) -> pd.DataFrame:
    world = shared_world(catalog)
    # Seeding by (seed, chunk) keeps chunks independent and reproducible
    # without drawing all earlier chunks first.
    rng = np.random.default_rng([seed, index])
    impressions = sample_impressions(world, rng, stop - start)
    clicks = rng.random(stop - start) < click_probability(world, impressions)
    return _to_frame(world, impressions, clicks, _row_ids(seed, start, stop), catalog)


# --- export representation --------------------------------------------------


def _row_ids(seed: int, start: int, stop: int) -> pa.Array:
    return _padded_numbers(f"imp-{seed}-", np.arange(start, stop), ID_DIGITS)


def _to_frame(
    world: World, imp: Impressions, clicks: NDArray[np.bool_], row_ids: pa.Array, catalog: Catalog
) -> pd.DataFrame:
    tables = _string_tables()
    ids = _catalog_ids(catalog)
    hour = imp.hour
    columns = {
        "impression_id": row_ids,
        "event_time": _join(
            _lookup(tables["date_hour"], imp.day * 24 + hour),
            _lookup(tables["minute_second"], imp.second_of_day % 3600),
        ),
        "publisher_id": _lookup(ids["publisher"], imp.publisher),
        "item_id": _lookup(ids["item"], imp.item),
        "category": _lookup(tables["category"], world.item_category[imp.item]),
        "country": _lookup(tables["country"], imp.country),
        "platform": _lookup(tables["platform"], imp.platform),
        "hour": _lookup(tables["number"], hour),
        "day_of_week": _lookup(tables["number"], _bigquery_day_of_week(imp.day)),
        "position": _lookup(tables["number"], imp.position),
        "item_age_hours": pa.array(imp.item_age_hours),
        "title": world.titles.take(pa.array(imp.item)),
        "is_click": _lookup(tables["number"], clicks.astype(np.int64)),
    }
    # Arrow-backed string columns convert to pandas' `str` dtype without a copy.
    return pa.table(columns).to_pandas()


@cache
def _string_tables() -> dict[str, pa.Array]:
    """Every string a column can take, so a row's string is one array lookup."""
    days = WINDOW_START + np.arange(WINDOW_DAYS)
    return {
        "date_hour": _strings(f"{day} {hour:02d}:" for day in days for hour in range(24)),
        "minute_second": _strings(f"{s // 60:02d}:{s % 60:02d} UTC" for s in range(3600)),
        "category": _strings(CATEGORIES),
        "country": _strings(COUNTRY_SHARES),
        "platform": _strings(PLATFORMS),
        "number": _strings(str(i) for i in range(max(POSITIONS, 24) + 1)),
    }


@cache
def _catalog_ids(catalog: Catalog) -> dict[str, pa.Array]:
    """Every publisher and item id string of a catalog (built by kernels: millions of items take a second)."""
    return {
        "publisher": _padded_numbers("pub-", np.arange(catalog.publishers), 5),
        "item": _padded_numbers("item-", np.arange(catalog.items), 7),
    }


def _padded_numbers(prefix: str, numbers: IntArray, digits: int) -> pa.Array:
    # Zero-padded to `digits`, longer where a number needs more (an 8-digit item of a 10M catalog).
    text = pc.cast(pa.array(numbers.astype(np.int64)), pa.large_string())
    return _join(prefix, pc.utf8_lpad(text, digits, "0"))


def _bigquery_day_of_week(day: IntArray) -> IntArray:
    # 1970-01-01 was a Thursday, which EXTRACT(DAYOFWEEK) numbers 5 (Sunday = 1).
    epoch_day = (WINDOW_START - np.datetime64("1970-01-01", "D")).astype(np.int64)
    return (epoch_day + day + 4) % 7 + 1


def _strings(values: Iterable[str]) -> pa.Array:
    return pa.array(list(values), pa.large_string())


def _lookup(table: pa.Array, codes: IntArray) -> pa.Array:
    return table.take(pa.array(codes))


def _join(*parts: pa.Array | str) -> pa.Array:
    args = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", pa.large_string()))


# --- NDJSON -----------------------------------------------------------------


@contextmanager
def _atomic_output(path: Path) -> Iterator[BinaryIO]:
    """Binary file at `path.with_suffix(".tmp")`, renamed onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    try:
        with open(temporary, "wb") as out:
            yield out
    except BaseException:
        # A half-written file must never be mistaken for a finished one.
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _write_lines(out: BinaryIO, frame: pd.DataFrame) -> None:
    lines = _ndjson_lines(frame)
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    out.writelines(_string_bytes(chunk) for chunk in chunks)


def _string_bytes(array: pa.Array) -> memoryview:
    # A string array stores its values back to back, so with "\n" already at
    # the end of each line the whole file chunk is one slice of that buffer.
    if len(array) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
    return memoryview(array.buffers()[2])[offsets[0] : offsets[-1]]


def _ndjson_lines(frame: pd.DataFrame) -> pa.Array | pa.ChunkedArray:
    """One JSON object per row, keys in column order, each ending in a newline."""
    if len(frame.columns) == 0:
        return _strings(["{}\n"] * len(frame))
    parts: list[pa.Array | str] = []
    literal = "{"
    for position, name in enumerate(frame.columns):
        quoted, values = _json_values(frame[name])
        literal += ("," if position else "") + json.dumps(str(name)) + ":"
        parts += [literal + ('"' if quoted else ""), values]
        literal = '"' if quoted else ""
    parts.append(literal + "}\n")
    return _join(*parts)


def _json_values(column: pd.Series) -> tuple[bool, pa.Array]:
    """JSON text of each value, and whether it still needs surrounding quotes."""
    if column.isna().any():
        raise ValueError(f"column {column.name!r} has missing values; NDJSON needs none")
    if pd.api.types.is_bool_dtype(column):
        return False, _lookup(_strings(["false", "true"]), column.to_numpy(np.int64))
    if pd.api.types.is_integer_dtype(column):
        # BigQuery exports INT64 as strings: doubles cannot hold all 64 bits.
        return True, pc.cast(pa.array(column.to_numpy()), pa.large_string())
    if pd.api.types.is_float_dtype(column):
        return False, _json_floats(column)
    if pd.api.types.is_string_dtype(column):
        return True, _json_escaped(pc.cast(pa.array(column), pa.large_string()))
    raise TypeError(f"column {column.name!r} has dtype {column.dtype}, not exportable")


def _json_floats(column: pd.Series) -> pa.Array:
    values = column.to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"column {column.name!r} has NaN or infinity; JSON has neither")
    # Shortest round-trip text, with ".0" on whole numbers as Python writes them.
    text = pc.cast(pa.array(values), pa.large_string())
    whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(whole, _join(text, ".0"), text)


def _json_escaped(text: pa.Array) -> pa.Array:
    if not pc.any(pc.match_substring_regex(text, r'["\\\x00-\x1f]')).as_py():
        return text  # the common case: nothing to escape, nothing to copy
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    for code in range(0x20):
        text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    return text
