"""fab: the project's one command line (Fabric 3). `fab --list`, `fab --help TASK`.

Tasks are thin: they check their arguments and call the `trainer` package,
where the logic lives. A problem the user can fix ends as one line (Exit).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from fabric import task
from invoke import Context, Exit

from trainer import import_tensorflow_quietly
from trainer.config import DEFAULT_DATASET, DEFAULT_OUTPUT


def _pipeline() -> ModuleType:
    """trainer.run, with TensorFlow's native start-up lines silenced."""
    import_tensorflow_quietly()
    from trainer import run

    return run


def _user_errors_exit(action: Callable[[], Any]) -> Any:
    """Run `action`; a TrainerError becomes one line and exit status 2."""
    from trainer.errors import TrainerError

    try:
        return action()
    except TrainerError as exc:
        raise Exit(f"error: {exc}", code=2) from None


@task(
    help={
        "variant": "a variant of configs/variant_config.json (fab variants lists them)",
        "local": "train in this process instead of the Docker image",
        "gpu": "train on the GPU; fails clearly if none is visible",
        "dataset": "NDJSON dataset: a file or shards with * (default: data/sample_2k.json)",
        "output": "where the package zip goes (default: runs/)",
    }
)
def train(
    c: Context, variant: str = "deep_v1", local: bool = False, gpu: bool = False,
    dataset: str = DEFAULT_DATASET, output: str = DEFAULT_OUTPUT,
) -> None:
    """Train one variant and write its package (model, metrics, config, TensorBoard) as one zip.

    TRAINER_<KEY>=value in the environment overrides one config key for this run,
    e.g. TRAINER_EPOCHS=3 fab train --variant deep_v1 --local.
    """
    if not local:
        raise Exit("error: training in the Docker image is not available yet; add --local to train in this process")
    from trainer.config import resolve_config

    _user_errors_exit(lambda: resolve_config(variant))  # config errors before TensorFlow's 5 s import
    run = _pipeline()
    _user_errors_exit(lambda: run.train(run.TrainRequest(variant, dataset, output, require_gpu=gpu)))


@task(help={"output": "where the sanity packages go (default: runs/sanity)"})
def test_sanity(c: Context, output: str = f"{DEFAULT_OUTPUT}/sanity") -> None:
    """Train every shipped variant for a few epochs on data/sample_2k.json and check each package.

    Fails unless every package is complete, scores its own rows, and its training loss went down.
    """
    _pipeline()
    from trainer.sanity import run_sanity

    failures = _user_errors_exit(lambda: run_sanity(output))
    if failures:
        raise Exit(f"error: sanity training failed for {', '.join(failures)}", code=1)


@task(
    help={
        "package": "a package zip written by fab train",
        "input": "NDJSON rows in the training schema (the label may be absent)",
        "output": "NDJSON file of {id, score} per row (default: print to stdout)",
    }
)
def score(c: Context, package: str, input: str, output: str = "") -> None:
    """Score raw JSON rows with a trained package, preprocessing them exactly as in training."""
    run = _pipeline()
    rows = _user_errors_exit(lambda: run.score(package, input, output or None))
    if output:
        print(f"scored {rows:,} rows into {output}")


@task(help={"pytest_args": "extra arguments for pytest, e.g. \"-k config -x\""})
def test(c: Context, pytest_args: str = "") -> None:
    """Run the test suite (pytest)."""
    c.run(shlex.join([sys.executable, "-m", "pytest", *shlex.split(pytest_args)]), pty=False)


@task(
    help={
        "rows": "how many impressions to generate",
        "out": "the NDJSON file to write",
        "seed": "random seed (the same seed gives the same file)",
    }
)
def generate_data(c: Context, rows: int = 1_000_000, out: str = "data/ctr_1m.json", seed: int = 0) -> None:
    """Generate a synthetic click-through dataset in BigQuery's NDJSON export format."""
    from pathlib import Path

    from trainer.synthetic import generate

    generate(rows, Path(out), seed=seed)
    print(f"wrote {rows:,} rows to {out}")


@task
def variants(c: Context) -> None:
    """List the shipped variants and what each overrides."""
    from trainer.__main__ import main

    main(["variants"])


@task
def keys(c: Context) -> None:
    """List every config key with its type, default and meaning."""
    from trainer.__main__ import main

    main(["keys"])
