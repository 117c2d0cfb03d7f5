"""The search space of a tuning study: a flat JSON file of NetConfig keys,
each with one distribution.

    {
      "learning_rate": {"log_uniform": [0.0005, 0.05]},
      "dropout":       {"uniform": [0.0, 0.4]},
      "hidden_layers": {"int": [1, 4]},
      "hidden_width":  {"choice": [64, 128, 256, 512]}
    }

- `uniform` and `log_uniform` [low, high]: numbers (`log_uniform` on an
  integer key draws integers, evenly in log scale);
- `int` [low, high]: integers, both ends included;
- `choice` [values...]: one of the listed values (numbers, strings, booleans).

Every key must be a NetConfig key, and every end or choice must be a value that
key accepts, so a bad space fails before its first trial. A trial's values
reach the run as `TRAINER_<KEY>` overrides: the same level 3 as a user's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from trainer.config import (
    ENV_PREFIX,
    KEYS,
    NetConfig,
    check_values,
    did_you_mean,
    key_type,
    read_json_file,
    value_from_json,
)
from trainer.errors import ConfigError

KINDS = ("uniform", "log_uniform", "int", "choice")
# What each kind may draw for a key of each type.
KIND_TYPES = {"uniform": (float,), "log_uniform": (float, int), "int": (int,), "choice": (float, int, str, bool)}


def load_space(path: Path, base: NetConfig) -> dict[str, dict[str, list]]:
    """The search space in `path`, checked against NetConfig and the variant's resolved `base` config."""
    space = read_json_file(path, f"search space {path} not found; pass --space FILE (see configs/search_space.json)")
    check_space(space, base, str(path))
    return space


def check_space(space: Any, base: NetConfig, where: str) -> None:
    """Every problem of a space at once, as one ConfigError naming `where` and each key."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: expected {{\"key\": {{\"kind\": [...]}}, ...}} with at least one key; "
                          f"kinds: {', '.join(KINDS)}")
    problems = [problem for key, spec in space.items() for problem in _key_problems(key, spec, base)]
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def _key_problems(key: str, spec: Any, base: NetConfig) -> list[str]:
    if key not in KEYS:
        return [f"unknown key '{key}'{did_you_mean(key)}"]
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        return [f"{key}: expected one of {{\"{'|'.join(KINDS)}\": [...]}}, got {json.dumps(spec)}"]
    kind, values = next(iter(spec.items()))
    expected = key_type(key)
    if expected not in KIND_TYPES[kind]:
        fits = [k for k in KINDS if expected in KIND_TYPES[k]] or ["nothing: it cannot be tuned"]
        return [f"{key}: {kind} does not fit a key of type {getattr(expected, '__name__', expected)}; "
                f"use {' or '.join(fits)}"]
    if not isinstance(values, list) or (len(values) != 2 if kind != "choice" else not values):
        shape = "[value, ...]" if kind == "choice" else "[low, high]"
        return [f"{key}: {kind} needs {shape}, got {json.dumps(values)}"]
    return _value_problems(key, kind, values, base)


def _value_problems(key: str, kind: str, values: list, base: NetConfig) -> list[str]:
    """Each value (an end, or a choice) must be one the key accepts, in type and range."""
    problems = []
    for value in values:
        try:
            typed = value_from_json(key, value)
        except ValueError as exc:
            problems.append(f"{key} {kind} {json.dumps(value)}: {exc}")
            continue
        problems += [f"{key} = {json.dumps(value)}: {why}" for problem_key, why in
                     check_values(dataclasses.replace(base, **{key: typed})) if problem_key == key]
    if problems or kind == "choice":
        return problems
    low, high = values
    if not low < high:
        return [f"{key}: {kind} needs low < high, got [{low}, {high}]"]
    if kind == "log_uniform" and low <= 0:
        return [f"{key}: log_uniform needs low > 0, got {low}"]
    return []


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, list]]) -> dict[str, Any]:
    """The trial's value for each key of the space, drawn by the study's sampler."""
    values = {}
    for key, spec in space.items():
        kind, args = next(iter(spec.items()))
        integer = key_type(key) is int
        if kind == "choice":
            values[key] = trial.suggest_categorical(key, args)
        elif integer:
            values[key] = trial.suggest_int(key, int(args[0]), int(args[1]), log=kind == "log_uniform")
        else:
            values[key] = trial.suggest_float(key, float(args[0]), float(args[1]), log=kind == "log_uniform")
    return values


def as_environment(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Config values as the `TRAINER_<KEY>` variables a user would set (parsed back by the key's type)."""
    return {f"{ENV_PREFIX}{key.upper()}": _env_text(value) for key, value in overrides.items()}


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return repr(value) if isinstance(value, float) else str(value)
