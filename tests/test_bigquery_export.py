"""fab dataset: the real BigQuery client against bqemulator, sql/training_table.sql on raw event tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from cloud_fixtures import BUCKET, CloudEmulators, copy_exports_to_gcs, object_names, upload
from conftest import PROJECT_ROOT, Runner, output_lines

from trainer.cloud.bigquery_export import ExportRequest, export_dataset, parse_param
from trainer.config import NetConfig
from trainer.data import storage
from trainer.data.dataset import load_dataset
from trainer.errors import TrainerError

TRAINING_SQL = PROJECT_ROOT / "sql" / "training_table.sql"
OCTOBER = ("start_date=2026-10-01", "end_date=2026-10-31")


@pytest.mark.parametrize(("text", "type_", "value"), [
    ("days=3", "INT64", 3),
    ("rate=0.25", "FLOAT64", 0.25),
    ("only_mobile=true", "BOOL", True),
    ("start_date=2026-10-01", "DATE", dt.date(2026, 10, 1)),
    ("country=JP", "STRING", "JP"),
    ("code:STRING=0042", "STRING", "0042"),
    ("since:timestamp=2026-10-01T12:00:00", "TIMESTAMP", dt.datetime(2026, 10, 1, 12)),
])
def test_a_param_is_typed_by_its_value_or_by_its_declared_type(text: str, type_: str, value: object) -> None:
    parameter = parse_param(text)
    assert (parameter.type_, parameter.value) == (type_, value)


@pytest.mark.parametrize(("text", "message"), [
    ("start_date", "expected NAME=VALUE"),
    ("days:INT64=three", "'three' is not a valid INT64"),
    ("days:INTEGER=3", "unknown type INTEGER"),
])
def test_a_bad_param_is_one_line_saying_what_to_write(text: str, message: str) -> None:
    with pytest.raises(TrainerError, match=message):
        parse_param(text)


def test_a_local_export_is_the_training_table_with_its_metadata(cloud_env: dict[str, str], tmp_path: Path,
                                                                  raw_event_tables: pd.DataFrame) -> None:
    destination = str(tmp_path / "train.json")
    result = export_dataset(ExportRequest(TRAINING_SQL, destination, OCTOBER))

    frame, source = load_dataset(destination, NetConfig())
    sample = raw_event_tables.set_index("impression_id")
    assert result.rows == len(frame) == len(sample)
    # Each click counted once although the clicks table holds each one twice.
    assert frame["is_click"].sum() == sample["is_click"].sum()
    exported = frame.set_index("impression_id")
    assert (exported["hour"].astype(str) == sample.loc[exported.index, "hour"]).all()
    assert (exported["title"].astype(str) == sample.loc[exported.index, "title"]).all()
    assert source.export is not None
    assert source.export["job_id"] == result.job_id
    assert source.export["rows"] == len(sample)
    assert source.export["query_sha256"] == hashlib.sha256(TRAINING_SQL.read_text().strip().encode()).hexdigest()
    assert source.export["params"]["start_date"] == {"type": "DATE", "value": "2026-10-01"}
    assert [f["name"] for f in source.export["schema"]][-1] == "is_click"


def test_a_local_export_writes_bigquery_s_json_encoding(cloud_env: dict[str, str], tmp_path: Path,
                                                        raw_event_tables: pd.DataFrame) -> None:
    destination = tmp_path / "train.json"
    export_dataset(ExportRequest(TRAINING_SQL, str(destination), OCTOBER))

    first = json.loads(destination.read_text().splitlines()[0])
    assert isinstance(first["position"], str) and isinstance(first["is_click"], str)  # INT64 as strings
    assert isinstance(first["item_age_hours"], float)
    assert first["event_time"].endswith(" UTC")


def test_a_gcs_export_is_sharded_by_bigquery_and_loads_with_its_metadata(
        cloud_env: dict[str, str], cloud_emulators: CloudEmulators, gcs_prefix: str,
        raw_event_tables: pd.DataFrame) -> None:
    destination = f"{gcs_prefix}/ctr/train-*.json"
    result = export_dataset(ExportRequest(TRAINING_SQL, destination, OCTOBER))
    copy_exports_to_gcs(cloud_emulators)

    frame, source = load_dataset(destination, NetConfig())
    assert len(frame) == result.rows == len(raw_event_tables)
    assert source.files == (f"{gcs_prefix}/ctr/train-000000000000.json",)
    assert result.metadata_uri == f"{gcs_prefix}/ctr/train.metadata.json"
    assert source.export is not None and source.export["job_id"] == result.job_id
    assert source.export["destination"] == destination


def test_a_gzip_export_to_gcs_writes_json_gz_shards_that_load_by_pattern_or_folder(
        cloud_env: dict[str, str], cloud_emulators: CloudEmulators, gcs_prefix: str,
        raw_event_tables: pd.DataFrame, tmp_path: Path) -> None:
    plain = tmp_path / "train.json"
    export_dataset(ExportRequest(TRAINING_SQL, str(plain), OCTOBER))
    destination = f"{gcs_prefix}/ctr/train-*.json.gz"
    result = export_dataset(ExportRequest(TRAINING_SQL, destination, OCTOBER, compression="gzip"))
    copied = copy_exports_to_gcs(cloud_emulators)

    assert copied == [f"{gcs_prefix}/ctr/train-000000000000.json.gz"]
    assert storage.local_copy(copied[0]).read_bytes()[:2] == b"\x1f\x8b"  # BigQuery's gzip, as stored
    assert result.metadata_uri == f"{gcs_prefix}/ctr/train.metadata.json"
    expected = load_dataset(str(plain), NetConfig())[0].sort_values("impression_id", ignore_index=True)
    for uri in (destination, f"{gcs_prefix}/ctr/"):
        frame, source = load_dataset(uri, NetConfig())
        assert source.files == tuple(copied), uri
        assert source.export is not None and source.export["job_id"] == result.job_id
        frame = frame.sort_values("impression_id", ignore_index=True)
        for column in expected:
            assert list(frame[column].astype(str)) == list(expected[column].astype(str)), (uri, column)


@pytest.mark.parametrize(("dest", "compression", "message"), [
    ("{tmp}/train.json", "gzip", "--compression gzip is for gs:// destinations, where BigQuery gzips its shards; "
                                 "{tmp}/train.json is written plain"),
    ("gs://{bucket}/ctr/train-*.json", "zip", "--compression zip: unknown; use gzip"),
    ("gs://{bucket}/ctr/train-*.json", "gzip", "gs://{bucket}/ctr/train-*.json: --compression gzip writes gzip "
                                               "shards; end --dest with .json.gz"),
    ("gs://{bucket}/ctr/train-*.json.gz", "", "gs://{bucket}/ctr/train-*.json.gz: ends in .gz but the export "
                                              "would be plain; add --compression gzip"),
], ids=["local destination", "unknown codec", "gzip without .gz", ".gz without gzip"])
def test_a_compression_that_does_not_fit_the_destination_is_one_line_before_any_query(
        run_fab: Runner, tmp_path: Path, dest: str, compression: str, message: str) -> None:
    dest = dest.format(tmp=tmp_path, bucket=BUCKET)
    proc = run_fab("dataset", "--sql", str(TRAINING_SQL), "--dest", dest, "--compression", compression,
                   env={"BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"},
                   timeout=120)
    assert proc.returncode == 2, proc.stderr
    [line] = output_lines(proc)
    assert line.startswith(f"error: {message.format(tmp=tmp_path, bucket=BUCKET)}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("sql", "params", "message"), [
    ("SELEC impression_id FROM raw_events.impressions", (), "Syntax error"),
    ("SELECT * FROM raw_events.no_such_table", (), "raw_events.no_such_table"),
    (TRAINING_SQL.read_text(), ("start_date=2020-01-01", "end_date=2020-01-31"), "the query returned no rows"),
], ids=["syntax error", "missing table", "empty result"])
def test_a_bad_query_is_one_line_and_writes_nothing(run_fab: Runner, cloud_env: dict[str, str], tmp_path: Path,
                                                    raw_event_tables: pd.DataFrame, sql: str,
                                                    params: tuple[str, ...], message: str) -> None:
    sql_file = tmp_path / "query.sql"
    sql_file.write_text(sql)
    destination = tmp_path / "train.json"
    proc = run_fab("dataset", "--sql", str(sql_file), "--dest", str(destination),
                   *(arg for p in params for arg in ("--param", p)), env=cloud_env, timeout=120)

    assert proc.returncode == 2, proc.stderr
    [line] = output_lines(proc)
    assert line.startswith(f"error: {sql_file}: ") and message in line
    assert list(tmp_path.glob("train*")) == []


def test_an_export_to_a_missing_bucket_fails_before_the_query_runs(run_fab: Runner, cloud_env: dict[str, str],
                                                                   raw_event_tables: pd.DataFrame) -> None:
    proc = run_fab("dataset", "--sql", str(TRAINING_SQL), "--dest", "gs://no-such-bucket/ctr/train-*.json",
                   *(arg for p in OCTOBER for arg in ("--param", p)), env=cloud_env, timeout=120)

    assert proc.returncode == 2
    assert output_lines(proc) == ["error: gs://no-such-bucket: no such bucket; check the URI or create it "
                                  "(gcloud storage buckets create gs://no-such-bucket)"]


def test_a_gcs_destination_without_a_shard_wildcard_is_refused(cloud_env: dict[str, str], gcs_prefix: str,
                                                               raw_event_tables: pd.DataFrame) -> None:
    with pytest.raises(TrainerError, match=r"needs exactly one \*"):
        export_dataset(ExportRequest(TRAINING_SQL, f"{gcs_prefix}/train.json", OCTOBER))
    assert object_names(gcs_prefix) == []
    assert storage.exists(f"{gcs_prefix}/train.metadata.json") is False


def test_an_export_over_an_earlier_one_is_refused_before_the_query_runs(
        run_fab: Runner, cloud_env: dict[str, str], gcs_prefix: str, raw_event_tables: pd.DataFrame,
        tmp_path: Path) -> None:
    earlier = tmp_path / "train-000000000007.json"
    earlier.write_text('{"impression_id": "old"}\n')
    upload(earlier, f"{gcs_prefix}/ctr/train-000000000007.json")
    destination = f"{gcs_prefix}/ctr/train-*.json"
    proc = run_fab("dataset", "--sql", str(TRAINING_SQL), "--dest", destination,
                   *(arg for p in OCTOBER for arg in ("--param", p)), env=cloud_env, timeout=120)

    assert proc.returncode == 2
    assert output_lines(proc) == [f"error: {destination} already holds 1 file(s) of an earlier export, which would "
                                  f"mix with this one; choose another --dest or delete them "
                                  f"(gcloud storage rm '{destination}')"]
    assert object_names(gcs_prefix) == [f"{gcs_prefix.removeprefix(f'gs://{BUCKET}/')}/ctr/train-000000000007.json"]
