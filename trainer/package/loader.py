"""Reading a package back: `load_package` gives a `Package` whose `score` takes
raw rows, exactly as the training run encoded them."""

from __future__ import annotations

import json
import tempfile
import zipfile
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

