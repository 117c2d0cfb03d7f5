"""The connection to the Docker engine, or one line saying how to get one."""

from __future__ import annotations

import os

import docker
from docker.errors import DockerException

from trainer.errors import TrainerError

START_ENGINE_HINT = (
    "start Docker (`sudo systemctl start docker`, or `sudo docker/local-engine.sh start` on a machine "
    "without systemd) or point DOCKER_HOST at a running engine"
)


class DockerUnavailableError(TrainerError):
    """No Docker engine answers where DOCKER_HOST (or the default socket) points."""


def connect(without_docker: str = "") -> docker.DockerClient:
    """A client for the engine named by the usual DOCKER_* variables, checked with a ping.

    `without_docker` is the task's own way to go on without an engine, added to
    the advice when it has one (fab train: "train in this process with --local");
    fab build has none, so it gets only the advice to start one.
    """
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        advice = START_ENGINE_HINT + (f", or {without_docker}" if without_docker else "")
        raise DockerUnavailableError(f"no Docker engine answers at {where} ({_reason(exc)}): {advice}") from None
    return client


def _reason(exc: DockerException) -> str:
    text = str(exc)
    if "No such file or directory" in text or "FileNotFoundError" in text:
        return "no socket there"
    if "Permission denied" in text:
        return "permission denied: add yourself to the docker group"
    if "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0][:120]
