"""`fab build`: the CPU or GPU trainer image, built by the engine with docker-py.

The build context is assembled here rather than sent as the project folder, so
it holds only what the image needs (no .venv, runs/ or data/ beyond the
sample) and the optional extra CA, without writing anything into the project.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError
from docker.utils import parse_repository_tag

from trainer.errors import TrainerError
from trainer.package.provenance import COMMIT_VARIABLE, SOURCE_ROOT, code_commit

REPOSITORY = "trainer"
DEFAULT_BASE_IMAGES = {"cpu": "python:3.11-slim", "gpu": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"}
# The one line of requirements.txt that differs between the images.
TENSORFLOW_BUILDS = {"cpu": "tensorflow-cpu", "gpu": "tensorflow[and-cuda]"}
DOCKERFILE = "docker/Dockerfile"
CONTEXT_PATHS = ("requirements.txt", "configs", "trainer", "data/sample_2k.json")
# The extra CA certificates, one per file as update-ca-certificates wants them.
EXTRA_CA_FOLDER = "extra-ca"
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)
FAILURE_CONTEXT_LINES = 15
# Docker's reference grammar, simplified: [registry[:port]/]path[:tag], path in lower case.
IMAGE_REFERENCE = re.compile(r"([\w.-]+(:\d+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*(:\w[\w.-]{0,127})?")


class BuildError(TrainerError):
    """The engine stopped the build at one step."""


@dataclass(frozen=True)
class BuildRequest:
    gpu: bool = False
    tag: str = ""  # one more tag beside the standard ones
    base_image: str = ""  # "" means the flavor's public default
    extra_ca: Path | None = None  # a PEM file the image should trust (TLS-intercepting proxies)

    @property
    def flavor(self) -> str:
        return "gpu" if self.gpu else "cpu"


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tags: list[str]


def default_tag(flavor: str) -> str:
    """What `fab train` runs unless told otherwise: the newest build of the flavor."""
    return f"{REPOSITORY}:{flavor}"


def image_to_run(image: str, gpu: bool) -> str:
    """The image the user named with --image, else the newest build of the flavor --gpu picks."""
    return image or default_tag("gpu" if gpu else "cpu")


def image_tags(request: BuildRequest) -> list[str]:
    """trainer:cpu, trainer:cpu-<commit>[-dirty], and the user's own tag if any."""
    commit = code_commit()
    version = commit[:12] + ("-dirty" if commit.endswith("+dirty") else "") if commit != "unknown" else "nogit"
    tags = [default_tag(request.flavor), f"{REPOSITORY}:{request.flavor}-{version}"]
    return tags + ([request.tag] if request.tag else [])


def build_image(client: docker.DockerClient, request: BuildRequest, echo: Callable[[str], None]) -> BuiltImage:
    """Build, echoing the engine's progress line by line; BuildError names the failing step."""
    if request.tag and not IMAGE_REFERENCE.fullmatch(request.tag):
        raise TrainerError(f"--tag {request.tag}: not an image name; use NAME[:TAG] in lower case, e.g. trainer:exp-7")
    tags = image_tags(request)
    base_image = request.base_image or DEFAULT_BASE_IMAGES[request.flavor]
    context = build_context(request.extra_ca)
    echo(f"building {tags[0]} from {base_image} (code {code_commit()})")
    progress = client.api.build(
        fileobj=context, custom_context=True, dockerfile=DOCKERFILE, tag=tags[0],
        buildargs={"BASE_IMAGE": base_image, "TENSORFLOW": TENSORFLOW_BUILDS[request.flavor],
                   COMMIT_VARIABLE: code_commit()},  # the Dockerfile's ARG, then the image's ENV
        # The host's network: the engine may have no bridge (see docker/local-engine.sh).
        network_mode="host", rm=True, forcerm=True, decode=True,
    )
    image_id = _follow(progress, echo, base_image)
    for tag in tags[1:]:
        client.api.tag(image_id, *parse_repository_tag(tag))
    return BuiltImage(id=image_id, tags=tags)


def build_context(extra_ca: Path | None) -> io.BytesIO:
    """A tar of the Dockerfile, requirements, code, configs and sample, plus the extra CA certificates."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in (DOCKERFILE, *CONTEXT_PATHS):
            tar.add(SOURCE_ROOT / name, arcname=name, filter=_without_caches)
        _add_extra_ca(tar, extra_ca)
    buffer.seek(0)
    return buffer


def _without_caches(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in member.name or member.name.endswith(".pyc") else member


def _add_extra_ca(tar: tarfile.TarFile, extra_ca: Path | None) -> None:
    """extra-ca/, one file per certificate in `extra_ca` (an empty folder without one: COPY needs it)."""
    folder = tarfile.TarInfo(EXTRA_CA_FOLDER)
    folder.type, folder.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(folder)
    for index, certificate in enumerate(_certificates(extra_ca) if extra_ca else []):
        member = tarfile.TarInfo(f"{EXTRA_CA_FOLDER}/extra-{index:03d}.crt")
        member.size = len(certificate)
        tar.addfile(member, io.BytesIO(certificate))


def _certificates(extra_ca: Path) -> list[bytes]:
    if not extra_ca.is_file():
        raise TrainerError(f"--extra-ca {extra_ca}: no such file; pass a PEM file of CA certificates")
    certificates = PEM_CERTIFICATE.findall(extra_ca.read_bytes())
    if not certificates:
        raise TrainerError(f"--extra-ca {extra_ca}: not a PEM certificate file (no BEGIN CERTIFICATE line)")
    return certificates


def _follow(progress: Iterator[dict], echo: Callable[[str], None], base_image: str) -> str:
    """Echo each progress line; the new image's id, or BuildError with the step and its last lines."""
    step, recent, image_id = "", deque(maxlen=FAILURE_CONTEXT_LINES), ""
    try:
        for event in progress:
            for line in event.get("stream", "").splitlines():
                if line.startswith("Step "):
                    step, recent = line, deque(maxlen=FAILURE_CONTEXT_LINES)
                elif not line.strip():
                    continue
                else:
                    recent.append(line)
                echo(line)
            image_id = event.get("aux", {}).get("ID", image_id)
            if "error" in event:
                raise _failure(step, event["error"], recent, base_image)
    except APIError as exc:
        raise _failure(step, exc.explanation or str(exc), recent, base_image) from None
    if not image_id:
        raise BuildError(f"the build of {base_image} ended without an image; see the lines above")
    return image_id


def _failure(step: str, error: str, recent: deque, base_image: str) -> BuildError:
    error = error.strip()
    hint = ""
    if step.endswith("FROM ${BASE_IMAGE}"):
        hint = f"; the base image {base_image} cannot be pulled: pass --base-image with one this engine has"
    elif any("CERTIFICATE_VERIFY_FAILED" in line for line in recent):
        hint = "; behind a TLS-intercepting proxy, pass its CA certificates with --extra-ca FILE"
    where = f"\n  at {step}" if step else ""
    last_lines = "".join(f"\n  | {line}" for line in recent)
    return BuildError(f"build failed: {error}{hint}{where}{last_lines}")
