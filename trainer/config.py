"""The run configuration: one flat, typed NetConfig resolved in three levels.

1. defaults: the fields of `NetConfig` below;
2. a variant: `configs/variant_config.json` names variants, each overriding
   only what differs from the defaults (and naming its network);
3. the environment: `TRAINER_<KEY>=value` overrides one key for one run
   (research, tuning), parsed by the key's type; from Python, `trainer.train`'s
   `overrides` take this level's place, as typed values checked by the key's type.

No hierarchies. An unknown key or a value of the wrong type at any level is a
`ConfigError` naming the key and the level; every problem is reported at once.
The resolved config remembers which level set each key, and that goes into the
package so a model can always be traced back to what trained it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError
from trainer.training.optimizer_registry import OPTIMIZERS
from trainer.typed_values import json_value, string_value

ENV_PREFIX = "TRAINER_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS_FILE = PROJECT_ROOT / "configs" / "variant_config.json"
# The embedded defaults: the whole flow runs on a laptop with no cloud account.
DEFAULT_DATASET = str(PROJECT_ROOT / "data" / "sample_2k.json")
DEFAULT_OUTPUT = "runs"


def _key(default: Any, help: str) -> Any:
    """A config key: its default and one line saying what it does."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class NetConfig:
    """Every key a run can set, with its default. Frozen once resolved."""

    # What to train.
    network: str = _key("deep_v1", "registered network architecture (see trainer/networks/)")
    epochs: int = _key(8, "passes over the training split")
    batch_size: int = _key(
        0, "examples per gradient step; 0 = auto: 1/64 of the training rows (64 steps per epoch), 64 to 4096"
    )
    learning_rate: float = _key(0.005, "Adam step size (large batches want a larger step)")
    optimizer: str = _key("lazy_adam", OPTIMIZERS.described())
    xla: bool = _key(
        True, "compile the training step with XLA (faster); skipped on CPUs when dropout > 0 (much slower there)"
    )
    early_stopping_patience: int = _key(
        2, "stop after this many epochs without a better validation AUC (keeping the best weights); 0 = off"
    )
    seed: int = _key(42, "seeds the weights, the shuffling and dropout (the split has split_seed)")

    # The dataset's schema: a dataset with other columns needs only a new variant.
    label_column: str = _key("is_click", "binary label, 0 or 1")
    categorical_columns: tuple[str, ...] = _key(
        ("publisher_id", "item_id", "category", "country", "platform", "hour", "day_of_week"),
        "columns embedded by value; their vocabulary sizes size the embedding tables",
    )
    numeric_columns: tuple[str, ...] = _key(
        ("position", "item_age_hours"), "columns used as numbers, standardised on the training split"
    )
    text_column: str = _key("title", "free-text column tokenized with spaCy; empty for none")
    id_column: str = _key("impression_id", "copied beside each score by `score`; empty for none")

    # Data handling.
    subsample: float = _key(1.0, "fraction of rows kept while loading (for data that does not fit)")
    test_fraction: float = _key(0.2, "fraction of rows held out as the test split, scored once on the packaged model")
    validation_fraction: float = _key(
        0.1, "fraction of rows held out as the validation split: early stopping and tuning read only it"
    )
    shuffle_buffer_rows: int = _key(
        262_144, "training rows shuffled together in memory; a training split this small or smaller is shuffled whole"
    )
    split_seed: int = _key(42, "seeds the random split alone, so weight noise can be measured on fixed splits")
    split_time_column: str = _key(
        "", "a TIMESTAMP column: its newest rows go to test, the next newest to validation; empty = random split"
    )
    min_category_count: int = _key(
        10, "rarer categorical values share the out-of-vocabulary row (rare ids only memorise noise)"
    )
    max_categories: int = _key(200_000, "most values kept per categorical column, most frequent first")
    text_min_count: int = _key(2, "rarer title tokens map to the out-of-vocabulary token")
    text_max_vocabulary: int = _key(20_000, "most title tokens kept, most frequent first")
    text_max_tokens: int = _key(16, "title tokens kept per row; longer titles are cut")

    # Network shape.
    embedding_dim: int = _key(16, "embedding width (smaller for columns with fewer values)")
    hidden_layers: int = _key(3, "depth of the MLP tower")
    hidden_width: int = _key(
        256, "width of the first MLP layer; each next layer is half as wide, down to 8 (or the first's width)"
    )
    dropout: float = _key(0.0, "dropout after each MLP layer")
    rnn_units: int = _key(32, "GRU width over title tokens (rnn_* networks)")
    cross_layers: int = _key(2, "explicit feature-cross layers (dcn_* networks)")
    embedding_l2: float = _key(
        0.0, "L2 penalty on the embedding rows a batch looks up (mean over its rows; untouched rows cost nothing)"
    )
    dense_l2: float = _key(0.0, "L2 penalty on the kernels of the MLP tower and the cross layers")

    # Reports.
    plot_accuracy: bool = _key(
        False, "add an accuracy panel to metrics.png (at a low click rate accuracy sits at the base rate)"
    )


