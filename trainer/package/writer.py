"""Writing a package: its JSON files, the manifest, and the zip published whole or not at all."""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data import storage
from trainer.package.layout import CURRENT_VERSION, FORMAT_VERSION_FIELD, REQUIRED_FILES
from trainer.package.provenance import code_commit, container_image

LIBRARIES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "spacy", "pyformance")


def write_json(path: Path, data: Any) -> None:
    """Strict JSON that any parser reads: NaN and infinities (an unknown metric) become null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def publish_package(staging: Path, package_uri: str) -> None:
    """Zip the staging folder beside it and publish the zip atomically."""
    missing = [name for name in REQUIRED_FILES if not (staging / name).exists()]
    if missing:
        raise RuntimeError(f"package is incomplete, missing {missing}")  # a bug, not user input
    zip_path = staging.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(staging).as_posix())
    storage.publish(zip_path, package_uri)
    zip_path.unlink()


def manifest(run_facts: dict[str, Any], run_metrics: dict[str, Any]) -> dict[str, Any]:
    """The package's format version (first: what a reader looks at before the rest), then what ran where:
    the run's own facts plus code, libraries, host, timings and metrics."""
    return {
        FORMAT_VERSION_FIELD: CURRENT_VERSION,
        **run_facts,
        "code_commit": code_commit(),
        "image": container_image(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "libraries": library_versions(),
        **run_metrics,
    }


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
