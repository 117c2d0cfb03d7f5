"""Every package format version still reads. The session's package, rewritten as
each older version (the members and fields later versions added dropped, as the
table in trainer/package/layout.py says), loads as that version, scores as the
package does, and lists in fab runs; a version newer than this trainer is
refused (tests/test_bad_inputs.py runs that case through fab, exit status 2)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedPackage
from tensorflow.core.protobuf import saved_model_pb2

from trainer.comparison.compare import compare_packages
from trainer.comparison.read import read_record
from trainer.config import config_from_json_dict
from trainer.data.dataset import load_dataset
from trainer.data.features import EMPTY_TEXT_TOKEN, TEXT_INPUT
from trainer.errors import PackageError
from trainer.package import layout
from trainer.package.layout import (
    CONFIG_FILE,
    CURRENT_VERSION,
    DATASET_FILE,
    DISTINCT_SIGNATURE,
    FORMAT_VERSION_FIELD,
    MANIFEST_FILE,
    PREPROCESSING_FILE,
    REBUILT_TEST_ROWS,
    SERVING_EXPORT,
    SERVING_FOLDER,
    SERVING_MODEL_FILE,
)
from trainer.package.listing import read_summary
from trainer.package.loader import load_package
from trainer.score import score
from trainer.serving.encoding import RawRowEncoder, encode_frame

OLDER_VERSIONS = [fmt.version for fmt in layout.FORMATS if fmt.version < CURRENT_VERSION]
# A version 1 vocabulary starts its words at id 2, where this package's model learnt the "no text" token:
# a token spaCy never makes (it splits at spaces) keeps every word at the id the model learnt it by.
NO_TEXT_PLACEHOLDER = "<no text>"
SCORE_PARITY = 1e-5  # the export against a package without one: its Keras model fed by the same encoder


def rewritten_as(source: Path, version: int, target: Path) -> Path:
    """The package at `source` as format `version` wrote it."""
    with zipfile.ZipFile(source) as package, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as older:
        for name in package.namelist():
            if held_by(name, version):
                older.writestr(name, member_as(name, package.read(name), version))
    return target


def held_by(name: str, version: int) -> bool:
    later = set(layout.REQUIRED_FILES) - set(layout.members(version))
    exported = not name.startswith(f"{SERVING_FOLDER}/") or layout.supports(version, SERVING_EXPORT)
    return name not in later and exported


def member_as(name: str, data: bytes, version: int) -> bytes:
    if name == SERVING_MODEL_FILE and not layout.has_signature(version, DISTINCT_SIGNATURE):
        return without_signature(data, DISTINCT_SIGNATURE)
    if not name.endswith(".json"):
        return data
    document = json.loads(data)
    for fmt in (fmt for fmt in layout.FORMATS if fmt.version > version):
        for key in fmt.fields.get(name, {}):
            del document[key]
    if name == MANIFEST_FILE:  # an older package declares its own version, or none before VERSIONED_SINCE
        if version < layout.VERSIONED_SINCE:
            del document[FORMAT_VERSION_FIELD]
        else:
            document[FORMAT_VERSION_FIELD] = version
    if name == PREPROCESSING_FILE and "empty_text_token" not in document:
        document["token_vocabulary"] = [NO_TEXT_PLACEHOLDER, *document["token_vocabulary"]]
    if name == DATASET_FILE and not layout.supports(version, REBUILT_TEST_ROWS):
        split = document["split"]  # version 1's: train and test only, as row counts
        document["split"] = {"train": split["train"]["rows"] + split["validation"]["rows"],
                             "test": split["test"]["rows"], "test_fraction": split["test_fraction"],
                             "seed": split["seed"]}
    return json.dumps(document).encode()


def without_signature(saved_model_pb: bytes, signature: str) -> bytes:
    """saved_model.pb without one signature: gone from TF Serving's map and from what tf.saved_model.load sees."""
    proto = saved_model_pb2.SavedModel.FromString(saved_model_pb)
    graph = proto.meta_graphs[0]
    del graph.signature_def[signature]
    nodes = graph.object_graph_def.nodes
    signatures = nodes[next(child.node_id for child in nodes[0].children if child.local_name == "signatures")]
    kept = [child for child in signatures.children if child.local_name != signature]
    del signatures.children[:]
    signatures.children.extend(kept)
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def older(trained: TrainedPackage, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("formats")
    return {version: rewritten_as(trained.zip_path, version, folder / f"v{version}.zip") for version in OLDER_VERSIONS}


@pytest.fixture(scope="module")
def comparable_rows(trained: TrainedPackage, sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's rows that every version encodes alike: a title with a token (version 1 has no "no text"
    token) and numbers inside the training range (clipped from version 4 on)."""
    with zipfile.ZipFile(trained.zip_path) as package:
        config = config_from_json_dict(json.loads(package.read(CONFIG_FILE))).config
    frame, _ = load_dataset(str(sample_path), config, with_label=False)
    preprocessor = trained.result.preprocessor
    numbers = frame[list(preprocessor.numeric_columns)].to_numpy(np.float64)
    inside = np.isnan(numbers) | ((numbers >= preprocessor.numeric_min) & (numbers <= preprocessor.numeric_max))
    titled = encode_frame(RawRowEncoder(preprocessor, {}), frame)[TEXT_INPUT][:, 0] != EMPTY_TEXT_TOKEN
    lines = sample_path.read_text().splitlines(keepends=True)
    kept = [lines[row] for row in np.flatnonzero(inside.all(axis=1) & titled)]
    assert len(lines) == len(frame) and len(kept) > len(lines) // 2, "too few rows to compare scores on"
    path = tmp_path_factory.mktemp("comparable") / "rows.json"
    path.write_text("".join(kept))
    return path


@pytest.fixture(scope="module")
def package_scores(trained: TrainedPackage, comparable_rows: Path) -> np.ndarray:
    return scores_of(trained.zip_path, comparable_rows)


def scores_of(package: Path, rows: Path) -> np.ndarray:
    """`fab score`'s scores, in the input's order."""
    lines = io.StringIO()
    score(str(package), str(rows), None, out=lines, err=io.StringIO())
    return np.array([json.loads(line)["score"] for line in lines.getvalue().splitlines()])


def test_a_package_written_now_declares_the_current_format_version(trained: TrainedPackage) -> None:
    with zipfile.ZipFile(trained.zip_path) as package:
        assert json.loads(package.read(MANIFEST_FILE))[FORMAT_VERSION_FIELD] == CURRENT_VERSION
    assert read_record(str(trained.zip_path), "A").format_version == CURRENT_VERSION


@pytest.mark.parametrize("version", OLDER_VERSIONS)
def test_an_older_package_is_read_as_the_version_that_wrote_it(
    older: dict[int, Path], trained: TrainedPackage, version: int
) -> None:
    package = load_package(str(older[version]))
    assert package.format_version == version
    assert (package.serving is not None, package.contract is not None) == (version >= 4, version >= 4)
    assert package.manifest["best_epoch"] == (trained.result.best_epoch if version >= 2 else None)
    assert package.preprocessor.empty_text_token == (EMPTY_TEXT_TOKEN if version >= 2 else None)
    assert bool(package.preprocessor.numeric_min) == (version >= 4)  # older packages' numbers: not clipped
    assert (package.resolved.variants_file is not None) == (version >= 3)


@pytest.mark.parametrize("version", OLDER_VERSIONS)
def test_a_package_of_every_older_version_scores_as_the_package_does(
    older: dict[int, Path], comparable_rows: Path, package_scores: np.ndarray, version: int
) -> None:
    np.testing.assert_allclose(scores_of(older[version], comparable_rows), package_scores, atol=SCORE_PARITY)


def test_fab_runs_lists_every_version_and_compare_says_why_version_1_has_no_auc_difference(
    older: dict[int, Path], trained: TrainedPackage, tmp_path: Path
) -> None:
    summaries = {version: read_summary(str(path)) for version, path in older.items()}
    assert (summaries[1].best_epoch, summaries[1].validation_metrics) == (None, {})
    assert {summaries[v].best_epoch for v in OLDER_VERSIONS[1:]} == {trained.result.best_epoch}
    copy = tmp_path / "v1-copy.zip"
    copy.write_bytes(older[1].read_bytes())
    compared = compare_packages([str(older[1]), str(copy)], str(tmp_path / "curves.png"), out=io.StringIO())
    assert compared.not_computed == ["A (package format version 1) was split into train and test by an older "
                                     "trainer, whose split this one does not rebuild"]


def test_a_package_of_a_newer_format_version_is_refused_with_one_line(trained: TrainedPackage,
                                                                      tmp_path: Path) -> None:
    newer = tmp_path / "newer.zip"
    with zipfile.ZipFile(trained.zip_path) as package, zipfile.ZipFile(newer, "w") as rewritten:
        for name in package.namelist():
            data = package.read(name)
            if name == MANIFEST_FILE:
                data = json.dumps({**json.loads(data), FORMAT_VERSION_FIELD: CURRENT_VERSION + 1}).encode()
            rewritten.writestr(name, data)
    refusal = (f"{newer}: package format version {CURRENT_VERSION + 1} is newer than this trainer reads "
               f"(1 to {CURRENT_VERSION}); upgrade the trainer to read it")
    for read in (load_package, read_summary, lambda uri: read_record(uri, "A")):
        with pytest.raises(PackageError) as refused:
            read(str(newer))
        assert str(refused.value) == refusal
