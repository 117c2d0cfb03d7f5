"""Values read by a config key's type: JSON checked against it, strings parsed by it.

A variant file's JSON, like `trainer.train`'s Python overrides, is already
typed, so it is only checked (`json_value`: no 1 for true, no "3" for 3); an
environment variable is a string, parsed by the type (`string_value`: lists
are comma-separated). `type_words` names a type in the words of an error line.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any


def json_value(expected: Any, raw: Any) -> Any:
    """`raw` (from JSON) as `expected`; ValueError says why it does not fit."""
    if _is_tuple(expected):
        item_type = typing.get_args(expected)[0]
        # A tuple is Python's list (a list key's default is one); JSON has only lists.
        if not isinstance(raw, (list, tuple)) or not all(_json_matches(item_type, x) for x in raw):
            raise ValueError(f"expected a list of {item_type.__name__}, got {_shown(raw)}")
        return tuple(item_type(x) for x in raw)
    if not _json_matches(expected, raw):
        raise ValueError(f"expected {type_words(expected)}, got {_shown(raw)}")
    return expected(raw)


def _shown(raw: Any) -> str:
    """A refused value as JSON would write it; a Python object JSON has no form for, by its repr."""
    return json.dumps(raw, default=repr)


def _json_matches(expected: type, raw: Any) -> bool:
    if expected is float:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if expected is int:
        return isinstance(raw, int) and not isinstance(raw, bool)
    return isinstance(raw, expected)


def string_value(expected: Any, raw: str) -> Any:
    """`raw` parsed as `expected`; a list type takes comma-separated items."""
    if _is_tuple(expected):
        item_type = typing.get_args(expected)[0]
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return tuple(_parse_scalar(item_type, item) for item in items)
    return _parse_scalar(expected, raw)


def _parse_scalar(expected: type, raw: str) -> Any:
    try:
        if expected is bool:
            return {"true": True, "1": True, "false": False, "0": False}[raw.strip().lower()]
        return expected(raw.strip()) if expected is not str else raw
    except (KeyError, ValueError):
        raise ValueError(f"expected {type_words(expected)}, got '{raw}'") from None


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def type_words(tp: Any) -> str:
    """'an integer', 'a list of str', ...: a type as an error line says it."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if isinstance(tp, types.GenericAlias):
        return f"a list of {typing.get_args(tp)[0].__name__}"
    return names.get(tp, str(tp))
