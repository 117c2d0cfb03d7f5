"""Load a BigQuery NDJSON export into a compact pandas DataFrame.

A dataset is one file, shards named with `*`, or a folder (local, or a gs://
prefix ending in '/') whose `*.json` and `*.json.gz` files are its shards;
`*.metadata.json` is never data. Each file is read by trainer.data.ndjson
(gzip streamed, no decompressed copy) and its values decoded by their role in
trainer.data.values. Categorical and text columns become pandas categoricals
(one copy of each distinct string), numbers float32 (NaN where missing), the
label int8, `split_time_column` datetime64[ns, UTC]. The content hash is that
of the files' bytes as stored, compressed or not.

`fab dataset` writes what it knows about an export (query hash, job id, rows,
schema, time, parameters) beside the data, at `export_metadata_uri`; loading
picks it up, and the run carries it into the package's dataset.json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainer.config import NetConfig
from trainer.data import storage, values
from trainer.data.ndjson import READ_BLOCK_BYTES, ReadTally, mentions_column, missing_columns_message, read_blocks
from trainer.data.values import BadValue, ColumnRoles
from trainer.errors import DatasetError

HASH_CHUNK_BYTES = 4 << 20
EXPORT_METADATA_SUFFIX = ".metadata.json"
DATA_SUFFIXES = (".json", ".json.gz")

__all__ = ["ColumnRoles", "DatasetSource", "HashedFiles", "Rows", "dataset_files", "dataset_source", "decode_rows",
           "export_metadata_uri", "hash_files", "load_dataset", "read_rows"]

# Rows held in memory: a DataFrame, or one dict per row as json.loads reads an NDJSON line.
Rows = pd.DataFrame | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset came from, and a hash that identifies its content."""

    uri: str
    files: tuple[str, ...]
    sha256: str
    size_bytes: int
    rows_read: int
    export: dict[str, Any] | None = None  # what `fab dataset` recorded about the export, when it made the data
    # Per numeric column, the numbers too large for float32 (1e40) in the rows read: missing, like a null.
    numbers_beyond_float32: dict[str, int] = field(default_factory=dict)

    def beyond_float32_warning(self) -> str | None:
        """One line naming the numeric columns where numbers too large for float32 were read as missing."""
        counted = {column: count for column, count in self.numbers_beyond_float32.items() if count}
        if not counted:
            return None
        columns = ", ".join(f"{count:,} in '{column}'" for column, count in counted.items())
        return (f"warning: {self.uri}: {sum(counted.values()):,} number(s) too large for float32 (beyond "
                f"±3.4e38) read as missing, as a null is: {columns} (counted in dataset.json)")


def load_dataset(
    uri: str, config: NetConfig, *, with_label: bool = True, with_row_id: bool = True
) -> tuple[pd.DataFrame, DatasetSource]:
    """Read every file the URI names into one DataFrame. Without the label
    (scoring a package's input) the schema is the package's, not the user's to configure.
    Without the row id (rows only evaluated), `id_column` is neither read nor required."""
    roles = ColumnRoles.of(config, with_label=with_label, with_row_id=with_row_id)
    files = hash_files(uri)
    tally = ReadTally()
    table = pa.Table.from_batches(list(read_rows(files, roles, config, tally)), values.decoded_schema(roles))
    return to_frame(table, roles), dataset_source(files, roles, tally)


@dataclass(frozen=True)
class HashedFiles:
    """A dataset's files, local (downloaded where remote), and the hash of their bytes back to back."""

    uri: str
    files: tuple[str, ...]
    paths: tuple[Path, ...]
    sizes: tuple[int, ...]
    sha256: str
    metadata_uri: str | None


def hash_files(uri: str) -> HashedFiles:
    files, metadata_uri = dataset_files(uri)
    digest, paths, sizes = hashlib.sha256(), [], []
    for file_uri in files:
        paths.append(storage.local_copy(file_uri))
        sizes.append(_hash_into(digest, paths[-1]))
    return HashedFiles(uri, tuple(files), tuple(paths), tuple(sizes), digest.hexdigest(), metadata_uri)


