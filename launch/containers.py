"""`fab train` and `fab test_sanity` in the trainer image, started with docker-py.

A job is the trainer's own command line plus what the container needs to see:
local files mounted (datasets read-only, the output folder writable), the
`TRAINER_*` overrides and Google settings passed through, the credentials file
mounted read-only at run time (never baked into the image), and the GPU asked
for with a device request, as `docker run --gpus all` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound
from docker.types import DeviceRequest, Mount

from trainer.cloud.environment import CREDENTIALS, PASSED_THROUGH
from trainer.config import DEFAULT_VARIANTS_FILE, ENV_PREFIX
from trainer.data import storage
from trainer.data.dataset import dataset_files
from trainer.errors import TrainerError
from trainer.interrupts import TRAINING_STOP_TIMEOUT_S, sigterm_as_interrupt
from trainer.package.provenance import COMMIT_VARIABLE, IMAGE_ID_VARIABLE, IMAGE_TAG_VARIABLE, code_commit

DATA_MOUNT = "/mnt/data"
OUTPUT_MOUNT = "/mnt/output"
# The host's cache: downloads, parsed datasets (trainer.data.parsed) and the work folders of gs:// outputs.
# A container re-reads a dataset without downloading or parsing it again, and resumes a killed run.
CACHE_MOUNT = "/mnt/cache"
CONFIG_MOUNT = "/mnt/config"
CREDENTIALS_MOUNT = "/var/run/secrets/google/credentials.json"
# The caller's uid, which runs the container, has no home in the image; caches go to /tmp.
CONTAINER_HOME = "/tmp"
# Marks the containers fab starts (`docker ps --filter label=trainer.command`).
CONTAINER_LABEL = "trainer.command"
NO_GPU_RUNTIME = (
    "this Docker engine has no NVIDIA GPU runtime ({reason}): install the NVIDIA Container Toolkit "
    "(nvidia-container-toolkit) and restart Docker, or train on the CPU without --gpu"
)


class ContainerStartError(TrainerError):
    """The engine could not start the container."""


@dataclass
class ContainerJob:
    """One container run: the trainer's arguments and everything it must see."""

    image: str
    arguments: list[str]
    gpu: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    # Container paths in printed lines become the user's own paths again.
    host_paths: dict[str, str] = field(default_factory=dict)

    def mount_input(self, uri: str) -> str:
        """The container's name for a dataset URI: a local file or shard pattern is mounted read-only."""
        if storage.scheme_of(uri):
            return uri
        dataset_files(uri)  # a missing file or a folder without data is the user's one line here, not the container's
        path = Path(uri).resolve()
        target = f"{DATA_MOUNT}/{len(self.mounts)}"
        self._mount(path.parent, target, read_only=True)
        return f"{target}/{path.name}"

    def mount_output(self, uri: str) -> str:
        """The container's name for an output URI: a local folder is made and mounted writable."""
        if storage.scheme_of(uri):
            return uri
        path = Path(uri).resolve()
        path.mkdir(parents=True, exist_ok=True)
        self._mount(path, OUTPUT_MOUNT, read_only=False)
        return OUTPUT_MOUNT

    def mount_cache(self) -> None:
        """The host's cache (storage.cache_root()), shared with runs on the host."""
        host_cache = storage.cache_root()
        host_cache.mkdir(parents=True, exist_ok=True)
        self._mount(host_cache, f"{CACHE_MOUNT}/{host_cache.name}", read_only=False)
        self.environment[storage.CACHE_HOME_VARIABLE] = CACHE_MOUNT

    def mount_variants(self, variants_file: Path) -> str:
        """The variant file (this checkout's, or --variants), so a variant added since the build is found."""
        self._mount(variants_file.resolve().parent, CONFIG_MOUNT, read_only=True)
        return f"{CONFIG_MOUNT}/{variants_file.name}"

    def pass_environment(self, environ: Mapping[str, str]) -> None:
        """Config overrides, Google settings and the credentials file (mounted read-only)."""
        self.environment.update(
            {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) or k in PASSED_THROUGH}
        )
        credentials = environ.get(CREDENTIALS)
        if credentials:
            path = Path(credentials)
            if not path.is_file():
                raise TrainerError(f"{CREDENTIALS}={credentials}: no such file; point it at a service "
                                   "account key file or unset it")
            self.mounts.append(Mount(CREDENTIALS_MOUNT, str(path.resolve()), type="bind", read_only=True))
            self.environment[CREDENTIALS] = CREDENTIALS_MOUNT

    def _mount(self, host: Path, target: str, read_only: bool) -> None:
        self.mounts.append(Mount(target, str(host), type="bind", read_only=read_only))
        self.host_paths[target] = str(host)


def training_job(image: str, variant: str, dataset: str, output: str, gpu: bool,
                 environ: Mapping[str, str], variants_file: Path = DEFAULT_VARIANTS_FILE) -> ContainerJob:
    job = ContainerJob(image, [], gpu=gpu)
    job.arguments = ["train", "--variant", variant, "--dataset", job.mount_input(dataset),
                     "--output", job.mount_output(output), "--variants", job.mount_variants(variants_file),
                     *(["--gpu"] if gpu else [])]
    job.mount_cache()
    job.pass_environment(environ)
    return job


def sanity_job(image: str, output: str, environ: Mapping[str, str],
               variants_file: Path = DEFAULT_VARIANTS_FILE) -> ContainerJob:
    job = ContainerJob(image, [])
    job.arguments = ["sanity", "--output", job.mount_output(output), "--variants", job.mount_variants(variants_file)]
    job.mount_cache()
    job.pass_environment(environ)
    return job


