"""A model's versions under BASE/NAME: integer folders TF Serving loads, each with its metadata beside it.

A version number is claimed by creating `<version>.json` only where none exists
(storage.create_if_absent: O_EXCL-like locally, `if_generation_match=0` on
GCS): two pushes at once never take the same number, the loser tries the
next. The claim holds the package's id, so a push killed after claiming is
completed by the same package's next push instead of taking a new number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.data import storage
from trainer.errors import DeployError

CONFIG_NAME = "models.config"  # TF Serving's --model_config_file, at BASE
HISTORY_FOLDER = "history"
SAVED_MODEL = "saved_model.pb"  # what TF Serving's loader looks for: copied last
METADATA = re.compile(r"^(\d+)\.json$")
WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # model and label names


@dataclass(frozen=True)
class ModelHome:
    """BASE/NAME: one model's versions, their metadata and its history."""

    base: str
    name: str

    @property
    def uri(self) -> str:
        return storage.join(self.base, self.name)

    @property
    def config_uri(self) -> str:
        return storage.join(self.base, CONFIG_NAME)

    @property
    def history_uri(self) -> str:
        return storage.join(self.uri, HISTORY_FOLDER)

    def version_uri(self, version: int) -> str:
        return storage.join(self.uri, str(version))

    def metadata_uri(self, version: int) -> str:
        return storage.join(self.uri, f"{version}.json")


def checked_home(base: str, name: str) -> ModelHome:
    """BASE must be a folder (or none yet), NAME a plain word: TF Serving's model name and a folder."""
    if not WORD.match(name):
        raise DeployError(f"--model {name!r}: a model name is a word of letters, digits, - and _ (e.g. deep_v1)")
    if storage.exists(base):
        raise DeployError(f"--to {base}: is a file; pass the folder (or gs:// prefix) TF Serving reads models from")
    return ModelHome(base, name)


def claims(home: ModelHome) -> dict[int, dict[str, Any]]:
    """Every claimed version's metadata, by version."""
    found = {}
    for name in storage.list_tree(home.uri):
        match = METADATA.match(name)
        if match:
            found[int(match.group(1))] = json.loads(storage.read_bytes(storage.join(home.uri, name)))
    return found


def claim_version(home: ModelHome, metadata: dict[str, Any]) -> int:
    """The next free version, claimed by writing its metadata where none is."""
    version = max(claims(home), default=0) + 1
    while not storage.create_if_absent(home.metadata_uri(version), json_bytes({**metadata, "version": version})):
        version += 1  # another push took it between the listing and the write
    return version


def publish_version(home: ModelHome, version: int, export: Path) -> None:
    """The SavedModel under BASE/NAME/<version>/, appearing whole (see storage.publish_folder)."""
    storage.publish_folder(export, home.version_uri(version), last=SAVED_MODEL)


def version_files(home: ModelHome, version: int) -> list[str]:
    return storage.list_tree(home.version_uri(version))


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
