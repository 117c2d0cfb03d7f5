"""`fab compare A B [C ...]`: what a user sees when comparing packages, and the bootstrap behind "B beats A".

Three short deep_v1 runs are trained once for the module: A as the variant defines it, B with
TRAINER_LEARNING_RATE changed (same data, same split), C on the sample with some rows dropped.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK, SAMPLE, Lines, Runner, TrainedPackage
from test_fab_forms import parsed

from trainer.comparison.bootstrap import paired_auc_difference
from trainer.comparison.compare import Comparison, compare_packages
from trainer.package.layout import DATASET_FILE, MANIFEST_FILE
from trainer.run import TrainRequest, train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FASTER = "0.02"  # B's learning rate; the variant's is the default, 0.005


@dataclass(frozen=True)
class Packages:
    a: str  # deep_v1 on the sample
    b: str  # the same with TRAINER_LEARNING_RATE=FASTER
    c: str  # deep_v1 on the sample without its last 100 rows
    folder: Path


@dataclass(frozen=True)
class Printed:
    comparison: Comparison
    text: str


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, trained: TrainedPackage) -> Packages:
    folder = tmp_path_factory.mktemp("compare")
    fewer = folder / "sample_minus_100.json"
    fewer.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:-100]))

    def train_quick(dataset: Path, **environ: str) -> str:
        request = TrainRequest("deep_v1", dataset=str(dataset), output=str(folder / "runs"),
                               environ={**QUICK, **environ})
        return train(request, io.StringIO()).package_uri

    # A is the session's package (deep_v1, QUICK, the sample); C only needs to exist: one epoch.
    return Packages(str(trained.zip_path), train_quick(SAMPLE, TRAINER_LEARNING_RATE=FASTER),
                    train_quick(fewer, TRAINER_EPOCHS="1"), folder)


def compared(*uris: str, plot: Path) -> Printed:
    out = io.StringIO()
    return Printed(compare_packages(list(uris), str(plot), out), out.getvalue())


@pytest.fixture(scope="module")
def a_vs_b(packages: Packages) -> Printed:
    return compared(packages.a, packages.b, plot=packages.folder / "a-b.png")


def test_the_config_diff_shows_the_changed_key_with_each_value_and_its_source(a_vs_b: Printed) -> None:
    line = next(line for line in a_vs_b.text.splitlines() if line.strip().startswith("learning_rate"))
    assert "A 0.005 (default)" in line
    assert f"B {FASTER} (environment TRAINER_LEARNING_RATE)" in line
    assert "config: 1 key differs" in a_vs_b.text and "equal in every package" in a_vs_b.text
    config_section = a_vs_b.text.split("config:")[1].split("dataset:")[0].strip().splitlines()
    assert len(config_section) == 2, "a key equal in both packages is listed"


def test_packages_of_one_dataset_and_split_say_so(a_vs_b: Printed) -> None:
    lines = [line.strip() for line in a_vs_b.text.splitlines()]
    assert "same dataset" in lines and "same split" in lines


def test_the_metrics_are_side_by_side(a_vs_b: Printed, packages: Packages) -> None:
    manifest = read_manifest(packages.a)
    row = next(line.split() for line in a_vs_b.text.splitlines() if line.strip().startswith("test auc"))
    assert row[2] == f"{manifest['test_metrics']['auc']:.4f}" and len(row) == 4
    for label in ("best_epoch", "epochs trained", "validation auc", "validation logloss", "test logloss",
                  "test accuracy"):
        assert f"  {label} " in a_vs_b.text


def test_the_auc_difference_is_the_manifests_with_an_interval_around_it(a_vs_b: Printed, packages: Packages) -> None:
    measured = a_vs_b.comparison.differences["B"]
    expected = read_manifest(packages.b)["test_metrics"]["auc"] - read_manifest(packages.a)["test_metrics"]["auc"]
    assert measured.difference == pytest.approx(expected, abs=1e-6)  # the same rows the runs were tested on
    assert measured.low <= measured.difference <= measured.high and measured.low < measured.high
    assert measured.rows == 414  # about 20% of the sample
    line = next(line for line in a_vs_b.text.splitlines() if line.strip().startswith("B - A: auc"))
    assert f"[95% CI {measured.low:+.4f}, {measured.high:+.4f}] on 414 shared test rows" in line


def test_the_curves_are_one_png(a_vs_b: Printed) -> None:
    assert a_vs_b.comparison.plot.read_bytes().startswith(PNG_SIGNATURE)
    assert f"curves: {a_vs_b.comparison.plot}" in a_vs_b.text


def test_a_package_of_other_data_is_a_different_dataset_and_gets_no_interval(packages: Packages) -> None:
    printed = compared(packages.a, packages.c, plot=packages.folder / "a-c.png")
    assert "different datasets" in printed.text and "different splits" in printed.text
    assert printed.comparison.differences == {} and "CI" not in printed.text
    assert "not computed: no two packages share a test split" in printed.text


def test_data_changed_since_training_is_one_line_and_the_rest_is_printed(packages: Packages) -> None:
    # Both packages claim data with another hash: the file at their source is not what they were trained on.
    claimed = [with_dataset_hash(uri, packages.folder / f"claims-{name}.zip", "0" * 64)
               for name, uri in (("a", packages.a), ("b", packages.b))]
    printed = compared(*claimed, plot=packages.folder / "claims.png")
    assert printed.comparison.differences == {}
    reasons = [line for line in printed.text.splitlines() if "not computed" in line]
    assert len(reasons) == 1 and "has changed since A was trained" in reasons[0]
    assert "test auc" in printed.text and printed.comparison.plot.is_file()


def test_fab_compare_takes_the_packages_as_typed(run_fab: Runner, packages: Packages) -> None:
    png = packages.folder / "typed.png"
    proc = run_fab("compare", packages.a, packages.b, "--output", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "B - A: auc" in proc.stdout and png.read_bytes().startswith(PNG_SIGNATURE)
    # The seconds of loading the dataset and the models are named as they start, on stderr.
    assert [line.split(" from ")[0] for line in proc.stderr.splitlines() if line.startswith("compare: ")] == [
        "compare: rebuilding A's test split", "compare: scoring A on 414 test rows with its serving model ...",
        "compare: scoring B on 414 test rows with its serving model ..."]


@pytest.mark.parametrize("words", [["compare", "--package", "a.zip", "--package", "b.zip"],
                                   ["compare:a.zip,b.zip"]])
def test_repeated_package_options_and_fabric1s_form_mean_the_same(words: list[str]) -> None:
    assert parsed(*words) == parsed("compare", "a.zip", "b.zip")
    assert parsed("compare", "a.zip", "--output", "x.png", "b.zip")[0][1]["package"] == ["a.zip", "b.zip"]


@pytest.mark.parametrize(("problem", "typed", "words"), [
    ("a missing package", ["missing.zip", "README.md"], "missing.zip: no such package"),
    ("not a zip", ["README.md", "fabfile.py"], "README.md: not a zip file"),
    ("one package", ["README.md"], "compare needs two or more packages (only README.md given)"),
])
def test_a_user_error_is_one_line_and_status_2(run_fab: Runner, lines_of: Lines, problem: str,
                                                typed: list[str], words: str) -> None:
    proc = run_fab("compare", *typed)
    assert proc.returncode == 2, problem
    assert lines_of(proc) == [lines_of(proc)[0]] and lines_of(proc)[0].startswith("error: ")
    assert words in lines_of(proc)[0]


def test_identical_scores_differ_by_zero_with_a_zero_interval() -> None:
    labels, scores = scored_rows()
    measured = paired_auc_difference(labels, scores, scores)
    assert (measured.difference, measured.low, measured.high) == (0.0, 0.0, 0.0)
    assert measured.verdict.startswith("no measurable difference")


def test_a_clearly_better_scorer_has_an_interval_above_zero() -> None:
    labels, scores = scored_rows()
    better = scores + 0.5 * labels  # every positive moves up
    measured = paired_auc_difference(labels, scores, better)
    assert 0 < measured.low <= measured.difference <= measured.high
    assert measured.verdict == "better"
    assert paired_auc_difference(labels, better, scores).verdict == "worse"


def scored_rows() -> tuple[np.ndarray, np.ndarray]:
    """400 rows, 10% positive, with weakly informative scores (and ties, as rounded probabilities have)."""
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.1).astype(np.int8)
    return labels, np.round(0.4 * rng.random(400) + 0.1 * labels, 2)


def read_manifest(uri: str) -> dict:
    with zipfile.ZipFile(uri) as archive:
        return json.loads(archive.read(MANIFEST_FILE))


def with_dataset_hash(uri: str, copy: Path, sha256: str) -> str:
    """A copy of the package whose dataset.json records another hash."""
    with zipfile.ZipFile(uri) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == DATASET_FILE:
                data = json.dumps({**json.loads(data), "sha256": sha256}).encode()
            target.writestr(item, data)
    return str(copy)
