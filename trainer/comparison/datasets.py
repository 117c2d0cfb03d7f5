"""Which data each package was trained on, and which packages were tested on the same rows.

Two packages share a test split when their datasets have one sha256 and their
dataset.json describe one split (method, seed or time column, fractions, each
split's rows and label rate) of the same subsample: then the split rebuilt from
the data is, row for row, the test split each of them was scored on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trainer.comparison.read import PackageRecord

SHORT_HASH = 12


@dataclass(frozen=True)
class TestGroup:
    """Packages scored on the same test rows: the first one's config rebuilds them."""

    key: str  # sha256 and split, as JSON: one rebuild of the test rows per distinct key
    records: list[PackageRecord]


def split_key(record: PackageRecord) -> str:
    """What identifies a package's test rows: the data's hash, the subsample and the split's description."""
    dataset = record.dataset
    return json.dumps({"sha256": dataset["sha256"], "subsample": dataset["subsample"], "split": dataset["split"]},
                      sort_keys=True)


def test_groups(records: list[PackageRecord]) -> list[TestGroup]:
    """Packages grouped by test split, in the packages' order; only groups of two or more compare."""
    groups: dict[str, list[PackageRecord]] = {}
    for record in records:
        groups.setdefault(split_key(record), []).append(record)
    return [TestGroup(key, members) for key, members in groups.items() if len(members) > 1]


def format_datasets(records: list[PackageRecord]) -> list[str]:
    """Each package's dataset source and hash, its split, and whether they are the same."""
    lines = ["dataset:"]
    lines += [f"  {record.letter} {_describe_dataset(record.dataset)}" for record in records]
    lines.append("  " + _same({r.dataset["sha256"] for r in records}, "same dataset", "different datasets"))
    lines.append("split:")
    lines += [f"  {record.letter} {describe_split(record.dataset['split'])}" for record in records]
    splits = {json.dumps(r.dataset["split"], sort_keys=True) for r in records}
    lines.append("  " + _same(splits, "same split", "different splits"))
    return lines


def _describe_dataset(dataset: dict) -> str:
    """`data/sample_2k.json  sha256 cc337630c29e  2,000 rows`; the hash is cut, the full one is in dataset.json."""
    return f"{dataset['source']}  sha256 {dataset['sha256'][:SHORT_HASH]}  {dataset['rows']:,} rows"


def describe_split(split: dict) -> str:
    """`random (seed 42), 1,400 train / 200 validation / 400 test rows` from dataset.json's split."""
    how = (f"time by {split['time_column']}" if split.get("method") == "time"
           else f"{split.get('method', '?')} (seed {split.get('seed', '?')})")
    sizes = " / ".join(f"{split[name]['rows']:,} {name}" for name in ("train", "validation", "test")
                       if isinstance(split.get(name), dict))
    return f"{how}, {sizes} rows" if sizes else how


def _same(values: set, same: str, different: str) -> str:
    return same if len(values) == 1 else different