KEYS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(NetConfig)}


def key_type(key: str) -> Any:
    return typing.get_type_hints(NetConfig)[key]


@dataclass(frozen=True)
class ResolvedConfig:
    """The config a run actually used, and the level that set each key."""

    variant: str
    config: NetConfig
    sources: dict[str, str]
    # The variant file as it was read: a team's file beside its data can change after the run.
    variants_file: dict[str, str] | None = None  # {"path", "sha256"}

    def to_json_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self.config)
        return {
            "variant": self.variant,
            "variants_file": self.variants_file,
            "keys": {k: {"value": _jsonable(v), "source": self.sources[k]} for k, v in values.items()},
        }

    def overrides(self) -> dict[str, Any]:
        """The keys that differ from the defaults (what a variant would need)."""
        return {
            k: _jsonable(getattr(self.config, k))
            for k in KEYS
            if self.sources[k] != "default"
        }


def config_from_json_dict(data: dict[str, Any]) -> ResolvedConfig:
    """Read back what `ResolvedConfig.to_json_dict` wrote (a package's config.json, as the current format
    version has it: `trainer.package.layout.read_as_current`). A key the package lacks takes its default."""
    keys = data["keys"]
    values = {k: tuple(v["value"]) if isinstance(v["value"], list) else v["value"] for k, v in keys.items()}
    return ResolvedConfig(data["variant"], NetConfig(**values), {k: v["source"] for k, v in keys.items()},
                          data["variants_file"])


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# The level `trainer.train(overrides=...)` sets keys at, as config.json records it.
PYTHON_OVERRIDES = "overrides of trainer.train"


def resolve_config(
    variant: str,
    variants_file: Path = DEFAULT_VARIANTS_FILE,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Merge defaults, the named variant and `TRAINER_*` environment overrides, then `overrides`:
    typed values (Python's, as a variant file's JSON values are checked), last."""
    environ = os.environ if environ is None else environ
    variant_values = load_variants(variants_file).get(variant)
    if variant_values is None:
        known = ", ".join(sorted(load_variants(variants_file)))
        raise ConfigError(f"unknown variant '{variant}' in {variants_file}; known variants: {known}")

    problems: list[str] = []
    values: dict[str, Any] = {}
    sources = {k: "default" for k in KEYS}
    level = f"variant '{variant}' in {variants_file.name}"
    for key, raw in variant_values.items():
        _merge(key, raw, value_from_json, level, values, sources, problems)
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower()
            _merge(key, raw, parse_env_value, f"environment {name}", values, sources, problems)
    for key, raw in (overrides or {}).items():
        _merge(key, raw, value_from_json, PYTHON_OVERRIDES, values, sources, problems)

    config = NetConfig(**values)
    problems += [
        f"{key} = {getattr(config, key)!r} (set by {sources[key]}): {why}" for key, why in check_values(config)
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    record = {"path": str(variants_file.resolve()), "sha256": hashlib.sha256(variants_file.read_bytes()).hexdigest()}
    return ResolvedConfig(variant=variant, config=config, sources=sources, variants_file=record)


def _merge(
    key: str,
    raw: Any,
    parse: Callable[[str, Any], Any],
    level: str,
    values: dict[str, Any],
    sources: dict[str, str],
    problems: list[str],
) -> None:
    """Parse one key's value from one level into `values`, or record why not."""
    if key not in KEYS:
        problems.append(f"unknown key '{key}' ({level}){did_you_mean(key)}")
        return
    try:
        values[key] = parse(key, raw)
    except ValueError as exc:
        problems.append(f"{key} ({level}): {exc}")
        return
    sources[key] = level


def did_you_mean(key: str) -> str:
    """'; did you mean ...' for a mistyped key (empty-handed: where to look)."""
    close = difflib.get_close_matches(key, KEYS, n=1)
    return f"; did you mean '{close[0]}'?" if close else "; see `python -m trainer keys`"


def read_json_file(path: Path, when_missing: str) -> Any:
    """A config file's JSON; a missing file (`when_missing` says what to do) or bad JSON is one ConfigError."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(when_missing) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None


def load_variants(variants_file: Path) -> dict[str, dict[str, Any]]:
    """The variant file: {variant name: {key: value}}; each variant names its network."""
    variants = read_json_file(variants_file, f"variant file {variants_file} not found; pass --variants FILE")
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"{variants_file}: expected {{\"variant\": {{\"key\": value, ...}}, ...}}")
    unnamed = [name for name, keys in variants.items() if "network" not in keys]
    if unnamed:
        raise ConfigError(f"{variants_file}: variant(s) {', '.join(unnamed)} must name their \"network\"")
    return variants


def value_from_json(key: str, raw: Any) -> Any:
    """A variant file's (or Python's) value for `key`, checked against the key's type; ValueError says why not."""
    return json_value(key_type(key), raw)


