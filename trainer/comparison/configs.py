"""The config diff: each key whose value differs between packages, with the level
that set it in each (config.json records it: "default", "variant 'deep_v1' in ...",
"environment TRAINER_LEARNING_RATE"), so a difference says where it came from."""

from __future__ import annotations

import json
from dataclasses import dataclass

from trainer.comparison.read import PackageRecord

MISSING = {"value": None, "source": "not in this package"}  # a key added to NetConfig after the run


@dataclass(frozen=True)
class KeyDifference:
    key: str
    values: list[object]  # one per package, in the packages' order
    sources: list[str]


@dataclass(frozen=True)
class ConfigDiff:
    differences: list[KeyDifference]
    equal_keys: int  # keys with one value in every package, not listed


def config_diff(records: list[PackageRecord]) -> ConfigDiff:
    """The keys whose values differ (the variant's name counts as a key), in NetConfig's order."""
    entries = [{"variant": {"value": r.config.get("variant"), "source": "fab train --variant"},
                **r.config.get("keys", {})} for r in records]
    keys = list(dict.fromkeys(key for entry in entries for key in entry))
    differences, equal = [], 0
    for key in keys:
        cells = [entry.get(key, MISSING) for entry in entries]
        if len({json.dumps(cell["value"], sort_keys=True) for cell in cells}) == 1:
            equal += 1
            continue
        differences.append(KeyDifference(key, [c["value"] for c in cells], [c["source"] for c in cells]))
    return ConfigDiff(differences, equal)


def format_config_diff(diff: ConfigDiff, records: list[PackageRecord]) -> list[str]:
    """One line per differing key: `learning_rate  A 0.005 (default)  B 0.01 (environment TRAINER_...)`."""
    count = len(diff.differences)
    lines = [f"config: {count} key{' differs' if count == 1 else 's differ'}, "
             f"{diff.equal_keys} equal in every package (not listed)"]
    if not diff.differences:
        return lines
    width = max(len(d.key) for d in diff.differences)
    for difference in diff.differences:
        cells = [f"{r.letter} {json.dumps(value)} ({source})"
                 for r, value, source in zip(records, difference.values, difference.sources)]
        lines.append(f"  {difference.key:<{width}}  " + "   ".join(cells))
    return lines
