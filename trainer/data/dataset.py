"""Load a BigQuery NDJSON export into a compact pandas DataFrame, and split it.

Parsing is pyarrow's multi-threaded JSON reader with an explicit schema of just
the columns the config uses, so nothing is parsed twice and unused columns
cost nothing. Categorical and text columns become pandas categoricals (one
copy of each distinct string), numbers float32, the label int8. No Python
runs per row on the happy path; only when pyarrow rejects a file do we scan it
line by line, to say exactly which line is wrong.

BigQuery exports INT64 as JSON strings ("3"), FLOAT64 as numbers and omits or
nulls NULL fields; a column's JSON type is read off the file's first lines.

`fab dataset` writes what it knows about an export (query hash, job id, rows,
schema, time, parameters) beside the data, at `export_metadata_uri`; loading
picks it up, and the run carries it into the package's dataset.json.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from trainer.config import NetConfig
from trainer.data import storage
from trainer.errors import DatasetError

SCHEMA_SAMPLE_LINES = 1000
READ_BLOCK_BYTES = 16 << 20
HASH_CHUNK_BYTES = 4 << 20
EXPORT_METADATA_SUFFIX = ".metadata.json"


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset came from, and a hash that identifies its content."""

    uri: str
    files: tuple[str, ...]
    sha256: str
    size_bytes: int
    rows_read: int
    export: dict[str, Any] | None = None  # what `fab dataset` recorded about the export, when it made the data


@dataclass(frozen=True)
class ColumnRoles:
    """Which columns the config reads, by what the trainer does with them."""

    label: str | None
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    text: str | None
    row_id: str | None

    @classmethod
    def of(cls, config: NetConfig, *, with_label: bool) -> ColumnRoles:
        return cls(
            label=config.label_column if with_label else None,
            categorical=config.categorical_columns,
            numeric=config.numeric_columns,
            text=config.text_column or None,
            row_id=config.id_column or None,
        )

    def required(self) -> list[str]:
        singles = [c for c in (self.label, self.text) if c]
        return [*singles, *self.categorical, *self.numeric]

    def all(self) -> list[str]:
        return self.required() + ([self.row_id] if self.row_id else [])


def load_dataset(
    uri: str, config: NetConfig, *, with_label: bool = True
) -> tuple[pd.DataFrame, DatasetSource]:
    """Read every file the URI names (one file or `*` shards) into one DataFrame."""
    roles = ColumnRoles.of(config, with_label=with_label)
    files = [f for f in storage.expand(uri) if not f.endswith(EXPORT_METADATA_SUFFIX)]
    if not files:
        raise DatasetError(f"{uri} matches only export metadata; point it at the data files")
    tables, digest, size, rows_read = [], hashlib.sha256(), 0, 0
    for index, file_uri in enumerate(files):
        path = storage.local_copy(file_uri)
        size += _hash_into(digest, path)
        table, file_rows = _read_table(path, roles, config.subsample, seed=config.seed + index)
        tables.append(table)
        rows_read += file_rows
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.num_rows == 0:
        raise DatasetError(f"{uri}: subsample={config.subsample} kept none of {rows_read} rows; raise it")
    frame = _to_frame(table, roles)
    return frame, DatasetSource(uri, tuple(files), digest.hexdigest(), size, rows_read, read_export_metadata(uri))


def export_metadata_uri(dataset_uri: str) -> str:
    """Where an export's metadata lives: beside the data, named after it, out of
    its shard pattern (`gs://b/p/train-*.json` -> `gs://b/p/train.metadata.json`)."""
    folder, _, name = dataset_uri.rpartition("/")
    stem = name.removesuffix(".json").replace("*", "").rstrip("-_.") or "export"
    return f"{folder}/{stem}{EXPORT_METADATA_SUFFIX}" if folder else f"{stem}{EXPORT_METADATA_SUFFIX}"


def read_export_metadata(dataset_uri: str) -> dict[str, Any] | None:
    metadata_uri = export_metadata_uri(dataset_uri)
    if not storage.exists(metadata_uri):
        return None
    try:
        return json.loads(storage.local_copy(metadata_uri).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{metadata_uri}: not valid JSON ({exc}); delete it or export the dataset again") from None


def _hash_into(digest: Any, path: Path) -> int:
    """Feed the file's bytes to the digest: the hash equals `cat FILES | sha256sum`."""
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size


def _read_table(path: Path, roles: ColumnRoles, subsample: float, seed: int) -> tuple[pa.Table, int]:
    """The file's configured columns, keeping a seeded `subsample` of the rows
    block by block (so memory holds only the kept rows); also the rows read."""
    schema = _schema_from_first_lines(path, roles)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    keep = np.random.default_rng(seed)
    batches, rows_read = [], 0
    try:
        for parsed in pj.open_json(path, read_options=pj.ReadOptions(block_size=READ_BLOCK_BYTES),
                                   parse_options=options):
            batch = _typed(parsed, roles, path, first_row=rows_read)
            rows_read += batch.num_rows
            batches.append(batch if subsample >= 1 else batch.filter(keep.random(batch.num_rows) < subsample))
    except pa.ArrowInvalid as exc:
        raise DatasetError(_locate_bad_line(path, schema) or f"{path}: {exc}") from None
    if not batches:
        raise DatasetError(f"{path}: no rows; a dataset needs at least one")
    table = pa.Table.from_batches(batches)
    missing = [c for c in roles.required() if table.column(c).null_count == table.num_rows]
    if missing and table.num_rows:
        raise DatasetError(
            f"{path}: column(s) {', '.join(missing)} missing (the config's columns; "
            f"point the variant's *_columns keys at this file's columns)"
        )
    return table, rows_read


def _schema_from_first_lines(path: Path, roles: ColumnRoles) -> pa.Schema:
    """Each column's Arrow type from the JSON type of its first non-null value."""
    found: dict[str, Any] = {}
    with path.open("rb") as f:
        lines = [(n, line) for n, line in enumerate(itertools.islice(f, SCHEMA_SAMPLE_LINES), 1) if line.strip()]
    if not lines:
        raise DatasetError(f"{path}: the file is empty; a dataset needs at least one row")
    for number, line in lines:
        record = _parse_line(path, number, line)
        for column in roles.all():
            if found.get(column) is None and record.get(column) is not None:
                found[column] = record[column]
    numeric = set(roles.numeric)
    return pa.schema([(c, _arrow_type(path, c, found.get(c), c in numeric)) for c in roles.all()])


def _parse_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} line {number}: not valid JSON ({exc}); fix or drop that line") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path} line {number}: expected a JSON object per line, got {line[:60]!r}")
    return record


