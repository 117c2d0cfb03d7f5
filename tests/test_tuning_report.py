"""`fab tune_report`: the leaderboard, plots and pasteable best variant made from
a tuning study. Studies are built with Optuna directly (no training), in SQLite
as the workers leave them: every trial state, retries, a pruned and a failed trial.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from trainer.config import DEFAULT_VARIANTS_FILE, load_variants, resolve_config
from trainer.tuning import evidence
from trainer.tuning.report import TuningReport, format_report, write_report

SHIPPED_VARIANTS = sorted(load_variants(DEFAULT_VARIANTS_FILE))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "hidden_width": IntDistribution(64, 512),
    "embedding_dim": CategoricalDistribution([8, 16, 32]),
}
BEST_PARAMS = {"learning_rate": 0.003, "dropout": 0.1, "hidden_width": 128, "embedding_dim": 32}
STARTED = datetime.datetime(2026, 1, 1, 12, 0, 0)


def new_study(tmp_path: Path, variant: str = "deep_v1", name: str = "study") -> optuna.Study:
    """An empty study carrying the attributes `fab tune` gives it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'tuning.db'}", study_name=name,
                                direction="maximize")
    attrs = {
        "variant": variant,
        "variant_keys": load_variants(DEFAULT_VARIANTS_FILE)[variant],
        "fixed_overrides": {"epochs": "3", "xla": "false"},
        "space": {"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}, "dropout": {"low": 0, "high": 0.5},
                  "hidden_width": {"low": 64, "high": 512}, "embedding_dim": {"choices": [8, 16, 32]}},
        "dataset": "data/sample_2k.json", "output": str(tmp_path / "tuning"), "trials": 10,
        "sampler": "tpe", "pruner": "median", "metric": "validation_auc",
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def params(**changes: Any) -> dict[str, Any]:
    return {**BEST_PARAMS, **changes}


def add(study: optuna.Study, state: TrialState = TrialState.COMPLETE, value: float | None = None,
        trial_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value, params=trial_params or params(),
        distributions=DISTRIBUTIONS, **kwargs,
    ))


def completed_attrs(study: optuna.Study, number: int, **extra: Any) -> dict[str, Any]:
    package = f"{study.user_attrs['output']}/trial_{number}.zip"
    return {"package": package, "run_id": f"run{number}", "worker": "host/100", "epochs": 3,
            "test_auc": 0.69, "test_logloss": 0.45, "test_accuracy": 0.8, **extra}


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    """Seven trials, one per situation; trial 1 is the best and its package is kept."""
    study = new_study(tmp_path)
    # Trial 0 is timed like a real one (create_trial stamps start == end, i.e. 0 s).
    study.add_trial(FrozenTrial(
        number=0, state=TrialState.COMPLETE, value=0.70, datetime_start=STARTED,
        datetime_complete=STARTED + datetime.timedelta(seconds=42.5), params=params(learning_rate=0.05, dropout=0.4),
        distributions=DISTRIBUTIONS, user_attrs=completed_attrs(study, 0), system_attrs={},
        intermediate_values={1: 0.66, 2: 0.69, 3: 0.70}, trial_id=0,
    ))
    add(study, value=0.74, user_attrs=completed_attrs(study, 1))
    add(study, TrialState.PRUNED, trial_params=params(learning_rate=0.09, hidden_width=500),
        intermediate_values={1: 0.61, 2: 0.63})
    add(study, TrialState.FAIL, trial_params=params(learning_rate=0.1),
        user_attrs={"failure": "training diverged at epoch 2 (loss is NaN)", "worker": "host/101"})
    add(study, value=0.72, trial_params=params(dropout=0.2, hidden_width=256),
        user_attrs=completed_attrs(study, 4), system_attrs={"failed_trial": 3})
    study.add_trial(FrozenTrial(
        number=5, state=TrialState.RUNNING, value=None, datetime_start=STARTED, datetime_complete=None,
        params=params(embedding_dim=8), distributions=DISTRIBUTIONS, user_attrs={"worker": "host/102"},
        system_attrs={}, intermediate_values={1: 0.65}, trial_id=5,
    ))
    study.enqueue_trial(params(embedding_dim=16))
    best_package = Path(study.user_attrs["output"]) / "trial_1.zip"
    best_package.parent.mkdir(parents=True)
    best_package.write_bytes(b"PK\x05\x06" + bytes(18))  # only the best trial's package is kept
    return study


def report_of(study: optuna.Study, tmp_path: Path) -> tuple[TuningReport, str]:
    report = write_report(study, tmp_path / "report")
    return report, format_report(report, study.study_name)


