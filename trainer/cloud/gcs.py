"""gs:// for trainer.data.storage: datasets and packages in Google Cloud Storage.

- Shards: `gs://bucket/prefix/name-*.json` lists the objects under the
  pattern's fixed prefix and keeps those the pattern matches, sorted. A
  prefix ending in '/' is a folder: the objects directly under it.
- Downloads stream to disk (`download_to_filename`, checksummed, the bytes
  as stored: a gzip shard stays compressed, the reader decompresses it), into a
  cache keyed by bucket, generation and name: a re-run reads the same bytes
  without downloading them again, and a rewritten object (a new generation)
  is fetched anew. The cache is `$XDG_CACHE_HOME/trainer` (~/.cache/trainer);
  delete it to reclaim the space.
- Uploads are all-or-nothing: a file up to 8 MB goes in one request, a larger
  one as a resumable upload, whose object only exists once its last chunk is
  committed. Either way a reader sees the whole object or none, even if this
  process dies half-way.
- Transient errors (429, 5xx, dropped connections) are retried by the
  library's DEFAULT_RETRY (exponential backoff, 120 s in all).
- A run writing to gs:// keeps its work folder (epoch backups for resuming)
  under the same cache, so a killed run resumes like a local one.
- Folders (`fab push`'s versions) have no rename here: the files go to a
  staging prefix beside the target, each checked by size and crc32c as the
  listing reports them, then are copied server-side to the target with `last`
  (saved_model.pb) copied last, checked again, and the staging deleted.
- `create_if_absent` uploads with `if_generation_match=0` and `update` with
  the generation it read: a second writer gets 412 Precondition Failed
  instead of overwriting (it then tries the next name, or reads again).
"""

from __future__ import annotations

import base64
import fnmatch
import glob
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import google_crc32c
from google.api_core import exceptions as api_exceptions
from google.cloud.storage import Blob
from google.cloud.storage.retry import DEFAULT_RETRY

from trainer.cloud.clients import cloud_errors, storage_client
from trainer.data import storage
from trainer.errors import TrainerError
from trainer.faults import fault_point

# Resumable uploads send the file in chunks of this size; must be a multiple of 256 KiB.
UPLOAD_CHUNK_BYTES = 8 << 20
# Ranged reads of a package zip (`fab runs` reads only its manifest).
READ_CHUNK_BYTES = 256 << 10
# Read-modify-write attempts of `update` before giving up (each lost race is another writer's success).
UPDATE_ATTEMPTS = 20


@dataclass(frozen=True)
class GcsPath:
    bucket: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> GcsPath:
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise TrainerError(f"{uri}: a gs:// URI needs a bucket, as in gs://BUCKET/path/file.json")
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def blob(self, **options: int) -> Blob:
        return storage_client().bucket(self.bucket).blob(self.name, **options)


