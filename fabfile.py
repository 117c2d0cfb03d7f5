"""fab: the project's one command line (Fabric 3). `fab --list`, `fab --help TASK`.

Tasks are thin: they check their arguments and call the `trainer` package,
where the logic lives. A problem the user can fix ends as one line (Exit).
"""

from __future__ import annotations

import os
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
        "gpu": "build the GPU image (CUDA base, TensorFlow's CUDA build) instead of the CPU one",
        "tag": "one more tag for the image, beside trainer:cpu and trainer:cpu-<commit>",
        "base_image": "the image to build on (default: python:3.11-slim, or nvidia/cuda:...-cudnn-runtime for --gpu)",
        "extra_ca": "a PEM file of CA certificates to trust while building (TLS-intercepting proxies)",
    }
)
def build(c: Context, gpu: bool = False, tag: str = "", base_image: str = "", extra_ca: str = "") -> None:
    """Build the trainer's Docker image (CPU, or GPU with --gpu), streaming the build's progress."""
    from pathlib import Path

    from launch.images import BuildRequest, build_image

    request = BuildRequest(gpu=gpu, tag=tag, base_image=base_image, extra_ca=Path(extra_ca) if extra_ca else None)
    built = _user_errors_exit(lambda: build_image(_docker(), request, print))
    print(f"built {built.id[:19]} as {', '.join(built.tags)}")


@task(
    help={
        "variant": "a variant of configs/variant_config.json (fab variants lists them)",
        "local": "train in this process instead of the Docker image",
        "gpu": "train on the GPU (the trainer:gpu image); fails clearly if there is none",
        "dataset": "NDJSON dataset: a file or shards with * (default: data/sample_2k.json)",
        "output": "where the package zip goes (default: runs/)",
        "image": "the image to train in (default: trainer:cpu, or trainer:gpu with --gpu)",
    }
)
def train(
    c: Context, variant: str = "deep_v1", local: bool = False, gpu: bool = False,
    dataset: str = DEFAULT_DATASET, output: str = DEFAULT_OUTPUT, image: str = "",
) -> None:
    """Train one variant in the Docker image (or --local) and write its package as one zip.

    TRAINER_<KEY>=value in the environment overrides one config key for this run,
    e.g. TRAINER_EPOCHS=3 fab train --variant deep_v1. The container gets these
    overrides, the local files it needs (mounted) and GOOGLE_APPLICATION_CREDENTIALS.
    """
    from trainer.config import resolve_config

    _user_errors_exit(lambda: resolve_config(variant))  # config errors before TensorFlow's or Docker's start
    if local:
        run = _pipeline()
        _user_errors_exit(lambda: run.train(run.TrainRequest(variant, dataset, output, require_gpu=gpu)))
        return
    from launch.containers import training_job
    from launch.images import default_tag

    job = _user_errors_exit(lambda: training_job(image or default_tag("gpu" if gpu else "cpu"), variant, dataset,
                                                 output, gpu, os.environ))
    _run_in_container(_docker(), job)


@task(
    help={
        "output": "where the sanity packages go (default: runs/sanity)",
        "local": "train in this process even when Docker is available",
        "image": "the image to train in (default: trainer:cpu)",
    }
)
def test_sanity(c: Context, output: str = f"{DEFAULT_OUTPUT}/sanity", local: bool = False, image: str = "") -> None:
    """Train every shipped variant for a few epochs on data/sample_2k.json and check each package.

    Runs in the CPU image when a Docker engine answers, in this process otherwise
    (or with --local), and says which. Fails unless every package is complete,
    scores its own rows, and its training loss went down.
    """
    engine = None if local else _engine_if_running()
    if engine:
        from launch.containers import sanity_job
        from launch.images import default_tag

        tag = image or default_tag("cpu")
        print(f"runner: the Docker image {tag}")
        _run_in_container(engine, _user_errors_exit(lambda: sanity_job(tag, output, os.environ)))
        return
    print("runner: this process " + ("(--local)" if local else
                                     "(no Docker engine answers; with one, the CPU image is used)"))
    from trainer.__main__ import main

    _exit_with(main(["sanity", "--output", output]))


def _engine_if_running() -> Any:
    """A connection to the Docker engine, or None when none answers."""
    from launch.engine import DockerUnavailableError, connect

    try:
        return connect()
    except DockerUnavailableError:
        return None


def _docker() -> Any:
    """A checked connection to the Docker engine (or one line saying how to get one)."""
    from launch.engine import connect

    return _user_errors_exit(connect)


def _run_in_container(engine: Any, job: Any) -> None:
    """Run a container job, echoing its output; its exit status becomes fab's."""
    from launch.containers import run_job

    _exit_with(_user_errors_exit(lambda: run_job(engine, job, print, lambda line: print(line, file=sys.stderr))))


def _exit_with(status: int) -> None:
    if status:
        raise Exit(code=status)


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


@task(
    iterable=["param"],
    help={
        "sql": "the SQL file to run in BigQuery (one SELECT; values as @name parameters), e.g. sql/training_table.sql",
        "dest": "where the NDJSON goes: gs://BUCKET/path/name-*.json (BigQuery writes shards) or a local file",
        "param": "a query parameter, NAME=VALUE or NAME:TYPE=VALUE (INT64, FLOAT64, BOOL, DATE, TIMESTAMP, "
                 "NUMERIC, STRING); repeat for each",
        "project": "the Google Cloud project that runs the query (default: GOOGLE_CLOUD_PROJECT)",
    }
)
def dataset(c: Context, sql: str, dest: str, param: list[str] | None = None, project: str = "") -> None:
    """Run a SQL file in BigQuery and write its rows as NDJSON, with the query's metadata beside them.

    The metadata (query hash, job id, rows, schema, time, parameters) goes to DEST's
    name.metadata.json and into the dataset.json of every package trained on the data.
    """
    from pathlib import Path

    from trainer.bigquery_export import ExportRequest, export_dataset

    request = ExportRequest(Path(sql), dest, tuple(param or ()), project or None)
    _user_errors_exit(lambda: export_dataset(request))


@task(help={"output": "a folder or gs://BUCKET/prefix holding package zips (default: runs/)"})
def runs(c: Context, output: str = DEFAULT_OUTPUT) -> None:
    """List the packages in a folder or gs:// prefix: run, variant, date, epochs and test metrics."""
    from trainer.runs import format_runs, list_runs

    found = _user_errors_exit(lambda: list_runs(output))
    print(format_runs(found) if found else f"no packages in {output}")
