"""The Docker engine and the trainer image, for every test that runs containers.

`make test` starts an engine and makes a local base image when the machine has
none (docker/local-engine.sh); no registry is needed. The image is built once
per session with `fab build`, the way a user builds it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import docker
import pytest
from cloud_fixtures import missing_service
from conftest import one_worker_at_a_time

from launch.engine import DockerUnavailableError, connect

Runner = Callable[..., subprocess.CompletedProcess]

BASE_IMAGE = os.environ.get("TEST_BASE_IMAGE", "local/python-base:bookworm")
# The TLS-intercepting proxy's CA on these machines; absent elsewhere.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
EXTRA_CA = os.environ.get("TEST_EXTRA_CA", str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else "")
BUILD_TIMEOUT_S = 1800
EXTRA_TAG = "trainer-tests"  # no ":tag": Docker's "latest"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    log: str


def needs(what: str, reason: str) -> NoReturn:
    missing_service(f"{what}: {reason}; `make test` (docker/local-engine.sh) provides it")


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    try:
        return connect()
    except DockerUnavailableError as exc:
        needs("no Docker engine", str(exc))


@pytest.fixture(scope="session")
def built(engine: docker.DockerClient, run_fab: Runner, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """`fab build` on the local base image: the CPU image every container test runs.

    Each test worker builds it once, one after the other: the second build finds every layer cached.
    """
    with one_worker_at_a_time(tmp_path_factory, "fab-build"):
        return _build(engine, run_fab)


def _build(engine: docker.DockerClient, run_fab: Runner) -> BuiltImage:
    try:
        engine.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        try:
            engine.images.pull(BASE_IMAGE)
        except docker.errors.APIError as exc:
            needs(f"no base image {BASE_IMAGE} ({exc.explanation})", "`docker/local-engine.sh base-image` makes one")
    args = ["build", "--base-image", BASE_IMAGE, "--tag", EXTRA_TAG, *(["--extra-ca", EXTRA_CA] if EXTRA_CA else [])]
    proc = run_fab(*args, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    match = re.search(r"^built (\S+) as (.+)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout[-2000:]
    tags = match.group(2).split(", ")
    return BuiltImage(tag=tags[1], id=engine.images.get(tags[1]).id, log=proc.stdout)
