"""fab dataset: run a SQL file in BigQuery and write its rows as NDJSON, with metadata beside them.

    dry run (checks the SQL and tables, free) -> run -> rows as NDJSON -> metadata

Values reach the query only as query parameters (`--param start_date=2026-10-01`
becomes `@start_date`), never formatted into the SQL. A `gs://` destination is
written by BigQuery itself, `EXPORT DATA` in shards named `name-000000000000.json`
(so it needs one `*`), gzipped with `compression="gzip"` (`name-*.json.gz`); a
local one by streaming the result page by page into one file in the same format:
INT64 as strings, FLOAT64 as numbers, NULL fields left out, TIMESTAMP as
"YYYY-MM-DD HH:MM:SS UTC". Either way trainer.data.dataset reads it.

The metadata (query hash, job id, rows, schema, time, parameters) goes to
`trainer.data.dataset.export_metadata_uri(destination)`; a run on the data copies it
into its package's dataset.json.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from trainer.cloud.clients import api_message, bigquery_client, cloud_errors
from trainer.data import storage
from trainer.data.dataset import export_metadata_uri
from trainer.errors import TrainerError
from trainer.library_internals import export_data_statistics

# google-cloud-bigquery retries 5xx answers for 10 minutes by default; a user waits 2 at most.
RETRY = bigquery.DEFAULT_RETRY.with_timeout(120)
PAGE_ROWS = 50_000
# BigQuery numbers a wildcard export's shards from 0, in 12 digits.
FIRST_SHARD = "0" * 12

PARAM_TYPES: dict[str, Callable[[str], Any]] = {
    "INT64": int,
    "FLOAT64": float,
    "BOOL": lambda v: {"true": True, "false": False}[v.lower()],
    "DATE": dt.date.fromisoformat,
    "TIMESTAMP": dt.datetime.fromisoformat,
    "NUMERIC": Decimal,
    "STRING": str,
}
# The order types are tried in when a --param names none.
INFERRED_TYPES = ("INT64", "FLOAT64", "BOOL", "DATE", "STRING")


@dataclass(frozen=True)
class ExportRequest:
    sql_file: Path
    destination: str
    params: tuple[str, ...] = ()
    project: str | None = None  # None: GOOGLE_CLOUD_PROJECT or the credentials' project
    compression: str = ""  # "gzip": BigQuery gzips each shard (gs:// destinations only)


@dataclass(frozen=True)
class ExportResult:
    destination: str
    metadata_uri: str
    rows: int
    files: int
    job_id: str


def export_dataset(request: ExportRequest, out: TextIO = sys.stdout) -> ExportResult:
    """Run the query, write its rows and their metadata; returns what was written."""
    sql = _read_sql(request.sql_file)
    _check_compression(request)
    parameters = [parse_param(text) for text in request.params]
    client = bigquery_client(request.project)
    with _query_errors(request.sql_file):
        schema = _dry_run(client, sql, parameters)
        # The one place the destination's scheme matters: BigQuery writes to GCS
        # itself; anywhere else the rows come through this process.
        if storage.scheme_of(request.destination) == "gs":
            _check_gcs_destination(request.destination)
            job, rows, files = _export_to_gcs(client, sql, parameters, request.destination,
                                              gzip=bool(request.compression))
        else:
            job, rows, files = _stream_to_file(client, sql, parameters, request.destination)
    if rows == 0:
        raise TrainerError(f"{request.sql_file}: the query returned no rows, so there is nothing to train on; "
                           "check the --param values (a date range with no data?)")
    metadata = _metadata(request, sql, parameters, job, schema, rows, files)
    metadata_uri = export_metadata_uri(request.destination)
    _publish_json(metadata, metadata_uri)
    print(f"exported {rows:,} rows in {files} file(s) to {request.destination} (job {job.job_id}); "
          f"metadata {metadata_uri}", file=out)
    return ExportResult(request.destination, metadata_uri, rows, files, job.job_id)


def parse_param(text: str) -> bigquery.ScalarQueryParameter:
    """`name=value` (type inferred: INT64, FLOAT64, BOOL, DATE, else STRING) or `name:TYPE=value`."""
    spec, equals, raw = text.partition("=")
    name, _, type_name = spec.partition(":")
    if not equals or not name.isidentifier():
        raise TrainerError(f"--param {text!r}: expected NAME=VALUE or NAME:TYPE=VALUE, e.g. start_date=2026-10-01")
    if type_name:
        type_name = type_name.upper()
        if type_name not in PARAM_TYPES:
            raise TrainerError(f"--param {text!r}: unknown type {type_name}; use one of {', '.join(PARAM_TYPES)}")
        return bigquery.ScalarQueryParameter(name, type_name, _convert(text, type_name, raw))
    for candidate in INFERRED_TYPES:
        try:
            return bigquery.ScalarQueryParameter(name, candidate, PARAM_TYPES[candidate](raw))
        except (ValueError, KeyError):
            continue
    raise AssertionError("STRING accepts any value")


def _convert(text: str, type_name: str, raw: str) -> Any:
    try:
        return PARAM_TYPES[type_name](raw)
    except (ValueError, KeyError, ArithmeticError):
        raise TrainerError(f"--param {text!r}: {raw!r} is not a valid {type_name}") from None


def _read_sql(sql_file: Path) -> str:
    try:
        text = sql_file.read_text()
    except OSError as exc:
        raise TrainerError(f"{sql_file}: cannot read the SQL file ({exc.strerror})") from None
    # One statement: EXPORT DATA wraps it, so a trailing ';' would end it early.
    sql = text.strip().rstrip(";").rstrip()
    if not sql:
        raise TrainerError(f"{sql_file}: the SQL file is empty; it needs one SELECT statement")
    return sql


def _dry_run(client: bigquery.Client, sql: str, parameters: list[Any]) -> list[bigquery.SchemaField]:
    """The result's schema; a syntax error or a missing table fails here, before anything runs."""
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=parameters)
    return list(client.query(sql, job_config=config, retry=RETRY).schema or [])


