"""Honest evaluation: the train/validation/test split (random by row hash, or by time), and
degenerate splits refused with one line before any training."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SAMPLE

from trainer.config import NetConfig
from trainer.data.parsed import parse_dataset
from trainer.data.splits import SPLITS, numbered_batches, plan_splits
from trainer.errors import DatasetError
from trainer.run import TrainRequest, train
from trainer.training.inputs import fit_pass

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]
SAMPLE_ROWS = [json.loads(line) for line in SAMPLE.read_text().splitlines()]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # these datasets' parses go with the test


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows_of(count: int, clicks: list[int] | None = None, times: list[str] | None = None) -> list[dict[str, Any]]:
    """The sample's first `count` rows, each with its own impression_id; every other one a click unless
    `clicks` lists them; event_time `times` when given."""
    labels = np.arange(count) % 2 == 0 if clicks is None else np.isin(np.arange(count), clicks)
    rows = [{**row, "impression_id": f"row-{n}", "is_click": str(int(label))}
            for n, (row, label) in enumerate(zip(SAMPLE_ROWS, labels))]
    return rows if times is None else [{**row, "event_time": time} for row, time in zip(rows, times)]


def split_of_each_row(data: Path, config: NetConfig) -> np.ndarray:
    """The split (an index in SPLITS) of every row of the file, in file order."""
    parsed = parse_dataset(str(data), config)
    plan = plan_splits(parsed, config)
    return np.concatenate([plan.of(batch, first_row) for first_row, batch in numbered_batches(parsed)])


def split_rows(data: Path, config: NetConfig) -> dict[str, list[int]]:
    """Each split's row numbers (from 0, in file order)."""
    split = split_of_each_row(data, config)
    return {name: np.flatnonzero(split == index).tolist() for index, name in enumerate(SPLITS)}


def test_a_random_split_depends_on_split_seed_alone(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "rows.json", rows_of(1000))
    first = split_rows(data, NetConfig(seed=1))
    sizes = [len(first[name]) for name in SPLITS]
    assert abs(sizes[1] - 100) <= 30 and abs(sizes[2] - 200) <= 40, sizes  # binomial around 700/100/200: 3 sigma
    assert split_rows(data, NetConfig(seed=2)) == first  # another weight seed: the same rows held out
    assert split_rows(data, NetConfig(split_seed=7))["test"] != first["test"]


def test_rows_of_one_id_share_a_split_and_rows_without_an_id_split_by_their_values(tmp_path: Path) -> None:
    # Impressions logged twice (other values, one id); rows without an id, the first 200 of them repeated.
    logged_twice = [{**row, "impression_id": f"imp-{n % 300}"} for n, row in enumerate(SAMPLE_ROWS[:600])]
    without_id = [{k: v for k, v in row.items() if k != "impression_id"} for row in SAMPLE_ROWS[600:1400]]
    data = write_rows(tmp_path / "rows.json", [*logged_twice, *without_id, *without_id[:200]])
    split = split_of_each_row(data, NetConfig())
    assert (split[:300] == split[300:600]).all()  # an impression is never in train and in test
    assert (split[600:800] == split[1400:]).all()  # a repeated row neither
    spread = np.bincount(split[600:1400], minlength=3)  # not lumped together as one missing id
    assert abs(spread[1] - 80) <= 26 and abs(spread[2] - 160) <= 34, spread  # binomial of 800 rows: 3 sigma
    by_values = split_of_each_row(data, NetConfig(id_column=""))  # without id_column the two logs part
    assert (by_values[:300] != by_values[300:600]).sum() > 100


def test_a_time_split_holds_out_the_newest_rows_and_keeps_ties_in_file_order(tmp_path: Path) -> None:
    config = NetConfig(split_time_column="event_time", test_fraction=0.2, validation_fraction=0.1)
    # Twenty rows listed newest first: test gets the newest four, validation the next two.
    newest_first = [f"2026-10-{31 - row} 00:00:00 UTC" for row in range(20)]
    splits = split_rows(write_rows(tmp_path / "newest_first.json", rows_of(20, times=newest_first)), config)
    assert (splits["test"], splits["validation"]) == ([0, 1, 2, 3], [4, 5])
    # All at the same time: the later a row is in the file, the newer it counts, on every run.
    same_time = split_rows(write_rows(tmp_path / "same_time.json", rows_of(20, times=["2026-10-01 00:00:00 UTC"] * 20)),
                           config)
    assert (same_time["test"], same_time["validation"]) == ([16, 17, 18, 19], [14, 15])
    # The sample's times: exactly the fractions, each split newer than the one before.
    parsed = parse_dataset(str(write_rows(tmp_path / "sample.json", rows_of(1000))), config)
    described = fit_pass(parsed, config).stats.describe(config)
    assert [described[name]["rows"] for name in SPLITS] == [700, 100, 200]
    ranges = [described[name]["time_range"] for name in SPLITS]
    assert ranges[0][1] <= ranges[1][0] <= ranges[1][1] <= ranges[2][0], ranges  # ISO times sort as text


@pytest.mark.parametrize(("environ", "rows", "message"), [
    ({}, rows_of(1000, clicks=[]),
     "all 1,000 rows have label 0 in 'is_click': a model needs both classes to learn from; check label_column and "
     "the dataset's query"),
    ({"TRAINER_VALIDATION_FRACTION": "0.01"}, rows_of(20),
     "the validation split has none of the 20 rows: its metrics cannot be computed; use more data or raise "
     "validation_fraction (now 0.01)"),
    ({"TRAINER_VALIDATION_FRACTION": "0.001"}, rows_of(1000),
     "the validation split has 1 row and only label class 1: its AUC cannot be computed; use more data or raise "
     "validation_fraction (now 0.001)"),
    ({"TRAINER_SPLIT_TIME_COLUMN": "event_time"}, rows_of(20, clicks=[0, 14], times=["2026-10-01 00:00:00 UTC"] * 20),
     "the test split has 4 rows and only label class 0: its AUC cannot be computed; use more data or raise "
     "test_fraction (now 0.2), or split at random (split_time_column '')"),
], ids=["one-class", "empty-split", "one-row-split", "one-class-time-split"])
def test_a_split_without_rows_or_without_both_label_classes_is_refused_before_training(
    tmp_path: Path, environ: dict[str, str], rows: list[dict[str, Any]], message: str
) -> None:
    data, output = write_rows(tmp_path / "rows.json", rows), tmp_path / "runs"
    said = io.StringIO()
    with pytest.raises(DatasetError) as refused:
        train(TrainRequest("deep_v1", dataset=str(data), output=str(output), environ={**QUICK, **environ}), said)
    assert str(refused.value) == message
    assert "epoch" not in said.getvalue() and not output.exists()


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
