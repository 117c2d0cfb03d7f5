"""`fab -H host1,host2 tune_workers`: tuning workers on other hosts, started over SSH.

Fabric runs the task once per host with a connection to it. On each host a
worker is started detached, so it keeps running after fab returns and
the host can leave (`--stop`) or others join at any time:

- where the host's Docker engine answers, as a container of the trainer
  image (`docker run -d`, host network, `--gpus all` with --gpu), named
  `trainer-tune-<study>-<id>` and labelled with the study;
- elsewhere, as `python -m trainer tune` in a checkout of this project on
  that host (`--workdir`, with its `make setup` venv), under nohup.

A worker needs the study's storage (PostgreSQL, reachable from the host), its
dataset (gs://, or a local path that exists on the host) and its output folder,
which containers get mounted at the same paths.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fabric import Connection
from invoke import Context

from trainer.data import storage
from trainer.errors import TrainerError
from trainer.tuning.study import StudySpec

CONTAINER_PREFIX = "trainer-tune"
STUDY_LABEL = "trainer.study"
# What a stopped worker gets: SIGTERM, then this long to queue its trial again.
STOP_TIMEOUT_S = 30
# Google's settings a worker needs for gs:// data (and the emulators'), passed when set.
PASSED_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST")


@dataclass(frozen=True)
class WorkerRequest:
    study: str
    storage_url: str
    spec: StudySpec
    gpu: bool
    image: str
    workdir: str
    environment: dict[str, str]
    use_docker: bool = True

    def worker_arguments(self) -> list[str]:
        return ["tune", "--study", self.study, "--storage", self.storage_url, *(["--gpu"] if self.gpu else [])]


def host_connection(c: Context) -> Connection:
    """The task's connection to its -H host; without -H, fab passes a plain Context."""
    if not isinstance(c, Connection):
        raise TrainerError("name the hosts to start workers on: fab -H host1,host2 tune_workers ...")
    return c


def passed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The PASSED_VARIABLES set here, for the worker to see on its own host."""
    return {name: environ[name] for name in PASSED_VARIABLES if name in environ}


def check_shareable(storage_url: str) -> None:
    """Workers on other hosts cannot share a SQLite file: one line saying what to use."""
    if storage_url.startswith("sqlite"):
        raise TrainerError("workers on other hosts need a shared storage: pass --storage "
                           "postgresql://USER:PASSWORD@HOST/DB (a SQLite file is only for this machine)")


def start_worker(connection: Any, request: WorkerRequest) -> str:
    """Start one detached worker on the connection's host; returns a line saying how it runs."""
    _check_dataset_on(connection, request.spec.dataset)
    if request.use_docker and _docker_answers(connection):
        return _start_container(connection, request)
    return _start_process(connection, request)


def stop_workers(connection: Any, study: str) -> str:
    """Stop the study's workers on the host; each queues its running trial for the others."""
    if _docker_answers(connection):
        ids = _run(connection, f"docker ps -q --filter label={STUDY_LABEL}={shlex.quote(study)}").split()
        if ids:
            _run(connection, shlex.join(["docker", "stop", "-t", str(STOP_TIMEOUT_S), *ids]))
        return f"stopped {len(ids)} worker container(s) of study '{study}'"
    pattern = shlex.quote(f"trainer tune --study {study} ")
    stopped = connection.run(f"pkill -TERM -f -- {pattern}", hide=True, warn=True, in_stream=False)
    return f"stopped the worker processes of study '{study}'" if stopped.ok else f"no worker of study '{study}' runs"


def _start_container(connection: Any, request: WorkerRequest) -> str:
    if not connection.run(f"docker image inspect {shlex.quote(request.image)}", hide=True, warn=True,
                          in_stream=False).ok:
        raise TrainerError(f"{connection.host} has no image {request.image}: build it there "
                           f"(DOCKER_HOST=ssh://{connection.host} fab build{' --gpu' if request.gpu else ''})")
    name = f"{CONTAINER_PREFIX}-{_safe(request.study)}-{uuid.uuid4().hex[:6]}"
    command = ["docker", "run", "-d", "--name", name, "--label", f"{STUDY_LABEL}={request.study}",
               "--label", "trainer.command=tune", "--network", "host", "--init", "-e", "HOME=/tmp",
               *_environment_flags(request.environment), *_mount_flags(request.spec),
               *(["--gpus", "all"] if request.gpu else []), request.image, *request.worker_arguments()]
    # The caller's uid:gid on that host, so packages in a mounted folder are theirs.
    _run(connection, f"mkdir -p {_local_output(request.spec)} && "
                     f"{shlex.join(command[:3])} --user \"$(id -u):$(id -g)\" {shlex.join(command[3:])}",
         what=f"start a worker container from {request.image}")
    return f"worker container {name} ({request.image}); logs: docker logs -f {name}"


def _start_process(connection: Any, request: WorkerRequest) -> str:
    python = f"{request.workdir}/.venv/bin/python"
    if not connection.run(f"test -x {shlex.quote(python)}", hide=True, warn=True, in_stream=False).ok:
        raise TrainerError(f"{connection.host}: no Docker engine answers and there is no checkout with a venv at "
                           f"{request.workdir}: start Docker and build the image there, or clone this project "
                           "there, run `make setup`, and pass --workdir DIR")
    log = f"/tmp/{CONTAINER_PREFIX}-{_safe(request.study)}-{uuid.uuid4().hex[:6]}.log"
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in request.environment.items())
    command = shlex.join([python, "-m", "trainer", *request.worker_arguments()])
    _run(connection, f"cd {shlex.quote(request.workdir)} && {variables} nohup {command} > {log} 2>&1 < /dev/null &",
         what="start a worker process")
    return f"worker process in {request.workdir}; log: {log}"


def _check_dataset_on(connection: Any, dataset: str) -> None:
    if storage.scheme_of(dataset):
        return
    pattern = dataset if any(c in dataset for c in "*?[") else shlex.quote(dataset)
    if not connection.run(f"ls -d {pattern}", hide=True, warn=True, in_stream=False).ok:
        raise TrainerError(f"{connection.host} has no {dataset}, the study's dataset: copy it to the same path "
                           "there, or tune on a gs:// dataset that every host can read")


def _docker_answers(connection: Any) -> bool:
    return connection.run("docker version --format '{{.Server.Version}}'", hide=True, warn=True,
                          in_stream=False).ok


def _mount_flags(spec: StudySpec) -> list[str]:
    """The dataset's folder (read-only) and the output folder, at the same paths as on the host."""
    flags = []
    if not storage.scheme_of(spec.dataset):
        folder = spec.dataset.rsplit("/", 1)[0]
        flags += ["-v", f"{folder}:{folder}:ro"]
    if not storage.scheme_of(spec.output):
        flags += ["-v", f"{spec.output}:{spec.output}"]
    return flags


def _local_output(spec: StudySpec) -> str:
    return shlex.quote(spec.output) if not storage.scheme_of(spec.output) else "/tmp"


def _environment_flags(environment: dict[str, str]) -> list[str]:
    return [flag for key, value in environment.items() for flag in ("-e", f"{key}={value}")]


def _run(connection: Any, command: str, what: str = "") -> str:
    result = connection.run(command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TrainerError(f"{connection.host}: could not {what or command}: {reason[0]}")
    return result.stdout


def _safe(name: str) -> str:
    """A study name as Docker accepts it in a container name."""
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)
