"""What the fab tasks share: user errors as one line, exit statuses, running a container job.

fabfile.py imports this module for every `fab` command, `fab --list` included,
so it imports nothing heavy at its top: TensorFlow and docker-py load inside
the functions that need them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import fabric
from invoke import Exit
from invoke.parser import Argument

from trainer import import_tensorflow_quietly
from trainer.config import DEFAULT_OUTPUT, DEFAULT_VARIANTS_FILE
from trainer.errors import USER_ERROR_STATUS, TrainerError
from trainer.outputs import check_output_folder

if TYPE_CHECKING:
    import docker

    from launch.containers import ContainerJob

# fab tune's trial packages and fab tune_report's files: one folder per study.
TUNE_OUTPUT = f"{DEFAULT_OUTPUT}/tune"

Params = ParamSpec("Params")
Result = TypeVar("Result")
# How an option's type reads in an error line.
KIND_WORDS = {int: "a whole number", float: "a number"}


class CheckedArgument(Argument):
    """A typed option whose value does not parse ends fab with one line and status 2.

    invoke casts `--trials abc` with int() while it parses the command line, before
    any task runs, and lets the ValueError out as a traceback. An Exit raised here
    is caught by invoke's Program, which prints its message and exits with its code.
    """

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            flag = self.names[0]  # the typed name: dashed, as in `fab --help TASK`
            option = ("-" if len(flag) == 1 else "--") + flag
            expected = KIND_WORDS.get(self.kind, f"a {getattr(self.kind, '__name__', self.kind)}")
            example = f", e.g. {option} {self.default}" if self.default is not None else ""
            raise Exit(f"error: {option} {value}: expected {expected}{example}", code=USER_ERROR_STATUS) from None


class CheckedTask(fabric.tasks.Task):
    """A fab task whose options are CheckedArguments (same names, types, defaults and help)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        return [_checked(argument) for argument in super().get_arguments(ignore_unknown_help)]


def _checked(argument: Argument) -> CheckedArgument:
    return CheckedArgument(
        names=argument.names, kind=argument.kind, default=argument.default, help=_with_default(argument),
        positional=argument.positional, optional=argument.optional, incrementable=argument.incrementable,
        attr_name=argument.attr_name,
    )


def _with_default(argument: Argument) -> str | None:
    """The option's help, ending with its default unless the help already says it (`fab --help TASK`)."""
    if argument.help is None or "default" in argument.help or argument.default is None:
        return argument.help  # required (positional) arguments have no default
    if argument.kind is bool:
        shown = "on" if argument.default else "off"
    else:
        shown = str(argument.default) if argument.default not in ("", []) else "none"
    return f"{argument.help} (default: {shown})"


def task(*args: Any, **kwargs: Any) -> Any:
    """Fabric's @task (bare or with options), making CheckedTasks: every typed option of every task is checked.

    No short flags: invoke would give each task its own (-o was --storage in one task,
    --output in another), and fab's core flags already take -H, -i, -d and others.
    """
    return fabric.task(*args, klass=CheckedTask, auto_shortflags=False, **kwargs)


def reports_user_errors(body: Callable[Params, Result]) -> Callable[Params, Result]:
    """Make a task body end with one `error: ...` line and status 2 on a TrainerError.

    Put it under @task: invoke builds the task's options from inspect.signature of
    the body, which follows the __wrapped__ that functools.wraps sets, so the
    options, defaults and docstring stay the body's own. Anything else, an Exit
    with a status of the task's choosing included, passes through untouched.
    """

    @functools.wraps(body)
    def body_reporting_user_errors(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        try:
            return body(*args, **kwargs)
        except TrainerError as exc:
            # `from None`: the user gets the message, not the chain behind it.
            raise Exit(f"error: {exc}", code=USER_ERROR_STATUS) from None

    return body_reporting_user_errors


def exit_with(status: int) -> None:
    """End fab with `status` unless it is 0 (success goes on to the next task)."""
    if status:
        raise Exit(code=status)


def study_output(output: str, study: str) -> str:
    """--output when given, else the study's own folder under TUNE_OUTPUT; checked to be a folder."""
    return output_folder(output or f"{TUNE_OUTPUT}/{study}")


def variants_file(option: str) -> Path:
    """--variants as a path: a team's own file, or the checkout's configs/variant_config.json."""
    return Path(option) if option else DEFAULT_VARIANTS_FILE


def output_folder(output: str) -> str:
    """--output, checked to be a folder (or none yet) before any work; see check_output_folder."""
    check_output_folder(output)
    return output


def pipeline() -> ModuleType:
    """trainer.run, with TensorFlow's native start-up lines silenced."""
    import_tensorflow_quietly()
    from trainer import run

    return run


def trainer_main(argv: list[str]) -> int:
    """`python -m trainer ARGV` in this process: it prints its own error lines; returns its exit status."""
    from trainer.__main__ import main

    return main(argv)


def engine_if_running() -> docker.DockerClient | None:
    """A client for the Docker engine, or None when none answers (the task then runs without Docker)."""
    from launch.engine import DockerUnavailableError, connect

    try:
        return connect()
    except DockerUnavailableError:
        return None


def run_in_container(engine: docker.DockerClient, job: ContainerJob) -> None:
    """Run a container job, echoing its stdout and stderr as fab's own; its exit status becomes fab's."""
    from launch.containers import run_job

    exit_with(run_job(engine, job, print, _print_to_stderr))


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