def run_job(client: docker.DockerClient, job: ContainerJob, echo: Callable[[str], None],
            echo_error: Callable[[str], None]) -> int:
    """Run the job to the end, echoing its stdout and stderr lines apart; the container's exit status."""
    image = find_image(client, job.image, job.gpu)
    if note := stale_image_note(image, job.image):
        echo_error(note)
    container = _create(client, image, job)
    try:
        with _stopped_when_interrupted(container):
            _start(container, job)
            echo(f"running {job.image} ({image.short_id}) in container {container.short_id}")
            # Demultiplexed: the engine does not keep the order between the two streams,
            # so an error line stays on stderr instead of landing among progress lines.
            output = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            for line, is_error in _lines(output):
                (echo_error if is_error else echo)(_with_host_paths(line, job.host_paths))
            return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)


def _create(client: docker.DockerClient, image: docker.models.images.Image,
            job: ContainerJob) -> docker.models.containers.Container:
    environment = {**job.environment, IMAGE_ID_VARIABLE: image.id, IMAGE_TAG_VARIABLE: job.image,
                   "HOME": CONTAINER_HOME}
    try:
        return client.containers.create(
            image.id, job.arguments, environment=environment, mounts=job.mounts,
            # Files written into mounted folders belong to the user who ran fab.
            user=f"{os.getuid()}:{os.getgid()}",
            network_mode="host",
            # An init as PID 1 passes `docker stop`'s SIGTERM on to Python (PID 1 would ignore it).
            init=True,
            labels={CONTAINER_LABEL: job.arguments[0]},
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if job.gpu else None,
        )
    except APIError as exc:
        raise _start_failure(exc, job) from None


@contextmanager
def _stopped_when_interrupted(container: docker.models.containers.Container) -> Iterator[None]:
    """Ctrl-C, or SIGTERM (a CI job aborted), stops the container too instead of leaving it training.

    A stopped run resumes from its last epoch when started again, as a killed one does.
    """
    with sigterm_as_interrupt():  # kept while stopping: a second SIGTERM ends the wait, not fab
        try:
            yield
        except KeyboardInterrupt:
            container.stop(timeout=TRAINING_STOP_TIMEOUT_S)
            raise


def find_image(client: docker.DockerClient, tag: str, gpu: bool = False) -> docker.models.images.Image:
    try:
        return client.images.get(tag)
    except ImageNotFound:
        build = "fab build --gpu" if ":gpu" in tag else "fab build"
        missing_runtime = _missing_gpu_runtime(client) if gpu else ""
        raise TrainerError(f"no image {tag} on this Docker engine: run `{build}` first, or use --local"
                           + missing_runtime) from None


def _missing_gpu_runtime(client: docker.DockerClient) -> str:
    """Words for the image error when --gpu is asked of an engine that lists no NVIDIA runtime.

    Only a hint: a toolkit set up through its prestart hook or CDI may list none and
    still run GPUs, so the container start (`_start_failure`) is what decides.
    """
    runtimes = sorted(client.info().get("Runtimes", {}))
    if any("nvidia" in name for name in runtimes):
        return ""
    listed = ", ".join(runtimes) or "no runtimes"
    return (f"; --gpu also needs an NVIDIA GPU runtime, and this engine lists none ({listed}): "
            "install the NVIDIA Container Toolkit (nvidia-container-toolkit) and restart Docker")


def stale_image_note(image: docker.models.images.Image, tag: str) -> str | None:
    """A warning when the image holds another commit's code than this checkout (a forgotten `fab build`)."""
    image_env = dict(item.split("=", 1) for item in image.attrs["Config"].get("Env") or [] if "=" in item)
    built_from, checkout = image_env.get(COMMIT_VARIABLE, "unknown"), code_commit()
    if "unknown" in (built_from, checkout) or built_from.removesuffix("+dirty") == checkout.removesuffix("+dirty"):
        return None
    return (f"note: {tag} was built from commit {built_from[:12]}, this checkout is {checkout[:12]}; "
            "`fab build` to train the current code")


def _start(container: docker.models.containers.Container, job: ContainerJob) -> None:
    try:
        container.start()
    except APIError as exc:
        raise _start_failure(exc, job) from None


def _start_failure(exc: APIError, job: ContainerJob) -> ContainerStartError:
    reason = (exc.explanation or str(exc)).strip()
    if job.gpu and (refusal := gpu_refusal(reason)):
        return ContainerStartError(refusal)
    return ContainerStartError(f"the Docker engine could not start {job.image}: {reason}")


def gpu_refusal(reason: str) -> str | None:
    """NO_GPU_RUNTIME's line when the engine's `reason` for refusing a container is its GPU request
    ("could not select device driver" without the NVIDIA runtime); None for any other reason."""
    if "device driver" in reason or "nvidia" in reason.lower():
        return NO_GPU_RUNTIME.format(reason=reason)
    return None


def _lines(chunks: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[tuple[str, bool]]:
    """(line, from stderr) pairs from (stdout, stderr) chunks, which may split lines anywhere."""
    pending = [b"", b""]
    for chunk in chunks:
        for stream, data in enumerate(chunk):
            if data:
                *complete, pending[stream] = (pending[stream] + data).split(b"\n")
                yield from ((_text(line), bool(stream)) for line in complete)
    yield from ((_text(rest), bool(stream)) for stream, rest in enumerate(pending) if rest)


def _text(line: bytes) -> str:
    return line.decode(errors="replace").rstrip("\r")


def _with_host_paths(line: str, host_paths: Mapping[str, str]) -> str:
    for container_path, host_path in host_paths.items():
        line = line.replace(container_path, host_path)
    return line
