"""Reading a package back: `load_package` gives a `Package` whose `score` takes
raw rows, exactly as the training run encoded them.

`score` goes through the package's serving export (the SavedModel that TF
Serving would load), which holds the encoder training used. A package of any
format version is read through the table in `trainer.package.layout`: which
members it holds, the fields older packages lack and what they mean, and
whether it has an export at all (before version 4 it scores with the same
encoder built from its preprocessing.json, then its Keras model).
"""

from __future__ import annotations

import functools
import json
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import numpy as np
import pandas as pd

from trainer.config import NetConfig, ResolvedConfig, config_from_json_dict
from trainer.data import storage
from trainer.data.dataset import ColumnRoles, Rows, decode_rows
from trainer.data.features import Preprocessor
from trainer.errors import PackageError
from trainer.package import layout
from trainer.package.layout import (
    CONFIG_FILE,
    CONTRACT_FILE,
    COPY_AGAIN,
    DISTINCT_SIGNATURE,
    DRIFT_SUMMARY,
    MANIFEST_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    SERVING_EXPORT,
    SERVING_FOLDER,
    SERVING_MODEL_FILE,
)
from trainer.serving.scoring import EncodedModel, Scorer, ServingModel, signature_names


@dataclass
class Package:
    """A trained model with the preprocessing that feeds it."""

    model: keras.Model
    preprocessor: Preprocessor
    resolved: ResolvedConfig
    manifest: dict[str, Any]  # with the fields of every version (layout.read_as_current)
    format_version: int
    serving: ServingModel | None  # None before format version 4: no export
    contract: dict[str, Any] | None  # likewise

    @property
    def config(self) -> NetConfig:
        return self.resolved.config

    def score(self, rows: Rows) -> np.ndarray:
        """Click probability for each raw row, through the export: `fab score`'s scores for the same rows.

        `rows` is a DataFrame (as `load_dataset` or `pandas.read_json(..., lines=True)` reads it) or a
        list of dicts, one per row as an NDJSON line holds it; each value is decoded by its column's
        role as `fab score` decodes the NDJSON (`"3"` and `3` are one category, null is missing).
        """
        roles = ColumnRoles.of(self.config, with_label=False, with_row_id=False)  # scores only: no ids to carry
        return self.scorer.score_arrow(decode_rows(rows, roles))

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """`score` for rows already decoded (a DataFrame `load_dataset` read): through the export as well."""
        return self.scorer.score_frame(frame)

    @functools.cached_property
    def scorer(self) -> Scorer:
        """The export, or for a package without one the encoder of its preprocessing and its Keras model."""
        return self.serving if self.serving is not None else EncodedModel(self.model, self.preprocessor)


def load_package(package_uri: str) -> Package:
    path = storage.local_copy(package_uri)
    if not path.is_file():
        raise layout.no_package(package_uri)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise layout.not_a_zip(package_uri) from None
    with archive:
        version, documents, model_bytes = _read_members(archive, package_uri)
        exported, with_contract = layout.supports(version, SERVING_EXPORT), layout.supports(version, DRIFT_SUMMARY)
        model = _load_model(model_bytes)
        resolved = config_from_json_dict(documents[CONFIG_FILE])
        # Predict as training evaluated: compiled by XLA when the run used it. Keras' "auto" leaves a
        # loaded model uncompiled on CPUs, where oneDNN then logs an E0000 line about boolean masks.
        model.jit_compile = resolved.config.xla
        return Package(
            model=model,
            preprocessor=Preprocessor.from_json_dict(documents[PREPROCESSING_FILE]),
            resolved=resolved,
            manifest=documents[MANIFEST_FILE],
            format_version=version,
            serving=_load_serving(archive, package_uri, version) if exported else None,
            contract=_read_json(archive, CONTRACT_FILE, package_uri) if with_contract else None,
        )


def _read_members(archive: zipfile.ZipFile, package_uri: str) -> tuple[int, dict[str, dict], bytes]:
    """The format version, the JSON members the loader reads (as the current version has them) and the
    model's bytes. A version newer than this code is refused before anything else is read (its members may
    differ); the model is read (and CRC-checked) before the other members are interpreted."""
    names = set(archive.namelist())
    manifest = _read_json(archive, MANIFEST_FILE, package_uri) if MANIFEST_FILE in names else {}
    layout.declared_version(package_uri, manifest)
    layout.check_members(package_uri, names, layout.FIRST_VERSION)
    model_bytes = _read(archive, MODEL_FILE, package_uri)
    documents = {MANIFEST_FILE: manifest, **{name: _read_json(archive, name, package_uri)
                                              for name in (CONFIG_FILE, PREPROCESSING_FILE)}}
    version = layout.package_version(package_uri, names, documents, _signatures(archive, names, package_uri))
    current = {name: layout.read_as_current(package_uri, version, name, data) for name, data in documents.items()}
    return version, current, model_bytes


def _signatures(archive: zipfile.ZipFile, names: set[str], package_uri: str) -> Callable[[], frozenset[str]]:
    """The export's signature names, read when a package without format_version is recognised."""
    def read() -> frozenset[str]:
        if SERVING_MODEL_FILE not in names:
            return frozenset()
        found = signature_names(_read(archive, SERVING_MODEL_FILE, package_uri))
        if found is None:
            raise PackageError(f"{package_uri}: the package is corrupt ({SERVING_MODEL_FILE} is not a SavedModel); "
                               f"{COPY_AGAIN}")
        return found

    return read


def _read(archive: zipfile.ZipFile, name: str, package_uri: str) -> bytes:
    """A member's bytes; a member that fails its CRC or does not inflate means the zip was damaged
    after it was written (a package is published whole), so it is named and cannot be used."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise PackageError(f"{package_uri}: the package is corrupt ({name} does not read back: {exc}); "
                           f"{COPY_AGAIN}") from None


def _read_json(archive: zipfile.ZipFile, name: str, package_uri: str) -> Any:
    """A JSON member; one that does not parse (its CRC passed) was cut or edited after the run wrote it."""
    try:
        return json.loads(_read(archive, name, package_uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{package_uri}: the package is corrupt ({name} is not valid JSON: {exc}); "
                           f"{COPY_AGAIN}") from None


def _load_model(model_bytes: bytes) -> keras.Model:
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / Path(MODEL_FILE).name
        model_file.write_bytes(model_bytes)
        return keras.saving.load_model(model_file, compile=False)


def _load_serving(archive: zipfile.ZipFile, package_uri: str, version: int) -> ServingModel:
    # Not the folder entries a zip made by hand has (zip -r): only files are written out.
    members = [name for name in archive.namelist() if name.startswith(f"{SERVING_FOLDER}/") and not name.endswith("/")]
    with tempfile.TemporaryDirectory() as folder:
        for name in members:
            target = Path(folder, *PurePosixPath(name).relative_to(SERVING_FOLDER).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_read(archive, name, package_uri))
        # Loading reads the variables in: the folder can go.
        return ServingModel(Path(folder), distinct_values=layout.has_signature(version, DISTINCT_SIGNATURE))
