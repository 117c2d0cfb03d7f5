"""gs:// datasets and packages: the real google-cloud-storage client against gcp-storage-emulator."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from cloud_fixtures import BUCKET, object_names, upload
from conftest import PROJECT_ROOT, SAMPLE, SAMPLE_ROWS, Runner, TrainedPackage, clean_env, output_lines

from trainer.__main__ import main as trainer_main
from trainer.cloud.gcs import UPLOAD_CHUNK_BYTES
from trainer.config import NetConfig
from trainer.data import storage
from trainer.data.dataset import load_dataset, to_frame
from trainer.data.parsed import parse_dataset
from trainer.data.storage import cache_root
from trainer.data.values import ColumnRoles
from trainer.errors import TrainerError

SHARDS = 3


def _shards(sample: Path, folder: Path) -> list[Path]:
    """The sample cut into BigQuery-named shards at line boundaries."""
    lines = sample.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // SHARDS)
    shards = []
    for index in range(SHARDS):
        shard = folder / f"train-{index:012d}.json"
        shard.write_bytes(b"".join(lines[index * size:(index + 1) * size]))
        shards.append(shard)
    return shards


@pytest.fixture
def sharded_sample(gcs_prefix: str, sample_path: Path, tmp_path: Path) -> str:
    """The 2K sample as three shards in the emulator; returns their pattern."""
    for shard in _shards(sample_path, tmp_path):
        upload(shard, f"{gcs_prefix}/ctr/{shard.name}")
    return f"{gcs_prefix}/ctr/train-*.json"


def test_sharded_gcs_dataset_loads_like_the_local_file(sharded_sample: str, sample_path: Path) -> None:
    frame, source = load_dataset(sharded_sample, NetConfig())
    local_frame, local_source = load_dataset(str(sample_path), NetConfig())

    assert len(source.files) == SHARDS and source.files == tuple(sorted(source.files))
    assert source.files[0].endswith("/ctr/train-000000000000.json")
    assert len(frame) == SAMPLE_ROWS
    assert source.sha256 == local_source.sha256  # the same bytes, so the same run identity
    assert frame.equals(local_frame)
    parsed = parse_dataset(sharded_sample, NetConfig())  # into the cache, from the downloads
    assert parsed.source == source and parsed.folder.is_relative_to(cache_root())
    table = pa.Table.from_batches(list(parsed.batches()), parsed.schema)
    assert to_frame(table, ColumnRoles.of(NetConfig(), with_label=True)).equals(local_frame)


def test_a_rerun_reads_the_cache_and_a_rewritten_object_is_fetched_again(
        sharded_sample: str, sample_path: Path, tmp_path: Path) -> None:
    load_dataset(sharded_sample, NetConfig())
    cached = sorted(p for p in (cache_root() / "gcs").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in cached]

    _, again = load_dataset(sharded_sample, NetConfig())
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # not downloaded again

    first_shard = again.files[0]
    smaller = tmp_path / "smaller.json"
    smaller.write_bytes(b"".join(sample_path.read_bytes().splitlines(keepends=True)[:10]))
    upload(smaller, first_shard)
    frame, _ = load_dataset(sharded_sample, NetConfig())
    assert len(frame) == SAMPLE_ROWS - (-(-SAMPLE_ROWS // SHARDS)) + 10


@pytest.mark.parametrize(("uri", "message"), [
    ("{prefix}/ctr/nothing-*.json", "no objects match {prefix}/ctr/nothing-*.json"),
    ("{prefix}/ctr/missing.json", "{prefix}/ctr/missing.json: no such object"),
    ("gs://no-such-bucket/ctr/train-*.json", "gs://no-such-bucket: no such bucket"),
    ("gs://no-such-bucket/ctr/train.json", "gs://no-such-bucket: no such bucket"),
], ids=["no match", "missing object", "missing bucket, pattern", "missing bucket, file"])
def test_a_missing_dataset_is_one_line_naming_it(gcs_prefix: str, uri: str, message: str) -> None:
    with pytest.raises(TrainerError) as error:
        load_dataset(uri.format(prefix=gcs_prefix), NetConfig())
    assert str(error.value).startswith(message.format(prefix=gcs_prefix))
    assert "\n" not in str(error.value)


def test_gzip_shards_load_by_pattern_and_by_folder_and_stay_compressed_in_the_cache(
        gcs_prefix: str, sample_path: Path, tmp_path: Path) -> None:
    from test_data_compressed import gzip_shards

    shards = gzip_shards(sample_path, tmp_path / "export")
    for shard in shards:
        upload(shard, f"{gcs_prefix}/ctr/{shard.name}")
    metadata = tmp_path / "train.metadata.json"
    metadata.write_text(json.dumps({"job_id": "job-gz"}))
    upload(metadata, f"{gcs_prefix}/ctr/train.metadata.json")
    plain, _ = load_dataset(str(sample_path), NetConfig())

    for uri in (f"{gcs_prefix}/ctr/train-*.json.gz", f"{gcs_prefix}/ctr/"):
        frame, source = load_dataset(uri, NetConfig())
        assert [f.rsplit("/", 1)[1] for f in source.files] == [p.name for p in shards], uri
        assert frame.equals(plain), uri
        assert source.sha256 == hashlib.sha256(b"".join(p.read_bytes() for p in shards)).hexdigest()
        assert source.export == {"job_id": "job-gz"}
    cached = sorted(p for p in (cache_root() / "gcs").rglob("*") if p.is_file())
    # Only the objects as stored, compressed: the reader decompresses as it streams.
    assert [p.name for p in cached] == [*sorted(p.name for p in shards), "train.metadata.json"]
    assert all(p.read_bytes()[:2] == b"\x1f\x8b" for p in cached if p.suffix == ".gz")


@pytest.mark.parametrize(("uri", "message"), [
    ("{prefix}/ctr", "{prefix}/ctr: a folder, not an object; end it with '/' to read every *.json and "
                     "*.json.gz in it ({prefix}/ctr/), or pass one object or a pattern"),
    ("{prefix}/empty/", "{prefix}/empty/: no objects in this folder; pass an object, a pattern such as "
                        "{prefix}/empty/train-*.json, or a folder that holds them"),
], ids=["folder without a slash", "empty folder"])
def test_a_gcs_folder_is_read_with_a_slash_and_an_empty_one_says_what_to_pass(
        gcs_prefix: str, tmp_path: Path, uri: str, message: str) -> None:
    shard = tmp_path / "train-000000000000.json"
    shard.write_text('{"is_click": "0"}\n')
    upload(shard, f"{gcs_prefix}/ctr/{shard.name}")
    with pytest.raises(TrainerError) as error:
        load_dataset(uri.format(prefix=gcs_prefix), NetConfig())
    assert str(error.value) == message.format(prefix=gcs_prefix)


def test_scores_written_over_their_gcs_input_are_refused_and_the_object_kept(
        gcs_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.json"
    rows.write_bytes(b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:5]))
    uri = f"{gcs_prefix}/rows.json"
    upload(rows, uri)
    # Refused before the package is read: none is needed to show it.
    status = trainer_main(["score", "--package", str(tmp_path / "absent.zip"), "--input", uri, "--output", uri])
    assert status == 2
    assert capsys.readouterr().err == f"error: --output {uri}: the scores would replace the input file {uri}; " \
                                      f"name another file, e.g. --output {gcs_prefix}/rows.scores.json\n"
    assert object_names(gcs_prefix) == [uri.removeprefix(f"gs://{BUCKET}/")]
    assert storage.read_bytes(uri) == rows.read_bytes()


def test_publishing_to_a_missing_bucket_is_one_line(cloud_env: dict[str, str], tmp_path: Path) -> None:
    package = tmp_path / "run.zip"
    package.write_bytes(b"zip")
    with pytest.raises(TrainerError, match=r"^gs://no-such-bucket: no such bucket"):
        storage.publish(package, "gs://no-such-bucket/runs/run.zip")


@pytest.mark.parametrize("credentials", ["missing", "garbage"])
def test_missing_or_broken_credentials_are_one_line_naming_the_variable(
        run_fab: Runner, tmp_path: Path, credentials: str) -> None:
    key_file = tmp_path / "key.json"
    if credentials == "garbage":
        key_file.write_text("this is not a service-account key")
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "STORAGE_EMULATOR_HOST": "",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    started = time.monotonic()
    proc = run_fab("runs", "--output", f"gs://{BUCKET}/runs", env=env, timeout=60)

    assert proc.returncode == 2
    [line] = output_lines(proc)
    assert line.startswith("error: Cloud Storage: no usable Google credentials")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line
    assert time.monotonic() - started < 30  # no waiting on a network that is not there


def _read_position(pid: int, path: Path) -> int | None:
    """How far process `pid` has read into `path` (from /proc), or None if it has not opened it."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if Path(os.readlink(fd)) == path:
                return int(Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return None


def test_an_upload_killed_half_way_leaves_nothing_visible(cloud_env: dict[str, str], gcs_prefix: str,
                                                          tmp_path: Path) -> None:
    big = tmp_path / "package.zip"
    big.write_bytes(os.urandom(8 * UPLOAD_CHUNK_BYTES))  # a resumable upload of 8 chunks
    target = f"{gcs_prefix}/runs/package.zip"
    publish = "import sys; from pathlib import Path; from trainer.data import storage; " \
              "storage.publish(Path(sys.argv[1]), sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", publish, str(big), target], cwd=PROJECT_ROOT,
                            env=clean_env(cloud_env))
    try:
        position = None
        while proc.poll() is None and not position:
            position = _read_position(proc.pid, big)
        assert proc.poll() is None, "the upload ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert 0 < position < big.stat().st_size

    assert not storage.exists(target)
    assert object_names(gcs_prefix) == []
    storage.publish(big, target)  # the same upload, left to finish, does appear whole
    assert hashlib.sha256(storage.local_copy(target).read_bytes()).digest() == \
        hashlib.sha256(big.read_bytes()).digest()


