"""fab runs: the packages in a folder or gs:// prefix, and its tuning studies' packages (`tune/<study>/`,
where fab tune puts them), with variant, date, the epoch whose weights were packaged, validation and
test metrics, the dataset and the keys a run set beyond its variant's definition (its `TRAINER_*`
overrides, a trial's values); filtered by variant and sorted by any metric, best first.

Each package's manifest.json, config.json and dataset.json hold what is listed, read as their format
version has them (`trainer.package.layout`). They are read through a seekable stream, so from gs://
only the zip's directory and those small members are fetched, not the model.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.data import storage
from trainer.errors import PackageError
from trainer.package.layout import CONFIG_FILE, DATASET_FILE, MANIFEST_FILE, package_version, read_as_current

METRICS = ("auc", "logloss", "accuracy")
TUNE_FOLDER = "tune"  # fab tune's default output is runs/tune/<study>/
HEADER = ("run", "variant", "written", "epochs", "best_epoch", "validation_auc", *(f"test_{m}" for m in METRICS),
          "dataset", "rows", "sha256", "study", "beyond_the_variant")


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
    config: dict[str, Any]  # config.json: {"variant", "keys": {key: {"value", "source"}}, ...}
    dataset: dict[str, Any]  # dataset.json: source, sha256, rows, ...
    study: str | None = None  # the tuning study whose folder holds the package

    @property
    def dataset_name(self) -> str:
        """The dataset's last path part: a file, a shard pattern or a folder."""
        return str(self.dataset.get("source") or "-").rstrip("/").rsplit("/", 1)[-1]

    @property
    def dataset_sha256(self) -> str:
        return str(self.dataset.get("sha256") or "-")


def _metric_key(split: str, name: str) -> Callable[[RunSummary], float | None]:
    return lambda run: (run.validation_metrics if split == "validation" else run.test_metrics).get(name)


# --sort: the column and whether larger is better (listed first); unknown values go last.
SORTS: dict[str, tuple[Callable[[RunSummary], Any], bool]] = {
    "written": (lambda run: run.written, False),
    "run": (lambda run: run.run_id, False),
    "variant": (lambda run: run.variant, False),
    "epochs": (lambda run: run.epochs, True),
    "validation_auc": (_metric_key("validation", "auc"), True),
    **{f"test_{m}": (_metric_key("test", m), m != "logloss") for m in METRICS},
    "rows": (lambda run: run.dataset.get("rows"), True),
}


def runs_table(output_uri: str, variant: str = "", sort: str = "written") -> str:
    """fab runs' output: the packages under `output_uri` of `variant` (all when empty), sorted by `sort`."""
    check_sort(sort)
    found = list_runs(output_uri)
    shown = sort_runs([run for run in found if not variant or run.variant == variant], sort)
    if shown:
        return format_runs(shown)
    if not found:
        return f"no packages in {output_uri}"
    variants = ", ".join(sorted({run.variant for run in found}))
    return f"no packages of variant {variant} in {output_uri} (its packages' variants: {variants})"


def check_sort(sort: str) -> None:
    if sort not in SORTS:
        raise PackageError(f"--sort {sort}: fab runs does not sort by that; use one of {', '.join(SORTS)}")


def list_runs(output_uri: str) -> list[RunSummary]:
    """Every package in `output_uri` and in its tuning studies' folders, oldest first."""
    if not storage.scheme_of(output_uri) and not storage.is_folder(output_uri):
        raise PackageError(f"--output {output_uri}: no such folder; pass the folder that holds the packages "
                           f"(fab train writes them to runs/ unless given --output)")
    packages = storage.expand(storage.join(output_uri, "*.zip"), must_match=False)
    studies = storage.expand(storage.join(output_uri, f"{TUNE_FOLDER}/*/*.zip"), must_match=False)
    runs = [read_summary(uri) for uri in packages]
    runs += [read_summary(uri, study=uri.rsplit("/", 2)[-2]) for uri in studies]
    return sort_runs(runs, "written")


def sort_runs(runs: list[RunSummary], sort: str) -> list[RunSummary]:
    """`runs` by column `sort`, best (or first) first; a run without the value goes last."""
    check_sort(sort)
    key, larger_first = SORTS[sort]
    known = [run for run in runs if key(run) is not None]
    return sorted(known, key=key, reverse=larger_first) + [run for run in runs if key(run) is None]


def read_summary(package_uri: str, study: str | None = None) -> RunSummary:
    try:
        with storage.open_for_reading(package_uri) as stream, zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
            manifest = json.loads(archive.read(MANIFEST_FILE))
            written = dt.datetime(*archive.getinfo(MANIFEST_FILE).date_time)
            config = json.loads(archive.read(CONFIG_FILE))
            dataset = json.loads(archive.read(DATASET_FILE))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise PackageError(f"{package_uri}: not a package (no readable {MANIFEST_FILE}); move it out of the "
                           "folder") from None
    version = package_version(package_uri, names, {MANIFEST_FILE: manifest, CONFIG_FILE: config})
    manifest = read_as_current(package_uri, version, MANIFEST_FILE, manifest)
    config = read_as_current(package_uri, version, CONFIG_FILE, config)
    return RunSummary(package_uri, manifest["run_id"], manifest["variant"], written, manifest["epochs_trained"],
                      manifest["best_epoch"], manifest["validation_metrics"], manifest["test_metrics"],
                      _beyond_the_variant(config), config, dataset, study)


def _beyond_the_variant(config: dict) -> dict[str, tuple[object, str]]:
    """The keys set above the variant's level (config.json records each key's level)."""
    return {key: (entry["value"], entry["source"].split()[0]) for key, entry in config["keys"].items()
            if entry["source"] != "default" and not entry["source"].startswith("variant ")}


def format_runs(runs: list[RunSummary]) -> str:
    """One aligned line per run under a header."""
    lines = [[run.run_id, run.variant, run.written.strftime("%Y-%m-%d %H:%M"), str(run.epochs),
              "-" if run.best_epoch is None else str(run.best_epoch), _metric(run.validation_metrics.get("auc")),
              *(_metric(run.test_metrics.get(m)) for m in METRICS), run.dataset_name, _rows(run.dataset.get("rows")),
              run.dataset_sha256[:12], run.study or "-", _overrides(run.overrides)] for run in runs]
    widths = [max(len(row[i]) for row in [HEADER, *lines]) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [HEADER, *lines])


def _overrides(overrides: dict[str, tuple[object, str]]) -> str:
    """`learning_rate=0.01 (environment)`, ...; `-` for a run of the variant as defined."""
    return ", ".join(f"{key}={json.dumps(value)} ({level})" for key, (value, level) in sorted(overrides.items())) \
        or "-"


def _rows(rows: int | None) -> str:
    return "-" if rows is None else f"{rows:,}"


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
