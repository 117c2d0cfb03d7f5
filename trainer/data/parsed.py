"""A dataset parsed once into Arrow IPC files, and read back a batch at a time.

Parsing NDJSON is the slow part of reading a dataset; every later run on the
same data (a tuning trial, a rerun, a resume) reuses the parse. The cache is
`storage.cache_root()/datasets/<key>/` (`~/.cache/trainer/datasets`, or under
`$XDG_CACHE_HOME`): a few `part-NNNNN.arrow` files of record batches of
`BATCH_ROWS` rows, and `meta.json` (the source's facts, rows kept). The key
hashes the files' bytes (the sha256 that identifies the dataset) with what
shapes the rows: the columns read and their roles, subsample (and split_seed,
which draws it), the cache's format. A run on a cached dataset still hashes the
files, and reads none of their rows. Clearing the cache (`rm -rf
~/.cache/trainer/datasets`) only costs the next run a parse.

A parse writes into a hidden folder beside its key's and renames it into
place once whole: a kill leaves no cache that looks complete (its leftovers
are removed by the next parse of that key). A lock per key makes a second
process wait for the first's parse and then reuse it.

Reading maps the files: memory holds the batch being read, not the dataset.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from trainer.config import NetConfig
from trainer.data import storage, values
from trainer.data.dataset import DatasetSource, HashedFiles, dataset_source, hash_files, read_rows
from trainer.data.ndjson import ReadTally
from trainer.data.values import ColumnRoles
from trainer.faults import fault_point

CACHE_FORMAT = 1  # raise when what a cache holds changes: older caches are then parsed again
BATCH_ROWS = 1 << 16
PART_ROWS = 1 << 22  # rows per IPC file: a few files for the largest datasets
META = "meta.json"
# pyarrow's JSON reader reads up to 32 blocks ahead of the parse (measured): small blocks keep memory small.
PARSE_BLOCK_BYTES = 1 << 20  # a row longer than a block is read line by line


@dataclass(frozen=True)
class ParsedDataset:
    source: DatasetSource  # as load_dataset's: rows_read and numbers_beyond_float32 filled
    folder: Path  # the cache folder
    rows: int  # rows kept (after subsample)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every row in file order, a record batch of up to BATCH_ROWS rows at a time."""
        for part in sorted(self.folder.glob("part-*.arrow")):
            # Read, not memory-mapped: a mapped file's pages stay in the process's resident memory while
            # it is mapped (a part of 4M rows is 600 MB), and a read batch's memory is freed after use.
            with pa.OSFile(str(part)) as file:
                reader = pa.ipc.open_file(file)
                for index in range(reader.num_record_batches):
                    batch = reader.get_batch(index)
                    yield batch if columns is None else batch.select(columns)

    @property
    def schema(self) -> pa.Schema:
        with pa.memory_map(str(self.folder / "part-00000.arrow")) as mapped:
            return pa.ipc.open_file(mapped).schema


def parse_dataset(uri: str, config: NetConfig, out: TextIO | None = None) -> ParsedDataset:
    """The dataset's rows as training reads them (label, features, time, id): the cache if a parse of
    these bytes with these columns is complete, else parsed now, with load_dataset's refusals."""
    roles = ColumnRoles.of(config, with_label=True)
    files = hash_files(uri)
    folder = storage.cache_root() / "datasets" / cache_key(files, roles, config)
    if not (folder / META).is_file():
        with _locked(folder):
            if not (folder / META).is_file():  # another process may have parsed it while this one waited
                _parse_into(folder, files, roles, config, out)
    elif out:
        meta = json.loads((folder / META).read_text())
        print(f"dataset {uri}: {meta['rows']:,} rows, parsed rows reused from {folder}", file=out)
    return _opened(folder, files, roles)


def cache_key(files: HashedFiles, roles: ColumnRoles, config: NetConfig) -> str:
    facts = {
        "format": CACHE_FORMAT,
        "sha256": files.sha256,
        "sizes": files.sizes,  # the same bytes cut into other files are other rows to subsample
        "columns": roles.by_column(),
        "subsample": config.subsample,
        "subsample_seed": config.split_seed if config.subsample < 1 else None,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder.with_name(f".{folder.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def _parse_into(folder: Path, files: HashedFiles, roles: ColumnRoles, config: NetConfig,
                out: TextIO | None) -> None:
    """Parse into a hidden folder (a killed parse's leftovers removed first: this process holds the key's
    lock), then rename it into place whole."""
    started = time.monotonic()
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        tally = ReadTally()
        blocks = read_rows(files, roles, config, tally, PARSE_BLOCK_BYTES)
        rows = _write_parts(partial, blocks, values.decoded_schema(roles))
        source = dataset_source(files, roles, tally)
        meta = {"format": CACHE_FORMAT, "rows": rows, "rows_read": source.rows_read,
                "numbers_beyond_float32": source.numbers_beyond_float32, "sha256": files.sha256,
                "size_bytes": source.size_bytes, "columns": roles.by_column()}
        (partial / META).write_text(json.dumps(meta, indent=1) + "\n")
        fault_point("parse:written")
        shutil.rmtree(folder, ignore_errors=True)  # only a folder that lost its meta.json could be there
        os.rename(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    if out:
        print(f"dataset {files.uri}: {rows:,} rows parsed in {time.monotonic() - started:.1f} s, kept for the next "
              f"runs in {folder}", file=out)


def _write_parts(folder: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> int:
    """Write the batches as IPC files of PART_ROWS rows in batches of BATCH_ROWS; the rows written."""
    rows, writer = 0, None
    try:
        for batch in _rebatched(batches, BATCH_ROWS, schema):
            if rows % PART_ROWS == 0:
                if writer:
                    writer.close()
                writer = pa.ipc.new_file(str(folder / f"part-{rows // PART_ROWS:05d}.arrow"), schema)
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        if writer:
            writer.close()
    return rows


def _rebatched(batches: Iterable[pa.RecordBatch], size: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of `size` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending, schema)
            yield _one_batch(table.slice(0, size))
            pending, count = table.slice(size).to_batches(), count - size
    if count:
        yield _one_batch(pa.Table.from_batches(pending, schema))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0]  # a table of some rows: one batch once combined


def _opened(folder: Path, files: HashedFiles, roles: ColumnRoles) -> ParsedDataset:
    meta: dict[str, Any] = json.loads((folder / META).read_text())
    tally = ReadTally(meta["rows_read"], set(), Counter(meta["numbers_beyond_float32"]))
    return ParsedDataset(dataset_source(files, roles, tally), folder, meta["rows"])
