"""fab runs: the packages in a folder or gs:// prefix, with variant, date, the
epoch whose weights were packaged, validation and test metrics, and the keys
a run set beyond its variant's definition (its `TRAINER_*` overrides).

Each package's manifest.json and config.json hold what is listed, read as
their format version has them (`trainer.package.layout`). They are read
through a seekable stream, so from gs:// only the zip's directory and those
two small members are fetched, not the model.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from dataclasses import dataclass

from trainer.data import storage
from trainer.errors import PackageError
from trainer.package.layout import CONFIG_FILE, MANIFEST_FILE, package_version, read_as_current

METRICS = ("auc", "logloss", "accuracy")


@dataclass(frozen=True)
class RunSummary:
    package_uri: str
    run_id: str
    variant: str
    written: dt.datetime  # when the package was zipped (the manifest's time in the zip)
    epochs: int
    best_epoch: int | None  # None before format version 2 (no validation split)
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    overrides: dict[str, tuple[object, str]]  # key -> (value, level) beyond the variant's definition


def list_runs(output_uri: str) -> list[RunSummary]:
    """Every package under `output_uri`, oldest first."""
    packages = storage.expand(storage.join(output_uri, "*.zip"), must_match=False)
    return sorted((read_summary(uri) for uri in packages), key=lambda run: run.written)


def read_summary(package_uri: str) -> RunSummary:
    try:
        with storage.open_for_reading(package_uri) as stream, zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
            manifest = json.loads(archive.read(MANIFEST_FILE))
            written = dt.datetime(*archive.getinfo(MANIFEST_FILE).date_time)
            config = json.loads(archive.read(CONFIG_FILE))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise PackageError(f"{package_uri}: not a package (no readable {MANIFEST_FILE}); move it out of the "
                           "folder") from None
    version = package_version(package_uri, names, {MANIFEST_FILE: manifest, CONFIG_FILE: config})
    manifest = read_as_current(package_uri, version, MANIFEST_FILE, manifest)
    return RunSummary(package_uri, manifest["run_id"], manifest["variant"], written, manifest["epochs_trained"],
                      manifest["best_epoch"], manifest["validation_metrics"], manifest["test_metrics"],
                      _beyond_the_variant(config))


def _beyond_the_variant(config: dict) -> dict[str, tuple[object, str]]:
    """The keys set above the variant's level (config.json records each key's level)."""
    return {key: (entry["value"], entry["source"].split()[0]) for key, entry in config["keys"].items()
            if entry["source"] != "default" and not entry["source"].startswith("variant ")}


def format_runs(runs: list[RunSummary]) -> str:
    """One aligned line per run under a header."""
    header = ["run", "variant", "written", "epochs", "best_epoch", "validation_auc",
              *(f"test_{m}" for m in METRICS), "beyond_the_variant"]
    lines = [[run.run_id, run.variant, run.written.strftime("%Y-%m-%d %H:%M"), str(run.epochs),
              "-" if run.best_epoch is None else str(run.best_epoch), _metric(run.validation_metrics.get("auc")),
              *(_metric(run.test_metrics.get(m)) for m in METRICS), _overrides(run.overrides)] for run in runs]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *lines])


def _overrides(overrides: dict[str, tuple[object, str]]) -> str:
    """`learning_rate=0.01 (environment)`, ...; `-` for a run of the variant as defined."""
    return ", ".join(f"{key}={json.dumps(value)} ({level})" for key, (value, level) in sorted(overrides.items())) \
        or "-"


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
