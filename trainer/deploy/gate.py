"""The blessing: the candidate and the champion (the version labelled stable) scored on the same rows.

The rows are the candidate's test split rebuilt from its dataset (as fab compare
rebuilds it) or all rows of --against DATASET. Both models score them through
their SavedModels, the very files TF Serving loads, and fab compare's paired
bootstrap gives the AUC difference candidate - champion with its 95% interval.

The rule, both parts with defaults on the command line:
- the candidate's AUC on the rows is at least --min-auc (0.5: better than chance);
- with a champion: the interval's upper bound is above -tolerance (0.01). The
  candidate is refused only when it is measurably worse by more than the
  tolerance; "no measurable difference" passes (small test sets rarely measure
  one), and a measured improvement is not required: fab compare says that.
The first push (no stable version) is judged on the first part alone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.comparison.bootstrap import CLIP, AucDifference, paired_auc_difference, weighted_auc
from trainer.comparison.read import PackageRecord
from trainer.comparison.scoring import rebuild_test_rows
from trainer.config import config_from_json_dict
from trainer.data import storage
from trainer.data.dataset import load_dataset
from trainer.deploy.versions import SAVED_MODEL, ModelHome, version_files
from trainer.errors import DeployError
from trainer.package.layout import DISTINCT_SIGNATURE

MIN_AUC = 0.5
TOLERANCE = 0.01


@dataclass(frozen=True)
class Rule:
    min_auc: float = MIN_AUC
    tolerance: float = TOLERANCE


@dataclass(frozen=True)
class Rows:
    frame: pd.DataFrame
    labels: np.ndarray
    described: str  # "400 test rows of data/sample_2k.json"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    line: str  # the one line printed (or the error's, when refused)
    numbers: dict[str, Any]  # what history records


def gate_rows(record: PackageRecord, against: str) -> Rows:
    """The candidate's test split rebuilt from its data, or every row of `against`."""
    config = config_from_json_dict(record.config).config
    if against:
        frame, _ = load_dataset(against, config, with_row_id=False)  # the gate scores rows, ids or not
        described = f"{len(frame):,} rows of {against}"
    else:
        rebuilt = rebuild_test_rows(record, config)
        if isinstance(rebuilt, str):
            raise DeployError(f"the gate cannot rebuild the candidate's test rows: {rebuilt}; pass --against DATASET")
        frame, described = rebuilt, f"{len(rebuilt):,} test rows of {record.dataset['source']}"
    return Rows(frame, frame[config.label_column].to_numpy(), described)


def serving_model(folder: Path):  # -> trainer.serving.scoring.ServingModel (imports TensorFlow)
    from trainer.serving.scoring import ServingModel, signature_names

    signatures = signature_names((folder / SAVED_MODEL).read_bytes()) or frozenset()
    return ServingModel(folder, distinct_values=DISTINCT_SIGNATURE in signatures)


def input_schema(model: Any) -> dict[str, str]:
    """The raw columns a SavedModel takes, with their dtypes: what "the same schema" compares."""
    return {name: dtype.name for name, dtype in sorted(model.columns.items())}


@contextmanager
def version_folder(home: ModelHome, version: int) -> Iterator[Path]:
    """A pushed version's files in a local folder (downloaded from gs://)."""
    files = version_files(home, version)
    if SAVED_MODEL not in files:
        raise DeployError(f"{home.uri}: stable names version {version}, which is not there (or has no "
                          f"{SAVED_MODEL}); move the label to a version that is: fab label stable VERSION")
    folder = Path(tempfile.mkdtemp(prefix="champion-"))
    try:
        for name in files:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(storage.local_copy(storage.join(home.version_uri(version), name)), target)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def judge(candidate: np.ndarray, champion: np.ndarray | None, champion_version: int | None, rows: Rows,
          rule: Rule) -> Verdict:
    """The rule applied to the scores; one line with every number it used."""
    auc = auc_of(rows.labels, candidate)
    passed = auc >= rule.min_auc
    line = f"candidate auc {auc:.4f} (--min-auc {rule.min_auc:g})"
    numbers: dict[str, Any] = {"rows": rows.described, "candidate_auc": auc, **asdict(rule)}
    if champion is not None:
        measured = paired_auc_difference(rows.labels, champion, candidate)
        passed = passed and measured.high > -rule.tolerance
        line += (f"; vs stable version {champion_version} (auc {auc - measured.difference:.4f}): "
                 f"{_difference(measured)}, refused if the upper bound <= -{rule.tolerance:g}")
        numbers.update(champion_version=champion_version, champion_auc=auc - measured.difference,
                       difference=measured.difference, low=measured.low, high=measured.high)
    else:
        line += "; no stable version yet: the threshold alone"
    line = f"gate {'passed' if passed else 'refused'}: {line}; on {rows.described}"
    return Verdict(passed, line, {**numbers, "passed": passed})


def _difference(measured: AucDifference) -> str:
    return (f"difference {measured.difference:+.4f} [{measured.confidence:.0%} CI {measured.low:+.4f}, "
            f"{measured.high:+.4f}] ({measured.resamples:,} paired bootstrap resamples)")


def auc_of(labels: np.ndarray, scores: np.ndarray) -> float:
    """The rank AUC, clipped as fab compare's (and the manifests') is."""
    y = np.asarray(labels).reshape(-1) == 1
    clipped = np.clip(np.asarray(scores, np.float64).reshape(-1), CLIP, 1 - CLIP)
    return float(weighted_auc(y, clipped, np.ones((1, len(y))))[0])
