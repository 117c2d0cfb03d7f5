"""A model's history: every push, label move and rollback, one entry each, never rewritten.

Entries are BASE/NAME/history/<seq>.json, each created only where none exists
(storage.create_if_absent): two writers at once cannot take one sequence
number, the loser takes the next, and no entry is lost. Labels, the versions
served and what a rollback returns to are all folded from the entries in
sequence order (`State`), so models.config can always be rebuilt from them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from dataclasses import dataclass, field
from typing import Any

from trainer.data import storage
from trainer.deploy.versions import ModelHome, json_bytes

ENTRY = re.compile(r"^(\d{6,})\.json$")
STABLE = "stable"
PUSH, LABEL, ROLLBACK = "push", "label", "rollback"


@dataclass
class State:
    """What the history adds up to."""

    pushed: list[int] = field(default_factory=list)  # versions whose push finished, in order
    labels: dict[str, int] = field(default_factory=dict)
    stables: list[int] = field(default_factory=list)  # stable's versions, a rollback pops the last

    def apply(self, entry: dict[str, Any]) -> None:
        if entry["action"] == PUSH and entry["version"] not in self.pushed:
            self.pushed.append(entry["version"])
        if entry["action"] == ROLLBACK:
            if len(self.stables) > 1:  # two rollbacks at once: each was checked against the same stack
                self.stables.pop()
            self.labels[STABLE] = self.stables[-1]
        elif entry.get("label"):
            self.labels[entry["label"]] = entry["version"]
            if entry["label"] == STABLE and self.stables[-1:] != [entry["version"]]:
                self.stables.append(entry["version"])

    @property
    def served(self) -> list[int]:
        """The versions models.config lists: every labelled one and the newest push. Newest by number, not
        by entry: two pushes at once may finish (and write their entries) in either order."""
        return sorted({*self.labels.values(), *([max(self.pushed)] if self.pushed else [])})


def read_entries(home: ModelHome) -> list[dict[str, Any]]:
    """Every entry, in sequence order."""
    names = sorted((int(m.group(1)), name) for name in storage.list_tree(home.history_uri)
                   if (m := ENTRY.match(name)))
    return [{**json.loads(storage.read_bytes(storage.join(home.history_uri, name))), "sequence": seq}
            for seq, name in names]


def state_of(entries: list[dict[str, Any]]) -> State:
    state = State()
    for entry in entries:
        state.apply(entry)
    return state


def append(home: ModelHome, entry: dict[str, Any]) -> int:
    """Write the entry under the next free sequence number (with its time and user); returns the number."""
    entry = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "user": _user(), **entry}
    sequence = max((e["sequence"] for e in read_entries(home)), default=0) + 1
    while not storage.create_if_absent(storage.join(home.history_uri, f"{sequence:06d}.json"), json_bytes(entry)):
        sequence += 1  # another writer took it
    return sequence


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database (some containers)
        return "unknown"


def format_entries(entries: list[dict[str, Any]]) -> list[str]:
    """One line per entry: time, user, action, version, labels, package, variant, dataset, gate, forced."""
    return [_line(entry) for entry in entries] or ["no history: nothing pushed yet"]


def _line(entry: dict[str, Any]) -> str:
    words = [f"{entry['sequence']:>4}", entry["time"], entry["user"], f"{entry['action']:<8}",
             f"version {entry['version']}"]
    if entry["action"] == ROLLBACK:
        words.append(f"stable {entry['from_version']} -> {entry['version']}")
    elif entry.get("label"):
        previous = entry.get("previous")
        words.append(f"{entry['label']} {'-' if previous is None else previous} -> {entry['version']}")
    if entry["action"] == PUSH:
        words += [entry["run_id"], f"variant {entry['variant']}", f"dataset {entry['dataset_sha256'][:12]}",
                  _gate_words(entry["gate"]), "FORCED" if entry["forced"] else "not forced"]
    return "  ".join(words)


def _gate_words(numbers: dict[str, Any]) -> str:
    """`gate passed: auc 0.6120, stable v1 0.5010, +0.1110 [+0.0800, +0.1400]`: the gate's numbers."""
    words = f"gate {'passed' if numbers['passed'] else 'refused'}: auc {numbers['candidate_auc']:.4f}"
    if "champion_version" in numbers:
        words += (f", stable v{numbers['champion_version']} {numbers['champion_auc']:.4f}, "
                  f"{numbers['difference']:+.4f} [{numbers['low']:+.4f}, {numbers['high']:+.4f}]")
    return words
