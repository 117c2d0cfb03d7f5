"""Reading a package back: `load_package` gives a `Package` whose `score` takes
raw rows, exactly as the training run encoded them."""

from __future__ import annotations

import json
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from trainer.config import NetConfig, ResolvedConfig, config_from_json_dict
from trainer.data import storage
from trainer.data.features import Preprocessor
from trainer.errors import PackageError
from trainer.package.layout import MODEL_FILE, PREPROCESSING_FILE, REQUIRED_FILES


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
        missing = [name for name in REQUIRED_FILES if name not in archive.namelist()]
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
