"""The package one run writes: its files and what they say, scoring from it,
and the errors `load_package` gives for things that are not packages."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from trainer.config import KEYS
from trainer.data import storage
from trainer.data.dataset import load_dataset
from trainer.errors import PackageError
from trainer.package.layout import (
    CONFIG_FILE,
    DATASET_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    METRICS_PLOT,
    MODEL_FILE,
    MODEL_FOLDER,
    PREPROCESSING_FILE,
    REQUIRED_FILES,
    TENSORBOARD_FOLDER,
)
from trainer.package.listing import format_runs, list_runs
from trainer.package.loader import load_package
from trainer.package.writer import write_json
from trainer.training.metrics import epoch_figure

Runner = Callable[..., subprocess.CompletedProcess]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The train split's mean batch loss (Keras' `loss`, during the epoch), then each split's figures after it.
EPOCH_COLUMNS = ["train_mean_batch_loss"] + [f"{split}_{name}" for split in ("train", "validation")
                                             for name in ("logloss", "auc", "accuracy")]


@pytest.fixture(scope="module")
def archive(trained: Any) -> Iterator[zipfile.ZipFile]:
    with zipfile.ZipFile(trained.zip_path) as opened:
        yield opened


def read_json(archive: zipfile.ZipFile, name: str) -> dict[str, Any]:
    return json.loads(archive.read(name))


def test_package_is_one_zip_named_after_the_run(trained: Any) -> None:
    assert [p.name for p in trained.output.glob("*.zip")] == [f"{trained.result.run_id}.zip"]
    assert trained.result.run_id.startswith("deep_v1-")
    assert f"package {trained.zip_path}" in trained.log


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_package_holds_required_file(archive: zipfile.ZipFile, name: str) -> None:
    assert archive.getinfo(name).file_size > 0


def test_package_holds_tensorboard_event_files(archive: zipfile.ZipFile) -> None:
    events = [n for n in archive.namelist() if n.startswith(f"{TENSORBOARD_FOLDER}/") and ".tfevents." in n]
    # The run's HParams session at the top, its epochs per split (tests/test_runs_side_by_side.py reads them).
    assert {n.rsplit("/", 1)[0] for n in events} == {TENSORBOARD_FOLDER, f"{TENSORBOARD_FOLDER}/train",
                                                      f"{TENSORBOARD_FOLDER}/validation"}


def test_metrics_csv_has_one_row_per_epoch_with_train_and_validation_metrics(archive: zipfile.ZipFile) -> None:
    with archive.open(METRICS_FILE) as csv:
        table = pd.read_csv(csv)
    assert list(table["epoch"]) == [1, 2]
    assert list(table.columns[1:8]) == EPOCH_COLUMNS
    assert "train_loss" not in table and "validation_loss" not in table, "one name per loss"
    assert not [c for c in table.columns if c.startswith("test")], "the test split is scored once, not per epoch"
    assert table[EPOCH_COLUMNS].notna().all().all()
    assert table["train_auc"].between(0, 1).all() and table["validation_accuracy"].between(0, 1).all()


def test_the_packaged_epoch_and_its_validation_and_test_metrics_are_recorded(
    archive: zipfile.ZipFile, trained: Any
) -> None:
    manifest = read_json(archive, MANIFEST_FILE)
    table = pd.read_csv(archive.open(METRICS_FILE)).set_index("epoch")
    best = manifest["best_epoch"]
    assert best == trained.result.best_epoch and best == table["validation_auc"].idxmax()
    # The validation metrics are those of the packaged weights: the chosen epoch's row.
    assert manifest["validation_metrics"]["auc"] == pytest.approx(table.loc[best, "validation_auc"], abs=1e-6)
    assert manifest["test_metrics"] == trained.result.test_metrics
    assert 0 <= manifest["test_metrics"]["auc"] <= 1
    assert re.search(r"^epoch 1/2  train: .* \|  validation: logloss .* auc .*$", trained.log, re.MULTILINE)
    assert f"(weights of epoch {best}; validation auc" in trained.log


def test_fab_runs_shows_the_packaged_epoch_with_its_validation_and_test_auc(trained: Any) -> None:
    header, row = format_runs(list_runs(str(trained.output))).splitlines()
    assert header.split() == ["run", "variant", "written", "epochs", "best_epoch", "validation_auc", "test_auc",
                              "test_logloss", "test_accuracy", "dataset", "rows", "sha256", "study",
                              "beyond_the_variant"]
    # The fixture trains deep_v1 as defined, with conftest's QUICK overrides from the environment.
    assert row.endswith("batch_size=128 (environment), epochs=2 (environment), xla=false (environment)")
    cells = row.split()  # the written time is two cells: date and time
    result = trained.result
    assert (cells[0], cells[4], cells[5]) == (result.run_id, "2", str(result.best_epoch))
    assert cells[6:8] == [f"{result.validation_metrics['auc']:.4f}", f"{result.test_metrics['auc']:.4f}"]


def test_every_json_member_parses_strictly(archive: zipfile.ZipFile) -> None:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    members = [name for name in archive.namelist() if name.endswith(".json")]
    assert {MANIFEST_FILE, CONFIG_FILE, DATASET_FILE, PREPROCESSING_FILE} <= set(members)
    for name in members:
        json.loads(archive.read(name), parse_constant=refuse)


def test_an_unknown_metric_is_written_as_null(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"auc": float("nan"), "values": [np.float32("inf"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"auc": None, "values": [None, 1.5]}


def test_publishing_removes_a_partial_copy_a_killed_publish_left(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "run.zip"
    target.parent.mkdir()
    stale = target.parent / ".run.zip.0badc0de.partial"
    stale.write_bytes(b"half a zip")
    local = tmp_path / "built.zip"
    local.write_bytes(b"a whole zip")
    storage.publish(local, str(target))
    assert [p.name for p in target.parent.iterdir()] == ["run.zip"]


def test_metrics_png_marks_the_packaged_epoch_on_whole_epochs_without_accuracy(archive: zipfile.ZipFile) -> None:
    png = archive.read(METRICS_PLOT)
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    table, best = pd.read_csv(archive.open(METRICS_FILE)), read_json(archive, MANIFEST_FILE)["best_epoch"]
    figure = epoch_figure(table, "run", best)
    try:
        assert (width, height) == tuple(figure.get_size_inches() * 100), "the package's png is not this figure"
        assert [axis.get_ylabel() for axis in figure.axes] == ["log-loss", "AUC"], "accuracy drawn unasked"
        for axis in figure.axes:
            assert axis.get_xlabel() == "epoch" and set(axis.get_xticks()) <= {0.0, 1.0, 2.0, 3.0}
            [marker] = [line for line in axis.get_lines() if line.get_label().startswith("packaged")]
            assert marker.get_label() == f"packaged: epoch {best}" and list(marker.get_xdata()) == [best, best]
        assert [line.get_label() for line in figure.axes[0].get_lines()][:3] == [
            "train", "validation", "train, mean batch loss (during the epoch)"]
    finally:
        plt.close(figure)
    asked = epoch_figure(table, "run", best, accuracy=True)
    assert [axis.get_ylabel() for axis in asked.axes] == ["log-loss", "AUC", "accuracy (at 0.5)"]
    plt.close(asked)


def test_config_json_has_every_key_with_its_source(archive: zipfile.ZipFile) -> None:
    config = read_json(archive, CONFIG_FILE)
    assert config["variant"] == "deep_v1"
    assert set(config["keys"]) == set(KEYS)
    assert config["keys"]["epochs"] == {"value": 2, "source": "environment TRAINER_EPOCHS"}
    assert config["keys"]["batch_size"] == {"value": 128, "source": "environment TRAINER_BATCH_SIZE"}
    assert config["keys"]["network"] == {"value": "deep_v1", "source": "variant 'deep_v1' in variant_config.json"}
    assert config["keys"]["learning_rate"]["source"] == "default"


def test_dataset_json_describes_the_data_it_trained_on(archive: zipfile.ZipFile, sample_path: Path) -> None:
    data = read_json(archive, DATASET_FILE)
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    assert data["source"] == str(sample_path)
    assert data["sha256"] == hashlib.sha256(sample_path.read_bytes()).hexdigest()
    assert data["rows"] == len(rows) == 2000
    split = data["split"]
    # By each row's hash: near 70% / 10% / 20%, the same rows on every run.
    assert (split["train"]["rows"], split["validation"]["rows"], split["test"]["rows"]) == (1398, 188, 414)
    assert (split["method"], split["seed"]) == ("random", 42)
    for name in ("train", "validation", "test"):
        assert split[name]["label_rate"] == data["label_rate"][name]
    assert data["schema"]["is_click"] == "int8" and data["schema"]["position"] == "float32"
    assert data["schema"]["country"] == "category"
    assert data["numbers_beyond_float32"] == {"position": 0, "item_age_hours": 0}  # counted, none in the sample
    assert data["label_rate"]["all"] == pytest.approx(np.mean([int(r["is_click"]) for r in rows]))
    cardinalities = data["categorical_cardinalities"]
    assert cardinalities["platform"] == len({r["platform"] for r in rows}) + 1
    assert set(cardinalities) == set(read_json(archive, CONFIG_FILE)["keys"]["categorical_columns"]["value"])


def test_manifest_traces_code_libraries_device_and_timings(archive: zipfile.ZipFile, trained: Any) -> None:
    manifest = read_json(archive, MANIFEST_FILE)
    assert manifest["run_id"] == trained.result.run_id
    commit = re.fullmatch(r"([0-9a-f]{40})(\+dirty)?", manifest["code_commit"])
    assert commit, manifest["code_commit"]
    # A commit of this repository (fails if git does not know it).
    subprocess.run(["git", "cat-file", "-e", f"{commit.group(1)}^{{commit}}"], cwd=Path(__file__).parent, check=True)
    assert {"tensorflow-cpu", "keras", "numpy", "pandas", "pyarrow"} <= set(manifest["libraries"])
    assert manifest["device"].startswith("CPU")
    assert {"load", "preprocess", "build", "fit", "evaluate"} <= set(manifest["stage_seconds"])
    assert all(seconds >= 0 for seconds in manifest["stage_seconds"].values())
    assert manifest["pyformance"]["rows_loaded"]["count"] == 2000
    assert manifest["pyformance"]["examples_trained"]["count"] == 2 * 1398
    assert manifest["epochs_trained"] == 2


def test_score_command_writes_one_line_per_row(
    trained: Any, sample_path: Path, tmp_path: Path, run_python: Runner
) -> None:
    scores = tmp_path / "scores.json"
    proc = run_python("-m", "trainer", "score", "--package", str(trained.zip_path), "--input", str(sample_path),
                      "--output", str(scores))
    assert proc.returncode == 0, proc.stderr
    assert f"scored 2,000 rows into {scores}" in proc.stderr
    lines = [json.loads(line) for line in scores.read_text().splitlines()]
    ids = [json.loads(line)["impression_id"] for line in sample_path.read_text().splitlines()]
    assert [line["impression_id"] for line in lines] == ids
    assert all(0.0 <= line["score"] <= 1.0 for line in lines)


def test_missing_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"absent\.zip: no such package"):
        load_package(str(tmp_path / "absent.zip"))


def test_file_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_text("not a zip\n")
    with pytest.raises(PackageError, match=r"model\.zip: not a zip file, so not a package"):
        load_package(str(path))


def test_an_unzipped_package_zipped_again_as_advised_scores_as_before(
    trained: Any, archive: zipfile.ZipFile, sample_path: Path, tmp_path: Path
) -> None:
    """The unzipped folder is named as one, and what its error says (zip -r the folder's contents) gives a
    package that scores as the run's model: zip -r stores an entry per folder too, which loading skips."""
    unzipped = tmp_path / "run"
    archive.extractall(unzipped)
    with pytest.raises(PackageError, match=r"run: an unzipped package .* \(cd .*/run && zip -r \.\./run\.zip \.\)"):
        load_package(str(unzipped))
    with zipfile.ZipFile(tmp_path / "run.zip", "w", zipfile.ZIP_DEFLATED) as again:
        for path in sorted(unzipped.rglob("*")):  # folders too (model/, model/serving/1/, ...), as zip -r does
            again.write(path, path.relative_to(unzipped).as_posix())
    package = load_package(str(tmp_path / "run.zip"))
    frame = load_dataset(str(sample_path), package.config, with_label=False)[0].head(200)
    np.testing.assert_array_equal(package.score(frame), trained.result.package.score(frame))


def test_zip_without_the_model_files(tmp_path: Path, archive: zipfile.ZipFile) -> None:
    path = tmp_path / "partial.zip"
    with zipfile.ZipFile(path, "w") as partial:
        for name in archive.namelist():
            if not name.startswith(f"{MODEL_FOLDER}/"):
                partial.writestr(name, archive.read(name))
    with pytest.raises(PackageError) as caught:
        load_package(str(path))
    message = str(caught.value)
    assert "partial.zip: not a complete package" in message
    assert MODEL_FILE in message and PREPROCESSING_FILE in message


def test_failed_run_leaves_no_zip(diverged_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, output = diverged_run
    assert proc.returncode != 0
    assert not list(output.rglob("*.zip"))