class GcsBackend:
    def expand(self, uri: str, *, must_match: bool = True) -> list[str]:
        path = GcsPath.parse(uri)
        if uri.endswith("/"):
            return _folder_objects(uri, path, must_match)
        if not glob.has_magic(path.name):
            if must_match and not self.exists(uri):
                raise _no_such_object(path)
            return [uri]
        with _bucket_errors(path):
            listed = storage_client().list_blobs(path.bucket, prefix=_fixed_prefix(path.name), retry=DEFAULT_RETRY)
            names = sorted(blob.name for blob in listed if fnmatch.fnmatchcase(blob.name, path.name))
        if must_match and not names:
            raise TrainerError(f"no objects match {uri}")
        return [str(GcsPath(path.bucket, name)) for name in names]

    def local_copy(self, uri: str) -> Path:
        path = GcsPath.parse(uri)
        blob = _existing_blob(path)
        cached = storage.cache_root() / "gcs" / path.bucket / str(blob.generation) / path.name
        if not cached.is_file():
            with _bucket_errors(path):
                _download(blob, cached)
        return cached

    def publish(self, local_file: Path, uri: str) -> None:
        path = GcsPath.parse(uri)
        blob = path.blob(chunk_size=UPLOAD_CHUNK_BYTES)
        # Retrying is safe even without a generation precondition: a retry
        # sends the same bytes to the same name.
        with _bucket_errors(path):
            blob.upload_from_filename(str(local_file), retry=DEFAULT_RETRY, checksum="crc32c")

    def work_folder(self, output_uri: str) -> Path:
        path = GcsPath.parse(output_uri)
        return storage.cache_root() / "work" / path.bucket / path.name.strip("/")

    def exists(self, uri: str) -> bool:
        path = GcsPath.parse(uri)
        with _bucket_errors(path):
            return path.blob().exists(retry=DEFAULT_RETRY)

    def delete(self, uri: str) -> None:
        path = GcsPath.parse(uri)
        with _bucket_errors(path), suppress(api_exceptions.NotFound):
            path.blob().delete(retry=DEFAULT_RETRY)

    def open_for_reading(self, uri: str) -> BinaryIO:
        blob = _existing_blob(GcsPath.parse(uri))
        return blob.open("rb", chunk_size=READ_CHUNK_BYTES, retry=DEFAULT_RETRY)  # a seekable binary file

    def list_tree(self, uri: str) -> list[str]:
        path = _folder(uri)
        with _bucket_errors(path):
            return sorted(name.removeprefix(path.name) for name in _checksums(path))

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        path = GcsPath.parse(uri)
        with _bucket_errors(path):
            try:
                path.blob().upload_from_string(data, if_generation_match=0, checksum="crc32c")
                return True
            except api_exceptions.PreconditionFailed:
                return False

    def update(self, uri: str, change: storage.Change) -> bytes:
        path = GcsPath.parse(uri)
        with _bucket_errors(path):
            for _ in range(UPDATE_ATTEMPTS):
                current = storage_client().bucket(path.bucket).get_blob(path.name, retry=DEFAULT_RETRY)
                generation = current.generation if current else 0
                try:
                    data = change(current.download_as_bytes(if_generation_match=generation) if current else None)
                    path.blob().upload_from_string(data, if_generation_match=generation, checksum="crc32c")
                    return data
                except (api_exceptions.PreconditionFailed, api_exceptions.NotFound):
                    continue  # another writer came between the read and the write: read again
        raise TrainerError(f"{path}: {UPDATE_ATTEMPTS} writers in a row changed it first; run the command again")

    def publish_folder(self, local_folder: Path, uri: str, last: str) -> None:
        target = _folder(uri)
        parent, _, name = target.name.rstrip("/").rpartition("/")
        staging = GcsPath(target.bucket, f"{parent}/{storage.STAGING_PREFIX}{name}/".lstrip("/"))
        files = {p.relative_to(local_folder).as_posix(): _crc32c(p) for p in local_folder.rglob("*") if p.is_file()}
        with _bucket_errors(target):
            _delete_under(staging)
            if _checksums(target) == {target.name + n: crc for n, crc in files.items()}:
                return  # a copy killed after its last object: whole already
            _delete_under(target)  # a copy killed half-way: no saved_model.pb, listed in no models.config
            for relative in files:
                blob = GcsPath(target.bucket, staging.name + relative).blob(chunk_size=UPLOAD_CHUNK_BYTES)
                blob.upload_from_filename(str(local_folder / relative), retry=DEFAULT_RETRY, checksum="crc32c")
            _check_copy(staging, files)
            fault_point("push:staged")
            bucket = storage_client().bucket(target.bucket)
            ordered = sorted(files, key=lambda relative: (relative == last, relative))
            for index, relative in enumerate(ordered):
                bucket.copy_blob(bucket.blob(staging.name + relative), bucket, target.name + relative,
                                 retry=DEFAULT_RETRY)
                if index == len(ordered) // 2:
                    fault_point("push:half-copied")
            _check_copy(target, files)
            _delete_under(staging)


def _folder(uri: str) -> GcsPath:
    """A folder's prefix, ending in '/' (so gs://b/models/1 does not take in gs://b/models/10)."""
    path = GcsPath.parse(uri)
    return GcsPath(path.bucket, f"{path.name.rstrip('/')}/" if path.name.strip("/") else "")


def _crc32c(path: Path) -> str:
    """A file's CRC32C as the API reports an object's: base64 of its big-endian bytes."""
    return base64.b64encode(google_crc32c.Checksum(path.read_bytes()).digest()).decode()


