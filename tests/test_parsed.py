"""The parse cache (Arrow IPC under the cache folder) and the split plans decided batch by batch:
the same rows as load_dataset, reused while the bytes are the same, never left half written; random
splits by row hash, time splits holding out the newest rows in a stable order."""

from __future__ import annotations

import io
import json
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import Runner

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset, to_frame
from trainer.data.parsed import ParsedDataset, parse_dataset
from trainer.data.splits import (
    SPLITS,
    TEST,
    TRAIN,
    VALIDATION,
    SplitStats,
    plan_splits,
    split_batches,
    split_frame,
)
from trainer.data.values import ColumnRoles
from trainer.errors import DatasetError
from trainer.faults import KILL_AT_VARIABLE
from trainer.training.inputs import fit_pass

CONFIG = NetConfig()
ROLES = ColumnRoles.of(CONFIG, with_label=True)


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "trainer" / "datasets"


def frame_of(parsed: ParsedDataset) -> pd.DataFrame:
    return to_frame(pa.Table.from_batches(list(parsed.batches()), parsed.schema), ROLES)


def complete_caches(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_a_parse_holds_load_dataset_s_rows_and_is_reused_while_the_bytes_are_the_same(
        tmp_path: Path, sample_path: Path, cache_home: Path) -> None:
    data = tmp_path / "data.json"
    data.write_bytes(sample_path.read_bytes())
    said = io.StringIO()
    parsed = parse_dataset(str(data), CONFIG, said)
    frame, source = load_dataset(str(data), CONFIG)
    assert parsed.source == source and parsed.rows == len(frame) == 2000
    assert frame_of(parsed).equals(frame)
    [part] = list(parsed.folder.glob("part-*.arrow"))
    written = part.stat().st_mtime_ns

    data.unlink()
    data.write_bytes(sample_path.read_bytes())  # the same bytes again: the parse is kept, not redone
    again = parse_dataset(str(data), CONFIG, said)
    assert again == parsed and part.stat().st_mtime_ns == written
    assert "parsed rows reused" in said.getvalue().splitlines()[-1]

    data.write_bytes(b"".join(sample_path.read_bytes().splitlines(keepends=True)[1:]))  # one row fewer
    changed = parse_dataset(str(data), CONFIG)
    assert changed.folder != parsed.folder and changed.rows == 1999
    assert complete_caches(cache_home) == sorted([parsed.folder, changed.folder])


def test_a_parse_killed_before_it_is_whole_leaves_no_cache_and_the_next_parse_redoes_it(
        tmp_path: Path, sample_path: Path, cache_home: Path, run_python: Runner) -> None:
    script = f"from trainer.config import NetConfig\nfrom trainer.data.parsed import parse_dataset\n" \
             f"parse_dataset({str(sample_path)!r}, NetConfig())"
    killed = run_python("-c", script, env={KILL_AT_VARIABLE: "parse:written",
                                           "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert complete_caches(cache_home) == [] and any(p.name.endswith(".partial") for p in cache_home.iterdir())

    said = io.StringIO()
    parsed = parse_dataset(str(sample_path), CONFIG, said)
    assert "2,000 rows parsed" in said.getvalue() and parsed.rows == 2000
    assert complete_caches(cache_home) == [parsed.folder]
    assert not any(p.name.endswith(".partial") for p in cache_home.iterdir())  # the killed parse's leftovers


def test_a_refused_dataset_leaves_no_cache(tmp_path: Path, sample_path: Path, cache_home: Path) -> None:
    lines = sample_path.read_text().splitlines()
    bad = tmp_path / "bad.json"
    bad.write_text("\n".join([*lines[:1500], json.dumps({**json.loads(lines[1500]), "is_click": "2"})]) + "\n")
    with pytest.raises(DatasetError) as loaded:
        load_dataset(str(bad), CONFIG)
    with pytest.raises(DatasetError) as parsed:
        parse_dataset(str(bad), CONFIG)
    assert str(parsed.value) == str(loaded.value) and "line 1501: label 'is_click' is '2'" in str(parsed.value)
    assert complete_caches(cache_home) == [] and not any(p.name.endswith(".partial") for p in cache_home.iterdir())


def splits_by_id(parsed: ParsedDataset, config: NetConfig) -> dict[str, str]:
    plan = plan_splits(parsed, config)
    return {row_id: name for name in SPLITS for batch in split_batches(parsed, plan, name)
            for row_id in batch.column("impression_id").to_pylist()}


def test_a_random_split_follows_each_row_not_its_place(tmp_path: Path, sample_path: Path) -> None:
    config = NetConfig(test_fraction=0.2, validation_fraction=0.1)
    parsed = parse_dataset(str(sample_path), config)
    split = splits_by_id(parsed, config)
    sizes = {name: list(split.values()).count(name) for name in SPLITS}
    assert abs(sizes["test"] - 400) < 60 and abs(sizes["validation"] - 200) < 45, sizes  # about 3 sigma

    # The rows shuffled, cut into shards named in another order, and a shard of new rows added (the
    # dataset grew): each row keeps its split.
    lines = sample_path.read_text().splitlines()
    random.Random(3).shuffle(lines)
    new_rows = [json.dumps({**json.loads(line), "impression_id": f"new-{n}"}) for n, line in enumerate(lines[:500])]
    for name, part in (("b.json", lines[:700]), ("a.json", lines[700:]), ("c.json", new_rows)):
        (tmp_path / name).write_text("\n".join(part) + "\n")
    grown = splits_by_id(parse_dataset(str(tmp_path / "*.json"), config), config)
    assert len(grown) == 2500 and {row: grown[row] for row in split} == split

    reseeded = splits_by_id(parsed, NetConfig(test_fraction=0.2, validation_fraction=0.1, split_seed=7))
    assert sum(reseeded[row] != split[row] for row in split) > 500


def newest_last(frame: pd.DataFrame, config: NetConfig) -> dict[str, np.ndarray]:
    """The time split as promised, from the whole frame: rows oldest first (equal times in file order), the
    newest test_fraction of them test, the validation_fraction before them validation; each split's row
    positions in file order."""
    order = frame[config.split_time_column].argsort(kind="stable").to_numpy()
    n_test, n_validation = (max(1, round(len(frame) * f)) for f in (config.test_fraction, config.validation_fraction))
    train_end, validation_end = len(frame) - n_test - n_validation, len(frame) - n_test
    cuts = {"train": order[:train_end], "validation": order[train_end:validation_end], "test": order[validation_end:]}
    return {name: np.sort(rows) for name, rows in cuts.items()}


def described(frame: pd.DataFrame, positions: dict[str, np.ndarray], config: NetConfig) -> dict[str, Any]:
    """dataset.json's "split" for these splits of the frame."""
    split: dict[str, Any] = {"method": "time", "validation_fraction": config.validation_fraction,
                             "test_fraction": config.test_fraction, "time_column": config.split_time_column}
    for name, rows in positions.items():
        part = frame.iloc[rows]
        times = part[config.split_time_column]
        split[name] = {"rows": len(part), "label_rate": int(part[config.label_column].sum()) / len(part),
                       "time_range": [times.min().isoformat(), times.max().isoformat()]}
    return split


@pytest.mark.parametrize("ties", [False, True], ids=["sample", "times-cut-to-the-day"])
def test_a_time_split_holds_out_the_newest_rows_equal_times_in_file_order(
        tmp_path: Path, sample_path: Path, ties: bool) -> None:
    config = NetConfig(split_time_column="event_time")
    data = sample_path
    if ties:  # about 2000 rows over 30 days: the cuts fall among rows of one time, which keep file order
        data = tmp_path / "days.json"
        rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
        data.write_text("".join(json.dumps({**r, "event_time": r["event_time"][:10] + " 00:00:00 UTC"}) + "\n"
                                for r in rows))
    parsed = parse_dataset(str(data), config)
    plan = plan_splits(parsed, config)
    frame = load_dataset(str(data), config)[0]
    expected = newest_last(frame, config)
    roles = ColumnRoles.of(config, with_label=True)
    for name, rows in expected.items():
        assert split_frame(parsed, plan, name, roles)["impression_id"].tolist() == \
            frame["impression_id"].iloc[rows].tolist(), name
    stats = fit_pass(parsed, config).stats  # the run's own pass; it refuses degenerate splits
    assert stats.describe(config) == described(frame, expected, config)


def test_split_stats_refuse_a_split_with_one_class_or_none_with_one_line() -> None:
    config = NetConfig(test_fraction=0.2, validation_fraction=0.1)
    batch = pa.RecordBatch.from_pydict({"is_click": pa.array([1, 0] * 5, pa.int8())})
    stats = SplitStats(config)
    stats.add(batch, np.array([TRAIN] * 8 + [VALIDATION] * 2, np.int8))
    with pytest.raises(DatasetError, match=r"^the test split has none of the 10 rows: its metrics cannot be "
                                           r"computed; use more data or raise test_fraction \(now 0\.2\)$"):
        stats.check(config)
    stats.add(batch.slice(0, 1), np.array([TEST], np.int8))
    with pytest.raises(DatasetError, match=r"^the test split has 1 row and only label class 1: its AUC cannot"):
        stats.check(config)
