"""Local Google Cloud for the tests: the real clients against real emulators.

- Cloud Storage: `gcp-storage-emulator`, reached through STORAGE_EMULATOR_HOST,
  which google-cloud-storage reads itself. It is started through
  tests/gcs_emulator.py, which adds the upload preconditions
  (`ifGenerationMatch`) it lacks and Cloud Storage has.
- BigQuery: `bqemulator` (DuckDB inside), reached through BIGQUERY_EMULATOR_HOST.
  It needs DuckDB's spatial extension, which it would download; here it comes
  from PyPI's duckdb-extension-spatial, installed into DuckDB's extension
  folder before the emulator starts.

One gap between them: bqemulator writes `EXPORT DATA` files under
BQEMU_GCS_LOCAL_ROOT on disk, not into the GCS emulator (which keeps its object
list in memory, so files dropped into its folder stay invisible).
`copy_exports_to_gcs` stands in for BigQuery's own write to Cloud Storage.

Each emulator is a subprocess on a free port, started once per session, waited
for, and ended at teardown. One that cannot start fails the tests that need it
(never a skip): the emulators are in requirements-dev.txt.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest

PROJECT = "trainer-test"
BUCKET = "trainer-test"
STARTUP_TIMEOUT_S = 60
RAW_DATASET = "raw_events"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Emulator:
    url: str
    process: subprocess.Popen
    log: Path


@dataclass(frozen=True)
class CloudEmulators:
    gcs: Emulator
    bigquery: Emulator
    bigquery_gcs_root: Path  # where bqemulator writes what it exports to gs://

    @property
    def env(self) -> dict[str, str]:
        """What a user sets to point the trainer at these emulators."""
        return {"STORAGE_EMULATOR_HOST": self.gcs.url, "BIGQUERY_EMULATOR_HOST": self.bigquery.url,
                "GOOGLE_CLOUD_PROJECT": PROJECT}


def missing_service(message: str) -> NoReturn:
    """A service the tests need is missing: a failure in CI (CI=true, where `make test`
    provides every service), a skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], ready_path: str, port: int, log: Path, env: dict[str, str]) -> Emulator:
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                   cwd=log.parent, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2):
                return Emulator(url, process, log)
        except OSError:
            time.sleep(0.2)
    stop_process(process)
    pytest.fail(f"{command[0]} did not start on port {port}; its log ({log}):\n{log.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _install_duckdb_spatial() -> None:
    """bqemulator runs `INSTALL spatial`, which downloads unless DuckDB already has it."""
    import duckdb
    from duckdb_extensions import import_extension

    with duckdb.connect() as connection:
        import_extension("spatial", con=connection)


@pytest.fixture(scope="session")
def cloud_emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudEmulators]:
    root = tmp_path_factory.mktemp("emulators")
    gcs_port, rest_port, grpc_port = free_port(), free_port(), free_port()
    gcs = _start([sys.executable, str(Path(__file__).with_name("gcs_emulator.py")), "start", "--port", str(gcs_port),
                  "--default-bucket", BUCKET, "--in-memory"], "/", gcs_port, root / "gcs.log", {})
    try:
        _install_duckdb_spatial()
        exports = root / "bigquery-gcs"
        exports.mkdir()
        bigquery = _start([str(BIN / "bqemulator"), "start", "--rest-port", str(rest_port), "--grpc-port",
                           str(grpc_port), "--project", PROJECT, "--log-level", "warning"],
                          "/readyz", rest_port, root / "bigquery.log", {"BQEMU_GCS_LOCAL_ROOT": str(exports)})
    except BaseException:
        stop_process(gcs.process)
        raise
    yield CloudEmulators(gcs, bigquery, exports)
    stop_process(bigquery.process)
    stop_process(gcs.process)


@pytest.fixture
def cloud_env(cloud_emulators: CloudEmulators, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """This process pointed at the emulators, with its own download cache; also
    what a command needs in its environment to do the same."""
    env = {**cloud_emulators.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def gcs_prefix(cloud_env: dict[str, str]) -> str:
    """A fresh gs:// folder in the emulator's bucket, for one test."""
    return f"gs://{BUCKET}/{uuid.uuid4().hex[:12]}"


def storage_client():  # -> google.cloud.storage.Client
    from google.cloud import storage

    return storage.Client()  # STORAGE_EMULATOR_HOST: anonymous, talks to the emulator


def upload(local: Path, uri: str) -> None:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    storage_client().bucket(bucket).blob(name).upload_from_filename(str(local))


def object_names(prefix_uri: str) -> list[str]:
    bucket, _, prefix = prefix_uri.removeprefix("gs://").partition("/")
    return sorted(blob.name for blob in storage_client().list_blobs(bucket, prefix=prefix))


def copy_exports_to_gcs(emulators: CloudEmulators) -> list[str]:
    """Move what bqemulator exported to gs:// into the GCS emulator (the gap
    described above); returns the gs:// URIs that appeared."""
    copied = []
    for path in sorted(p for p in emulators.bigquery_gcs_root.rglob("*") if p.is_file()):
        uri = "gs://" + path.relative_to(emulators.bigquery_gcs_root).as_posix()
        upload(path, uri)
        path.unlink()
        copied.append(uri)
    return copied


@pytest.fixture(scope="session")
def raw_event_tables(cloud_emulators: CloudEmulators, sample_path: Path) -> pd.DataFrame:
    """raw_events.impressions, clicks and items in the BigQuery emulator, made
    from the 2K sample, so sql/training_table.sql rebuilds it; returns the sample."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    sample = pd.read_json(sample_path, lines=True, convert_dates=False, dtype={"hour": str, "day_of_week": str})
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=cloud_emulators.bigquery.url))
    client.create_dataset(RAW_DATASET, exists_ok=True)
    for table, (schema, frame) in _raw_tables(sample).items():
        client.create_table(bigquery.Table(f"{PROJECT}.{RAW_DATASET}.{table}", schema=schema), exists_ok=True)
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        errors = client.insert_rows_json(f"{PROJECT}.{RAW_DATASET}.{table}", rows)
        assert not errors, errors
    return sample


def _raw_tables(sample: pd.DataFrame) -> dict[str, tuple[list, pd.DataFrame]]:
    from google.cloud.bigquery import SchemaField

    sample = sample.assign(event_time=pd.to_datetime(sample["event_time"].str.removesuffix(" UTC"), utc=True))
    published = sample["event_time"] - pd.to_timedelta(sample["item_age_hours"], unit="h")
    items = (sample.assign(published_at=published.dt.floor("s"))
             .groupby("item_id", as_index=False).agg(category=("category", "first"), title=("title", "first"),
                                                     published_at=("published_at", "min")))
    clicked = sample[sample["is_click"] == 1]
    # Every clicked impression twice: the query must count a double click once.
    clicks = pd.concat([clicked, clicked])[["impression_id", "event_time"]].rename(columns={"event_time": "click_time"})
    text, stamp = "STRING", "TIMESTAMP"
    return {
        "impressions": ([SchemaField(n, t) for n, t in [("impression_id", text), ("event_time", stamp),
                         ("publisher_id", text), ("item_id", text), ("country", text), ("platform", text),
                         ("position", "INT64")]],
                        sample[["impression_id", "event_time", "publisher_id", "item_id", "country", "platform",
                                "position"]]),
        "items": ([SchemaField("item_id", text), SchemaField("category", text), SchemaField("title", text),
                   SchemaField("published_at", stamp)], items),
        "clicks": ([SchemaField("impression_id", text), SchemaField("click_time", stamp)], clicks),
    }
