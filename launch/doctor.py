"""`fab doctor`: is this machine ready to train, on its CPU and on its GPUs? One line per check.

Driver, CUDA and container-runtime mismatches are what a GPU box fails on, and
they show only hours later as a run that trains on the CPU. Each check here
prints `✓ what: what was found` or `✗ what: what is wrong: what to do`:

- the Docker engine and its version, and the trainer images with their code commits;
- nvidia-smi (the NVIDIA driver), its version and the highest CUDA it supports;
- the NVIDIA container runtime (a `nvidia` runtime in `docker info`, or CDI);
- TensorFlow's CUDA build, and whether it sees a GPU and runs a matmul there:
  inside the GPU image when it is built (a container given every GPU), else
  in this process's Python;
- the CUDA TensorFlow (and the GPU image) were built for against the driver's;
- Google's default credentials, and with --storage URL the study's database.

The GPU checks (the driver's to the CUDA versions, and the GPU image) fail on a
machine without a GPU. They are shown all the same, but decide the exit status
only with --gpu: plain `fab doctor` exits 0 when the CPU path works, `fab doctor
--gpu` 2 unless the GPU path does too. Missing Google credentials count only
when GOOGLE_APPLICATION_CREDENTIALS is set (local data needs none). The GPU
success lines are written from the tools' documented output; they have not yet
run on a real GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

import docker
from docker.errors import ImageNotFound

from launch.containers import stale_image_note
from launch.engine import DockerUnavailableError, connect
from launch.images import default_tag
from launch.tensorflow_probe import TensorFlowFacts, probe_here, probe_in_image
from trainer.package.provenance import COMMIT_VARIABLE, code_commit

DRIVER_QUERY = ["nvidia-smi", "--query-gpu=index,name,driver_version", "--format=csv,noheader"]
# nvidia-smi's header names the newest CUDA the driver runs: "... Driver Version: 550.54.15  CUDA Version: 12.4 |".
DRIVER_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
INSTALL_DRIVER = "install the NVIDIA driver for the GPU (e.g. `apt install nvidia-driver`) and reboot"
INSTALL_TOOLKIT = ("install the NVIDIA Container Toolkit (nvidia-container-toolkit), run "
                   "`nvidia-ctk runtime configure --runtime=docker` and restart Docker")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found; when not ok, what is wrong and what to do
    gpu: bool = False  # decides the exit status only with --gpu
    counted: bool = True  # False: shown, not deciding the exit status
    counts_when: str = ""  # when not counted: what would make it count, for the summary line

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Driver:
    """What nvidia-smi says: empty when there is none (`problem` says why)."""

    version: str = ""
    cuda: str = ""  # the newest CUDA the driver runs, e.g. "12.4"
    gpus: list[str] = field(default_factory=list)
    problem: str = ""


def run_checks(storage: str = "") -> list[Check]:
    """Every check, in the order a GPU run needs them; the study storage's only when given."""
    checks, client = _engine_check()
    checks += _image_checks(client)
    driver = driver_facts()
    checks.append(_driver_check(driver))
    checks.append(_runtime_check(client))
    tensorflow = _tensorflow_facts(client)
    checks += _tensorflow_checks(tensorflow)
    checks.append(cuda_check(driver, tensorflow, _image_cuda(client)))
    checks.append(google_check())
    return checks + ([storage_check(storage)] if storage else [])


def exit_status(checks: list[Check], require_gpu: bool) -> int:
    """0 when every check that counts passed; GPU checks count only with --gpu."""
    return 0 if all(check.ok for check in _counting(checks, require_gpu)) else 2


def summary(checks: list[Check], require_gpu: bool) -> str:
    """The last line: the exit status and what it means, naming the failed checks that decided it
    and saying which failures were shown without counting."""
    failed = [check for check in checks if not check.ok]
    counted = _counting(failed, require_gpu)
    if counted:
        verdict = f"exit status 2, not ready because {'this check' if len(counted) == 1 else 'these checks'} " \
                  f"failed: {', '.join(check.name for check in counted)}"
    else:
        verdict = f"exit status 0, ready for {'CPU and GPU' if require_gpu else 'CPU'} training"
        verdict += "" if failed else f" (all {len(checks)} checks passed)"
    uncounted = [check for check in failed if check not in counted]
    return f"doctor: {verdict}" + (f"; failed but not counted: {_uncounted(uncounted)}" if uncounted else "")


def _uncounted(checks: list[Check]) -> str:
    """`6 GPU checks (`fab doctor --gpu` counts them), Google credentials (counted when ...)`."""
    gpu = [check for check in checks if check.gpu and check.counted]
    parts = [f"{len(gpu)} GPU check{'s' if len(gpu) > 1 else ''} (`fab doctor --gpu` counts them)"] if gpu else []
    parts += [check.name + (f" (counted {check.counts_when})" if check.counts_when else "")
              for check in checks if check not in gpu]
    return ", ".join(parts)


