"""gzip exports (`EXPORT DATA ... compression='GZIP'` writes name-*.json.gz) and
folders as datasets: loaded directly, streamed, hashed as stored."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset, to_frame
from trainer.data.parsed import parse_dataset
from trainer.data.values import ColumnRoles
from trainer.errors import TrainerError

SHARDS = 3


@pytest.fixture(scope="module")
def plain_frame(sample_path: Path) -> pd.DataFrame:
    return load_dataset(str(sample_path), NetConfig())[0]


def gzip_shards(sample_path: Path, folder: Path, shards: int = SHARDS) -> list[Path]:
    """The sample as BigQuery's gzip export writes it: shards cut at line boundaries, each gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = sample_path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // shards)
    paths = []
    for index in range(shards):
        path = folder / f"train-{index:012d}.json.gz"
        path.write_bytes(gzip.compress(b"".join(lines[index * size:(index + 1) * size])))
        paths.append(path)
    return paths


def test_a_gzip_file_loads_like_the_plain_one_and_is_hashed_as_stored(
        tmp_path: Path, sample_path: Path, plain_frame: pd.DataFrame) -> None:
    [packed] = gzip_shards(sample_path, tmp_path / "export", shards=1)
    frame, source = load_dataset(str(packed), NetConfig())
    assert frame.equals(plain_frame)
    assert source.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert source.size_bytes == packed.stat().st_size
    assert sorted(p.name for p in packed.parent.iterdir()) == [packed.name]  # no decompressed copy beside it


def test_gzip_shards_by_pattern_and_the_folder_of_an_export_load_as_one(
        tmp_path: Path, sample_path: Path, plain_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ctr"
    shards = gzip_shards(sample_path, folder)
    # What `fab dataset` writes beside the shards, and a file that is not data.
    (folder / "train.metadata.json").write_text(json.dumps({"job_id": "job-1", "rows": 2000}))
    (folder / "README.txt").write_text("October's impressions\n")

    for uri in (str(folder / "train-*.json.gz"), str(folder), f"{folder}/"):
        frame, source = load_dataset(uri, NetConfig())
        assert source.files == tuple(str(p) for p in shards), uri
        assert frame.equals(plain_frame), uri
        assert source.export == {"job_id": "job-1", "rows": 2000}, uri
        assert source.sha256 == hashlib.sha256(b"".join(p.read_bytes() for p in shards)).hexdigest()

    # Parsed into the cache, block by block: the same rows and source.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parsed = parse_dataset(uri, NetConfig())
    table = pa.Table.from_batches(list(parsed.batches()), parsed.schema)
    assert to_frame(table, ColumnRoles.of(NetConfig(), with_label=True)).equals(plain_frame)
    assert parsed.source == source


def test_a_folder_mixing_plain_and_gzip_shards_reads_both(
        tmp_path: Path, sample_path: Path, plain_frame: pd.DataFrame) -> None:
    folder = tmp_path / "mixed"
    first, *rest = gzip_shards(sample_path, folder)
    first.with_name("train-000000000000.json").write_bytes(gzip.decompress(first.read_bytes()))
    first.unlink()
    frame, source = load_dataset(str(folder), NetConfig())
    assert [Path(f).name for f in source.files] == ["train-000000000000.json", *(p.name for p in rest)]
    assert frame.equals(plain_frame)


@pytest.mark.parametrize(("files", "message"), [
    ([], "{folder}: an empty folder; pass a file, a pattern such as {folder}/train-*.json, "
         "or a folder that holds them"),
    (["train.metadata.json", "notes.txt"], "{folder}: a folder without *.json or *.json.gz files; pass the folder "
                                           "an export wrote, one file, or a pattern such as {folder}/train-*.json"),
], ids=["empty", "no data files"])
def test_a_folder_without_data_says_what_to_pass_not_no_such_file(
        tmp_path: Path, files: list[str], message: str) -> None:
    folder = tmp_path / "no such file"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}\n")
    with pytest.raises(TrainerError) as caught:
        load_dataset(str(folder), NetConfig())
    assert str(caught.value) == message.format(folder=folder)


def test_a_broken_line_in_a_gzip_shard_names_the_shard_and_the_line(tmp_path: Path, sample_path: Path) -> None:
    lines = sample_path.read_text().splitlines()[:20]
    lines[11] = lines[11].replace('"is_click":"0"', '"is_click":"maybe"').replace('"is_click":"1"',
                                                                                   '"is_click":"maybe"')
    packed = tmp_path / "train-000000000000.json.gz"
    packed.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    with pytest.raises(TrainerError) as caught:
        load_dataset(str(packed), NetConfig())
    assert str(caught.value).startswith(f"{packed} line 12: label 'is_click' is 'maybe'")


@pytest.mark.parametrize("damage", ["cut short", "not gzip inside"])
def test_a_broken_gzip_file_is_one_line_saying_to_fetch_it_again(
        tmp_path: Path, sample_path: Path, damage: str) -> None:
    packed = gzip.compress(sample_path.read_bytes())
    path = tmp_path / "train-000000000000.json.gz"
    path.write_bytes(packed[: len(packed) // 2] if damage == "cut short" else packed[:2] + b"garbage")
    with pytest.raises(TrainerError) as caught:
        load_dataset(str(path), NetConfig())
    assert str(caught.value).startswith(f"{path}: a broken gzip file (")
    assert str(caught.value).endswith("); fetch or export it again")
