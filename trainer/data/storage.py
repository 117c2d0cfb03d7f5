"""One file API for datasets and packages, chosen by the URI's scheme.

Training code calls `expand`, `local_copy` and `publish` and never asks where a
file lives; `fab push` adds folders published whole (`publish_folder`), files
created only where none is (`create_if_absent`) and read-modify-write under a
lock or a generation precondition (`update`). Local paths (and `file://`) are served here; other schemes
register a backend with `register_backend`, and nothing else in the trainer
changes. `gs://` is trainer.cloud.gcs, imported on its first use so that a run on
local files never loads the Google Cloud clients.
"""

from __future__ import annotations

import fcntl
import glob
import importlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from trainer.errors import TrainerError
from trainer.faults import fault_point

# A folder published by publish_folder is first copied under this prefix beside its final name: not all
# digits, so TF Serving never takes it for a version.
STAGING_PREFIX = ".staging-"
Change = Callable[[bytes | None], bytes]  # update's function: the current bytes (None: no file) -> the new ones

# The XDG convention's cache folder, which fab points a container at a mounted cache.
CACHE_HOME_VARIABLE = "XDG_CACHE_HOME"


class StorageBackend(Protocol):
    def expand(self, uri: str, *, must_match: bool = True) -> list[str]:
        """The files a URI names: itself, the shards a `*` pattern matches, or the
        files directly in a folder (see `is_folder`), sorted.
        Nothing there is an error, or [] where `must_match` is false."""

    def local_copy(self, uri: str) -> Path:
        """A local path holding the file's bytes (the file itself where it is local)."""

    def publish(self, local_file: Path, uri: str) -> None:
        """Put a finished file at `uri` all at once: readers see all of it or nothing."""

    def work_folder(self, output_uri: str) -> Path:
        """A local folder for a run's working files (kept across a kill, for resuming)."""

    def exists(self, uri: str) -> bool:
        """Whether a file is at `uri`."""

    def delete(self, uri: str) -> None:
        """Remove the file at `uri`; one already gone is not an error."""

    def open_for_reading(self, uri: str) -> BinaryIO:
        """The file as a seekable binary stream (remote bytes are fetched as they are read)."""

    def list_tree(self, uri: str) -> list[str]:
        """Every file under the folder `uri`, at any depth, as sorted names relative to it ([]: none)."""

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        """Write `data` at `uri` whole, only if no file is there; False (nothing written) if one is."""

    def update(self, uri: str, change: Change) -> bytes:
        """Replace the file with `change(its bytes)` such that two updaters never lose each other's change."""

    def publish_folder(self, local_folder: Path, uri: str, last: str) -> None:
        """Put a local folder's files under `uri`, never visible there half-copied; `last` (a relative
        name) appears last where files appear one by one. Whole already: kept; a killed attempt's
        leftovers (its staging, a partial copy) are removed first."""


