"""fab push, label, rollback and history: the stages top to bottom.

    push: the package read -> its export unpacked -> (a killed push of it: completed) -> the gate against
    stable -> a version claimed -> its files published whole -> history entry -> models.config
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from trainer.comparison.read import PackageRecord, read_record
from trainer.data import storage
from trainer.deploy import gate
from trainer.deploy.history import LABEL, PUSH, ROLLBACK, STABLE, State, append, format_entries, read_entries, state_of
from trainer.deploy.labels import model_names, write_config
from trainer.deploy.versions import WORD, ModelHome, checked_home, claim_version, claims, publish_version
from trainer.errors import DeployError
from trainer.faults import fault_point
from trainer.package.layout import SERVING_EXPORT, SERVING_FOLDER, supports


@dataclass(frozen=True)
class PushRequest:
    package: str
    base: str  # --to
    model: str = ""  # default: the package's variant
    label: str = ""  # default: stable when the gate passes, none when --force pushed past it
    against: str = ""  # the gate's rows: a dataset instead of the candidate's test split
    rule: gate.Rule = field(default_factory=gate.Rule)
    force: bool = False
    serving_base: str = ""  # where TF Serving sees BASE (labels.serving_base)


def push(request: PushRequest, out: TextIO = sys.stdout) -> int:
    """Push the package as the model's next version (or finish its killed push); returns the version."""
    record = read_record(request.package, "A")
    if not supports(record.format_version, SERVING_EXPORT):
        raise DeployError(f"{request.package}: package format version {record.format_version} has no serving "
                          "export (model/serving/1/, from version 4 on); train it again with fab train")
    home = checked_home(request.base, request.model or str(record.manifest["variant"]))
    if request.label:
        checked_label(request.label)
    state = state_of(read_entries(home))
    earlier = next((v for v, meta in claims(home).items() if meta["run_id"] == record.run_id), None)
    if earlier in state.pushed:
        write_config(home, request.serving_base)  # finishes a push killed after its history entry
        print(f"{record.run_id} is already version {earlier} of {home.name} at {home.base}; nothing pushed",
              file=out)
        return earlier
    with unpacked_export(record) as export:
        if earlier is None:
            metadata = bless(request, record, home, state, export, out)
            version = claim_version(home, metadata)
        else:
            version, metadata = earlier, claims(home)[earlier]
            print(f"completing the push of {record.run_id} as version {version}, stopped before it finished",
                  file=out)
        publish_version(home, version, export)
    fault_point("push:copied")
    label = metadata["label"]
    append(home, {"action": PUSH, "version": version, "label": label, "previous": state.labels.get(label),
                  **{key: metadata[key] for key in ("run_id", "variant", "dataset_sha256", "gate", "forced")}})
    write_config(home, request.serving_base)
    print(f"pushed {record.run_id} as version {version} of {home.name} to {home.base}"
          + (f", labelled {label}" if label else ""), file=out)
    return version


def bless(request: PushRequest, record: PackageRecord, home: ModelHome, state: State, export: Path,
          out: TextIO) -> dict[str, Any]:
    """The gate (or --force past it): one verdict line; returns the version's metadata."""
    candidate = gate.serving_model(export)
    inputs = gate.input_schema(candidate)
    champion_version = state.labels.get(STABLE)
    champion_meta = claims(home).get(champion_version, {}) if champion_version else {}
    other_schema = champion_version is not None and champion_meta.get("inputs") != inputs
    if other_schema and not request.force:
        raise DeployError(f"{record.run_id} takes other raw inputs than stable version {champion_version} "
                          f"({_schema_difference(champion_meta.get('inputs') or {}, inputs)}); clients of "
                          f"{home.name} would break: push it as another --model, or --force")
    rows = gate.gate_rows(record, request.against)
    scores = candidate.score_frame(rows.frame)
    champion = None
    if champion_version is not None and not other_schema:
        with gate.version_folder(home, champion_version) as folder:
            champion = gate.serving_model(folder).score_frame(rows.frame)
    verdict = gate.judge(scores, champion, champion_version, rows, request.rule)
    forced = not verdict.passed or other_schema
    if not verdict.passed and not request.force:
        raise DeployError(f"{verdict.line}; nothing pushed (--force pushes it anyway)")
    print(verdict.line + ("; pushed anyway (--force)" if forced else ""), file=out)
    # A blessed push is the new champion, as TFX's Pusher serves what its Evaluator blessed; --label
    # canary (any other word) keeps stable where it is, and a forced push moves no label unasked.
    label = request.label or ("" if forced else STABLE)
    return {"run_id": record.run_id, "variant": record.manifest["variant"], "package": record.uri,
            "dataset_sha256": record.dataset["sha256"], "inputs": inputs, "label": label,
            "gate": verdict.numbers, "forced": forced}


