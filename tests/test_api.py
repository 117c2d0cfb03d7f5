"""The Python API as a notebook uses it: the README's example in a fresh process, typed overrides
refused as fab refuses them, and a package's scores for rows in memory equal to `fab score`'s."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, TrainedPackage, clean_env

import trainer
from trainer.errors import ConfigError, DatasetError
from trainer.package.writer import write_json
from trainer.score import score
from trainer.training.fit import WorkFolders
from trainer.training.unfinished import RUN_FILE, run_record, unfinished_runs_note

# Printed by the test after the README's code, for the assertions below.
EPILOGUE = """
import json as _json, zipfile as _zipfile
with _zipfile.ZipFile(result.package_uri) as _archive:
    _config = _json.loads(_archive.read("config.json"))
print("RESULT " + _json.dumps({
    "package_uri": result.package_uri, "validation": result.validation_metrics, "test": result.test_metrics,
    "scores": [float(s) for s in scores], "epochs_source": _config["keys"]["epochs"]["source"],
    "lazy_tensorflow": _lazy_tensorflow}))
"""
# Before it: what `import trainer` alone loads.
PROLOGUE = "import sys, trainer\n_lazy_tensorflow = 'tensorflow' not in sys.modules\n"


def readme_example() -> str:
    """The first Python block of the README's "Python API" section, as a user would paste it."""
    section = (PROJECT_ROOT / "README.md").read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_as_written_in_a_fresh_process_without_a_line_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to(PROJECT_ROOT / "data")  # the example's relative dataset path
    proc = subprocess.run([sys.executable, "-c", PROLOGUE + readme_example() + EPILOGUE], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr == "", "a notebook's cell shows these lines:\n" + proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("epoch ") and "  train:" in line] \
        == ["1/2", "2/2"]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["lazy_tensorflow"], "`import trainer` imported TensorFlow"
    package = tmp_path / result["package_uri"]  # under the working folder: output "runs" by default
    assert package.parent == tmp_path / "runs" and package.is_file()
    assert all(0 <= result[split]["auc"] <= 1 for split in ("validation", "test"))
    assert len(result["scores"]) == 3 and all(0 < s < 1 for s in result["scores"])
    assert result["epochs_source"] == "overrides of trainer.train"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epoch": 2}, "unknown key 'epoch' (overrides of trainer.train); did you mean 'epochs'?"),
    ({"learning_rate": "0.02"}, 'learning_rate (overrides of trainer.train): expected a number, got "0.02"'),
    ({"epochs": True}, "epochs (overrides of trainer.train): expected an integer, got true"),
    ({"numeric_columns": "position"}, 'numeric_columns (overrides of trainer.train): expected a list of str, '
                                      'got "position"'),
    ({"learning_rate": -1.0}, "learning_rate = -1.0 (set by overrides of trainer.train): must be positive"),
])
def test_a_bad_override_raises_the_config_error_fab_would_print(
    overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        trainer.train("deep_v1", output=str(tmp_path / "runs"), overrides=overrides)
    assert str(raised.value) == message
    assert not (tmp_path / "runs").exists(), "nothing is written for a config error"


def test_scores_of_rows_in_memory_equal_fab_scores(trained: TrainedPackage, sample_path: Path,
                                                   tmp_path: Path) -> None:
    lines = sample_path.read_text().splitlines()[:40]
    rows_file = tmp_path / "rows.json"
    rows_file.write_text("\n".join(lines) + "\n")
    scored = io.StringIO()
    score(str(trained.zip_path), str(rows_file), None, out=scored, err=io.StringIO())
    expected = np.array([json.loads(line)["score"] for line in scored.getvalue().splitlines()], np.float32)

    package = trained.result.package  # trainer.train's result, its package read back
    np.testing.assert_array_equal(package.score([json.loads(line) for line in lines]), expected)
    np.testing.assert_array_equal(package.score(pd.read_json(rows_file, lines=True)), expected)
    with zipfile.ZipFile(trained.zip_path) as archive:  # the package's own id column is optional
        id_column = json.loads(archive.read("config.json"))["keys"]["id_column"]["value"]
    without_ids = [{k: v for k, v in json.loads(line).items() if k != id_column} for line in lines]
    np.testing.assert_array_equal(package.score(without_ids), expected)


def test_a_bad_row_in_memory_is_one_line_naming_it(trained: TrainedPackage, sample_path: Path) -> None:
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()[:3]]
    rows[1]["position"] = "top"
    with pytest.raises(DatasetError) as raised:
        trained.result.package.score(rows)
    assert str(raised.value) == ("row 1: column 'position' is numeric in the config but holds 'top'; "
                                 "fix the data or move the column to categorical_columns")


def test_an_unfinished_api_run_is_named_with_its_typed_overrides(tmp_path: Path) -> None:
    # A notebook's run stopped mid-way: the note a later run prints says what resumes it, overrides included.
    stopped, later = (WorkFolders(tmp_path / ".work" / name) for name in ("deep_v1-stopped", "deep_v1-later"))
    later.root.mkdir(parents=True)
    write_json(stopped.root / RUN_FILE, run_record("deep_v1-stopped", "deep_v1", "data/sample_2k.json", "ab" * 32, {},
                                                   {"learning_rate": 0.02}))
    [note] = unfinished_runs_note(later)
    assert ('the same command resumes it (variant deep_v1, trainer.train overrides {"learning_rate": 0.02}, '
            "data sample_2k.json sha256 abababababab)") in note