def _arrow_type(path: Path, column: str, sample: Any, numeric: bool) -> pa.DataType:
    if sample is None or isinstance(sample, str):
        return pa.string()
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, (int, float)):
        return pa.float64() if numeric or isinstance(sample, float) else pa.int64()
    raise DatasetError(f"{path}: column '{column}' holds {type(sample).__name__} values; expected scalars")


def _locate_bad_line(path: Path, schema: pa.Schema) -> str | None:
    """Find the first line pyarrow could not read; only runs on the error path."""
    expected = {f.name: f.type for f in schema}
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = _parse_line(path, number, line)
            for column, arrow_type in expected.items():
                value = record.get(column)
                if value is not None and not _json_fits(value, arrow_type):
                    return (f"{path} line {number}: column '{column}' is {json.dumps(value)}, "
                            f"but earlier lines hold {_kind(arrow_type)}")
    return None


def _json_fits(value: Any, arrow_type: pa.DataType) -> bool:
    if pa.types.is_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_boolean(arrow_type):
        return isinstance(value, bool)
    if pa.types.is_integer(arrow_type):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(arrow_type: pa.DataType) -> str:
    return "strings" if pa.types.is_string(arrow_type) else f"{arrow_type} values"


def _typed(batch: pa.RecordBatch, roles: ColumnRoles, path: Path, first_row: int) -> pa.RecordBatch:
    """Numbers as float32 and the label as int8, checked before any row is
    subsampled away, so an error names the file and the row in it."""
    columns = dict(zip(batch.schema.names, batch.columns))
    for name in roles.numeric:
        columns[name] = _numeric(columns[name], name, path, first_row)
    if roles.label:
        columns[roles.label] = _label(columns[roles.label], roles.label, path, first_row)
    return pa.RecordBatch.from_pydict(columns)


def _numeric(column: pa.Array, name: str, path: Path, first_row: int) -> pa.Array:
    try:
        # NaN marks a missing number; features.py fills it with the training mean.
        return column.cast(pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _first_row_where(column, lambda v: not _is_number(v))
        raise DatasetError(
            f"{path}: column '{name}' is numeric in the config but row {first_row + bad + 1} holds "
            f"{column[bad].as_py()!r}; fix the data or move the column to categorical_columns"
        ) from None


def _label(column: pa.Array, name: str, path: Path, first_row: int) -> pa.Array:
    if column.null_count:
        bad = _first_row_where(column, lambda v: v is None)
        raise DatasetError(f"{path}: label '{name}' is missing in row {first_row + bad + 1}; every row needs 0 or 1")
    try:
        values = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        bad_rows = np.flatnonzero((values != 0) & (values != 1))
        bad = int(bad_rows[0]) if bad_rows.size else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _first_row_where(column, lambda v: not _is_binary(v))
    if bad is not None:
        raise DatasetError(
            f"{path}: label '{name}' must be 0 or 1, but row {first_row + bad + 1} holds {column[bad].as_py()!r}"
        )
    return pa.array(values.astype(np.int8))


def _to_frame(table: pa.Table, roles: ColumnRoles) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for column in roles.categorical:
        columns[column] = _categorical(table.column(column))
    for column in roles.numeric:
        columns[column] = table.column(column).to_numpy()
    if roles.text:
        text = pc.fill_null(table.column(roles.text).cast(pa.string()), "")
        columns[roles.text] = _categorical(text)
    if roles.row_id and roles.row_id in table.column_names:
        columns[roles.row_id] = table.column(roles.row_id).cast(pa.string()).to_pandas()
    if roles.label:
        columns[roles.label] = table.column(roles.label).to_numpy()
    return pd.DataFrame(columns)


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    strings = column.cast(pa.string()) if not pa.types.is_string(column.type) else column
    return strings.dictionary_encode().combine_chunks().to_pandas()


def _first_row_where(column: pa.Array, predicate: Any) -> int:
    for row, value in enumerate(column.to_pylist()):
        if predicate(value):
            return row
    return 0


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return value is None
    return True


def _is_binary(value: Any) -> bool:
    try:
        return float(value) in (0.0, 1.0)
    except (TypeError, ValueError):
        return False
