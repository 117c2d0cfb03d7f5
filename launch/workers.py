"""`fab -H host1,host2 tune_workers`: tuning workers on other hosts, started over SSH.

Fabric runs the task once per host with a connection to it. On each host a
worker is started detached, so it keeps running after fab returns and
the host can leave (`--stop`) or others join at any time:

- where the host's Docker engine answers, as a container of the trainer
  image (`docker run -d`, host network), named `trainer-tune-<study>-<id>`
  and labelled with the study;
- elsewhere, as `python -m trainer tune` in a checkout of this project on
  that host (`--workdir`, with its `make setup` venv), under nohup.

With --gpu, the host's GPUs are listed by its `nvidia-smi` and each worker
gets its own: a container asks for them by index (`--gpus device=I`, a
DeviceRequest with device_ids [I] and capability gpu), a process gets
`CUDA_VISIBLE_DEVICES=I`. By default one worker per GPU; fewer workers
(--workers-per-host) share the GPUs out, and a worker with several trains
each trial on all of them (MirroredStrategy).

A worker needs the study's storage (PostgreSQL, reachable from the host), its
dataset (gs://, or a local path that exists on the host) and its output folder,
which containers get mounted at the same paths.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fabric import Connection
from invoke import Context

from launch.containers import CONTAINER_HOME, CONTAINER_LABEL, gpu_refusal
from trainer.cloud.environment import PASSED_THROUGH
from trainer.data import storage
from trainer.errors import TrainerError
from trainer.interrupts import WORKER_STOP_TIMEOUT_S
from trainer.tuning.study import StudySpec

CONTAINER_PREFIX = "trainer-tune"
STUDY_LABEL = "trainer.study"
# One CSV line per GPU, e.g. "0, NVIDIA A100-SXM4-80GB, GPU-5c3c6d0e-...".
GPU_QUERY = "nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader"


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
    workers_per_host: int = 0  # 0: one per GPU with --gpu, else 1

    def worker_arguments(self) -> list[str]:
        return ["tune", "--study", self.study, "--storage", self.storage_url, *(["--gpu"] if self.gpu else [])]


def host_connection(c: Context) -> Connection:
    """The task's connection to its -H host; without -H, fab passes a plain Context."""
    if not isinstance(c, Connection):
        raise TrainerError("name the hosts to start workers on: fab -H host1,host2 tune_workers ...")
    return c


def passed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Google's settings (and the emulators') set here, for the worker to see on its own host."""
    return {name: environ[name] for name in PASSED_THROUGH if name in environ}


def check_shareable(storage_url: str) -> None:
    """Workers on other hosts cannot share a SQLite file: one line saying what to use."""
    if storage_url.startswith("sqlite"):
        raise TrainerError("workers on other hosts need a shared storage: pass --storage "
                           "postgresql://USER:PASSWORD@HOST/DB (a SQLite file is only for this machine)")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str


def parse_gpus(text: str) -> list[Gpu]:
    """The GPUs in GPU_QUERY's output, in its order; other lines ("No devices were found") are none."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",", 2)]
        if len(fields) == 3 and fields[0].isdigit():
            gpus.append(Gpu(int(fields[0]), fields[1], fields[2]))
    return gpus


def host_gpus(connection: Any) -> list[Gpu]:
    """The host's GPUs as its nvidia-smi lists them; none is one line saying what to do."""
    result = connection.run(GPU_QUERY, hide=True, warn=True, in_stream=False)
    gpus = parse_gpus(result.stdout) if result.ok else []
    if not gpus:
        reason = _reason(result) if not result.ok else "it lists none"
        raise TrainerError(f"{connection.host}: --gpu, but nvidia-smi finds no GPU there ({reason}): install the "
                           "NVIDIA driver on that host (`fab doctor --gpu` there checks it), or drop --gpu")
    return gpus


def worker_devices(gpus: list[Gpu], workers_per_host: int) -> list[list[Gpu]]:
    """Each worker's GPUs: one each by default; N workers share them out in contiguous runs
    (neighbours are often linked by NVLink); no GPUs (no --gpu): N workers on the CPU."""
    if not gpus:
        return [[] for _ in range(workers_per_host or 1)]
    count = workers_per_host or len(gpus)
    if count > len(gpus):
        raise TrainerError(f"--workers-per-host {count}: the host has {len(gpus)} GPU(s), and TensorFlow takes a "
                           f"GPU's whole memory; pass at most {len(gpus)}")
    size, extra = divmod(len(gpus), count)
    starts = [k * size + min(k, extra) for k in range(count + 1)]
    return [gpus[starts[k]:starts[k + 1]] for k in range(count)]


def start_workers(connection: Any, request: WorkerRequest) -> Iterator[str]:
    """Start the host's detached workers, yielding a line per worker started (so a later failure
    leaves the earlier lines printed) saying how it runs."""
    if request.workers_per_host < 0:
        raise TrainerError(f"--workers-per-host {request.workers_per_host}: pass 1 or more, or 0 for the default "
                           "(one per GPU with --gpu, else 1)")
    _check_dataset_on(connection, request.spec.dataset)
    devices = worker_devices(host_gpus(connection) if request.gpu else [], request.workers_per_host)
    start = _start_container if request.use_docker and _docker_answers(connection) else _start_process
    for gpus in devices:
        yield start(connection, request, gpus)


