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
from trainer.data.parsed import parse_dataset
from trainer.data.splits import SPLITS, plan_splits, split_batches
from trainer.errors import DatasetError, TrainerError

CONFIG = NetConfig()


@pytest.fixture(scope="module")
def sample_lines(sample_path: Path) -> list[str]:
    return sample_path.read_text().splitlines()


@pytest.fixture(scope="module")
def sample_frame(sample_path: Path) -> pd.DataFrame:
    return load_dataset(str(sample_path), CONFIG)[0]


@pytest.fixture
def parse_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the test's parses go with it


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


@pytest.mark.usefixtures("parse_cache")
def test_the_sample_splits_into_disjoint_splits_near_the_fractions(sample_path: Path,
                                                                   sample_frame: pd.DataFrame) -> None:
    config = NetConfig(test_fraction=0.2, validation_fraction=0.1, split_seed=42)
    parsed = parse_dataset(str(sample_path), config)
    plan = plan_splits(parsed, config)
    ids = {name: [i for batch in split_batches(parsed, plan, name) for i in batch.column("impression_id").to_pylist()]
           for name in SPLITS}
    # Binomial around 1,400 / 200 / 400. Pinned: on every run and every version of the trainer the same rows
    # are held out (a change of the row hash would move users' rows between splits).
    assert [len(ids[name]) for name in SPLITS] == [1398, 188, 414]
    train, validation, test = (set(ids[name]) for name in SPLITS)
    assert not train & test and not validation & (train | test)
    assert train | validation | test == set(sample_frame["impression_id"])


@pytest.mark.usefixtures("parse_cache")
def test_split_that_leaves_nothing_to_train_on(tmp_path: Path, sample_lines: list[str]) -> None:
    parsed = parse_dataset(str(write_lines(tmp_path / "one.json", sample_lines[:1])), CONFIG)
    with pytest.raises(DatasetError, match=r"leave nothing to train on with test_fraction=0\.2 and "
                                           r"validation_fraction=0\.1; use more data or smaller fractions$"):
        plan_splits(parsed, CONFIG)


def bad_files(lines: list[str]) -> dict[str, tuple[list[str], str]]:
    """Broken variants of the sample (mostly of its first 20 lines), each with what its message must say."""
    head = lines[:20]

    def without(*columns: str) -> list[str]:
        return [json.dumps({k: v for k, v in json.loads(line).items() if k not in columns}) for line in head]

    return {
        "malformed_json": (with_line(head, 6, '{"impression_id": "imp-x", '), r"line 6: not valid JSON"),
        "not_an_object": (with_line(head, 4, "[1, 2]"), r"line 4: expected a JSON object per line"),
        "missing_column": (without("country"), r"column\(s\) country missing"),
        # Every missing column at once, not the first row without a label.
        "missing_label_and_columns": (without("is_click", "country", "title"),
                                      r": column\(s\) is_click, title, country missing"),
        "array_value": (with_values(head, 13, publisher_id=[1, 2]),
                        r"line 13: column 'publisher_id' holds an array; expected a scalar"),
        "text_in_numeric_column": (with_values(head, 8, position="top"),
                                   r"line 8: column 'position' is numeric in the config but holds 'top'"),
        "label_two": (with_values(head, 10, is_click="2"), r"line 10: label 'is_click' is '2'; it must be 0 or 1"),
        "label_null": (with_values(head, 5, is_click=None), r"line 5: label 'is_click' is missing"),
        "label_nan": (with_values(head, 7, is_click="NaN"), r"line 7: label 'is_click' is 'NaN'; it must be 0 or 1"),
        "label_past_the_schema_sample": (with_values(lines, 1500, is_click=None), r"line 1500: label 'is_click'"),
        "empty": ([], r"the file is empty"),
    }


BAD_FILE_CASES = ["malformed_json", "not_an_object", "missing_column", "missing_label_and_columns", "array_value",
                  "text_in_numeric_column", "label_two", "label_null", "label_nan", "label_past_the_schema_sample",
                  "empty"]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_bad_file_names_file_and_place(tmp_path: Path, sample_lines: list[str], case: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lines, expected = bad_files(sample_lines)[case]
    path = write_lines(tmp_path / f"{case}.json", lines)
    with pytest.raises(DatasetError, match=expected) as caught:
        load_dataset(str(path), CONFIG)
    assert str(path) in str(caught.value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as parsing:  # the streamed parse into the cache: the same line
        parse_dataset(str(path), CONFIG)
    assert str(parsing.value) == str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"absent\.json: no such file"):
        load_dataset(str(tmp_path / "absent.json"), CONFIG)


def test_pattern_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"no files match .*part-\*\.json"):
        load_dataset(str(tmp_path / "part-*.json"), CONFIG)


def test_non_numeric_label_names_the_line_that_holds_it(tmp_path: Path, sample_lines: list[str]) -> None:
    path = write_lines(tmp_path / "yes.json", with_values(sample_lines[:20], 6, is_click="yes"))
    with pytest.raises(DatasetError, match=r"line 6: label 'is_click' is 'yes'"):
        load_dataset(str(path), CONFIG)


def test_bad_label_in_a_shard_names_that_shard_and_its_line(tmp_path: Path, sample_lines: list[str]) -> None:
    write_lines(tmp_path / "part-000.json", sample_lines[:10])
    second = write_lines(tmp_path / "part-001.json", with_values(sample_lines[10:13], 3, is_click="2"))
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(tmp_path / "part-*.json"), CONFIG)
    assert str(caught.value).startswith(f"{second} line 3: label 'is_click' is '2'")


def test_bad_label_row_counts_lines_of_the_file_when_subsampling(tmp_path: Path, sample_lines: list[str]) -> None:
    # Lines 1-99 are fine, every line from 100 on has label 2: any kept bad row is at line 100 or later.
    lines = [*sample_lines[:99], *(changed(line, is_click="2") for line in sample_lines[99:200])]
    path = write_lines(tmp_path / "bad.json", lines)
    with pytest.raises(DatasetError, match=r"(row|line) (\d+)") as caught:
        load_dataset(str(path), NetConfig(subsample=0.5))
    place = re.search(r"(?:row|line) (\d+)", str(caught.value))
    assert place is not None and int(place.group(1)) >= 100, str(caught.value)