def _counting(checks: list[Check], require_gpu: bool) -> list[Check]:
    return [check for check in checks if check.counted and (require_gpu or not check.gpu)]


def _engine_check() -> tuple[list[Check], docker.DockerClient | None]:
    try:
        client = connect()
    except DockerUnavailableError as exc:
        return [Check("Docker engine", False, str(exc))], None
    version = client.version()
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    found = f"{version.get('Version')} (API {version.get('ApiVersion')}) at {where}"
    return [Check("Docker engine", True, found)], client


def _image_checks(client: docker.DockerClient | None) -> list[Check]:
    return [_image_check(client, flavor) for flavor in ("cpu", "gpu")]


def _image_check(client: docker.DockerClient | None, flavor: str) -> Check:
    tag, build = default_tag(flavor), "fab build" + (" --gpu" if flavor == "gpu" else "")
    if client is None:
        return Check(f"image {tag}", False, "unknown: no Docker engine answers (above)", gpu=flavor == "gpu")
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return Check(f"image {tag}", False, f"not built: run `{build}`", gpu=flavor == "gpu")
    built_from = _image_env(image).get(COMMIT_VARIABLE, "unknown")
    # An older image still trains: a note, not a failure.
    stale = stale_image_note(image, tag) is not None
    age = f"this checkout is {code_commit()[:12]}: `{build}` to train the current code" if stale else "this checkout's"
    return Check(f"image {tag}", True, f"{image.short_id.removeprefix('sha256:')}, code commit {built_from[:12]} "
                                       f"({age})", gpu=flavor == "gpu")


def driver_facts() -> Driver:
    """nvidia-smi's driver version, CUDA version and GPUs, or why there are none."""
    if shutil.which("nvidia-smi") is None:
        return Driver(problem="not found, so no NVIDIA driver is installed")
    try:
        query = subprocess.run(DRIVER_QUERY, capture_output=True, text=True, timeout=30, check=False)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return Driver(problem="did not answer in 30 s")
    if query.returncode:
        # e.g. "Failed to initialize NVML: Driver/library version mismatch" after a driver update.
        said = (query.stdout + query.stderr).strip().splitlines() or [f"exit status {query.returncode}"]
        return Driver(problem=said[-1])
    return parse_driver(query.stdout, header.stdout)


def parse_driver(query: str, header: str) -> Driver:
    """DRIVER_QUERY's CSV lines ("0, NVIDIA A100-SXM4-80GB, 550.54.15") and nvidia-smi's header."""
    rows = [[part.strip() for part in line.split(",")] for line in query.splitlines() if line.strip()]
    if not rows:
        return Driver(problem="lists no GPU")
    cuda = DRIVER_CUDA.search(header)
    return Driver(version=rows[0][-1], cuda=cuda.group(1) if cuda else "", gpus=[row[1] for row in rows])


def _driver_check(driver: Driver) -> Check:
    if driver.problem:
        return Check("nvidia-smi", False, f"{driver.problem}: {INSTALL_DRIVER}", gpu=True)
    return Check("nvidia-smi", True, f"driver {driver.version}, CUDA up to {driver.cuda or 'unknown'}, "
                                     f"{len(driver.gpus)} GPU(s): {', '.join(driver.gpus)}", gpu=True)


def _runtime_check(client: docker.DockerClient | None) -> Check:
    if client is None:
        return Check("NVIDIA container runtime", False, "unknown: no Docker engine answers (above)", gpu=True)
    info = client.info()
    runtimes = sorted(info.get("Runtimes") or {})
    cdi = [folder for folder in info.get("CDISpecDirs") or [] if _has_nvidia_spec(folder)]
    if any("nvidia" in name for name in runtimes):
        return Check("NVIDIA container runtime", True, f"runtimes {', '.join(runtimes)}", gpu=True)
    if cdi:
        return Check("NVIDIA container runtime", True, f"CDI specs in {', '.join(cdi)}", gpu=True)
    return Check("NVIDIA container runtime", False, f"the engine lists {', '.join(runtimes) or 'no runtimes'} and "
                                                    f"no NVIDIA CDI spec: {INSTALL_TOOLKIT}", gpu=True)


def _has_nvidia_spec(folder: str) -> bool:
    return os.path.isdir(folder) and any("nvidia" in name for name in os.listdir(folder))


def _tensorflow_facts(client: docker.DockerClient | None) -> TensorFlowFacts:
    """PROBE in the GPU image given every GPU, when that image is built; else in this Python."""
    return probe_in_image(client, default_tag("gpu")) if _gpu_image(client) else probe_here()


def _tensorflow_checks(tensorflow: TensorFlowFacts) -> list[Check]:
    where, facts = tensorflow.where, tensorflow.facts
    if tensorflow.problem:
        return [Check(f"TensorFlow CUDA build ({where})", False, tensorflow.problem, gpu=True)]
    if not facts["cuda_build"]:
        build = Check(f"TensorFlow CUDA build ({where})", False,
                      f"TensorFlow {facts['version']} is a CPU-only build: install tensorflow[and-cuda], "
                      "or build the GPU image (`fab build --gpu`) and train with --gpu", gpu=True)
    else:
        build = Check(f"TensorFlow CUDA build ({where})", True,
                      f"TensorFlow {facts['version']}, CUDA {facts['cuda']}, cuDNN {facts['cudnn']}", gpu=True)
    return [build, _gpu_seen_check(where, facts)]


