"""Reading a package back: `load_package` gives a `Package` whose `score` takes
raw rows, exactly as the training run encoded them.

`score` goes through the package's serving export (the SavedModel that TF
Serving would load); `score_with_keras` is the reference it is checked
against: the project's `Preprocessor` and the Keras model. Packages written
before the export existed score with Keras.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import numpy as np
import pandas as pd

from trainer.config import NetConfig, ResolvedConfig, config_from_json_dict
from trainer.data import storage
from trainer.data.features import Preprocessor
from trainer.errors import PackageError
from trainer.package.layout import CONTRACT_FILE, CORE_FILES, MODEL_FILE, PREPROCESSING_FILE, SERVING_FOLDER
from trainer.serving.scoring import ServingModel


@dataclass
class Package:
    """A trained model with the preprocessing that feeds it."""

    model: keras.Model
    preprocessor: Preprocessor
    resolved: ResolvedConfig
    manifest: dict[str, Any]
    serving: ServingModel | None  # None in packages written before the serving export
    contract: dict[str, Any] | None

    @property
    def config(self) -> NetConfig:
        return self.resolved.config

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Click probability for each raw row (a DataFrame as `load_dataset` reads it), through the export."""
        if self.serving is None:
            return self.score_with_keras(frame)
        return self.serving.score_frame(frame)

    def score_with_keras(self, frame: pd.DataFrame) -> np.ndarray:
        """The same, encoded by `Preprocessor` and predicted by the Keras model: training's own path."""
        from trainer.training.arrays import predict

        return predict(self.model, self.preprocessor.encode(frame))


def load_package(package_uri: str) -> Package:
    path = storage.local_copy(package_uri)
    if not path.is_file():
        raise PackageError(f"{package_uri}: no such package; `fab runs` or `ls runs/` lists them")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PackageError(f"{package_uri}: not a zip file, so not a package") from None
    with archive:
        missing = [name for name in CORE_FILES if name not in archive.namelist()]
        if missing:
            raise PackageError(f"{package_uri}: not a complete package (missing {', '.join(missing)})")
        model = _load_model(_read(archive, MODEL_FILE, package_uri))
        resolved = config_from_json_dict(_read_json(archive, "config.json", package_uri))
        # Predict as training evaluated: compiled by XLA when the run used it. Keras' "auto" leaves a
        # loaded model uncompiled on CPUs, where oneDNN then logs an E0000 line about boolean masks.
        model.jit_compile = resolved.config.xla
        return Package(
            model=model,
            preprocessor=Preprocessor.from_json_dict(_read_json(archive, PREPROCESSING_FILE, package_uri)),
            resolved=resolved,
            manifest=_read_json(archive, "manifest.json", package_uri),
            serving=_load_serving(archive, package_uri),
            contract=_read_json(archive, CONTRACT_FILE, package_uri) if CONTRACT_FILE in archive.namelist() else None,
        )


def _read(archive: zipfile.ZipFile, name: str, package_uri: str) -> bytes:
    """A member's bytes; a member that fails its CRC or does not inflate means the zip was damaged
    after it was written (a package is published whole), so it is named and cannot be used."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise PackageError(f"{package_uri}: the package is corrupt ({name} does not read back: {exc}); copy it "
                           "again from where it was published, or train it again with fab train") from None


def _read_json(archive: zipfile.ZipFile, name: str, package_uri: str) -> Any:
    return json.loads(_read(archive, name, package_uri))


def _load_model(model_bytes: bytes) -> keras.Model:
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / Path(MODEL_FILE).name
        model_file.write_bytes(model_bytes)
        return keras.saving.load_model(model_file, compile=False)


def _load_serving(archive: zipfile.ZipFile, package_uri: str) -> ServingModel | None:
    members = [name for name in archive.namelist() if name.startswith(f"{SERVING_FOLDER}/")]
    if not members:
        return None
    with tempfile.TemporaryDirectory() as folder:
        for name in members:
            target = Path(folder, *PurePosixPath(name).relative_to(SERVING_FOLDER).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_read(archive, name, package_uri))
        return ServingModel(Path(folder))  # loading reads the variables in: the folder can go
