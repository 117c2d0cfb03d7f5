"""Named choices: a registry maps each name a user may type to what it stands for.

One registry per kind (networks, optimizers, samplers, pruners) is the one
place that names its choices: the option's help and the error for an unknown
name both list them from it, so adding a choice is one registration and
nothing else to edit. Registries are filled when their module is imported.

Modules that the command lines import to build their help (`fab`, `python -m
trainer`) register entries whose heavy imports (Keras, Optuna) wait inside the
entry, so listing the names costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from trainer.errors import ConfigError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Names in the order registered (the first is the usual default), each with one line of help.

    `option` is how a user types the choice (`--sampler`), for the one-line error of an unknown name.
    """

    def __init__(self, kind: str, option: str = "") -> None:
        self.kind, self.option = kind, option or kind
        self.entries: dict[str, tuple[Entry, str]] = {}

    def register(self, name: str, help: str = "") -> Callable[[Entry], Entry]:
        """A decorator that registers what it decorates under `name`."""

        def add(entry: Entry) -> Entry:
            self.add(name, entry, help)
            return entry

        return add

    def add(self, name: str, entry: Entry, help: str = "") -> None:
        if name in self.entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self.entries[name] = (entry, help)

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: str) -> Entry:
        """The entry registered as `name`; an unknown name is a ConfigError listing the known ones."""
        if name not in self.entries:
            raise ConfigError(f"{self.option} {name}: unknown; use one of {', '.join(self.names())}")
        return self.entries[name][0]

    def described(self) -> str:
        """Every name with its help, for an option's help: "a (what a is), b (...) or c (...)"."""
        shown = [f"{name} ({help})" if help else name for name, (_, help) in self.entries.items()]
        return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
