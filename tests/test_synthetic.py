"""The synthetic click-through generator: reproducible files in BigQuery's NDJSON export form."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from trainer.data.synthetic.world import DEFAULT_CATALOG, Catalog
from trainer.data.synthetic.writer import COLUMNS, generate, generate_frame, write_ndjson

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]
INT64_COLUMNS = ("hour", "day_of_week", "position", "is_click")  # BigQuery writes these as "3"
STRING_COLUMNS = ("impression_id", "event_time", "publisher_id", "item_id", "category", "country", "platform",
                  "title")
ROWS = 20_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "ctr.json"
    generate(ROWS, path, seed=0)
    return path


@pytest.fixture(scope="module")
def records(generated: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in generated.read_text().splitlines()]


def test_command_line_and_function_write_byte_identical_files(
    generated: Path, tmp_path: Path, run_python: Runner
) -> None:
    again = tmp_path / "again.json"
    proc = run_python("-m", "trainer.data.synthetic", "--rows", str(ROWS), "--seed", "0", "--out", str(again))
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == generated.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_documented_command_reproduces_the_shipped_sample(sample_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "sample_2k.json"
    generate(2000, path, seed=0)
    assert path.read_bytes() == sample_path.read_bytes()


def test_frame_written_as_ndjson_is_the_same_file(generated: Path, tmp_path: Path) -> None:
    path = tmp_path / "from_frame.json"
    write_ndjson(generate_frame(ROWS, seed=0), path)
    assert path.read_bytes() == generated.read_bytes()


def test_different_seeds_draw_different_rows(records: list[dict[str, Any]], tmp_path: Path) -> None:
    other = tmp_path / "seed1.json"
    generate(ROWS, other, seed=1)
    others = [json.loads(line) for line in other.read_text().splitlines()]
    assert len(others) == ROWS
    assert others[0]["impression_id"] == "imp-1-0000000000"

    def drawn(record: dict[str, Any]) -> tuple[Any, ...]:  # everything but the id, which names the seed
        return tuple(v for k, v in record.items() if k != "impression_id")

    assert sum(drawn(a) == drawn(b) for a, b in zip(records, others)) < ROWS // 100


def test_each_line_is_a_bigquery_export_record(generated: Path, records: list[dict[str, Any]]) -> None:
    assert len(records) == ROWS
    assert generated.read_bytes().endswith(b"}\n")
    for record in records:
        assert list(record) == list(COLUMNS)
        for column in INT64_COLUMNS:
            assert isinstance(record[column], str) and record[column].isdigit(), (column, record)
        for column in STRING_COLUMNS:
            assert isinstance(record[column], str) and record[column], (column, record)
        assert isinstance(record["item_age_hours"], float) and record["item_age_hours"] > 0
        assert record["is_click"] in ("0", "1")
        assert 1 <= int(record["position"]) <= 12
    assert len({r["impression_id"] for r in records}) == ROWS


def test_click_rate_is_realistic(records: list[dict[str, Any]]) -> None:
    rate = sum(r["is_click"] == "1" for r in records) / len(records)
    assert 0.03 <= rate <= 0.15


def test_hour_and_day_of_week_agree_with_event_time(records: list[dict[str, Any]]) -> None:
    for record in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", record["event_time"]), record
        when = datetime.strptime(record["event_time"], "%Y-%m-%d %H:%M:%S UTC")
        assert int(record["hour"]) == when.hour
        # BigQuery's EXTRACT(DAYOFWEEK): Sunday = 1 ... Saturday = 7.
        assert int(record["day_of_week"]) == when.isoweekday() % 7 + 1


def test_a_large_catalog_makes_item_ids_beyond_the_default_catalog() -> None:
    frame = generate_frame(5000, seed=0, catalog=Catalog(items=2_000_000, item_zipf=0.5))
    numbers = frame["item_id"].str.removeprefix("item-").astype(int)
    assert numbers.max() >= DEFAULT_CATALOG.items
    assert (numbers >= DEFAULT_CATALOG.items).mean() > 0.5  # a flat tail: most rows show items the default lacks
    assert frame["item_id"].nunique() > 4000


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--items", "0", "items must be at least 1, got 0"),
    ("--publishers", "-3", "publishers must be at least 1, got -3"),
    ("--item-zipf", "-1", "item_zipf must be a finite number >= 0"),
])
def test_a_bad_catalog_option_is_one_line_and_status_2(
    option: str, value: str, says: str, tmp_path: Path, run_python: Runner, run_fab: Runner, lines_of: Lines
) -> None:
    out = tmp_path / "never.json"
    for proc in (run_python("-m", "trainer.data.synthetic", "--rows", "10", "--out", str(out), option, value),
                 run_fab("generate_data", "--rows", "10", "--out", str(out), option, value)):
        assert proc.returncode == 2, proc.stderr
        [line] = lines_of(proc)
        assert line.startswith("error: ") and says in line
    assert not out.exists()


def test_fab_generate_data_defaults_are_the_shipped_catalog(run_fab: Runner) -> None:
    proc = run_fab("--help", "generate_data")
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())  # help wraps long lines
    for option, default in (("items", DEFAULT_CATALOG.items), ("publishers", DEFAULT_CATALOG.publishers),
                            ("item-zipf", DEFAULT_CATALOG.item_zipf)):
        assert re.search(rf"--{option}\b.*?\(default: {default}\)", help_text), option