def _checksums(prefix: GcsPath) -> dict[str, str]:
    """name -> crc32c of every object under the prefix."""
    listed = storage_client().list_blobs(prefix.bucket, prefix=prefix.name, retry=DEFAULT_RETRY)
    return {blob.name: blob.crc32c for blob in listed}


def _check_copy(prefix: GcsPath, files: dict[str, str]) -> None:
    """Every object of the copy there, with the local file's CRC32C (a size or byte change changes it)."""
    found = _checksums(prefix)
    wrong = [relative for relative, crc in files.items() if found.get(prefix.name + relative) != crc]
    if wrong:
        raise TrainerError(f"{prefix}: {len(wrong)} objects differ from the files copied ({wrong[0]}, ...) after "
                           "the upload; run the command again")


def _delete_under(prefix: GcsPath) -> None:
    for name in _checksums(prefix):
        with suppress(api_exceptions.NotFound):
            storage_client().bucket(prefix.bucket).blob(name).delete(retry=DEFAULT_RETRY)


def _folder_objects(uri: str, path: GcsPath, must_match: bool) -> list[str]:
    """The objects directly under a prefix ending in '/', as a folder's files."""
    with _bucket_errors(path):
        listed = storage_client().list_blobs(path.bucket, prefix=path.name, delimiter="/", retry=DEFAULT_RETRY)
        names = sorted(blob.name for blob in listed if blob.name != path.name)
    if must_match and not names:
        raise TrainerError(f"{uri}: no objects in this folder; pass an object, a pattern such as "
                           f"{uri}train-*.json, or a folder that holds them")
    return [str(GcsPath(path.bucket, name)) for name in names]


def _fixed_prefix(pattern: str) -> str:
    """The part of a glob pattern before its first wildcard: what the server can filter on."""
    return pattern[: min((pattern.index(c) for c in "*?[" if c in pattern), default=len(pattern))]


def _download(blob: Blob, target: Path) -> None:
    """Stream to a hidden name beside the target, then rename: a killed
    download never leaves a truncated file in the cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        # raw_download: the stored bytes even for an object with Content-Encoding
        # gzip, so the dataset's hash is that of the object as stored.
        blob.download_to_filename(str(partial), retry=DEFAULT_RETRY, checksum="crc32c", raw_download=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _existing_blob(path: GcsPath) -> Blob:
    """The object's metadata (generation, size), or a one-line error."""
    with _bucket_errors(path):
        blob = storage_client().bucket(path.bucket).get_blob(path.name, retry=DEFAULT_RETRY)
    if blob is None:
        raise _no_such_object(path)
    return blob


def _no_such_object(path: GcsPath) -> TrainerError:
    """A missing object, worded by whether its bucket exists (the API answers both with 404)."""
    with cloud_errors(f"gs://{path.bucket}"):
        bucket_exists = storage_client().bucket(path.bucket).exists(retry=DEFAULT_RETRY)
    if not bucket_exists:
        return _no_such_bucket(path)
    with _bucket_errors(path):
        in_folder = list(storage_client().list_blobs(path.bucket, prefix=f"{path.name}/", max_results=1))
    if in_folder:
        return TrainerError(f"{path}: a folder, not an object; end it with '/' to read every *.json and *.json.gz "
                            f"in it ({path}/), or pass one object or a pattern")
    return TrainerError(f"{path}: no such object; check the URI (gcloud storage ls {path})")


def _no_such_bucket(path: GcsPath) -> TrainerError:
    return TrainerError(f"gs://{path.bucket}: no such bucket; check the URI or create it "
                        f"(gcloud storage buckets create gs://{path.bucket})")


@contextmanager
def _bucket_errors(path: GcsPath) -> Iterator[None]:
    """Credentials, permissions and a missing bucket as one line each."""
    with cloud_errors(f"gs://{path.bucket}"):
        try:
            yield
        except api_exceptions.NotFound:
            # Objects that are missing are reported by each caller; a 404 that
            # escapes to here means the bucket itself does not exist.
            raise _no_such_bucket(path) from None


storage.register_backend("gs", GcsBackend())
