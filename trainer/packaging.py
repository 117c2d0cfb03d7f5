"""The package: one zip per run, written whole or not at all, and read back.

    manifest.json             run id, code commit, library versions, device, timings, pyformance metrics
    config.json               the resolved config, with the level that set each key
    dataset.json              source, content hash, rows, split sizes, schema, cardinalities, label rate
    metrics.csv               one row per epoch: train_* and test_* loss, auc, logloss, accuracy, speed
    metrics.png               the same, train vs test per epoch
    model/model.keras         the trained Keras model (inputs: encoded features)
    model/preprocessing.json  the vocabularies and statistics that encode raw rows for it
    tensorboard/              TensorBoard event files (`tensorboard --logdir` on the unzipped folder)

`load_package` gives back a `Package` whose `score` takes raw rows, exactly as
the training run encoded them.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from trainer import storage
from trainer.config import NetConfig, ResolvedConfig, config_from_json_dict
from trainer.errors import PackageError
from trainer.features import Preprocessor
from trainer.provenance import code_commit, container_image

MODEL_FILE = "model/model.keras"
PREPROCESSING_FILE = "model/preprocessing.json"
REQUIRED_FILES = (
    "manifest.json", "config.json", "dataset.json", "metrics.csv", "metrics.png", MODEL_FILE, PREPROCESSING_FILE,
)
LIBRARIES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "spacy", "pyformance")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
    """What ran where: the run's own facts plus code, libraries, host, timings and metrics."""
    return {
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


@dataclass
class Package:
    """A trained model with the preprocessing that feeds it."""

    model: keras.Model
    preprocessor: Preprocessor
    resolved: ResolvedConfig
    manifest: dict[str, Any]

    @property
    def config(self) -> NetConfig:
        return self.resolved.config

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Click probability for each raw row (a DataFrame as `load_dataset` reads it)."""
        from trainer.training import predict

        return predict(self.model, self.preprocessor.encode(frame))


def load_package(package_uri: str) -> Package:
    path = storage.local_copy(package_uri)
    if not path.is_file():
        raise PackageError(f"{package_uri}: no such package; `fab runs` or `ls runs/` lists them")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in REQUIRED_FILES if name not in archive.namelist()]
            if missing:
                raise PackageError(f"{package_uri}: not a complete package (missing {', '.join(missing)})")
            with tempfile.TemporaryDirectory() as folder:
                archive.extract(MODEL_FILE, folder)
                model = keras.saving.load_model(Path(folder) / MODEL_FILE, compile=False)
            return Package(
                model=model,
                preprocessor=Preprocessor.from_json_dict(_read_json(archive, PREPROCESSING_FILE)),
                resolved=config_from_json_dict(_read_json(archive, "config.json")),
                manifest=_read_json(archive, "manifest.json"),
            )
    except zipfile.BadZipFile:
        raise PackageError(f"{package_uri}: not a zip file, so not a package") from None


def _read_json(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name))