def printed_variant(text: str) -> dict[str, Any]:
    """The JSON block the report prints, parsed as a user pasting it would."""
    lines = text.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start: lines.index("}", start) + 1]))


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 5_000  # axes, markers and labels, not an empty canvas


def test_leaderboard_csv_lists_every_trial_best_first(study: optuna.Study, tmp_path: Path) -> None:
    report, _ = report_of(study, tmp_path)
    table = pd.read_csv(report.csv)
    assert list(table.columns) == [
        "trial", "state", "validation_auc", "test_auc", "test_logloss", "test_accuracy",
        "learning_rate", "dropout", "hidden_width", "embedding_dim",  # the search space's order
        "epochs_trained", "duration_s", "worker", "run_id", "package", "note",
    ]
    assert table["trial"].tolist() == [1, 4, 0, 2, 3, 5, 6]
    assert table["state"].tolist() == ["complete", "complete", "complete", "pruned", "failed", "running", "waiting"]
    assert table["validation_auc"].tolist()[:3] == [0.74, 0.72, 0.70]  # the objective ranks them
    assert table["validation_auc"][3:].isna().all()  # blank: no final AUC
    assert table["test_auc"].tolist()[:3] == [0.69, 0.69, 0.69]  # held out: shown, never ranked by
    rows = table.set_index("trial")
    assert rows.loc[0, "duration_s"] == 42.5
    assert rows.loc[[5, 6], "duration_s"].isna().all()  # not finished: no duration
    assert rows.loc[2, "epochs_trained"] == 2  # pruned after reporting two epochs
    assert rows.loc[2, "note"] == "pruned at epoch 2 (validation AUC 0.6300)"
    assert rows.loc[3, "note"] == "training diverged at epoch 2 (loss is NaN)"
    assert rows.loc[4, "note"] == "retry of trial 3"
    assert rows.loc[1, "package"].endswith("trial_1.zip")
    assert pd.isna(rows.loc[6, "embedding_dim"])  # a waiting trial has no params yet
    assert "128," in report.csv.read_text().splitlines()[1]  # integer keys stay integers beside blanks


def test_printed_report_shows_counts_table_best_variant_and_files(study: optuna.Study, tmp_path: Path) -> None:
    report, text = report_of(study, tmp_path)
    lines = text.splitlines()
    assert lines[0] == ("study study: variant deep_v1, 4/10 trials finished "
                        "(3 complete, 1 pruned, 1 failed, 1 running, 1 waiting)")
    table = lines[2:10]
    assert table[0].split()[:4] == ["trial", "state", "validation_auc", "test_auc"]
    assert [row.split()[0] for row in table[1:]] == ["1", "4", "0", "2", "3", "5", "6"]
    states = [row[table[0].index("state"):].split()[0] for row in table[1:]]
    assert states == ["complete", "complete", "complete", "pruned", "failed", "running", "waiting"]
    assert table[5][table[0].index("note"):] == "training diverged at epoch 2 (loss is NaN)"
    assert "best: trial 1, validation AUC 0.7400 (held-out test AUC 0.6900); as a variant" in text
    assert printed_variant(text) == report.best_variant
    assert f"best package: {report.best_package}\n" in text
    assert "no longer exists" not in text
    assert text.splitlines()[-1] == f"wrote {report.csv}, {report.history_png}, {report.importances_png}"


def test_best_variant_is_its_variant_plus_typed_overrides_plus_best_params(
    study: optuna.Study, tmp_path: Path
) -> None:
    report, _ = report_of(study, tmp_path)
    assert report.best_variant == {
        "deep_v1_tuned": {"network": "deep_v1", "epochs": 3, "xla": False, **BEST_PARAMS},
    }


@pytest.mark.parametrize("variant", SHIPPED_VARIANTS)
def test_printed_best_variant_pastes_into_a_variant_file(variant: str, tmp_path: Path) -> None:
    study = new_study(tmp_path, variant)
    add(study, value=0.71, trial_params=params(dropout=0.3))
    add(study, value=0.73)
    _, text = report_of(study, tmp_path)
    variants_file = tmp_path / "variants.json"
    variants_file.write_text(json.dumps(printed_variant(text), indent=2))
    config = resolve_config(f"{variant}_tuned", variants_file, environ={}).config
    assert (config.network, config.epochs, config.xla) == (variant, 3, False)
    assert {key: getattr(config, key) for key in BEST_PARAMS} == BEST_PARAMS
    for key, value in load_variants(DEFAULT_VARIANTS_FILE)[variant].items():
        assert getattr(config, key) == value


def test_history_and_importances_are_png_files(study: optuna.Study, tmp_path: Path) -> None:
    report, _ = report_of(study, tmp_path)
    assert_png(report.history_png)
    assert report.importances_png is not None
    assert_png(report.importances_png)
    # Only keys that varied between completed trials are ranked.
    assert set(report.importances) == {"learning_rate", "dropout", "hidden_width"}
    assert sum(report.importances.values()) == pytest.approx(1.0)


