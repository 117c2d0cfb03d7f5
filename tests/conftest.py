"""Shared fixtures: the 2K sample, one trained package, and the user's commands.

Training is real TensorFlow on the sample, kept short by the same `TRAINER_*`
overrides a user has. Commands run as real subprocesses from the project root,
with any `TRAINER_*` or TensorFlow log setting of the caller's shell removed,
so they see what a user with a clean shell sees.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from trainer.run import TrainRequest, TrainResult, train

pytest_plugins = ["cloud_fixtures", "docker_fixtures", "service_fixtures"]  # tests/*_fixtures.py

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_ROOT / "data" / "sample_2k.json"
SAMPLE_ROWS = 2000
# XLA compiling costs 3-6 s of every run and changes no outcome these tests check, so every
# command and every QUICK run trains without it; the tests of XLA itself set TRAINER_XLA back.
NO_XLA = {"TRAINER_XLA": "false"}
# Two short epochs in small batches: a real run that takes seconds.
QUICK = {"TRAINER_EPOCHS": "2", "TRAINER_BATCH_SIZE": "128", **NO_XLA}
COMMAND_TIMEOUT_S = 600
# The files that take minutes, slowest first. The two test workers (pytest-xdist, whole files each)
# take files in collection order, so these start first and the quick files fill in beside them;
# a slow file collected last would leave one worker idle while the other finishes it.
SLOW_FILES_FIRST = ("test_tuning.py", "test_docker.py", "test_serving.py", "test_resume.py", "test_fab.py",
                    "test_training.py", "test_multi_device.py", "test_push.py", "test_networks.py")

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]


@dataclass(frozen=True)
class TrainedPackage:
    """A finished `train` call: its result, the folder it wrote and what it printed."""

    result: TrainResult
    output: Path
    log: str

    @property
    def zip_path(self) -> Path:
        return Path(self.result.package_uri)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """SLOW_FILES_FIRST, then every other file in its usual order; tests keep their order in a file."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)

    items.sort(key=rank)  # stable: the order within a rank is pytest's


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without config or TensorFlow-logging overrides, plus NO_XLA and `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_") and k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **NO_XLA, **(overrides or {})}


@pytest.fixture(scope="session")
def sample_path() -> Path:
    assert SAMPLE.is_file(), (
        f"{SAMPLE} is missing; make it with "
        "`python -m trainer.data.synthetic --rows 2000 --seed 0 --out data/sample_2k.json`"
    )
    return SAMPLE


@pytest.fixture
def quick_env() -> dict[str, str]:
    """The `TRAINER_*` overrides of a short run, for `TrainRequest.environ` or a command's environment."""
    return dict(QUICK)


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """Where a test's run writes its package (created by the run itself)."""
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> TrainedPackage:
    """deep_v1 trained for two epochs on the sample, shared by every test that reads a package."""
    output = tmp_path_factory.mktemp("trained")
    log = io.StringIO()
    result = train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(output), environ=QUICK), log)
    return TrainedPackage(result, output, log.getvalue())


@contextlib.contextmanager
def one_worker_at_a_time(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """Held by one pytest-xdist worker at a time (the others wait): for work whose second copy should
    find the first's result, such as a Docker build whose layers the second build then reuses."""
    # The workers' temporary folders share this parent; a plain `pytest -n 0` locks beside its own.
    lock_path = tmp_path_factory.getbasetemp().parent / f"{name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], env: Mapping[str, str] | None, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def run_python() -> Runner:
    """`run_python("-m", "trainer", ...)`: the venv's python in the project root, with a timeout."""

    def run(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        return _run([sys.executable, *args], env, timeout)

    return run


@pytest.fixture(scope="session")
def start_python() -> Callable[..., subprocess.Popen]:
    """`start_python("-m", "trainer", ..., stderr=file)`: the same command, left running, its stdout piped."""

    def start(*args: str, env: Mapping[str, str] | None = None, stderr: IO[str] | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, env=clean_env(env), stdout=subprocess.PIPE,
                                stderr=stderr, text=True, bufsize=1)

    return start


@pytest.fixture(scope="session")
def run_fab() -> Runner:
    """`run_fab("train", "--local")`: the venv's fab, typed in the project root."""
    fab = Path(sys.executable).parent / "fab"

    def run(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        return _run([str(fab), *args], env, timeout)

    return run


@pytest.fixture(scope="session")
def diverged_run(tmp_path_factory: pytest.TempPathFactory, run_python: Runner,
                 sample_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m trainer train` with a learning rate that turns the loss into NaN."""
    output = tmp_path_factory.mktemp("diverged") / "runs"
    proc = run_python("-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(sample_path),
                      "--output", str(output), env={**QUICK, "TRAINER_LEARNING_RATE": "1e30"})
    return proc, output


def output_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """Every non-blank line the command printed, stdout then stderr."""
    return [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def lines_of() -> Callable[[subprocess.CompletedProcess], list[str]]:
    return output_lines
