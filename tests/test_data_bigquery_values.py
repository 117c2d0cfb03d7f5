"""Every value BigQuery's NDJSON export writes for the schema's types is read or
refused with one line: BOOL, INT64 as strings or numbers, FLOAT64's "NaN" and
"Infinity", TIMESTAMP, and NULL as null or no key, in every column kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Runner, TrainedPackage, output_lines

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset
from trainer.data.features import NUMERIC_INPUT
from trainer.data.fitting import fit_frame
from trainer.errors import DatasetError
from trainer.serving.encoding import RawRowEncoder, encode_frame

CONFIG = NetConfig(categorical_columns=("publisher_id",), numeric_columns=("position",), text_column="title",
                   id_column="impression_id", label_column="is_click", split_time_column="event_time")
BASE = {"impression_id": "i", "event_time": "2026-10-13 18:53:18 UTC", "publisher_id": "p",
        "position": "1", "title": "news", "is_click": "0"}


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows_with(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per change over BASE; a value of ... leaves the key out (BigQuery's other NULL)."""
    return [{k: v for k, v in {**BASE, "impression_id": f"i{n}", **change}.items() if v is not ...}
            for n, change in enumerate(changes)]


def test_every_form_bigquery_writes_is_read_by_role(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "export.json", rows_with([
        {"is_click": True, "position": "3", "publisher_id": "3"},
        {"is_click": False, "position": 3, "publisher_id": 3},  # INT64 as a number: the same category
        {"is_click": "1", "position": "NaN", "publisher_id": None, "title": None},
        {"is_click": 1, "position": "Infinity", "publisher_id": ..., "title": ...},
        {"is_click": 0, "position": "-Infinity", "title": "",
         "event_time": "2026-10-14 07:00:01.250000 UTC"},
        {"position": None, "event_time": "2026-10-15T00:00:00Z"},
        {"position": ..., "publisher_id": True},
    ]))
    frame, source = load_dataset(str(path), CONFIG)

    assert source.rows_read == len(frame) == 7
    assert list(frame["is_click"]) == [1, 0, 1, 1, 0, 0, 0]
    assert list(frame["publisher_id"].astype(object)) == ["3", "3", np.nan, np.nan, "p", "p", "true"]
    # Non-finite numbers are missing, like nulls: preprocessing gives them the training mean.
    np.testing.assert_array_equal(frame["position"], [3, 3, np.nan, np.nan, np.nan, np.nan, np.nan])
    encoded = encode_frame(RawRowEncoder(fit_frame(frame, CONFIG).preprocessor, {}), frame)[NUMERIC_INPUT]
    assert np.all(np.isfinite(encoded)) and np.all(encoded[2:] == 0.0)
    assert list(frame["title"].astype(str)) == ["news", "news", "", "", "", "news", "news"]
    assert str(frame["event_time"].dtype) == "datetime64[ns, UTC]"
    assert list(frame["event_time"][4:6]) == [pd.Timestamp("2026-10-14 07:00:01.25", tz="UTC"),
                                             pd.Timestamp("2026-10-15", tz="UTC")]


def test_a_column_mixing_numbers_and_strings_reads_as_if_each_were_uniform(
        tmp_path: Path, sample_path: Path) -> None:
    # pyarrow types a column from its first lines; a mix goes through the line-by-line reader.
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    as_numbers = [{**row, "position": int(row["position"]), "hour": int(row["hour"])} for row in rows]
    mixed = [number_row if n % 3 else row for n, (row, number_row) in enumerate(zip(rows, as_numbers))]
    plain, _ = load_dataset(str(sample_path), NetConfig())
    for name, variant in {"numbers": as_numbers, "mixed": mixed}.items():
        frame, _ = load_dataset(str(write_rows(tmp_path / f"{name}.json", variant)), NetConfig())
        for column in plain:
            assert list(frame[column].astype(str)) == list(plain[column].astype(str)), (name, column)


def test_shards_writing_a_category_as_number_and_as_string_share_it(tmp_path: Path) -> None:
    write_rows(tmp_path / "part-0.json", rows_with([{"publisher_id": 3}, {"publisher_id": 4}]))
    write_rows(tmp_path / "part-1.json", rows_with([{"publisher_id": "3"}, {"publisher_id": "4"}]))
    frame, _ = load_dataset(str(tmp_path / "part-*.json"), CONFIG)
    assert list(frame["publisher_id"].astype(str)) == ["3", "4", "3", "4"]
    assert list(frame["publisher_id"].cat.categories) == ["3", "4"]


@pytest.mark.parametrize(("change", "message"), [
    ({"is_click": "Infinity"}, "line 2: label 'is_click' is 'Infinity'; it must be 0 or 1"),
    ({"is_click": ...}, "line 2: label 'is_click' is missing (null or no key)"),
    ({"event_time": None}, "line 2: column 'event_time' (split_time_column) is missing"),
    ({"event_time": "yesterday"}, "line 2: column 'event_time' (split_time_column) holds 'yesterday', "
                                  "not a TIMESTAMP such as '2026-10-13 18:53:18 UTC'"),
    ({"position": "3 rows"}, "line 2: column 'position' is numeric in the config but holds '3 rows'"),
], ids=["infinite label", "no label", "null timestamp", "unparsable timestamp", "text as number"])
def test_a_value_its_column_cannot_hold_is_one_line_naming_file_line_and_column(
        tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = write_rows(tmp_path / "bad.json", rows_with([{}, change, {}]))
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(path), CONFIG)
    assert str(caught.value).startswith(f"{path} {message}")
    assert "\n" not in str(caught.value)


def test_scoring_input_may_be_null_everywhere_but_must_name_the_package_s_columns(tmp_path: Path) -> None:
    no_title = write_rows(tmp_path / "null.json", rows_with([{"title": None}]))
    frame, _ = load_dataset(str(no_title), CONFIG, with_label=False)
    assert list(frame["title"].astype(str)) == [""] and "is_click" not in frame and "event_time" not in frame

    lacking = write_rows(tmp_path / "lacking.json", rows_with([{"title": ..., "position": ...}]))
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(lacking), CONFIG, with_label=False)
    assert str(caught.value) == (f"{lacking}: column(s) title, position missing: the package's schema needs them "
                                 "and no input row has them; add them to the input (null values are fine)")


def test_fab_score_on_input_missing_a_column_names_the_package_s_schema_without_training_advice(
        run_fab: Runner, trained: TrainedPackage, sample_path: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()[:50]]
    path = write_rows(tmp_path / "rows.json", [{k: v for k, v in row.items() if k != "category"} for row in rows])
    proc = run_fab("score", "--package", str(trained.zip_path), "--input", str(path),
                   "--output", str(tmp_path / "scores.json"))
    assert proc.returncode == 2, proc.stderr
    assert output_lines(proc) == [f"error: {path}: column(s) category missing: the package's schema needs them "
                                  "and no input row has them; add them to the input (null values are fine)"]
    assert not (tmp_path / "scores.json").exists()