def _check_compression(request: ExportRequest) -> None:
    """--compression and the destination's name agree, before any query cost: a
    reader finds a gzip shard by its bytes, but a person by its name."""
    compression, destination = request.compression.lower(), request.destination
    if compression not in ("", "gzip"):
        raise TrainerError(f"--compression {request.compression}: unknown; use gzip, or leave it out for plain NDJSON")
    if compression and storage.scheme_of(destination) != "gs":
        raise TrainerError(f"--compression gzip is for gs:// destinations, where BigQuery gzips its shards; "
                           f"{destination} is written plain (leave --compression out, or gzip the file afterwards)")
    if compression and not destination.endswith(".json.gz"):
        raise TrainerError(f"{destination}: --compression gzip writes gzip shards; end --dest with .json.gz, "
                           "e.g. gs://BUCKET/data/train-*.json.gz")
    if not compression and destination.endswith(".gz"):
        raise TrainerError(f"{destination}: ends in .gz but the export would be plain; add --compression gzip "
                           "(gs:// only) or end --dest with .json")


def _check_gcs_destination(destination: str) -> None:
    """A shard pattern BigQuery can fill and nothing there yet; checked before any query cost.

    Listing it also fails fast on a missing bucket or storage credentials.
    """
    if destination.count("*") != 1 or "'" in destination or "\\" in destination:
        raise TrainerError(f"{destination}: a gs:// destination needs exactly one * where BigQuery numbers "
                           "its shards (and no quotes), e.g. gs://BUCKET/data/train-*.json[.gz]")
    earlier = storage.expand(destination, must_match=False)
    if earlier:
        # An export rewrites only the shards it writes: a smaller one would leave
        # an earlier export's last shards in the pattern, mixed into the dataset.
        raise TrainerError(f"{destination} already holds {len(earlier)} file(s) of an earlier export, which would "
                           "mix with this one; choose another --dest or delete them "
                           f"(gcloud storage rm '{destination}')")