def stop_workers(connection: Any, study: str) -> str:
    """Stop the study's workers on the host; each queues its running trial for the others."""
    if _docker_answers(connection):
        ids = _run(connection, f"docker ps -q --filter label={STUDY_LABEL}={shlex.quote(study)}").split()
        if ids:
            _run(connection, shlex.join(["docker", "stop", "-t", str(WORKER_STOP_TIMEOUT_S), *ids]))
        return f"stopped {len(ids)} worker container(s) of study '{study}'"
    pattern = shlex.quote(f"trainer tune --study {study} ")
    stopped = connection.run(f"pkill -TERM -f -- {pattern}", hide=True, warn=True, in_stream=False)
    return f"stopped the worker processes of study '{study}'" if stopped.ok else f"no worker of study '{study}' runs"


def container_command(request: WorkerRequest, name: str, gpus: list[Gpu]) -> list[str]:
    """`docker run -d ...` for one worker container, asking for its GPUs by index."""
    return ["docker", "run", "-d", "--name", name, "--label", f"{STUDY_LABEL}={request.study}",
            "--label", f"{CONTAINER_LABEL}=tune", "--network", "host", "--init", "-e", f"HOME={CONTAINER_HOME}",
            *_environment_flags(request.environment), *_mount_flags(request.spec),
            *_gpu_flags(gpus), request.image, *request.worker_arguments()]


def process_command(request: WorkerRequest, log: str, gpus: list[Gpu]) -> str:
    """The shell line that starts one worker process under nohup, seeing only its GPUs, and prints its pid.

    In braces, `&` puts the worker alone in the background, so `$!` is its pid (nohup execs python),
    not that of a subshell running `cd` too.
    """
    environment = {**request.environment, **({"CUDA_VISIBLE_DEVICES": _indices(gpus)} if gpus else {})}
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items())
    command = shlex.join([f"{request.workdir}/.venv/bin/python", "-m", "trainer", *request.worker_arguments()])
    return f"cd {shlex.quote(request.workdir)} && {{ {variables} nohup {command} > {log} 2>&1 < /dev/null & echo $!; }}"


def _start_container(connection: Any, request: WorkerRequest, gpus: list[Gpu]) -> str:
    if not connection.run(f"docker image inspect {shlex.quote(request.image)}", hide=True, warn=True,
                          in_stream=False).ok:
        raise TrainerError(f"{connection.host} has no image {request.image}: build it there "
                           f"(DOCKER_HOST=ssh://{connection.host} fab build{' --gpu' if request.gpu else ''})")
    name = f"{CONTAINER_PREFIX}-{_safe(request.study)}-{uuid.uuid4().hex[:6]}"
    command = container_command(request, name, gpus)
    # The caller's uid:gid on that host, so packages in a mounted folder are theirs.
    result = connection.run(f"mkdir -p {_local_output(request.spec)} && {shlex.join(command[:3])} "
                            f"--user \"$(id -u):$(id -g)\" {shlex.join(command[3:])}",
                            hide=True, warn=True, in_stream=False)
    if not result.ok:
        # A refused start leaves the container created: remove it, or its name and label linger.
        connection.run(f"docker rm -f {name}", hide=True, warn=True, in_stream=False)
        raise _container_failure(connection.host, request.image, _reason(result), bool(gpus))
    return f"worker container {name} ({request.image}{_on(gpus)}); logs: docker logs -f {name}"


def _start_process(connection: Any, request: WorkerRequest, gpus: list[Gpu]) -> str:
    python = f"{request.workdir}/.venv/bin/python"
    if not connection.run(f"test -x {shlex.quote(python)}", hide=True, warn=True, in_stream=False).ok:
        raise TrainerError(f"{connection.host}: no Docker engine answers and there is no checkout with a venv at "
                           f"{request.workdir}: start Docker and build the image there, or clone this project "
                           "there, run `make setup`, and pass --workdir DIR")
    log = f"/tmp/{CONTAINER_PREFIX}-{_safe(request.study)}-{uuid.uuid4().hex[:6]}.log"
    pid = _run(connection, process_command(request, log, gpus), what="start a worker process").strip()
    return f"worker process {pid} in {request.workdir}{_on(gpus)}; log: {log}"


def _gpu_flags(gpus: list[Gpu]) -> list[str]:
    """`--gpus device=0` (several: `"device=0,1"`, quoted because the CLI reads the value as CSV)."""
    if not gpus:
        return []
    return ["--gpus", f"device={gpus[0].index}" if len(gpus) == 1 else f'"device={_indices(gpus)}"']


def _indices(gpus: list[Gpu]) -> str:
    return ",".join(str(gpu.index) for gpu in gpus)


def _on(gpus: list[Gpu]) -> str:
    return "".join(f", GPU {gpu.index} ({gpu.name})" for gpu in gpus)


def _container_failure(host: str, image: str, reason: str, gpu: bool) -> TrainerError:
    if gpu and (refusal := gpu_refusal(reason)):
        return TrainerError(f"{host}: {refusal}")
    return TrainerError(f"{host}: could not start a worker container from {image}: {reason}")


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
        raise TrainerError(f"{connection.host}: could not {what or command}: {_reason(result)}")
    return result.stdout


def _reason(result: Any) -> str:
    """The line of a failed command that says why: the daemon's error, not the CLI's "see --help" after it."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    daemon = [line for line in lines if "Error response from daemon" in line]
    return (daemon or lines or ["no output"])[-1]


def _safe(name: str) -> str:
    """A study name as Docker accepts it in a container name."""
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)
