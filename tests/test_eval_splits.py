"""Honest evaluation: the train/validation/test split (random or by time), and
degenerate splits refused with one line before any training."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK

from trainer.config import NetConfig
from trainer.data.splits import split_dataset
from trainer.errors import DatasetError
from trainer.run import TrainRequest, train

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]


def frame_of(rows: int, clicks: list[int] | None = None, times: list[str] | None = None) -> pd.DataFrame:
    """`rows` rows numbered in file order; every other one a click unless `clicks` lists them."""
    labels = np.arange(rows) % 2 == 0 if clicks is None else np.isin(np.arange(rows), clicks)
    frame = pd.DataFrame({"row": np.arange(rows), "is_click": labels.astype("int8")})
    if times is not None:
        frame["event_time"] = pd.to_datetime(times, utc=True)
    return frame


def test_a_random_split_depends_on_split_seed_alone() -> None:
    frame = frame_of(1000)
    first = split_dataset(frame, NetConfig(seed=1))
    assert [len(rows) for _, rows in first.items()] == [700, 100, 200]
    assert sorted(np.concatenate([rows["row"] for _, rows in first.items()])) == list(range(1000))
    other_weights = split_dataset(frame, NetConfig(seed=2))  # another weight seed: the same rows held out
    assert other_weights.test["row"].tolist() == first.test["row"].tolist()
    assert split_dataset(frame, NetConfig(split_seed=7)).test["row"].tolist() != first.test["row"].tolist()


def test_a_time_split_holds_out_the_newest_rows_and_keeps_ties_in_file_order() -> None:
    config = NetConfig(split_time_column="event_time", test_fraction=0.2, validation_fraction=0.1)
    # Twenty rows listed newest first: test gets the newest four, validation the next two.
    newest_first = [f"2026-10-{31 - row}" for row in range(20)]
    splits = split_dataset(frame_of(20, times=newest_first), config)
    assert (splits.test["row"].tolist(), splits.validation["row"].tolist()) == ([0, 1, 2, 3], [4, 5])
    assert splits.train["event_time"].max() < splits.validation["event_time"].min()
    # All at the same time: the later a row is in the file, the newer it counts, on every run.
    same_time = split_dataset(frame_of(20, times=["2026-10-01"] * 20), config)
    assert (same_time.test["row"].tolist(), same_time.validation["row"].tolist()) == ([16, 17, 18, 19], [14, 15])


@pytest.mark.parametrize(("config", "frame", "message"), [
    (NetConfig(), frame_of(1000, clicks=[]),
     "all 1,000 rows have label 0 in 'is_click': a model needs both classes to learn from; check label_column"),
    (NetConfig(validation_fraction=0.001), frame_of(1000),
     "the validation split has 1 row and only label class "),
    (NetConfig(split_time_column="event_time"), frame_of(20, clicks=[0, 14], times=["2026-10-01"] * 20),
     "the test split has 4 rows and only label class 0: its AUC cannot be computed; use more data or raise "
     "test_fraction (now 0.2), or split at random (split_time_column '')"),
])
def test_a_split_without_both_label_classes_is_refused(config: NetConfig, frame: pd.DataFrame,
                                                        message: str) -> None:
    with pytest.raises(DatasetError) as refused:
        split_dataset(frame, config)
    assert str(refused.value).startswith(message)


def test_a_dataset_with_one_label_class_ends_with_one_line_before_training(
    tmp_path: Path, sample_path: Path, run_python: Runner, lines_of: Lines
) -> None:
    no_clicks = tmp_path / "no_clicks.json"
    no_clicks.write_text("".join(json.dumps({**json.loads(line), "is_click": "0"}) + "\n"
                                 for line in sample_path.read_text().splitlines()))
    output = tmp_path / "runs"
    proc = run_python("-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(no_clicks),
                      "--output", str(output), env={"TRAINER_EPOCHS": "2"})
    assert proc.returncode == 2, proc.stderr
    assert [line for line in lines_of(proc) if line.startswith("error:")] == [
        "error: all 2,000 rows have label 0 in 'is_click': a model needs both classes to learn from; check "
        "label_column and the dataset's query"]
    assert "Traceback" not in proc.stderr and not proc.stdout.count("epoch ")
    assert not output.exists() or not any(output.rglob("*.zip"))


def test_a_run_split_by_time_records_each_splits_time_range(output_dir: Path, sample_path: Path) -> None:
    environ = {**QUICK, "TRAINER_SPLIT_TIME_COLUMN": "event_time"}
    result = train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(output_dir), environ=environ),
                   io.StringIO())
    with zipfile.ZipFile(result.package_uri) as archive:
        split = json.loads(archive.read("dataset.json"))["split"]
    assert split["method"] == "time" and split["time_column"] == "event_time" and "seed" not in split
    assert [split[name]["rows"] for name in ("train", "validation", "test")] == [1400, 200, 400]
    ranges = [split[name]["time_range"] for name in ("train", "validation", "test")]
    assert ranges[0][1] <= ranges[1][0] <= ranges[1][1] <= ranges[2][0], ranges  # ISO times sort as text