def _gpu_seen_check(where: str, facts: dict) -> Check:
    name = f"TensorFlow sees a GPU ({where})"
    if not facts["gpus"]:
        return Check(name, False, "none: check the nvidia-smi, runtime and CUDA lines, and that "
                                  "TensorFlow's CUDA libraries match the driver", gpu=True)
    if not facts["matmul"].startswith("ok"):
        return Check(name, False, f"{', '.join(facts['gpus'])}, but a matmul on GPU:0 {facts['matmul']}: "
                                  "the CUDA libraries do not fit the driver; update the driver", gpu=True)
    return Check(name, True, f"{', '.join(facts['gpus'])}; a 1024x1024 matmul ran on GPU:0", gpu=True)


def cuda_check(driver: Driver, tensorflow: TensorFlowFacts, image_cuda: str) -> Check:
    """The CUDA that TensorFlow (and the GPU image) were built for, against the newest the driver runs."""
    built = {f"TensorFlow ({tensorflow.where})": tensorflow.facts.get("cuda", ""), "the GPU image": image_cuda}
    needs = {what: version for what, version in built.items() if version}
    listed = "; ".join(f"{what} CUDA {version}" for what, version in needs.items()) or "no CUDA build of TensorFlow"
    if not driver.cuda:
        return Check("CUDA versions", False, f"{listed}; the driver's CUDA is unknown (nvidia-smi: "
                                             f"{driver.problem or 'no CUDA Version line'}): {INSTALL_DRIVER}", gpu=True)
    too_new = [what for what, version in needs.items() if _major_minor(version) > _major_minor(driver.cuda)]
    if too_new:
        return Check("CUDA versions", False, f"{listed}, the driver runs CUDA up to {driver.cuda}: update the NVIDIA "
                                             f"driver to one for CUDA {max(needs.values(), key=_major_minor)}",
                     gpu=True)
    if not needs:
        return Check("CUDA versions", False, f"{listed}: install tensorflow[and-cuda], or `fab build --gpu`", gpu=True)
    return Check("CUDA versions", True, f"{listed}; the driver runs CUDA up to {driver.cuda}", gpu=True)


def google_check() -> Check:
    """Google's default credentials. Counted only when GOOGLE_APPLICATION_CREDENTIALS is set:
    local data needs none, but a variable that points nowhere fails every gs:// run."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from trainer.cloud.clients import FIX_CREDENTIALS
    from trainer.cloud.environment import CREDENTIALS, PROJECT, STORAGE_EMULATOR

    counted = bool(os.environ.get(CREDENTIALS))
    when = f"when {CREDENTIALS} is set"
    if os.environ.get(STORAGE_EMULATOR):
        return Check("Google credentials", True, f"anonymous, for the storage emulator at "
                                                 f"{os.environ[STORAGE_EMULATOR]}", counted=counted,
                     counts_when=when)
    try:
        credentials, project = google.auth.default()
    except DefaultCredentialsError as exc:
        said = str(exc).strip().split(". ")[0].rstrip(".")
        return Check("Google credentials", False, f"{said}: {FIX_CREDENTIALS} (needed for gs:// data and fab dataset "
                                                  "only)", counted=counted, counts_when=when)
    who = getattr(credentials, "service_account_email", "") or "the user's application-default login"
    return Check("Google credentials", True, f"{who}, project {os.environ.get(PROJECT) or project or 'none set'}",
                 counted=counted, counts_when=when)


def storage_check(url: str) -> Check:
    """The study storage (fab tune --storage) answers from here: one connection, no tables made."""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    from trainer.tuning.study import shown

    name = f"study storage {shown(url)}"
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10} if "postgres" in url else {})
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
            version = ".".join(str(part) for part in engine.dialect.server_version_info or ())
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check(name, False, f"{reason.replace(url, shown(url))}: check the URL (an @ in a password is %40), "
                                  "and that the server runs and lets this machine and user in")
    return Check(name, True, f"{engine.dialect.name} {version} answers".rstrip())


def _major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _image_cuda(client: docker.DockerClient | None) -> str:
    """The CUDA of the GPU image's base (nvidia/cuda images set CUDA_VERSION), if that image is built."""
    image = _gpu_image(client)
    return _image_env(image).get("CUDA_VERSION", "") if image else ""


def _gpu_image(client: docker.DockerClient | None) -> docker.models.images.Image | None:
    try:
        return client.images.get(default_tag("gpu")) if client else None
    except ImageNotFound:
        return None


def _image_env(image: docker.models.images.Image) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image.attrs["Config"].get("Env") or [] if "=" in item)