def test_report_warns_of_a_validation_split_too_small_to_rank_trials_and_of_rough_importances(
        tmp_path: Path) -> None:
    study = new_study(tmp_path)
    # The sample's validation split (200 rows, 16 clicks) in one trial, a larger one in the others.
    splits = [{"rows": 20_000, "positives": 1_600, "fraction": 0.1}, {"rows": 200, "positives": 16, "fraction": 0.1}]
    for number, (value, split) in enumerate(zip((0.72, 0.70, 0.74), [*splits, splits[0]])):
        add(study, value=value, trial_params=params(dropout=0.1 * number),
            user_attrs=completed_attrs(study, number, validation_split=split))
    _, text = report_of(study, tmp_path)
    assert ("warning: the validation split has 16 positive labels (of 200 rows), so its AUC, which ranks the trials, "
            "varies by about ±0.08 by chance (one standard error at AUC 0.70): trials closer than that are not told "
            "apart; for 200 or more positives, tune on about 25,000 rows at this click rate, or raise "
            "validation_fraction (now 0.1)") in text.splitlines()
    [importance] = [line for line in text.splitlines() if line.startswith("importance")]
    assert importance.startswith("importance (PED-ANOVA over 3 completed trials): ")
    assert importance.endswith("; rough with under 10 trials, where one more trial can reorder it: run more before "
                               "dropping a key from the search")
    enough = evidence.ValidationSplit(rows=20_000, positives=1_600, fraction=0.1)
    assert evidence.validation_warning(enough, 0.7) is None
    assert "rough" not in evidence.importance_line({"dropout": 1.0}, trials=10)


def test_importances_are_skipped_with_fewer_than_two_completed_trials(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    add(study, value=0.7)
    add(study, TrialState.PRUNED, trial_params=params(dropout=0.4), intermediate_values={1: 0.6})
    report, text = report_of(study, tmp_path)
    assert report.importances_png is None
    assert report.importances == {}
    assert not (tmp_path / "report" / "importances.png").exists()
    assert "importances skipped: 1 completed trial(s), need 2" in text
    assert_png(report.history_png)


def test_importances_are_skipped_when_no_key_varied(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    for value in (0.70, 0.71, 0.72):
        add(study, value=value)
    report, text = report_of(study, tmp_path)
    assert report.importances_png is None
    assert "importances skipped: no searched key took more than one value" in text


def test_report_says_when_the_best_package_no_longer_exists(study: optuna.Study, tmp_path: Path) -> None:
    Path(study.user_attrs["output"], "trial_1.zip").unlink()
    report, text = report_of(study, tmp_path)
    assert report.best_package_exists is False
    assert f"best package: {report.best_package} (no longer exists)" in text


def test_study_without_a_completed_trial_says_so_instead_of_a_variant(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    add(study, TrialState.FAIL, user_attrs={"failure": "out of memory"})
    study.add_trial(FrozenTrial(
        number=1, state=TrialState.RUNNING, value=None, datetime_start=STARTED, datetime_complete=None,
        params=params(), distributions=DISTRIBUTIONS, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=1,
    ))
    report, text = report_of(study, tmp_path)
    assert report.best_variant is None and report.best_package is None
    assert "no completed trial yet: 1 failed, 1 running" in text
    assert "best:" not in text
    assert_png(report.history_png)


def test_study_with_no_trials_gives_a_clear_message(tmp_path: Path) -> None:
    report, text = report_of(new_study(tmp_path), tmp_path)
    assert "study study: variant deep_v1, 0/10 trials finished (none started)" in text
    assert "no trials yet" in text
    assert pd.read_csv(report.csv).empty
    assert report.history_png.is_file()


def test_printed_table_stops_at_twenty_rows_and_points_to_the_csv(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    for i in range(25):
        add(study, value=0.6 + i / 100, trial_params=params(learning_rate=0.001 * (i + 1)))
    report, text = report_of(study, tmp_path)
    assert len(pd.read_csv(report.csv)) == 25
    assert f"... and 5 more trial(s) in {report.csv}" in text
    assert "best: trial 24, validation AUC 0.8400; as a variant" in text


def test_report_still_prints_when_the_best_package_cannot_be_checked(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    add(study, value=0.7, user_attrs={"package": "s3://bucket/trial_0.zip"})  # a scheme no backend serves
    report, text = report_of(study, tmp_path)
    assert report.best_package_exists is None
    assert "best package: s3://bucket/trial_0.zip\n" in text
    assert "could not check the best package: s3://bucket/trial_0.zip: unsupported storage scheme" in text
