"""`python -m trainer score` and `fab score`: a package's click probabilities for raw rows.

    load package -> stream the input's NDJSON blocks -> serving export
    -> NDJSON {id, score} lines and the drift summary -> publish both whole
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from trainer.data import storage
from trainer.data.dataset import dataset_files
from trainer.data.values import ColumnRoles
from trainer.errors import ConfigError
from trainer.outputs import check_output_file
from trainer.package.loader import load_package
from trainer.package.writer import write_json
from trainer.serving.contract import Profile
from trainer.serving.scoring import score_stream


def score(package_uri: str, input_uri: str, output: str | None, out: TextIO = sys.stdout,
          err: TextIO = sys.stderr) -> int:
    """Score raw rows with a package; writes NDJSON {id, score} lines. Returns the row count.

    The input streams through the package's serving export a block at a time (a package older than the
    export: through the encoder of its preprocessing and its Keras model). `output` (a file, local or
    gs://) appears whole, its folder created as fab train creates its --output, with the drift summary
    beside it (`<output>.drift.json`; none for a package without a data contract); without it, the lines
    go to `out`. Columns that drifted from the package's data contract are printed to `err`, and so is a
    line per block scored (`BlockProgress`).
    """
    if output:
        _check_output(output, input_uri)  # before the package loads and any row is scored, not after
    package = load_package(package_uri)
    roles = ColumnRoles.of(package.config, with_label=False)
    with tempfile.TemporaryDirectory() as folder:
        scores_file = Path(folder) / "scores.json"
        with scores_file.open("wb") as lines:
            profile = Profile(package.contract) if package.contract else None
            rows = score_stream(package.scorer, input_uri, roles, profile, lines.write, BlockProgress(err))
        drift = profile.summary() if profile else {}
        for line in drift.get("drift", []):
            print(line, file=err)
        if output:
            storage.publish(scores_file, output)
            if drift:
                write_json(Path(folder) / "drift.json", drift)
                storage.publish(Path(folder) / "drift.json", drift_summary_uri(output))
        else:
            with scores_file.open(encoding="utf-8") as lines:  # ids as the input's UTF-8
                shutil.copyfileobj(lines, out)
    return rows


def drift_summary_uri(scores_uri: str) -> str:
    return f"{scores_uri.removesuffix('.json')}.drift.json"


def _check_output(output: str, input_uri: str) -> None:
    """Refuse an --output that is a folder, or that would replace an input file with the scores (the scores
    or the drift summary beside them), before the package is loaded or any row is read."""
    check_output_file(output, example="scores.json")
    files, _ = dataset_files(input_uri)
    for written in (output, drift_summary_uri(output)):
        if clash := next((f for f in files if storage.same_file(f, written)), None):
            what = "the scores" if written == output else f"the drift summary ({written})"
            raise ConfigError(f"--output {output}: {what} would replace the input file {clash}; "
                              f"name another file, e.g. --output {output.removesuffix('.json')}.scores.json")


class BlockProgress:
    """fab score's progress, one line per block scored: its rows, its rows/s (the wall time since the
    block before: parsing, scoring and writing) and the rows so far."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.blocks, self.rows, self.since = out, 0, 0, time.perf_counter()

    def __call__(self, rows: int) -> None:
        now = time.perf_counter()
        self.blocks, self.rows = self.blocks + 1, self.rows + rows
        print(f"scoring: block {self.blocks}, {rows:,} rows at {rows / max(now - self.since, 1e-9):,.0f} rows/s; "
              f"{self.rows:,} rows so far", file=self.out, flush=True)
        self.since = now