class LocalBackend:
    def expand(self, uri: str, *, must_match: bool = True) -> list[str]:
        path = _local_path(uri)
        if glob.has_magic(str(path)):
            matches = sorted(glob.glob(str(path)))
            if must_match and not matches:
                raise TrainerError(f"no files match {uri}")
            return matches
        if path.is_dir():
            return _folder_files(uri, path, must_match)
        if path.exists() and not path.is_file():
            # A FIFO, /dev/stdin, a device: the rows are hashed, then parsed, so they are read more than once.
            raise TrainerError(f"{uri}: not a regular file (a pipe or device), and a dataset is read more than "
                               "once; save the rows to a file and pass that")
        if not path.is_file():
            if must_match:
                raise TrainerError(f"{uri}: no such file; check the path or pass --dataset PATH")
            return []
        return [str(path)]

    def local_copy(self, uri: str) -> Path:
        return _local_path(uri)

    def publish(self, local_file: Path, uri: str) -> None:
        target = _local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One rename: the package appears whole or not at all, even if this process dies.
        partial = _partial_beside(target)
        try:
            shutil.copyfile(local_file, partial)
            os.replace(partial, target)
            # A publish of the same file killed earlier left its partial copy: the target is whole now.
            for stale in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
                stale.unlink(missing_ok=True)
        finally:
            partial.unlink(missing_ok=True)

    def work_folder(self, output_uri: str) -> Path:
        return _local_path(output_uri) / ".work"

    def exists(self, uri: str) -> bool:
        return _local_path(uri).is_file()

    def delete(self, uri: str) -> None:
        _local_path(uri).unlink(missing_ok=True)

    def open_for_reading(self, uri: str) -> BinaryIO:
        return _local_path(uri).open("rb")

    def list_tree(self, uri: str) -> list[str]:
        folder = _local_path(uri)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        target = _local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial_beside(target)
        try:
            partial.write_bytes(data)
            os.link(partial, target)  # fails if the name exists: whole content, created exclusively
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def update(self, uri: str, change: Change) -> bytes:
        target = _local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.with_name(f".{target.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            data = change(target.read_bytes() if target.is_file() else None)
            partial = _partial_beside(target)
            try:
                partial.write_bytes(data)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        return data

    def publish_folder(self, local_folder: Path, uri: str, last: str) -> None:
        target = _local_path(uri)
        for stale in target.parent.glob(f"{STAGING_PREFIX}{glob.escape(target.name)}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.is_dir():
            return  # only a rename puts it there, so it is whole
        staging = target.with_name(f"{STAGING_PREFIX}{target.name}-{os.getpid()}")
        shutil.copytree(local_folder, staging)
        fault_point("push:staged")
        os.rename(staging, target)  # one step: TF Serving sees no version, then the whole version


def _partial_beside(target: Path) -> Path:
    """A hidden temporary name in the target's folder (listings skip it), renamed or linked into place whole."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")


def _folder_files(uri: str, folder: Path, must_match: bool) -> list[str]:
    # Hidden names are work in progress (a `.partial` upload), never content.
    files = sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if must_match and not files:
        raise TrainerError(f"{uri}: an empty folder; pass a file, a pattern such as "
                           f"{join(uri, 'train-*.json')}, or a folder that holds them")
    return files


def _local_path(uri: str) -> Path:
    return Path(urlparse(uri).path if uri.startswith("file://") else uri)


_LOCAL_SCHEMES = ("", "file")
_BACKENDS: dict[str, StorageBackend] = {scheme: LocalBackend() for scheme in _LOCAL_SCHEMES}
# Schemes whose backend module registers itself when imported, on first use.
_BACKEND_MODULES = {"gs": "trainer.cloud.gcs"}


def register_backend(scheme: str, backend: StorageBackend) -> None:
    _BACKENDS[scheme] = backend


def backend_for(uri: str) -> StorageBackend:
    scheme = scheme_of(uri)
    if scheme not in _BACKENDS and scheme in _BACKEND_MODULES:
        importlib.import_module(_BACKEND_MODULES[scheme])
    if scheme not in _BACKENDS:
        known = ", ".join(f"{s}://" for s in sorted({*_BACKENDS, *_BACKEND_MODULES} - {""})) + " or a local path"
        raise TrainerError(f"{uri}: unsupported storage scheme '{scheme}://'; use {known}")
    return _BACKENDS[scheme]


def scheme_of(uri: str) -> str:
    # One-letter "schemes" are Windows drive letters, i.e. local paths.
    scheme = urlparse(uri).scheme
    return "" if len(scheme) <= 1 else scheme


def expand(uri: str, *, must_match: bool = True) -> list[str]:
    return backend_for(uri).expand(uri, must_match=must_match)


def is_folder(uri: str) -> bool:
    """A local directory, or a remote prefix ending in '/' (object stores have no folders)."""
    if scheme_of(uri):
        return uri.endswith("/")
    return _local_path(uri).is_dir()


def local_copy(uri: str) -> Path:
    return backend_for(uri).local_copy(uri)


def same_file(a: str, b: str) -> bool:
    """Whether two URIs name one file: local paths once resolved (`..`, symlinks, hard links), remote
    objects when their URIs are equal (an object store has no other names for an object)."""
    if scheme_of(a) in _LOCAL_SCHEMES and scheme_of(b) in _LOCAL_SCHEMES:
        first, second = _local_path(a), _local_path(b)
        if first.exists() and second.exists():
            return os.path.samefile(first, second)
        return os.path.realpath(first) == os.path.realpath(second)
    return a == b


def publish(local_file: Path, uri: str) -> None:
    backend_for(uri).publish(local_file, uri)


def work_folder(output_uri: str) -> Path:
    return backend_for(output_uri).work_folder(output_uri)


def exists(uri: str) -> bool:
    return backend_for(uri).exists(uri)


def delete(uri: str) -> None:
    backend_for(uri).delete(uri)


def open_for_reading(uri: str) -> BinaryIO:
    return backend_for(uri).open_for_reading(uri)


def list_tree(uri: str) -> list[str]:
    return backend_for(uri).list_tree(uri)


def create_if_absent(uri: str, data: bytes) -> bool:
    return backend_for(uri).create_if_absent(uri, data)


def update(uri: str, change: Change) -> bytes:
    return backend_for(uri).update(uri, change)


def publish_folder(local_folder: Path, uri: str, last: str) -> None:
    backend_for(uri).publish_folder(local_folder, uri, last)


def read_bytes(uri: str) -> bytes:
    with open_for_reading(uri) as stream:
        return stream.read()


def cache_root() -> Path:
    """Where remote backends keep downloads and the work folders of remote outputs."""
    return Path(os.environ.get(CACHE_HOME_VARIABLE) or Path.home() / ".cache") / "trainer"


def join(base_uri: str, name: str) -> str:
    return f"{base_uri.rstrip('/')}/{name}"