def parse_env_value(key: str, raw: str) -> Any:
    """A `TRAINER_<KEY>` string parsed by the key's type; lists are comma-separated."""
    return string_value(key_type(key), raw)


def check_values(config: NetConfig) -> list[tuple[str, str]]:
    """Range checks that types alone cannot express: (key, why) per problem."""
    positive = ["epochs", "embedding_dim", "hidden_width", "rnn_units",
                "min_category_count", "max_categories", "text_min_count",
                "text_max_vocabulary", "text_max_tokens", "shuffle_buffer_rows"]
    problems = [(k, "must be at least 1") for k in positive if getattr(config, k) < 1]
    non_negative = ["batch_size", "early_stopping_patience", "hidden_layers", "cross_layers"]
    problems += [(k, "must not be negative") for k in non_negative if getattr(config, k) < 0]
    problems += [(k, "must not be negative") for k in ("embedding_l2", "dense_l2") if getattr(config, k) < 0]
    if not config.learning_rate > 0:
        problems.append(("learning_rate", "must be positive"))
    if not 0 < config.subsample <= 1:
        problems.append(("subsample", "must be in (0, 1]"))
    problems += _fraction_problems(config)
    if not 0 <= config.dropout < 1:
        problems.append(("dropout", "must be in [0, 1)"))
    if config.optimizer not in OPTIMIZERS:
        problems.append(("optimizer", f"must be one of {', '.join(OPTIMIZERS.names())}"))
    problems += _column_problems(config)
    return problems


def _fraction_problems(config: NetConfig) -> list[tuple[str, str]]:
    problems = [(k, "must be in (0, 1)") for k in ("validation_fraction", "test_fraction")
                if not 0 < getattr(config, k) < 1]
    if not problems and config.validation_fraction + config.test_fraction >= 1:
        problems.append(("validation_fraction", f"plus test_fraction ({config.test_fraction}) must be below 1, "
                                                "to leave rows to train on"))
    return problems


def _column_problems(config: NetConfig) -> list[tuple[str, str]]:
    if not config.categorical_columns and not config.numeric_columns and not config.text_column:
        return [("categorical_columns", "no feature columns at all (also numeric_columns and text_column are empty)")]
    seen: dict[str, str] = {}
    problems = []
    for key in ("label_column", "categorical_columns", "numeric_columns", "text_column", "split_time_column"):
        value = getattr(config, key)
        for column in value if isinstance(value, tuple) else [value] if value else []:
            if column in seen:
                problems.append((key, f"column '{column}' is also in {seen[column]}"))
            seen[column] = key
    return problems