def test_fab_runs_and_fab_tensorboard_read_packages_in_a_folder_and_in_gcs(
    run_fab: Runner, trained: TrainedPackage, cloud_env: dict[str, str], gcs_prefix: str, tmp_path: Path
) -> None:
    storage.publish(trained.zip_path, f"{gcs_prefix}/runs/{trained.zip_path.name}")
    auc = f"{trained.result.test_metrics['auc']:.4f}"
    for output in (str(trained.output), f"{gcs_prefix}/runs"):
        proc = run_fab("runs", "--output", output, env=cloud_env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        header, row = proc.stdout.splitlines()
        assert header.split()[:4] == ["run", "variant", "written", "epochs"]
        assert row.split()[:2] == [trained.result.run_id, "deep_v1"]
        assert auc in row.split()
    board = tmp_path / "board"
    proc = run_fab("tensorboard", "--output", f"{gcs_prefix}/runs", "--logdir", str(board), "--no-serve",
                   env=cloud_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [run] = [folder for folder in board.iterdir() if folder.is_dir()]
    assert run.name.startswith(trained.result.run_id) and list((run / "train").glob("*tfevents*"))


def test_fab_runs_on_an_empty_prefix_says_so(run_fab: Runner, cloud_env: dict[str, str], gcs_prefix: str) -> None:
    proc = run_fab("runs", "--output", f"{gcs_prefix}/runs", env=cloud_env, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"no packages in {gcs_prefix}/runs"


class _RefusingTokenEndpoint(BaseHTTPRequestHandler):
    """An OAuth token endpoint that refuses every key, as Google's does for a revoked one."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_key_the_token_endpoint_refuses_is_one_line(run_fab: Runner, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_file = tmp_path / "revoked-key.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": private_key,
        "client_email": "trainer@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"http://127.0.0.1:{server.server_port}/token"}))
    try:
        proc = run_fab("runs", "--output", f"gs://{BUCKET}/runs", timeout=120, env={
            "GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "STORAGE_EMULATOR_HOST": "",
            "XDG_CACHE_HOME": str(tmp_path / "cache")})
    finally:
        server.shutdown()
    assert proc.returncode == 2
    [line] = output_lines(proc)
    assert line.startswith(f"error: gs://{BUCKET}: the credentials were refused (invalid_grant")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line
