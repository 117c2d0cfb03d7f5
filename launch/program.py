"""The `fab` command: Fabric 3's program, which also takes Fabric 1's task form.

    fab train:variant=deep_v1,gpu=True      the design card's form (Fabric 1)
    fab train --variant deep_v1 --gpu       Fabric 3's form, unchanged
    fab compare a.zip b.zip                 a positional list takes every bare word (--package a.zip ...)

Each `TASK:key=value,...` word is rewritten into Fabric 3's words for that task
before invoke parses them, so both forms go through the same parser, types and
checks. A key or option the task lacks, in either form, is one `error:` line
naming the task's options (invoke would say "No idea what '--x' is!", exit 1).
The project's set-up installs `main` as the venv's `fab` (pyproject.toml).
"""

from __future__ import annotations

import difflib
import re

from fabric import Config, Executor
from fabric import __version__ as fabric_version
from fabric.main import Fab
from invoke import Collection, Exit, ParseError, Task
from invoke.parser import Argument, ParserContext

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# Fabric 1 let a value hold a comma or an equals sign behind a backslash.
UNESCAPED_COMMA = re.compile(r"(?<!\\),")
UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")


class TrainerFab(Fab):
    """Fabric's `fab`, reading Fabric 1's `TASK:key=value` words and explaining unknown options."""

    def parse_tasks(self) -> None:
        words = expand_fabric1_words(self.core.unparsed, self.collection)
        self.core.unparsed = expand_positional_lists(words, self.collection)
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise user_error(explain(exc, self.collection)) from None

    def execute(self) -> None:
        """Run the tasks; Ctrl-C (or a SIGTERM a task turned into one) ends fab as it ends `python -m
        trainer`: "stopped" and status 130. invoke would exit 1 without a word."""
        try:
            super().execute()
        except KeyboardInterrupt:
            from trainer.interrupts import EXIT_INTERRUPTED, STOPPED_LINE  # see user_error

            raise Exit(STOPPED_LINE, code=EXIT_INTERRUPTED) from None


def user_error(line: str) -> Exit:
    """Ends fab with `line` and the user-error status.

    Imported here, not at the top: this module loads before the fabfile, and importing
    `trainer` then would take the installed checkout's, not the one Fabric puts on
    sys.path for the fabfile. This runs while tasks are parsed, after the fabfile loaded.
    """
    from trainer.errors import USER_ERROR_STATUS

    return Exit(line, code=USER_ERROR_STATUS)


def expand_fabric1_words(words: list[str], collection: Collection) -> list[str]:
    """Each `TASK:key=value,...` word of a known task as Fabric 3's `TASK --key value ...`."""
    expanded: list[str] = []
    for word in words:
        name, colon, rest = word.partition(":")
        if colon and not word.startswith("-") and name in collection.task_names:
            expanded += [name, *_task_words(collection[name], name, rest)]
        else:
            expanded.append(word)
    return expanded


def expand_positional_lists(words: list[str], collection: Collection) -> list[str]:
    """Bare words after a task whose positional argument is a list, as `--NAME WORD` each.

    `@task(positional=["package"], iterable=["package"])` means "every bare word is a
    package": fab compare a.zip b.zip. invoke fills a positional with one word and never
    counts a list as missing, so it would take none ("No idea what 'a.zip' is!").
    """
    expanded: list[str] = []
    takes_value: set[str] = set()
    listed: Argument | None = None
    for word in words:
        if expanded and expanded[-1] in takes_value:  # the value of the option before it
            expanded.append(word)
        elif word in collection.task_names:
            arguments = collection[word].get_arguments()
            takes_value = {f"--{flag_name(a)}" for a in arguments if a.kind is not bool}
            listed = next((a for a in arguments if a.positional and a.kind is list), None)
            expanded.append(word)
        elif listed is not None and not word.startswith("-"):
            expanded += [f"--{flag_name(listed)}", word]
        else:
            expanded.append(word)
    return expanded


def _task_words(task: Task, name: str, arguments: str) -> list[str]:
    options = {flag_name(argument): argument for argument in task.get_arguments()}
    words: list[str] = []
    for item in filter(None, UNESCAPED_COMMA.split(arguments)):
        parts = UNESCAPED_EQUALS.split(item, maxsplit=1)
        if len(parts) == 1:  # a bare value is the next positional argument, as in Fabric 1
            words.append(_unescaped(item))
            continue
        key, value = parts
        argument = options.get(key.replace("_", "-"))
        if argument is None:
            raise user_error(_unknown_option(name, key, list(options)))
        words += _option_words(argument, name, _unescaped(value))
    return words


def _option_words(argument: Argument, task_name: str, value: str) -> list[str]:
    flag = f"--{flag_name(argument)}"
    if argument.kind is not bool:
        return [f"{flag}={value}"]
    word = value.lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise user_error(f"error: {task_name}:{argument.name}={value}: expected True or False")
    wanted = word in TRUE_WORDS
    if wanted == bool(argument.default):
        return []
    return [flag] if wanted else [f"--no-{flag_name(argument)}"]


def flag_name(argument: Argument) -> str:
    """The option as typed after `--`: invoke turns a parameter's underscores into dashes."""
    return argument.name.replace("_", "-")


def _unescaped(value: str) -> str:
    return value.replace("\\,", ",").replace("\\=", "=")


def explain(error: ParseError, collection: Collection) -> str:
    """One line for invoke's parse error: an unknown option names the task's options."""
    unknown = re.fullmatch(r"No idea what '(.*)' is!", str(error))
    context: ParserContext | None = error.context
    if unknown and context is not None and context.name and unknown.group(1).startswith("-"):
        options = [flag_name(argument) for argument in collection[context.name].get_arguments()]
        return _unknown_option(context.name, unknown.group(1), options)
    if unknown and not unknown.group(1).startswith("-"):
        name = unknown.group(1).partition(":")[0]  # Fabric 1's words of an unknown task stay whole
        guess = difflib.get_close_matches(name, list(collection.task_names), n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        return f"error: no task '{name}'; {hint}fab --list names them"
    return f"error: {error}; fab --help TASK shows a task's options"


def _unknown_option(task_name: str, typed: str, options: list[str]) -> str:
    key = typed.lstrip("-").partition("=")[0].replace("_", "-")
    guess = difflib.get_close_matches(key, options, n=1)
    hint = f" (did you mean --{guess[0]}?)" if guess else ""
    names = ", ".join(f"--{option}" for option in sorted(options)) or "none"
    return f"error: {task_name} has no option '{typed}'{hint}; its options: {names} (fab --help {task_name})"


def make_program() -> TrainerFab:
    """The program as Fabric makes its own (fabric.main.make_program), with our parsing."""
    return TrainerFab(name="Fabric", version=fabric_version, executor_class=Executor, config_class=Config)


def main() -> None:
    """The `fab` console script."""
    make_program().run()
