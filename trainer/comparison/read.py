"""A package's small members, read through a seekable stream: from gs:// only the
zip's directory and these few kilobytes are fetched, never the model (as `fab runs` does)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import pandas as pd

from trainer.data import storage
from trainer.errors import PackageError
from trainer.package.layout import (
    CONFIG_FILE,
    DATASET_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    no_package,
    not_a_zip,
    package_version,
    read_as_current,
)

JSON_MEMBERS = (MANIFEST_FILE, CONFIG_FILE, DATASET_FILE)
SMALL_MEMBERS = (*JSON_MEMBERS, METRICS_FILE)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class PackageRecord:
    """What one package says about its run, without its model."""

    uri: str
    letter: str  # A, B, C, ... in the order given: the first is the baseline the others are measured against
    format_version: int
    manifest: dict[str, Any]  # these three as the current format version has them (layout.read_as_current)
    config: dict[str, Any]  # config.json: {"variant", "keys": {key: {"value", "source"}}, ...}
    dataset: dict[str, Any]  # dataset.json: source, sha256, rows, subsample, split
    epochs: pd.DataFrame  # metrics.csv: one row per epoch

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @property
    def short_id(self) -> str:
        """The run id's last part (a hash of config and data), to name files after a comparison."""
        return self.run_id.rsplit("-", 1)[-1]


def read_records(uris: list[str]) -> list[PackageRecord]:
    """Every package's record, in the order given; fewer than two is the user's mistake."""
    check_count(uris)
    return [read_record(uri, letter) for uri, letter in zip(uris, LETTERS)]


def check_count(uris: list[str]) -> None:
    """A comparison needs a baseline and at least one package to measure against it."""
    if len(uris) < 2:
        given = f"only {uris[0]}" if uris else "none"
        raise PackageError(f"compare needs two or more packages ({given} given), e.g. "
                           "fab compare runs/A.zip runs/B.zip")
    if len(uris) > len(LETTERS):
        raise PackageError(f"compare takes at most {len(LETTERS)} packages ({len(uris)} given)")


def read_record(uri: str, letter: str) -> PackageRecord:
    """The manifest, config, dataset record and epoch table of one package zip."""
    if not storage.exists(uri):
        raise no_package(uri)
    try:
        with storage.open_for_reading(uri) as stream, zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
            missing = [name for name in SMALL_MEMBERS if name not in names]
            if missing:
                raise PackageError(f"{uri}: not a complete package (missing {', '.join(missing)})")
            members = {name: archive.read(name) for name in SMALL_MEMBERS}
    except zipfile.BadZipFile:
        raise not_a_zip(uri) from None
    try:
        documents = {name: json.loads(members[name]) for name in JSON_MEMBERS}
        epochs = pd.read_csv(io.BytesIO(members[METRICS_FILE]))
    except (json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError):
        raise PackageError(f"{uri}: its manifest, config, dataset or metrics do not read back; "
                           "train it again with fab train") from None
    version = package_version(uri, names, documents)
    manifest, config, dataset = (read_as_current(uri, version, name, documents[name]) for name in JSON_MEMBERS)
    return PackageRecord(uri, letter, version, manifest, config, dataset, epochs)