def read_rows(files: HashedFiles, roles: ColumnRoles, config: NetConfig, tally: ReadTally,
              block_bytes: int = READ_BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """Every kept row of the files, decoded, in file order, a block at a time; `tally` counts all rows read.
    Refusals that need every file (a column no file has, no row kept) come once all are read."""
    kept = 0
    for index, path in enumerate(files.paths):
        read = ReadTally()
        # split_seed, not seed: a new weight seed must not change which rows are kept.
        for batch in read_blocks(path, roles, config.subsample, config.split_seed + index, read, block_bytes):
            kept += batch.num_rows
            yield batch
        tally.add(read)
    _check_no_column_missing(files.uri, roles, tally.present, files.paths)
    if not kept:
        raise DatasetError(f"{files.uri}: subsample={config.subsample} kept none of {tally.rows_read} rows; raise it")


def dataset_source(files: HashedFiles, roles: ColumnRoles, tally: ReadTally) -> DatasetSource:
    """The source of rows read (the export's metadata read now)."""
    export = _read_metadata(files.metadata_uri) if files.metadata_uri else None
    too_large = {column: tally.beyond_float32.get(column, 0) for column in roles.numeric}
    return DatasetSource(files.uri, files.files, files.sha256, sum(files.sizes), tally.rows_read, export, too_large)


def dataset_files(uri: str) -> tuple[list[str], str | None]:
    """The data files a URI names, and where their export metadata is (if anywhere)."""
    if not uri.strip():  # "" would be the current folder, a path that was never meant
        raise DatasetError(f"an empty dataset path ({uri!r}); pass a file, shards with *, or a folder")
    if storage.is_folder(uri):
        listed = storage.expand(uri, must_match=False)
        files = [f for f in listed if _is_data(f)]
        if not files:
            _refuse_folder_without_data(uri)
        metadata = [f for f in listed if f.endswith(EXPORT_METADATA_SUFFIX)]
        return files, metadata[0] if len(metadata) == 1 else None
    files = [f for f in storage.expand(uri) if not f.endswith(EXPORT_METADATA_SUFFIX)]
    if not files:
        raise DatasetError(f"{uri} matches only export metadata; point it at the data files")
    metadata_uri = export_metadata_uri(uri)
    return files, metadata_uri if storage.exists(metadata_uri) else None


def _is_data(name: str) -> bool:
    return name.endswith(DATA_SUFFIXES) and not name.endswith(EXPORT_METADATA_SUFFIX)


def _refuse_folder_without_data(uri: str) -> None:
    """Say why a folder gives no data files: its data is in subfolders, it is empty, or it holds other files."""
    visible = [name for name in storage.list_tree(uri) if not any(part.startswith(".") for part in name.split("/"))]
    holding = sorted({name.rpartition("/")[0] for name in visible if "/" in name and _is_data(name)})
    if holding:
        named = ", ".join(storage.join(uri, folder) for folder in holding[:3])
        more = f" and {len(holding) - 3} more" if len(holding) > 3 else ""
        raise DatasetError(f"{uri}: no data files directly in this folder, but its subfolder(s) {named}{more} hold "
                           "*.json files; pass one of them (a folder's own files are read, not its subfolders')")
    if not visible:
        storage.expand(uri)  # raises the storage's own line for an empty folder (a local one, or a gs:// prefix)
    raise DatasetError(f"{uri}: a folder without *.json or *.json.gz files; pass the folder an export wrote, "
                       f"one file, or a pattern such as {storage.join(uri, 'train-*.json')}")


def _check_no_column_missing(uri: str, roles: ColumnRoles, present: set[str], paths: Sequence[Path]) -> None:
    """Every configured column has a value somewhere, checked over all files at
    once, naming every missing column. (A file with a refused row has already
    named the columns it lacks, before that row: see ndjson.)"""
    absent = [c for c in roles.all() if c not in present]
    if roles.scoring:
        # A scoring row may be null everywhere (one row without a title); only
        # a column no row even names is missing.
        absent = [c for c in absent if not any(mentions_column(path, c) for path in paths)]
    if absent:
        raise DatasetError(missing_columns_message(uri, absent, roles))


def export_metadata_uri(dataset_uri: str) -> str:
    """Where an export's metadata lives: beside the data, named after it, out of
    its shard pattern (`gs://b/p/train-*.json[.gz]` -> `gs://b/p/train.metadata.json`)."""
    folder, _, name = dataset_uri.rpartition("/")
    stem = name.removesuffix(".gz").removesuffix(".json").replace("*", "").rstrip("-_.") or "export"
    return f"{folder}/{stem}{EXPORT_METADATA_SUFFIX}" if folder else f"{stem}{EXPORT_METADATA_SUFFIX}"


def _read_metadata(metadata_uri: str) -> dict[str, Any]:
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


def decode_rows(rows: Rows, roles: ColumnRoles) -> pa.RecordBatch:
    """Rows held in memory, decoded as a file's rows are (trainer.data.values): the same values, and the
    same refusals, each one line naming the row (counted from 0, as a DataFrame's position)."""
    columns = _columns_of(rows)
    absent = [c for c in roles.all() if c not in columns]
    if absent and len(rows):
        raise DatasetError(missing_columns_message("the rows", absent, roles))
    try:
        return pa.RecordBatch.from_pydict({
            c: values.decode(_arrow(columns.get(c, [None] * len(rows)), c, role), c, role)
            for c, role in roles.by_column()})
    except BadValue as bad:
        raise DatasetError(f"row {bad.row}: {bad.problem}") from None


def _columns_of(rows: Rows) -> Mapping[str, pd.Series | list[Any]]:
    if isinstance(rows, pd.DataFrame):
        return {str(c): rows[c] for c in rows.columns}
    if not all(isinstance(row, Mapping) for row in rows):
        raise DatasetError("rows: expected a DataFrame or a list of dicts, one per row (as json.loads reads "
                           "an NDJSON line)")
    names = {name for row in rows for name in row}
    return {name: [row.get(name) for row in rows] for name in names}


def _arrow(column: pd.Series | list[Any], name: str, role: str) -> pa.Array:
    """A column as Arrow's reader would type it: a pandas column by pyarrow, a column pyarrow cannot
    type (numbers mixed with strings) and a list of Python values as the line-by-line reader does."""
    if isinstance(column, pd.Series):
        try:
            return pa.array(column, from_pandas=True)  # NaN is null, as a missing JSON value
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            column = column.astype(object).where(column.notna(), None).tolist()
    return values.from_python(column, name, role)


def to_frame(table: pa.Table, roles: ColumnRoles) -> pd.DataFrame:
    """Decoded columns as the training DataFrame: categoricals, float32, the label int8."""
    columns: dict[str, Any] = {}
    for column in roles.categorical:
        columns[column] = _categorical(table.column(column))
    for column in roles.numeric:
        columns[column] = table.column(column).to_numpy()  # null as NaN: missing
    if roles.text:
        # Null and "" are the same no-text row; preprocessing gives it its own token.
        text = pc.fill_null(table.column(roles.text), "")
        columns[roles.text] = _categorical(text)
    if roles.row_id:
        columns[roles.row_id] = table.column(roles.row_id).to_pandas()
    if roles.time:
        # Nanoseconds, pandas' own unit, whatever unit Arrow parsed into.
        columns[roles.time] = table.column(roles.time).to_pandas().astype("datetime64[ns, UTC]")
    if roles.label:
        columns[roles.label] = table.column(roles.label).to_numpy()
    return pd.DataFrame(columns)


def _categorical(strings: pa.ChunkedArray) -> pd.Categorical:
    return strings.dictionary_encode().combine_chunks().to_pandas()
