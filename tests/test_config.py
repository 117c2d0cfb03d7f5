"""The three config levels (defaults, a variant, TRAINER_* environment), the
source recorded for each key, and every config error a user can make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.config import DEFAULT_VARIANTS_FILE, KEYS, NetConfig, load_variants, resolve_config
from trainer.errors import ConfigError
from trainer.networks import network_names

SHIPPED_VARIANTS = sorted(load_variants(DEFAULT_VARIANTS_FILE))


def write_variants(tmp_path: Path, variants: dict[str, Any] | str) -> Path:
    path = tmp_path / "variants.json"
    path.write_text(variants if isinstance(variants, str) else json.dumps(variants))
    return path


@pytest.fixture
def variants_file(tmp_path: Path) -> Path:
    return write_variants(tmp_path, {
        "small": {"network": "linear_v1", "epochs": 3, "learning_rate": 0.01, "categorical_columns": ["country"]},
    })


VARIANT_LEVEL = "variant 'small' in variants.json"


def resolve_error(variants: Path, environ: dict[str, str], variant: str = "small") -> str:
    with pytest.raises(ConfigError) as caught:
        resolve_config(variant, variants, environ)
    return str(caught.value)


def test_defaults_apply_where_no_level_sets_a_key(variants_file: Path) -> None:
    resolved = resolve_config("small", variants_file, environ={})
    assert resolved.config.batch_size == NetConfig().batch_size
    assert resolved.config.numeric_columns == ("position", "item_age_hours")
    assert resolved.sources["batch_size"] == "default"
    assert resolved.sources["numeric_columns"] == "default"


def test_variant_overrides_defaults_and_is_recorded_as_the_source(variants_file: Path) -> None:
    resolved = resolve_config("small", variants_file, environ={})
    config = resolved.config
    assert (config.network, config.epochs, config.learning_rate) == ("linear_v1", 3, 0.01)
    assert config.categorical_columns == ("country",)
    for key in ("network", "epochs", "learning_rate", "categorical_columns"):
        assert resolved.sources[key] == VARIANT_LEVEL
    assert resolved.overrides() == {"network": "linear_v1", "epochs": 3, "learning_rate": 0.01,
                                    "categorical_columns": ["country"]}


def test_environment_overrides_the_variant_parsed_by_type(variants_file: Path) -> None:
    environ = {
        "TRAINER_EPOCHS": "5",
        "TRAINER_LEARNING_RATE": "1e-4",
        "TRAINER_DROPOUT": "0.25",
        "TRAINER_OPTIMIZER": "adam",
        "TRAINER_CATEGORICAL_COLUMNS": "country, platform,hour",
        "TRAINER_TEXT_COLUMN": "",
        "PATH": "/usr/bin",  # not a TRAINER_ variable: ignored
    }
    resolved = resolve_config("small", variants_file, environ)
    config = resolved.config
    assert config.epochs == 5 and isinstance(config.epochs, int)
    assert config.learning_rate == pytest.approx(1e-4)
    assert config.dropout == pytest.approx(0.25)
    assert config.optimizer == "adam"
    assert config.categorical_columns == ("country", "platform", "hour")
    assert config.text_column == ""
    assert resolved.sources["epochs"] == "environment TRAINER_EPOCHS"
    assert resolved.sources["categorical_columns"] == "environment TRAINER_CATEGORICAL_COLUMNS"
    assert resolved.sources["network"] == VARIANT_LEVEL
    assert resolved.sources["seed"] == "default"


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("True", True), ("1", True)])
def test_environment_bools(variants_file: Path, raw: str, expected: bool) -> None:
    resolved = resolve_config("small", variants_file, {"TRAINER_XLA": raw})
    assert resolved.config.xla is expected
    assert resolved.sources["xla"] == "environment TRAINER_XLA"


def test_environment_bool_that_is_not_one(variants_file: Path) -> None:
    message = resolve_error(variants_file, {"TRAINER_XLA": "maybe"})
    assert "xla (environment TRAINER_XLA): expected true or false, got 'maybe'" in message


def test_lazy_adam_is_the_default_and_compiles_with_xla_and_keras_adam_is_a_choice(variants_file: Path) -> None:
    resolved = resolve_config("small", variants_file, {})
    assert (resolved.config.optimizer, resolved.config.xla) == ("lazy_adam", True)
    assert resolve_config("small", variants_file, {"TRAINER_OPTIMIZER": "adam"}).config.optimizer == "adam"


def test_process_environment_is_read_when_no_environ_is_given(
    variants_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINER_EPOCHS", "7")
    resolved = resolve_config("small", variants_file)
    assert resolved.config.epochs == 7
    assert resolved.sources["epochs"] == "environment TRAINER_EPOCHS"


def test_resolved_config_json_names_every_key_with_value_and_source(variants_file: Path) -> None:
    data = resolve_config("small", variants_file, {"TRAINER_SEED": "3"}).to_json_dict()
    assert data["variant"] == "small"
    assert set(data["keys"]) == set(KEYS)
    assert data["keys"]["seed"] == {"value": 3, "source": "environment TRAINER_SEED"}
    assert data["keys"]["categorical_columns"] == {"value": ["country"], "source": VARIANT_LEVEL}
    json.dumps(data)  # plain JSON: it goes into the package


def test_unknown_key_in_a_variant_suggests_the_close_one(tmp_path: Path) -> None:
    variants = write_variants(tmp_path, {"small": {"network": "deep_v1", "epoch": 3}})
    message = resolve_error(variants, {})
    assert "unknown key 'epoch'" in message
    assert VARIANT_LEVEL in message
    assert "did you mean 'epochs'?" in message


def test_unknown_environment_key_names_the_variable(variants_file: Path) -> None:
    message = resolve_error(variants_file, {"TRAINER_BATCH": "64"})
    assert "unknown key 'batch' (environment TRAINER_BATCH)" in message
    assert "did you mean 'batch_size'?" in message


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("epochs", "3", 'expected an integer, got "3"'),
    ("epochs", 3.5, "expected an integer, got 3.5"),
    ("epochs", True, "expected an integer, got true"),
    ("learning_rate", "fast", 'expected a number, got "fast"'),
    ("network", 3, "expected a string, got 3"),
    ("xla", "false", 'expected true or false, got "false"'),
    ("xla", 0, "expected true or false, got 0"),
    ("categorical_columns", "country", 'expected a list of str, got "country"'),
])
def test_wrong_type_in_the_variant_json(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    network = {} if key == "network" else {"network": "deep_v1"}
    variants = write_variants(tmp_path, {"small": {**network, key: value}})
    message = resolve_error(variants, {})
    assert f"{key} ({VARIANT_LEVEL}): {expected}" in message


def test_wrong_type_in_the_environment(variants_file: Path) -> None:
    message = resolve_error(variants_file, {"TRAINER_EPOCHS": "ten"})
    assert "epochs (environment TRAINER_EPOCHS): expected an integer, got 'ten'" in message


def test_out_of_range_value_names_key_value_and_level(variants_file: Path) -> None:
    message = resolve_error(variants_file, {"TRAINER_LEARNING_RATE": "-1"})
    assert "learning_rate = -1.0 (set by environment TRAINER_LEARNING_RATE): must be positive" in message


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("TRAINER_EPOCHS", "0", "must be at least 1"),
    ("TRAINER_SUBSAMPLE", "1.5", "must be in (0, 1]"),
    ("TRAINER_TEST_FRACTION", "1", "must be in (0, 1)"),
    ("TRAINER_VALIDATION_FRACTION", "0", "must be in (0, 1)"),
    ("TRAINER_VALIDATION_FRACTION", "0.8", "plus test_fraction (0.2) must be below 1, to leave rows to train on"),
    ("TRAINER_DROPOUT", "nan", "must be in [0, 1)"),
    ("TRAINER_OPTIMIZER", "sgd", "must be one of lazy_adam, adam"),
    ("TRAINER_HIDDEN_LAYERS", "-1", "must not be negative"),
])
def test_range_checks(variants_file: Path, variable: str, value: str, why: str) -> None:
    message = resolve_error(variants_file, {variable: value})
    assert f"(set by environment {variable}): {why}" in message


def test_the_split_has_its_own_seed_and_the_defaults_a_practitioner_expects(variants_file: Path) -> None:
    config = resolve_config("small", variants_file, environ={"TRAINER_SEED": "7"}).config
    assert (config.validation_fraction, config.test_fraction) == (0.1, 0.2)
    assert (config.seed, config.split_seed, config.split_time_column) == (7, 42, "")


def test_unknown_variant_lists_the_known_ones(variants_file: Path) -> None:
    message = resolve_error(variants_file, {}, variant="nope")
    assert "unknown variant 'nope'" in message
    assert "known variants: small" in message


def test_unknown_shipped_variant_lists_every_shipped_one() -> None:
    message = resolve_error(DEFAULT_VARIANTS_FILE, {}, variant="nope")
    assert f"known variants: {', '.join(SHIPPED_VARIANTS)}" in message


def test_variant_without_network(tmp_path: Path) -> None:
    variants = write_variants(tmp_path, {"small": {"epochs": 2}})
    message = resolve_error(variants, {})
    assert "variant(s) small must name their \"network\"" in message
    assert str(variants) in message


def test_variants_file_that_is_not_json(tmp_path: Path) -> None:
    variants = write_variants(tmp_path, '{\n  "small": {"network": "deep_v1",}\n}\n')
    message = resolve_error(variants, {})
    assert f"{variants} line 2: not valid JSON" in message


def test_missing_variants_file(tmp_path: Path) -> None:
    message = resolve_error(tmp_path / "absent.json", {})
    assert "absent.json not found; pass --variants FILE" in message


def test_column_both_categorical_and_numeric(tmp_path: Path) -> None:
    variants = write_variants(tmp_path, {"small": {"network": "deep_v1", "numeric_columns": ["position", "country"]}})
    message = resolve_error(variants, {})
    assert "numeric_columns" in message and VARIANT_LEVEL in message
    assert "column 'country' is also in categorical_columns" in message


def test_the_split_time_column_cannot_also_be_the_label(variants_file: Path) -> None:
    message = resolve_error(variants_file, {"TRAINER_SPLIT_TIME_COLUMN": "is_click"})
    assert "(set by environment TRAINER_SPLIT_TIME_COLUMN): column 'is_click' is also in label_column" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    variants = write_variants(tmp_path, {"small": {"network": "deep_v1", "epoch": 3, "dropout": 2}})
    message = resolve_error(variants, {"TRAINER_EPOCHS": "ten", "TRAINER_BATCH": "1"})
    for problem in ("unknown key 'epoch'", "unknown key 'batch'", "epochs (environment TRAINER_EPOCHS)",
                    "dropout = 2.0"):
        assert problem in message


@pytest.mark.parametrize("variant", SHIPPED_VARIANTS)
def test_every_shipped_variant_resolves_to_a_registered_network(variant: str) -> None:
    resolved = resolve_config(variant, DEFAULT_VARIANTS_FILE, environ={})
    assert resolved.config.network in network_names()
    assert resolved.sources["network"] == f"variant '{variant}' in variant_config.json"
