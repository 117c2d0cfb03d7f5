"""Exact resume and nothing lost after training: a run killed at a fixed point
(the FAB_TEST_KILL_AT hook SIGKILLs the trainer there) and run again with the
same arguments ends with the package an uninterrupted run writes.

The killed runs and their reruns are the user's command, in subprocesses. The
uninterrupted run they are compared with only has to write its package, so it
is `train` in this process: the same config and seed make the same package as
the command, without another process starting TensorFlow.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from cloud_fixtures import object_names, storage_client
from conftest import NO_XLA, QUICK

from trainer.data.dataset import load_dataset
from trainer.faults import KILL_AT_VARIABLE
from trainer.package.loader import load_package
from trainer.run import TrainRequest, train

Runner = Callable[..., subprocess.CompletedProcess]
# Early stopping with patience 2 and dropout (its seed generators must resume too).
STOPPING_ENV = {"TRAINER_EPOCHS": "12", "TRAINER_BATCH_SIZE": "64", "TRAINER_EARLY_STOPPING_PATIENCE": "2",
                "TRAINER_DROPOUT": "0.2", **NO_XLA}
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+\b", re.MULTILINE)
SCORE_COLUMNS = ["train_mean_batch_loss", "train_auc", "validation_auc", "validation_logloss"]


def train_args(sample_path: Path, output: Path) -> list[str]:
    return ["-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(sample_path), "--output", str(output)]


def killed_at(run_python: Runner, args: list[str], env: dict[str, str], point: str) -> None:
    proc = run_python(*args, env={**env, KILL_AT_VARIABLE: point})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def package_of(output: Path) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    [package] = output.glob("*.zip")
    with zipfile.ZipFile(package) as archive:
        return package, json.loads(archive.read("manifest.json")), pd.read_csv(archive.open("metrics.csv"))


def tensorboard_steps(package: Path, tmp_path: Path, tag: str = "epoch_auc") -> dict[str, list[int]]:
    """Per folder (a split, or tensorboard/ for the run's session), the steps of a scalar in the package's events."""
    folder = tmp_path / f"unzipped-{package.stem}"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    steps: dict[str, list[int]] = {}
    for events in sorted((folder / "tensorboard").rglob("*tfevents*")):
        for record in tf.data.TFRecordDataset(str(events)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if any(value.tag == tag for value in event.summary.value):
                steps.setdefault(events.parent.name, []).append(event.step)
    return steps


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory: pytest.TempPathFactory,
                  sample_path: Path) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    """An uninterrupted run that early stopping ends: its package, manifest and epochs."""
    output = tmp_path_factory.mktemp("clean")
    train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(output), environ=STOPPING_ENV), io.StringIO())
    return package_of(output)


def test_a_run_killed_after_its_best_epoch_resumes_to_the_same_package(
    tmp_path: Path, sample_path: Path, run_python: Runner, stopped_early: tuple[Path, dict[str, Any], pd.DataFrame]
) -> None:
    clean_package, clean_manifest, clean_epochs = stopped_early
    best, trained = clean_manifest["best_epoch"], clean_manifest["epochs_trained"]
    kill = best + 1  # after the best epoch, while early stopping is still waiting
    assert kill < trained <= 12, f"early stopping must stop after epoch {kill} for this test: {clean_manifest}"

    output = tmp_path / "resumed"
    killed_at(run_python, train_args(sample_path, output), STOPPING_ENV, f"epoch:{kill}")
    assert not list(output.glob("*.zip"))
    again = run_python(*train_args(sample_path, output), env=STOPPING_ENV)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"^resuming run deep_v1-\S+ after epoch {kill}/12$", again.stdout, re.MULTILINE), again.stdout
    assert [int(n) for n in EPOCH_LINE.findall(again.stdout)] == list(range(kill + 1, trained + 1))

    package, manifest, epochs = package_of(output)
    assert (manifest["epochs_trained"], manifest["best_epoch"]) == (trained, best)
    for split in ("validation_metrics", "test_metrics"):
        for name, value in clean_manifest[split].items():
            assert manifest[split][name] == pytest.approx(value, abs=1e-6), (split, name)
    np.testing.assert_allclose(epochs[SCORE_COLUMNS], clean_epochs[SCORE_COLUMNS], atol=1e-6)
    frame, _ = load_dataset(str(sample_path), load_package(str(package)).config, with_label=False)
    np.testing.assert_allclose(load_package(str(package)).score(frame), load_package(str(clean_package)).score(frame),
                               atol=1e-6)
    # One coherent history: each epoch once, not the killed attempt's events beside the rerun's.
    assert tensorboard_steps(package, tmp_path) == {split: list(range(1, trained + 1))
                                                    for split in ("train", "validation")}
    assert not list(output.glob(".work/*"))


@pytest.mark.parametrize("point", ["parse:written", "encoded:validation"])
def test_a_run_killed_while_its_data_is_parsed_or_encoded_ends_with_the_same_package(
    tmp_path: Path, sample_path: Path, run_python: Runner, stopped_early: tuple[Path, dict[str, Any], pd.DataFrame],
    point: str
) -> None:
    """Before any epoch: the parse cache (a cache of its own here, so the parse runs) or the encoded splits
    half made; the rerun makes them whole and trains the uninterrupted run's package."""
    _, clean_manifest, clean_epochs = stopped_early
    env = {**STOPPING_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    output = tmp_path / "resumed"
    killed_at(run_python, train_args(sample_path, output), env, point)
    assert not list(output.glob("*.zip"))
    again = run_python(*train_args(sample_path, output), env=env)
    assert again.returncode == 0, again.stderr
    # A killed parse leaves no cache to reuse; a kill while encoding leaves the finished parse.
    assert ("rows parsed in" if point == "parse:written" else "parsed rows reused") in again.stdout, again.stdout
    _, manifest, epochs = package_of(output)
    assert manifest["epochs_trained"] == clean_manifest["epochs_trained"]
    for name, value in clean_manifest["test_metrics"].items():
        assert manifest["test_metrics"][name] == pytest.approx(value, abs=1e-6), name
    np.testing.assert_allclose(epochs[SCORE_COLUMNS], clean_epochs[SCORE_COLUMNS], atol=1e-6)


def test_a_run_killed_once_early_stopping_ended_it_trains_no_further_epoch(
    tmp_path: Path, sample_path: Path, run_python: Runner, stopped_early: tuple[Path, dict[str, Any], pd.DataFrame]
) -> None:
    _, clean_manifest, clean_epochs = stopped_early
    trained = clean_manifest["epochs_trained"]
    assert trained < 12, f"early stopping must end this run before its epoch limit: {clean_manifest}"
    output = tmp_path / "resumed"
    # After the last epoch's backup, which holds early stopping's decision, before fit returns.
    killed_at(run_python, train_args(sample_path, output), STOPPING_ENV, f"epoch:{trained}")
    again = run_python(*train_args(sample_path, output), env=STOPPING_ENV)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"^resuming run deep_v1-\S+ after epoch {trained}/12$", again.stdout, re.MULTILINE), again.stdout
    assert not EPOCH_LINE.search(again.stdout), "a run early stopping had ended was trained further"
    _, manifest, epochs = package_of(output)
    assert (manifest["epochs_trained"], manifest["best_epoch"]) == (trained, clean_manifest["best_epoch"])
    for name, value in clean_manifest["test_metrics"].items():
        assert manifest["test_metrics"][name] == pytest.approx(value, abs=1e-6), name
    np.testing.assert_allclose(epochs[SCORE_COLUMNS], clean_epochs[SCORE_COLUMNS], atol=1e-6)


def test_a_kill_during_packaging_packages_the_run_without_retraining(
    tmp_path: Path, sample_path: Path, run_python: Runner
) -> None:
    output = tmp_path / "runs"
    killed_at(run_python, train_args(sample_path, output), QUICK, "packaging")
    assert not list(output.glob("*.zip")) and not list(output.glob(".*.partial"))
    again = run_python(*train_args(sample_path, output), env=QUICK)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^run deep_v1-\S+ finished training earlier \(weights of epoch [12]\); packaging it without "
                     r"retraining$", again.stdout, re.MULTILINE), again.stdout
    assert not EPOCH_LINE.search(again.stdout), "the finished run was trained again"
    package, manifest, epochs = package_of(output)
    assert manifest["epochs_trained"] == 2 and list(epochs["epoch"]) == [1, 2]
    # Both attempts wrote the session's final metrics; the package has them once.
    assert tensorboard_steps(package, tmp_path, "test_auc") == {"tensorboard": [manifest["best_epoch"]]}


def test_a_failed_upload_to_gcs_keeps_the_trained_model_for_the_rerun(
    tmp_path: Path, sample_path: Path, run_python: Runner, cloud_env: dict[str, str]
) -> None:
    """The real client against the storage emulator: a bucket that is not there yet refuses the upload."""
    bucket = f"runs-{uuid.uuid4().hex[:8]}"
    args = [*train_args(sample_path, tmp_path)[:-1], f"gs://{bucket}/deep"]
    failed = run_python(*args, env={**cloud_env, **QUICK})
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert [line for line in failed.stderr.splitlines() if line.startswith("error:")], failed.stderr
    assert len(EPOCH_LINE.findall(failed.stdout)) == 2  # it trained, then could not publish
    storage_client().create_bucket(bucket)
    again = run_python(*args, env={**cloud_env, **QUICK})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "packaging it without retraining" in again.stdout and not EPOCH_LINE.search(again.stdout)
    assert [name for name in object_names(f"gs://{bucket}/deep") if name.endswith(".zip")], "nothing published"