def _export_to_gcs(client: bigquery.Client, sql: str, parameters: list[Any],
                   destination: str, gzip: bool) -> tuple[bigquery.QueryJob, int, int]:
    # The URI is ours (checked above) and OPTIONS takes only literals; the
    # user's values still travel as query parameters.
    compression = ", compression = 'GZIP'" if gzip else ""
    statement = (f"EXPORT DATA OPTIONS (uri = '{destination}', format = 'JSON', overwrite = true{compression}) "
                 f"AS\n{sql}")
    job = client.query(statement, job_config=bigquery.QueryJobConfig(query_parameters=parameters), retry=RETRY)
    job.result(retry=RETRY)
    statistics = export_data_statistics(job)  # no public accessor: library_internals says why
    return job, int(statistics.get("rowCount", 0)), int(statistics.get("fileCount", 0))


def _stream_to_file(client: bigquery.Client, sql: str, parameters: list[Any],
                    destination: str) -> tuple[bigquery.QueryJob, int, int]:
    """Rows page by page into one file, published whole once complete (or not at all if empty)."""
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=parameters), retry=RETRY)
    result = job.result(page_size=PAGE_ROWS, retry=RETRY)
    encoders = [(field.name, _encoder(field)) for field in result.schema]
    rows = 0
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "rows.json"
        with staged.open("w") as f:
            for page in result.pages:
                for row in page:
                    f.write(_json_line(row, encoders))
                    rows += 1
        if rows:
            storage.publish(staged, destination.replace("*", FIRST_SHARD))
    return job, rows, 1 if rows else 0


def _json_line(row: bigquery.Row, encoders: list[tuple[str, Callable[[Any], Any]]]) -> str:
    record = {name: encode(value) for (name, encode), value in zip(encoders, row.values()) if value is not None}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _encoder(field: bigquery.SchemaField) -> Callable[[Any], Any]:
    """How BigQuery's NDJSON export writes a value of the field's type."""
    if field.mode == "REPEATED" or field.field_type in ("RECORD", "STRUCT"):
        return lambda value: json.loads(json.dumps(value, default=str))
    return {
        "INTEGER": str, "INT64": str, "NUMERIC": str, "BIGNUMERIC": str,
        "TIMESTAMP": _timestamp,
        "DATE": _isoformat, "DATETIME": _isoformat, "TIME": _isoformat,
        "BYTES": lambda value: base64.b64encode(value).decode("ascii"),
    }.get(field.field_type, lambda value: value)


def _timestamp(value: dt.datetime) -> str:
    seconds = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    fraction = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    return f"{seconds}{fraction} UTC"


def _isoformat(value: dt.date | dt.time) -> str:
    return value.isoformat()


def _metadata(request: ExportRequest, sql: str, parameters: list[Any], job: bigquery.QueryJob,
              schema: list[bigquery.SchemaField], rows: int, files: int) -> dict[str, Any]:
    return {
        "destination": request.destination,
        "sql_file": str(request.sql_file),
        "query_sha256": hashlib.sha256(sql.encode()).hexdigest(),
        "params": {p.name: {"type": p.type_, "value": str(p.value)} for p in parameters},
        "project": job.project,
        "job_id": job.job_id,
        "location": job.location,
        "rows": rows,
        "files": files,
        "schema": [field.to_api_repr() for field in schema],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _publish_json(data: dict[str, Any], uri: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "metadata.json"
        staged.write_text(json.dumps(data, indent=2) + "\n")
        storage.publish(staged, uri)


@contextmanager
def _query_errors(sql_file: Path) -> Iterator[None]:
    """BigQuery's answer to a bad query (syntax, a missing table or column) as one line."""
    with cloud_errors("BigQuery"):
        try:
            yield
        except (api_exceptions.BadRequest, api_exceptions.NotFound) as exc:
            raise TrainerError(f"{sql_file}: {api_message(exc)}") from None
