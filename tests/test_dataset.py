"""Loading BigQuery NDJSON exports into a compact frame, shards, subsampling,
the train/test split, and the message each broken data file gives."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset
from trainer.data.splits import split_dataset
from trainer.errors import DatasetError, TrainerError

CONFIG = NetConfig()


@pytest.fixture(scope="module")
def sample_lines(sample_path: Path) -> list[str]:
    return sample_path.read_text().splitlines()


@pytest.fixture(scope="module")
def sample_frame(sample_path: Path) -> pd.DataFrame:
    return load_dataset(str(sample_path), CONFIG)[0]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def changed(line: str, **values: Any) -> str:
    return json.dumps({**json.loads(line), **values})


def with_line(lines: list[str], number: int, replacement: str) -> list[str]:
    """`lines` with line `number` (1-based, as an editor counts) replaced."""
    return [replacement if n == number else line for n, line in enumerate(lines, 1)]


def with_values(lines: list[str], number: int, **values: Any) -> list[str]:
    return with_line(lines, number, changed(lines[number - 1], **values))


def test_sample_loads_every_row_with_compact_dtypes(sample_path: Path, sample_frame: pd.DataFrame) -> None:
    frame, source = load_dataset(str(sample_path), CONFIG)
    assert len(frame) == source.rows_read == 2000
    for column in (*CONFIG.categorical_columns, CONFIG.text_column):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    for column in CONFIG.numeric_columns:
        assert frame[column].dtype == np.float32, column
    assert frame[CONFIG.label_column].dtype == np.int8
    assert source.sha256 == hashlib.sha256(sample_path.read_bytes()).hexdigest()
    assert source.size_bytes == sample_path.stat().st_size


def test_bigquery_int64_strings_are_parsed(sample_lines: list[str], sample_frame: pd.DataFrame) -> None:
    rows = [json.loads(line) for line in sample_lines]
    assert isinstance(rows[0]["position"], str) and isinstance(rows[0]["is_click"], str)  # the export's form
    np.testing.assert_array_equal(sample_frame["position"], [float(r["position"]) for r in rows])
    np.testing.assert_array_equal(sample_frame["is_click"], [int(r["is_click"]) for r in rows])
    np.testing.assert_allclose(sample_frame["item_age_hours"], [r["item_age_hours"] for r in rows], rtol=1e-6)
    assert list(sample_frame["hour"].astype(str)) == [r["hour"] for r in rows]
    assert list(sample_frame["impression_id"]) == [r["impression_id"] for r in rows]


def test_shards_matched_by_a_pattern_load_as_one_frame(
    tmp_path: Path, sample_path: Path, sample_lines: list[str], sample_frame: pd.DataFrame
) -> None:
    write_lines(tmp_path / "part-000.json", sample_lines[:1200])
    write_lines(tmp_path / "part-001.json", sample_lines[1200:])
    frame, source = load_dataset(str(tmp_path / "part-*.json"), CONFIG)
    assert len(source.files) == 2
    assert len(frame) == 2000
    assert list(frame["impression_id"]) == list(sample_frame["impression_id"])
    # The hash is that of the shards' bytes back to back, here the sample's.
    assert source.sha256 == hashlib.sha256(sample_path.read_bytes()).hexdigest()


def test_subsample_keeps_about_the_fraction_and_is_deterministic(sample_path: Path) -> None:
    config = NetConfig(subsample=0.25)
    first, source = load_dataset(str(sample_path), config)
    again, _ = load_dataset(str(sample_path), config)
    assert 400 <= len(first) <= 600
    assert source.rows_read == 2000  # rows read, before subsampling
    assert list(first["impression_id"]) == list(again["impression_id"])


def test_split_is_deterministic_disjoint_and_sized(sample_frame: pd.DataFrame) -> None:
    train, test = split_dataset(sample_frame, test_fraction=0.2, seed=42)
    train_again, test_again = split_dataset(sample_frame, test_fraction=0.2, seed=42)
    _, other_test = split_dataset(sample_frame, test_fraction=0.2, seed=7)
    assert (len(train), len(test)) == (1600, 400)
    train_ids, test_ids = set(train["impression_id"]), set(test["impression_id"])
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(sample_frame["impression_id"])
    assert list(test["impression_id"]) == list(test_again["impression_id"])
    assert list(train["impression_id"]) == list(train_again["impression_id"])
    assert set(other_test["impression_id"]) != test_ids


def test_split_that_leaves_nothing_to_train_on(sample_frame: pd.DataFrame) -> None:
    with pytest.raises(DatasetError, match="leave nothing to train on"):
        split_dataset(sample_frame.head(1), test_fraction=0.2, seed=0)


def bad_files(lines: list[str]) -> dict[str, tuple[list[str], str]]:
    """Broken variants of the sample (mostly of its first 20 lines), each with what its message must say."""
    head = lines[:20]
    no_country = [json.dumps({k: v for k, v in json.loads(line).items() if k != "country"}) for line in head]
    return {
        "malformed_json": (with_line(head, 6, '{"impression_id": "imp-x", '), r"line 6: not valid JSON"),
        "not_an_object": (with_line(head, 4, "[1, 2]"), r"line 4: expected a JSON object per line"),
        "missing_column": (no_country, r"column\(s\) country missing"),
        "number_among_strings": (with_values(head, 13, publisher_id=12345),
                                 r"line 13: column 'publisher_id' is 12345, but earlier lines hold strings"),
        "text_in_numeric_column": (with_values(head, 8, position="top"),
                                   r"column 'position' is numeric in the config but row 8 holds 'top'"),
        "label_two": (with_values(head, 10, is_click="2"), r"label 'is_click' must be 0 or 1, but row 10 holds '2'"),
        "label_null": (with_values(head, 5, is_click=None), r"label 'is_click' is missing in row 5"),
        "number_past_the_schema_sample": (with_values(lines, 1500, publisher_id=12345),
                                          r"line 1500: column 'publisher_id' is 12345"),
        "empty": ([], r"the file is empty"),
    }


BAD_FILE_CASES = ["malformed_json", "not_an_object", "missing_column", "number_among_strings",
                  "text_in_numeric_column", "label_two", "label_null", "number_past_the_schema_sample", "empty"]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_bad_file_names_file_and_place(tmp_path: Path, sample_lines: list[str], case: str) -> None:
    lines, expected = bad_files(sample_lines)[case]
    path = write_lines(tmp_path / f"{case}.json", lines)
    with pytest.raises(DatasetError, match=expected) as caught:
        load_dataset(str(path), CONFIG)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"absent\.json: no such file"):
        load_dataset(str(tmp_path / "absent.json"), CONFIG)


def test_pattern_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"no files match .*part-\*\.json"):
        load_dataset(str(tmp_path / "part-*.json"), CONFIG)


def test_non_numeric_label_names_the_row_that_holds_it(tmp_path: Path, sample_lines: list[str]) -> None:
    path = write_lines(tmp_path / "yes.json", with_values(sample_lines[:20], 6, is_click="yes"))
    with pytest.raises(DatasetError, match=r"row 6 holds 'yes'"):
        load_dataset(str(path), CONFIG)


def test_bad_label_in_a_shard_names_that_shard_and_its_line(tmp_path: Path, sample_lines: list[str]) -> None:
    write_lines(tmp_path / "part-000.json", sample_lines[:10])
    second = write_lines(tmp_path / "part-001.json", with_values(sample_lines[10:13], 3, is_click="2"))
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(tmp_path / "part-*.json"), CONFIG)
    message = str(caught.value)
    assert str(second) in message
    assert "row 3 holds '2'" in message or "line 3 " in message


def test_bad_label_row_counts_lines_of_the_file_when_subsampling(tmp_path: Path, sample_lines: list[str]) -> None:
    # Lines 1-99 are fine, every line from 100 on has label 2: any kept bad row is at line 100 or later.
    lines = [*sample_lines[:99], *(changed(line, is_click="2") for line in sample_lines[99:200])]
    path = write_lines(tmp_path / "bad.json", lines)
    with pytest.raises(DatasetError, match=r"(row|line) (\d+)") as caught:
        load_dataset(str(path), NetConfig(subsample=0.5))
    place = re.search(r"(?:row|line) (\d+)", str(caught.value))
    assert place is not None and int(place.group(1)) >= 100, str(caught.value)
