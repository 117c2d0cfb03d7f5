"""What the fab tasks share: user errors as one line, exit statuses, running a container job.

fabfile.py imports this module for every `fab` command, `fab --list` included,
so it imports nothing heavy at its top: TensorFlow and docker-py load inside
the functions that need them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from invoke import Exit

from trainer import import_tensorflow_quietly
from trainer.config import DEFAULT_OUTPUT
from trainer.errors import TrainerError

if TYPE_CHECKING:
    import docker

    from launch.containers import ContainerJob

USER_ERROR_STATUS = 2  # the same status `python -m trainer` gives a user error
# fab tune's trial packages and fab tune_report's files: one folder per study.
TUNE_OUTPUT = f"{DEFAULT_OUTPUT}/tune"

Params = ParamSpec("Params")
Result = TypeVar("Result")


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
    """--output when given, else the study's own folder under TUNE_OUTPUT."""
    return output or f"{TUNE_OUTPUT}/{study}"


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