def _schema_difference(champion: dict[str, str], candidate: dict[str, str]) -> str:
    added = sorted(set(candidate) - set(champion))
    dropped = sorted(set(champion) - set(candidate))
    retyped = sorted(c for c in set(candidate) & set(champion) if candidate[c] != champion[c])
    parts = [f"{what} {', '.join(cols)}" for what, cols in (("added", added), ("dropped", dropped),
                                                           ("other dtype", retyped)) if cols]
    return "; ".join(parts)


@contextmanager
def unpacked_export(record: PackageRecord) -> Iterator[Path]:
    """The package's model/serving/1/ in a local folder."""
    folder = Path(tempfile.mkdtemp(prefix="export-"))
    try:
        with zipfile.ZipFile(storage.local_copy(record.uri)) as archive:
            for name in archive.namelist():
                if name.startswith(f"{SERVING_FOLDER}/") and not name.endswith("/"):
                    target = folder.joinpath(*PurePosixPath(name).relative_to(SERVING_FOLDER).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def checked_label(label: str) -> str:
    if not WORD.match(label):
        raise DeployError(f"label {label!r}: a label is a word of letters, digits, - and _ (stable, canary)")
    return label


def existing_home(base: str, model: str) -> tuple[ModelHome, State]:
    """BASE/NAME of a model pushed before (--model may be left out when BASE holds one), and its history."""
    if not model:
        names = model_names(base)
        if len(names) != 1:
            held = f"holds {', '.join(names)}" if names else "holds no models.config"
            raise DeployError(f"--to {base} {held}: name the model with --model NAME")
        model = names[0]
    home = checked_home(base, model)
    state = state_of(read_entries(home))
    if not state.pushed:
        raise DeployError(f"{home.uri}: no version of {model} was pushed there; fab push PACKAGE --to {base}")
    return home, state


def move_label(base: str, model: str, label: str, version: int, out: TextIO = sys.stdout) -> None:
    """Point `label` at a pushed version."""
    home, state = existing_home(base, model)
    checked_label(label)
    if version not in state.pushed:
        raise DeployError(f"{home.uri}: no version {version} to label {label} (pushed: "
                          f"{', '.join(map(str, state.pushed))}); fab history --to {base} --model {home.name}")
    previous = state.labels.get(label)
    append(home, {"action": LABEL, "version": version, "label": label, "previous": previous})
    write_config(home)
    print(f"{home.name}: {label} {'-' if previous is None else previous} -> {version}", file=out)


def rollback(base: str, model: str, out: TextIO = sys.stdout) -> int:
    """Move stable back to the stable version before it; returns that version."""
    home, state = existing_home(base, model)
    if len(state.stables) < 2:
        raise DeployError(f"{home.name}: no earlier stable version to roll back to (stable has been "
                          f"{', '.join(map(str, state.stables)) or 'nothing'}); fab label stable VERSION")
    current, previous = state.stables[-1], state.stables[-2]
    append(home, {"action": ROLLBACK, "version": previous, "label": STABLE, "from_version": current})
    write_config(home)
    print(f"{home.name}: stable {current} -> {previous} (rolled back)", file=out)
    return previous


def show_history(base: str, model: str, out: TextIO = sys.stdout) -> None:
    home, _ = existing_home(base, model)
    for line in format_entries(read_entries(home)):
        print(line, file=out)
