"""`fab TASK:key=value,...` (Fabric 1, the design card's form) means what Fabric 3's words mean.

Both forms are parsed here by the project's own `fab` program, in this process
and without running any task, and must give every task the same arguments; a
few commands then run as a user types them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Lines, Runner
from invoke import Exit
from invoke.parser import Argument

from launch.program import flag_name, make_program

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parsed(*words: str) -> list[tuple[str, dict[str, Any]]]:
    """The tasks `fab WORDS...` would run, each with its arguments' values."""
    program = make_program()
    program.create_config()
    program.parse_core(["fab", "--search-root", str(PROJECT_ROOT), *words])
    program.parse_collection()
    program.parse_tasks()
    return [(task.name, {name: argument.value for name, argument in task.args.items()}) for task in program.tasks]


def every_task_option() -> list[tuple[str, Argument, list[str]]]:
    """(task, option, values for the task's required positional arguments) for every option of every task."""
    program = make_program()
    program.create_config()
    program.parse_core(["fab", "--search-root", str(PROJECT_ROOT)])
    program.parse_collection()
    collection = program.collection
    cases = []
    for name in sorted(collection.task_names):
        arguments = collection[name].get_arguments()
        required = [f"{argument.name}-value" for argument in arguments if argument.positional]
        cases += [(name, argument, required) for argument in arguments if not argument.positional]
    return cases


def sample_words(argument: Argument) -> tuple[str, list[str]]:
    """A value for the option in each form: (Fabric 1's value, Fabric 3's words)."""
    flag = f"--{flag_name(argument)}"
    if argument.kind is bool:
        return ("False", [f"--no-{flag_name(argument)}"]) if argument.default else ("True", [flag])
    if argument.kind is int:
        return "7", [flag, "7"]
    if argument.kind is float:
        return "0.7", [flag, "0.7"]
    return "some/path x.json", [flag, "some/path x.json"]


@pytest.mark.parametrize(("task", "argument", "required"), every_task_option(),
                         ids=lambda value: value if isinstance(value, str) else getattr(value, "name", ""))
def test_every_option_of_every_task_means_the_same_in_both_forms(
    task: str, argument: Argument, required: list[str]
) -> None:
    value, words = sample_words(argument)
    fabric1 = ",".join([*required, f"{argument.name}={value}"])
    assert parsed(f"{task}:{fabric1}") == parsed(task, *required, *words)


@pytest.mark.parametrize(
    ("fabric1", "fabric3"),
    [
        (["train:variant=deep_v1,gpu=True"], ["train", "--variant", "deep_v1", "--gpu"]),  # the design card's
        (["train:variant=deep_v1,local=True,gpu=False"], ["train", "--variant", "deep_v1", "--local"]),
        (["tune:trials=20,define_only=yes"], ["tune", "--trials", "20", "--define-only"]),
        (["score:runs/a.zip,data/in.json"], ["score", "runs/a.zip", "data/in.json"]),  # positional, as in Fabric 1
        ([r"dataset:sql=q.sql,dest=out.json,param=a=1\,2,param=b=3"],
         ["dataset", "--sql", "q.sql", "--dest", "out.json", "--param", "a=1,2", "--param", "b=3"]),
        (["variants", "keys:"], ["variants", "keys"]),
        (["train:variant=linear_v1", "test_sanity:local=True"],
         ["train", "--variant", "linear_v1", "test_sanity", "--local"]),
    ],
)
def test_fabric1_words_parse_like_fabric3_words(fabric1: list[str], fabric3: list[str]) -> None:
    assert parsed(*fabric1) == parsed(*fabric3)


@pytest.mark.parametrize("words", [["train:varient=deep_v1"], ["train", "--varient", "deep_v1"]])
def test_an_unknown_key_in_either_form_names_the_tasks_options(words: list[str]) -> None:
    with pytest.raises(Exit) as raised:
        parsed(*words)
    assert raised.value.code == 2
    message = raised.value.message
    assert message.startswith("error: train has no option ") and "did you mean --variant?" in message
    assert "--dataset, --gpu, --image, --local, --output, --variant" in message


def test_a_flag_given_a_word_that_is_not_true_or_false_is_one_line() -> None:
    with pytest.raises(Exit) as raised:
        parsed("train:gpu=maybe")
    assert raised.value.message == "error: train:gpu=maybe: expected True or False"


def test_the_design_cards_gpu_command_without_a_gpu_ends_with_the_gpu_line(run_fab: Runner, lines_of: Lines) -> None:
    proc = run_fab("train:variant=deep_v1,gpu=True,local=True")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = lines_of(proc)
    assert line.startswith("error: a GPU was asked for (--gpu) but TensorFlow sees none")


def test_a_mistyped_task_or_key_is_one_line_with_status_2(run_fab: Runner, lines_of: Lines) -> None:
    for words, expected in [(["trian:variant=deep_v1"], "error: no task 'trian'; did you mean 'train'?"),
                            (["runs:outptu=x"], "error: runs has no option 'outptu' (did you mean --output?)")]:
        proc = run_fab(*words)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        [line] = lines_of(proc)
        assert line.startswith(expected), line


def test_no_task_has_short_flags_so_none_means_two_things() -> None:
    short = [(task, argument.names) for task, argument, _ in every_task_option()
             if any(len(name) == 1 for name in argument.names)]
    assert short == [], "a short flag would mean one option in one task and another elsewhere"
