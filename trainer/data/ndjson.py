"""One NDJSON file (plain or gzip) into an Arrow table of the configured columns.

Parsing is pyarrow's multi-threaded JSON reader, block by block, with an
explicit schema of just the columns the config uses (each column's JSON type
read off the file's first lines), so unused columns cost nothing and memory
holds only the kept rows. A gzip file (found by its magic bytes, whatever its
name) streams through a decompressor: no decompressed copy is written.

When pyarrow refuses the file (a syntax error, a column that mixes numbers
and strings) or a value is one its role refuses, the file is read again line
by line in Python: that reader accepts what pyarrow could not type, and
otherwise names the exact line. It only runs on such files.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from trainer.data import values
from trainer.data.values import BadValue, ColumnRoles
from trainer.errors import DatasetError

SCHEMA_SAMPLE_LINES = 1000
READ_BLOCK_BYTES = 16 << 20
SLOW_BLOCK_LINES = 65_536
SCAN_CHUNK_BYTES = 4 << 20
GZIP_MAGIC = b"\x1f\x8b"
# The other formats BigQuery exports, by their first bytes (CSV is told by its text).
BINARY_FORMATS = {b"PAR1": "Parquet", b"Obj\x01": "Avro", b"PK\x03\x04": "a zip archive"}


@dataclass
class ReadTally:
    """What reading counted over every row read (kept by subsample or not); complete once a file's blocks
    (or a dataset's) are exhausted."""

    rows_read: int = 0
    # Columns with a value in some row; when scoring, the line-by-line reader
    # also counts a column some row names with null.
    present: set[str] = field(default_factory=set)
    # Per numeric column, the numbers too large for float32 (read as missing) in the rows read.
    beyond_float32: Counter[str] = field(default_factory=Counter)

    def add(self, other: ReadTally) -> None:
        self.rows_read += other.rows_read
        self.present |= other.present
        self.beyond_float32.update(other.beyond_float32)

    def clear(self) -> None:
        self.rows_read = 0
        self.present.clear()
        self.beyond_float32.clear()


def read_blocks(path: Path, roles: ColumnRoles, subsample: float, seed: int, tally: ReadTally,
                block_bytes: int = READ_BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """The file's kept rows, decoded, a block at a time (memory holds one): each row is kept with
    probability `subsample`, drawn in row order from `seed`, so the kept rows do not depend on the blocks.
    `tally` counts every row read."""
    try:
        yield from _read_blocks(path, roles, subsample, seed, tally, block_bytes)
    except (EOFError, OSError, zlib.error) as exc:
        if not is_gzip(path):
            raise
        # A download or copy cut short: the bytes are wrong, not the rows.
        raise DatasetError(f"{path}: a broken gzip file ({exc}); fetch or export it again") from None
    if not tally.rows_read:
        raise DatasetError(f"{path}: no rows; a dataset needs at least one")


def _read_blocks(path: Path, roles: ColumnRoles, subsample: float, seed: int, tally: ReadTally,
                 block_bytes: int) -> Iterator[pa.RecordBatch]:
    schema = _schema_from_first_lines(path, roles)
    keep, streamed = np.random.default_rng(seed), 0
    try:
        for parsed, batch in _pyarrow_blocks(path, roles, schema, block_bytes):
            tally.present.update(c for c in roles.all() if parsed.column(c).null_count < parsed.num_rows)
            tally.beyond_float32.update(_beyond_float32(_named_columns(parsed), roles))
            tally.rows_read += batch.num_rows
            # Decoded before any row is subsampled away: every row is checked.
            yield _kept(batch, keep, subsample)
            streamed += batch.num_rows
        return
    except (pa.ArrowInvalid, BadValue):
        pass  # out of the except block first: its traceback would keep the failed attempt's batches alive
    # The whole file again, line by line, so that its refusals are those of the whole file; the rows
    # already given are read again (and drawn again, the same) but not given twice.
    tally.clear()
    yield from _read_line_by_line(path, roles, subsample, seed, tally, skip=streamed)


def _kept(batch: pa.RecordBatch, keep: np.random.Generator, subsample: float, skip: int = 0) -> pa.RecordBatch:
    """The batch's rows drawn by subsample, without its first `skip` rows."""
    if subsample >= 1 and skip <= 0:
        return batch
    mask = keep.random(batch.num_rows) < subsample if subsample < 1 else np.ones(batch.num_rows, bool)
    mask[:max(skip, 0)] = False
    return batch.filter(mask)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_lines(path: Path) -> IO[bytes]:
    """The file's decompressed bytes, streamed."""
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")


def mentions_column(path: Path, column: str) -> bool:
    """Whether any line names the column as a key (even with null): scoring
    input whose rows are all null there still has the column."""
    key = re.compile(rb'"' + re.escape(json.dumps(column)[1:-1].encode()) + rb'"\s*:')
    tail = b""
    with open_lines(path) as f:
        while chunk := f.read(SCAN_CHUNK_BYTES):
            if key.search(tail + chunk):
                return True
            tail = chunk[-(len(column) * 2 + 64):]  # a key split across two chunks
    return False


def _pyarrow_blocks(path: Path, roles: ColumnRoles, schema: pa.Schema, block_bytes: int = READ_BLOCK_BYTES,
                    use_threads: bool = True) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Each block as pyarrow parsed it, and decoded."""
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    with _arrow_source(path) as source:
        reader = pj.open_json(source, read_options=pj.ReadOptions(block_size=block_bytes, use_threads=use_threads),
                              parse_options=options)
        for parsed in reader:
            yield parsed, _decoded(_named_columns(parsed), roles)


def _named_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    return dict(zip(batch.schema.names, batch.columns))


def stream_file(path: Path, roles: ColumnRoles, block_bytes: int = READ_BLOCK_BYTES,
                use_threads: bool = True) -> Iterator[pa.RecordBatch]:
    """Every row of the file, decoded, a block of `block_bytes` at a time: memory holds one block, whatever
    the file's size (scoring). A block pyarrow refuses continues line by line from that block's first row.
    `use_threads=False` parses each block on the calling thread alone (pyarrow's pool otherwise)."""
    schema = _schema_from_first_lines(path, roles)  # an empty file is refused first
    check_columns_named(path, roles)
    streamed = 0
    try:
        for _, batch in _pyarrow_blocks(path, roles, schema, block_bytes, use_threads):
            yield batch
            streamed += batch.num_rows
        return
    except (pa.ArrowInvalid, BadValue):
        pass
    for numbers, records in _blocks(path, skip=streamed):
        try:
            yield _decoded(_columns_of_records(records, roles), roles)
        except BadValue as bad:
            raise DatasetError(f"{path} line {numbers[bad.row]}: {bad.problem}") from None


def check_columns_named(path: Path, roles: ColumnRoles) -> None:
    """Refuse a file no line of which names some required column (its first lines, else a scan)."""
    with open_lines(path) as f:
        first = [(n, line) for n, line in enumerate(itertools.islice(f, SCHEMA_SAMPLE_LINES), 1) if line.strip()]
    named = set().union(*(_parse_line(path, n, line).keys() for n, line in first))
    absent = [c for c in roles.all() if c not in named and not mentions_column(path, c)]
    if absent:
        raise DatasetError(missing_columns_message(str(path), absent, roles))


def _arrow_source(path: Path) -> AbstractContextManager[Any]:
    """gzip through Arrow's streaming decompressor; a plain file by its path, as pyarrow reads it fastest."""
    if is_gzip(path):
        return pa.input_stream(str(path), compression="gzip")
    return nullcontext(str(path))


def _read_line_by_line(path: Path, roles: ColumnRoles, subsample: float, seed: int, tally: ReadTally,
                       skip: int = 0) -> Iterator[pa.RecordBatch]:
    """As `_read_blocks`, parsing each line with Python, not giving the first `skip` rows. A refused value
    is reported once every configured column has been seen, so that a file missing columns names them all
    rather than the first row lacking one."""
    keep = np.random.default_rng(seed)
    refused: DatasetError | None = None
    for numbers, records in _blocks(path):
        tally.present.update(c for c in roles.all() if c not in tally.present and _has(records, c, roles.scoring))
        first_row, tally.rows_read = tally.rows_read, tally.rows_read + len(records)
        if refused is None:
            try:
                columns = _columns_of_records(records, roles)
                batch = _decoded(columns, roles)
                tally.beyond_float32.update(_beyond_float32(columns, roles))
                yield _kept(batch, keep, subsample, skip - first_row)
            except BadValue as bad:
                refused = DatasetError(f"{path} line {numbers[bad.row]}: {bad.problem}")
        if refused is not None and tally.present >= set(roles.all()):
            raise refused
    if refused is not None:  # some column never appeared: that, not the row, is what to fix
        absent = _absent(roles, tally.present)
        raise DatasetError(missing_columns_message(str(path), absent, roles)) if absent else refused


def _columns_of_records(records: list[dict[str, Any]], roles: ColumnRoles) -> dict[str, pa.Array]:
    return {c: values.from_python([r.get(c) for r in records], c, role) for c, role in roles.by_column()}


def _has(records: list[dict[str, Any]], column: str, scoring: bool) -> bool:
    if scoring:
        return any(column in r for r in records)
    return any(r.get(column) is not None for r in records)


def _absent(roles: ColumnRoles, present: set[str] | frozenset[str]) -> list[str]:
    return [c for c in roles.all() if c not in present]


def missing_columns_message(where: str, absent: list[str], roles: ColumnRoles) -> str:
    columns = ", ".join(absent)
    row_id = roles.row_id in absent
    if roles.scoring:
        # The package fixes the schema: nothing to configure, only data to fix.
        id_note = f" ({roles.row_id} is the id that each score line carries)" if row_id else ""
        return (f"{where}: column(s) {columns} missing: the package's schema needs them and no input row "
                f"has them{id_note}; add them to the input (null values are fine)")
    keys = "label_column, *_columns and id_column" if row_id else "label_column and *_columns"
    id_note = '; or set id_column to "" to score without ids' if row_id else ""
    return (f"{where}: column(s) {columns} missing: no row has a value (the config's columns; "
            f"point the variant's {keys} keys at this dataset's columns{id_note})")


def _decoded(columns: dict[str, pa.Array], roles: ColumnRoles) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({c: values.decode(columns[c], c, role) for c, role in roles.by_column()},
                                      schema=values.decoded_schema(roles))


def _beyond_float32(columns: dict[str, pa.Array], roles: ColumnRoles) -> Counter[str]:
    """Per numeric column, how many of its raw values (before decoding) are numbers too large for float32."""
    return Counter({c: values.beyond_float32(columns[c], c) for c in roles.numeric})


def _blocks(path: Path, skip: int = 0) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
    """Parsed lines in blocks, after the first `skip` rows: their line numbers and their objects."""
    with open_lines(path) as f:
        numbered = itertools.islice(((n, line) for n, line in enumerate(f, 1) if line.strip()), skip, None)
        while block := list(itertools.islice(numbered, SLOW_BLOCK_LINES)):
            yield [n for n, _ in block], [_parse_line(path, n, line) for n, line in block]


def _schema_from_first_lines(path: Path, roles: ColumnRoles) -> pa.Schema:
    """Each column's Arrow type from the JSON type of its first non-null value."""
    found: dict[str, Any] = {}
    with open_lines(path) as f:
        lines = [(n, line) for n, line in enumerate(itertools.islice(f, SCHEMA_SAMPLE_LINES), 1) if line.strip()]
    if not lines:
        raise DatasetError(f"{path}: the file is empty; a dataset needs at least one row")
    _check_is_ndjson(path, lines[0][1])
    for number, line in lines:
        record = _parse_line(path, number, line)
        for column in roles.all():
            if found.get(column) is None and record.get(column) is not None:
                found[column] = record[column]
    numeric = set(roles.numeric)
    return pa.schema([(c, _arrow_type(found.get(c), c in numeric)) for c in roles.all()])


def _arrow_type(sample: Any, numeric: bool) -> pa.DataType:
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, (int, float)):
        return pa.float64() if numeric or isinstance(sample, float) else pa.int64()
    # Strings, and columns with no value yet. An array or object fails pyarrow,
    # and the line-by-line reader names its line.
    return pa.string()


def _check_is_ndjson(path: Path, first_line: bytes) -> None:
    """Refuse a whole file in another format, as one, rather than as a bad first line to fix."""
    try:
        if isinstance(json.loads(first_line), dict):
            return
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    found = _other_format(first_line)
    if found:
        raise DatasetError(f"{path}: this file is {found}, and a dataset is newline-delimited JSON: one JSON "
                           "object per line, in UTF-8, as BigQuery exports it (EXPORT DATA ... format='JSON', or "
                           "bq extract --destination_format NEWLINE_DELIMITED_JSON)")


def _other_format(first_line: bytes) -> str | None:
    """What a file whose first line is not a JSON object looks like (None: nothing recognised)."""
    for magic, name in BINARY_FORMATS.items():
        if first_line.startswith(magic):
            return name
    if first_line.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32 text (convert it with iconv -f UTF-32 -t UTF-8)"
    if first_line.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in first_line:
        return "UTF-16 text (convert it with iconv -f UTF-16 -t UTF-8)"
    text = first_line.strip()
    if text.startswith(b"["):
        return "one JSON array (convert it with jq -c '.[]')"
    if text == b"{" or (text.startswith(b'{"') and text.endswith(b",")):
        return "pretty-printed JSON, objects over several lines (convert it with jq -c .)"
    if not text.startswith(b"{") and (b"," in text or b"\t" in text):
        return "tab-separated text" if b"\t" in text else "CSV (comma-separated values)"
    return None


def _parse_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} line {number}: not valid JSON ({exc}); fix or drop that line") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path} line {number}: expected a JSON object per line, got {line[:60]!r}")
    return record
