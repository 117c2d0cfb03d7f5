"""The package: one zip per run, written whole or not at all, and read back.

    manifest.json             format_version, run id, code commit, library versions, device, timings,
                              pyformance metrics, the epoch whose weights are packaged, its validation and
                              the test metrics
    config.json               the resolved config, with the level that set each key
    dataset.json              source, content hash, rows, the split (method, seed or time column; each
                              split's rows, label rate, time range), schema, cardinalities
    metrics.csv               one row per epoch: train_mean_batch_loss; train_* and validation_* logloss, auc,
                              accuracy; speed
    metrics.png               train vs validation per epoch, the packaged epoch marked
    model/model.keras         the trained Keras model (inputs: encoded features), without its optimizer
    model/preprocessing.json  the vocabularies and statistics that encode raw rows for it
    model/serving/1/          a SavedModel scoring raw rows (TF Serving's layout): `trainer.serving.export`
    model/README.md           its signatures, dtypes and a TF Serving REST request
    model/data_contract.json  per column: training null rate, validation unseen rate, numeric range
    tensorboard/              the run's live TensorBoard logs: train/ and validation/ per epoch, and its HParams
                              session with the packaged weights' metrics (`trainer.training.tensorboard`); before
                              it was written live (issue 24), the scalars of metrics.csv. No reader depends on
                              either: `fab tensorboard` copies the epochs and writes each session anew.

Every member's name is a constant here; no other module spells one.

Format versions: `FORMATS` below is the one table of what each version added,
and every reader goes through it: `package_version` says which version a
package is (refusing one newer than this code knows) and checks the members
that version holds; `read_as_current` gives a JSON member with the fields
later versions added, valued as the older package means them; `supports`
says what a reader can do with it (score through the export, the drift
summary, ...). A package written before version 6 has no `format_version`.
It is read as the newest version whose additions it bears, looked for newest
first: the export's `distinct_values` signature (5), the export's members
(4), config.json's `variants_file` (3), manifest.json's `best_epoch` (2);
a package with none of them is version 1. Members alone cannot decide it,
because versions 1-3 hold the same members and so do 4 and 5: the fields and
the signature tell those apart. Readers of the small members only (fab runs,
fab compare) do not open the export, so they read a version 5 package as 4,
whose small members are the same.

A key of config.json's `keys` that a package lacks (one added to NetConfig
after the run) takes NetConfig's default when the config is loaded; none of
the keys added since version 1 (xla, validation_fraction, split_seed,
split_time_column, embedding_l2, dense_l2, plot_accuracy) changes how a loaded model scores.

`trainer.package.assemble` puts it together, `trainer.package.writer` writes it, `trainer.package.loader` reads it back,
`trainer.package.listing` lists a folder of them.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainer.data import storage
from trainer.errors import PackageError

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.csv"
METRICS_PLOT = "metrics.png"
TENSORBOARD_FOLDER = "tensorboard"
MODEL_FOLDER = "model"
MODEL_FILE = f"{MODEL_FOLDER}/model.keras"
PREPROCESSING_FILE = f"{MODEL_FOLDER}/preprocessing.json"
SERVING_FOLDER = f"{MODEL_FOLDER}/serving/1"
SERVING_MODEL_FILE = f"{SERVING_FOLDER}/saved_model.pb"
SERVING_README = f"{MODEL_FOLDER}/README.md"
CONTRACT_FILE = f"{MODEL_FOLDER}/data_contract.json"

FORMAT_VERSION_FIELD = "format_version"  # in manifest.json, from version 6 on
DISTINCT_SIGNATURE = "distinct_values"  # the export's signature that fab score calls, from version 5 on

# What a reader can do with a package, from the version whose `features` name it on.
REBUILT_TEST_ROWS = "fab compare rebuilds its test rows from the data (the train/validation/test split)"
SERVING_EXPORT = "scoring through the serving export (before it: the Keras model fed by preprocessing.json's encoder)"
DRIFT_SUMMARY = "fab score's drift summary against the data contract"
ROW_HASH_SPLIT = "a random split by each row's hash (before it: a seeded permutation of the rows, not rebuilt)"


@dataclass(frozen=True)
class Format:
    """One version of the package format: what it added to the version before."""

    version: int
    since: str  # the change that first wrote it
    added: str
    members: tuple[str, ...] = ()  # members every package of this version or newer holds
    # JSON member -> {field it added: the value that means what a package before this version did}
    fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    signatures: tuple[str, ...] = ()  # signatures of the serving export it added
    features: tuple[str, ...] = ()


FORMATS = (
    Format(1, "fd59aca, 2026-11-27",
           "the first package: manifest (run_id, variant, device, epochs_trained, test_metrics), config, dataset "
           "record, metrics.csv and its plot, the Keras model and its preprocessing; tensorboard/ when the run "
           "logged. One train/test split: metrics.csv has test_* columns per epoch, dataset.json's split is "
           "{train, test, test_fraction, seed}; titles without tokens encode as padding, numbers are not clipped",
           members=(MANIFEST_FILE, CONFIG_FILE, DATASET_FILE, METRICS_FILE, METRICS_PLOT, MODEL_FILE,
                    PREPROCESSING_FILE)),
    Format(2, "f668027, 2026-12-01",
           "train/validation/test splits: the manifest's best_epoch and validation_metrics, validation_* columns "
           "in metrics.csv, dataset.json's split by method with each split's rows (config keys validation_fraction, "
           "split_seed, split_time_column); the \"no text\" token (preprocessing's empty_text_token; before it, "
           "words start at id 2); tensorboard/ always",
           fields={MANIFEST_FILE: {"best_epoch": None, "validation_metrics": {}},
                   PREPROCESSING_FILE: {"empty_text_token": None}},
           features=(REBUILT_TEST_ROWS,)),
    Format(3, "1946f87, 2026-12-01",
           "config.json's variants_file (the variant file's path and sha256; before it, the shipped file); "
           "the config keys embedding_l2 and dense_l2 (0.0 before: no penalty)",
           fields={CONFIG_FILE: {"variants_file": None}}),
    Format(4, "02bccd5, 2026-12-02",
           "the serving export (model/serving/1/, its model/README.md) and the data contract; numbers clipped to "
           "the training range (preprocessing's numeric_min and numeric_max; empty before: not clipped); the "
           "manifest's serving_tokenizer; the Keras model saved without its optimizer",
           members=(SERVING_MODEL_FILE, SERVING_README, CONTRACT_FILE),
           fields={PREPROCESSING_FILE: {"numeric_min": [], "numeric_max": []}},
           features=(SERVING_EXPORT, DRIFT_SUMMARY)),
    Format(5, "06d5fcc, 2026-12-02",
           "the export's distinct_values signature, which fab score calls (before it: serving_default, "
           "each row's strings)",
           signatures=(DISTINCT_SIGNATURE,)),
    Format(6, "issue 22, 2026-12-03", "the manifest's format_version"),
    Format(7, "issue 24, 2026-12-04",
           "metrics.csv's train_mean_batch_loss (train_loss before; validation_loss, a copy of validation_logloss, "
           "dropped); tensorboard/ written live, with the run's HParams session and final metrics (before it, "
           "metrics.csv's scalars written at packaging); dataset.json's numbers_beyond_float32 (absent before: "
           "not counted)",
           fields={DATASET_FILE: {"numbers_beyond_float32": {}}}),
    Format(8, "issue 23, 2026-12-04",
           "one encoder: every split encoded by the export's RawRowEncoder in training (spaCy's tokens kept for "
           "the training titles the rules split differently; before it, training encoded with pandas and spaCy); "
           "a random split decided by each row's hash, of its id_column when it has one, seeded by split_seed "
           "(before it: a seeded permutation of all rows, with exact sizes)",
           features=(ROW_HASH_SPLIT,)),
)
FIRST_VERSION, CURRENT_VERSION = FORMATS[0].version, FORMATS[-1].version
VERSIONED_SINCE = 6  # packages of earlier versions carry no format_version, and are recognised instead


def _up_to(version: int) -> tuple[Format, ...]:
    return tuple(fmt for fmt in FORMATS if fmt.version <= version)


def members(version: int) -> tuple[str, ...]:
    """The members every package of `version` holds."""
    return tuple(name for fmt in _up_to(version) for name in fmt.members)


REQUIRED_FILES = members(CURRENT_VERSION)  # what a package written now holds


def supports(version: int, feature: str) -> bool:
    return any(feature in fmt.features for fmt in _up_to(version))


def has_signature(version: int, signature: str) -> bool:
    return any(signature in fmt.signatures for fmt in _up_to(version))


def package_version(package_uri: str, names: Collection[str], documents: Mapping[str, Mapping[str, Any]],
                    signatures: Callable[[], Collection[str]] | None = None) -> int:
    """The package's format version, its members checked against it.

    `documents` are the JSON members read so far (manifest.json and config.json at least), `signatures`
    gives the export's signature names when asked (None: the export is not opened).
    """
    version = declared_version(package_uri, documents[MANIFEST_FILE]) or recognised_version(
        names, documents, signatures)
    check_members(package_uri, names, version)
    return version


def declared_version(package_uri: str, manifest: Mapping[str, Any]) -> int | None:
    """manifest.json's format_version (None before version 6); a newer one than this code knows is refused."""
    declared = manifest.get(FORMAT_VERSION_FIELD)
    if declared is None:
        return None
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < VERSIONED_SINCE:
        raise PackageError(f"{package_uri}: {MANIFEST_FILE} has format_version {declared!r}, which no trainer "
                           "writes; the package is damaged: train it again with fab train")
    if declared > CURRENT_VERSION:
        raise PackageError(f"{package_uri}: package format version {declared} is newer than this trainer reads "
                           f"({FIRST_VERSION} to {CURRENT_VERSION}); upgrade the trainer to read it")
    return declared


