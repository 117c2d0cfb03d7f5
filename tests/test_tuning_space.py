"""The search space file: typed distributions over NetConfig keys, checked before any trial."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from trainer.config import DEFAULT_VARIANTS_FILE, load_variants, parse_env_value, resolve_config
from trainer.errors import ConfigError
from trainer.tuning.space import as_environment, load_space, suggest
from trainer.tuning.study import DEFAULT_SPACE_FILE


def _space_file(tmp_path: Path, space: object) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    return path


def _base() -> object:
    return resolve_config("deep_v1", environ={}).config


@pytest.mark.parametrize("variant", sorted(load_variants(DEFAULT_VARIANTS_FILE)))
def test_the_shipped_space_fits_every_shipped_variant(variant: str) -> None:
    space = load_space(DEFAULT_SPACE_FILE, resolve_config(variant, environ={}).config)
    assert {"learning_rate", "hidden_layers"} <= set(space)


@pytest.mark.parametrize(("space", "message"), [
    ({"learning_rat": {"log_uniform": [0.001, 0.1]}}, "unknown key 'learning_rat'; did you mean 'learning_rate'?"),
    ({"hidden_layers": {"uniform": [1, 4]}},
     "hidden_layers: uniform does not fit a key of type int; use log_uniform or int"),
    ({"dropout": {"uniform": [0.0, 1.0]}}, "dropout = 1.0: must be in [0, 1)"),
    ({"learning_rate": {"log_uniform": [0, 0.1]}}, "learning_rate = 0: must be positive"),
    ({"hidden_width": {"choice": [64, "wide"]}}, "hidden_width choice \"wide\": expected an integer"),
    ({"hidden_layers": {"int": [4, 1]}}, "hidden_layers: int needs low < high, got [4, 1]"),
    ({"embedding_dim": {"int": [8]}}, "embedding_dim: int needs [low, high], got [8]"),
    ({"dropout": {"normal": [0, 1]}}, "dropout: expected one of"),
    ({"categorical_columns": {"choice": ["a"]}}, "categorical_columns: choice does not fit"),
    ({}, "with at least one key"),
])
def test_a_bad_space_names_the_key_and_what_is_wrong(tmp_path: Path, space: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_space(_space_file(tmp_path, space), _base())
    assert str(error.value).startswith(str(tmp_path / "space.json"))
    assert message in str(error.value)


def test_every_problem_of_a_space_is_reported_at_once(tmp_path: Path) -> None:
    space = {"learning_rat": {"uniform": [0.1, 0.2]}, "dropout": {"uniform": [0.5, 2.0]}}
    with pytest.raises(ConfigError) as error:
        load_space(_space_file(tmp_path, space), _base())
    assert "learning_rat" in str(error.value) and "dropout = 2.0" in str(error.value)


def test_a_missing_or_broken_space_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; pass --space FILE"):
        load_space(tmp_path / "none.json", _base())
    broken = tmp_path / "broken.json"
    broken.write_text('{"dropout": {"uniform": [0, 0.5]},\n}')
    with pytest.raises(ConfigError, match=r"broken\.json line 2: not valid JSON"):
        load_space(broken, _base())


def test_drawn_values_stay_in_range_and_parse_back_as_overrides(tmp_path: Path) -> None:
    space = {"learning_rate": {"log_uniform": [0.001, 0.1]}, "min_category_count": {"log_uniform": [2, 100]},
             "hidden_layers": {"int": [1, 4]}, "xla": {"choice": [True, False]}, "dropout": {"uniform": [0, 0.4]}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        values = suggest(trial, space)
        assert 0.001 <= values["learning_rate"] <= 0.1 and 0 <= values["dropout"] <= 0.4
        assert isinstance(values["min_category_count"], int) and 2 <= values["min_category_count"] <= 100
        assert values["hidden_layers"] in range(1, 5) and isinstance(values["xla"], bool)
        environ = as_environment(values)
        parsed = {k[len("TRAINER_"):].lower(): parse_env_value(k[len("TRAINER_"):].lower(), v)
                  for k, v in environ.items()}
        assert parsed == values  # the run sees exactly the drawn values
        study.tell(trial, 0.5)
