"""Unfinished runs: the work folders a stopped or killed run leaves in `<output>/.work/`, named when
another run starts there.

A run's work folder holds its per-epoch backup until its package is written (`backup.py`); the same
config on the same data, started again, resumes from it, so nothing here ever deletes one. A run that
is never started again would keep its folder, unmentioned, forever: each new run lists the other
folders that no process holds, with their progress, age, and what resumes or drops them.
`run.json` in each folder records what started it (variant, TRAINER_* overrides, data) for that line.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping
from typing import Any

from trainer.config import ENV_PREFIX
from trainer.training.backup import POINTER
from trainer.training.fit import WorkFolders

RUN_FILE = "run.json"
LISTED_AT_MOST = 3  # more unfinished runs are counted, not listed


def run_record(run_id: str, variant: str, dataset_uri: str, sha256: str, environ: Mapping[str, str],
               python_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """run.json: the run's id, and what a user needs to start it again (so that it resumes): the
    TRAINER_* overrides, or `trainer.train`'s typed ones.

    The data by its file name and content hash: in a container its path is the mount's, not the user's."""
    return {"run_id": run_id, "variant": variant,
            "overrides": {name: value for name, value in sorted(environ.items()) if name.startswith(ENV_PREFIX)},
            **({"python_overrides": dict(python_overrides)} if python_overrides else {}),
            "data": {"name": dataset_uri.rstrip("/").rpartition("/")[2], "sha256": sha256}}


def read_run_record(work: WorkFolders) -> dict[str, Any]:
    """The folder's run.json ({} when a kill came before it was written)."""
    path = work.root / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def unfinished_runs_note(work: WorkFolders) -> list[str]:
    """One `note:` line per other unfinished run in this run's `.work` folder (none held by a process)."""
    others = [WorkFolders(p) for p in sorted(work.root.parent.iterdir()) if p.is_dir() and p != work.root]
    stopped = [other for other in others if not other.in_use()]
    lines = [_describe(other) for other in stopped[:LISTED_AT_MOST]]
    if len(stopped) > LISTED_AT_MOST:
        lines.append(f"note: and {len(stopped) - LISTED_AT_MOST} more unfinished run(s) in {work.root.parent}")
    return lines


def _describe(work: WorkFolders) -> str:
    record = read_run_record(work)
    started = _how_started(record)
    resume = f"the same command resumes it ({started})" if started else "the command that started it resumes it"
    return (f"note: unfinished run {record.get('run_id', work.root.name)} ({_progress(work)}, {_age(work)}): "
            f"{resume}; `rm -r {shlex.quote(str(work.root))}` drops it")


def _how_started(record: dict[str, Any]) -> str:
    if "variant" not in record:  # a run.json written before these fields
        return ""
    overrides = [f"{name}={shlex.quote(value)}" for name, value in record["overrides"].items()]
    if typed := record.get("python_overrides"):
        overrides.append(f"trainer.train overrides {json.dumps(typed)}")
    data = record["data"]
    return ", ".join([f"variant {record['variant']}", *overrides, f"data {data['name']} sha256 {data['sha256'][:12]}"])


def _progress(work: WorkFolders) -> str:
    if work.finished_training() is not None:
        return "trained, not yet packaged"
    epochs = work.completed_epochs()
    return f"stopped after epoch {epochs}" if epochs else "stopped before its first epoch ended"


def _age(work: WorkFolders) -> str:
    """How long ago the folder last changed (its newest backup, or its start)."""
    marks = [work.root / RUN_FILE, work.backup / POINTER, work.trained]
    newest = max((p.stat().st_mtime for p in marks if p.exists()), default=work.root.stat().st_mtime)
    minutes = int((time.time() - newest) // 60)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"