def recognised_version(names: Collection[str], documents: Mapping[str, Mapping[str, Any]],
                       signatures: Callable[[], Collection[str]] | None = None) -> int:
    """The version of a package without format_version: the newest whose additions it bears."""
    unversioned = [fmt for fmt in FORMATS if fmt.version < VERSIONED_SINCE]
    for fmt in reversed(unversioned[1:]):
        if _bears(fmt, names, documents, signatures):
            return fmt.version
    return unversioned[0].version


def _bears(fmt: Format, names: Collection[str], documents: Mapping[str, Mapping[str, Any]],
           signatures: Callable[[], Collection[str]] | None) -> bool:
    if any(name in names for name in fmt.members):
        return True
    if any(key in documents.get(member, {}) for member, added in fmt.fields.items() for key in added):
        return True
    return bool(fmt.signatures) and signatures is not None and any(s in signatures() for s in fmt.signatures)


def check_members(package_uri: str, names: Collection[str], version: int) -> None:
    missing = [name for name in members(version) if name not in names]
    if missing:
        raise PackageError(f"{package_uri}: not a complete package (missing {', '.join(missing)})")


def read_as_current(package_uri: str, version: int, member: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data`, JSON member `member` of a package of `version`, with every field the table lists: a field
    a later version added is filled with what the older package means by its absence."""
    filled = dict(data)
    for fmt in FORMATS:
        for key, before in fmt.fields.get(member, {}).items():
            if key in filled:
                continue
            if fmt.version <= version:
                raise PackageError(f"{package_uri}: not a complete package ({member} has no {key}, which "
                                   f"format version {version} writes)")
            filled[key] = copy.deepcopy(before)
    return filled


# --- a package that cannot be opened ---

ZIP_MAGIC = b"PK\x03\x04"  # a zip's first bytes: its first member's header
COPY_AGAIN = "copy it again from where it was published, or train it again with fab train"


def no_package(package_uri: str) -> PackageError:
    """Nothing to open at `package_uri`; an unzipped package (a folder holding its manifest) is named as one."""
    if storage.exists(storage.join(package_uri, MANIFEST_FILE)):
        zip_name = f"{package_uri.rstrip('/').rsplit('/', 1)[-1]}.zip"
        return PackageError(f"{package_uri}: an unzipped package (a folder), and a package is read as its zip; "
                            f"pass the zip it came from, or zip the folder's contents again: "
                            f"(cd {package_uri} && zip -r ../{zip_name} .)")
    return PackageError(f"{package_uri}: no such package; `fab runs` or `ls runs/` lists them")


def not_a_zip(package_uri: str) -> PackageError:
    """Why zipfile refuses the file: cut short (a zip's directory is at its end), empty, or no zip at all."""
    with storage.open_for_reading(package_uri) as stream:
        head, size = stream.read(len(ZIP_MAGIC)), stream.seek(0, io.SEEK_END)
    if head == ZIP_MAGIC:
        return PackageError(f"{package_uri}: a zip cut short ({size:,} bytes, and the directory a zip ends with "
                            f"is missing): a copy or download stopped early; {COPY_AGAIN}")
    if not size:
        return PackageError(f"{package_uri}: an empty file (0 bytes), not a package; {COPY_AGAIN}")
    return PackageError(f"{package_uri}: not a zip file, so not a package")
