"""The trainer image, built and run by a real Docker engine through `fab`.

`make test` starts an engine and makes a local base image when the machine has
none (docker/local-engine.sh); no registry is needed. The image is built once
per session, the way a user builds it, and every container test runs in it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from cloud_fixtures import upload
from conftest import clean_env
from docker_fixtures import BASE_IMAGE, BUILD_TIMEOUT_S, EXTRA_CA, EXTRA_TAG, BuiltImage

from launch.containers import CACHE_MOUNT, CONTAINER_LABEL, CREDENTIALS_MOUNT, training_job
from launch.images import TENSORFLOW_BUILDS, build_context
from trainer.config import DEFAULT_VARIANTS_FILE, PROJECT_ROOT, load_variants
from trainer.data import storage
from trainer.interrupts import EXIT_INTERRUPTED, STOPPED_LINE
from trainer.package.provenance import code_commit

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]

QUICK = {"TRAINER_EPOCHS": "1", "TRAINER_BATCH_SIZE": "256"}


def test_build_streams_each_step_and_tags_cpu_and_the_commit(built: BuiltImage, engine: docker.DockerClient) -> None:
    steps = re.findall(r"^Step (\d+)/(\d+) : ", built.log, re.MULTILINE)
    assert steps and steps[-1][0] == steps[-1][1], "the build's steps were not shown"
    commit = code_commit()
    version = commit[:12] + ("-dirty" if commit.endswith("+dirty") else "")
    assert set(engine.images.get(built.id).tags) >= {"trainer:cpu", f"trainer:cpu-{version}", f"{EXTRA_TAG}:latest"}


def test_image_runs_the_trainer_as_a_non_root_user(built: BuiltImage, engine: docker.DockerClient) -> None:
    config = engine.images.get(built.id).attrs["Config"]
    assert config["User"] == "trainer"
    assert config["Entrypoint"] == ["python", "-m", "trainer"]
    assert dict(e.split("=", 1) for e in config["Env"])["CODE_COMMIT"] == code_commit()
    uid = engine.containers.run(built.id, entrypoint=["id", "-u"], network_mode="none", remove=True)
    assert uid.decode().strip() not in ("", "0")
    listed = engine.containers.run(built.id, ["variants"], network_mode="none", remove=True).decode()
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(load_variants(DEFAULT_VARIANTS_FILE))


def test_build_context_holds_the_code_and_nothing_else() -> None:
    with tarfile.open(fileobj=build_context(None)) as tar:
        names = tar.getnames()
    assert {name.split("/")[0] for name in names} == {
        "docker", "requirements.txt", "configs", "trainer", "data", "extra-ca"}
    assert "trainer/run.py" in names and "data/sample_2k.json" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith(("data/ctr", "extra-ca/"))]


def test_an_extra_ca_bundle_goes_in_one_certificate_per_file(tmp_path: Path) -> None:
    first, second = ("-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n" for body in "AB")
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("# the proxy's chain\n" + first + "\n" + second)
    with tarfile.open(fileobj=build_context(bundle)) as tar:
        certificates = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()
                        and m.name.startswith("extra-ca/")}
    assert certificates == {"extra-ca/extra-000.crt": first, "extra-ca/extra-001.crt": second}


def test_rebuild_without_changes_reuses_the_dependency_layer(built: BuiltImage, run_fab: Runner) -> None:
    # Typed in the design card's form (Fabric 1), with what this machine needs: a local base, the proxy's CA.
    proc = run_fab(f"build:base_image={BASE_IMAGE}" + (f",extra_ca={EXTRA_CA}" if EXTRA_CA else ""),
                   timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:]
    pip_step = re.search(r"^Step \d+/\d+ : RUN .*pip install.*\n(.*)$", proc.stdout, re.MULTILINE)
    assert pip_step and "Using cache" in pip_step.group(1), proc.stdout


def test_train_in_the_image_writes_the_package_into_the_host_folder(
    built: BuiltImage, run_fab: Runner, sample_path: Path, tmp_path: Path
) -> None:
    output = tmp_path / "runs"
    # A team's own variant file beside its data, not in the image: the container gets it mounted.
    team_file = tmp_path / "team" / "variants.json"
    team_file.parent.mkdir()
    team_file.write_text(json.dumps({"team_linear": {"network": "linear_v1"}}))
    proc = run_fab("train", "--variant", "team_linear", "--variants", str(team_file), "--image", built.tag,
                   "--dataset", str(sample_path), "--output", str(output), env=QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith(f"running {built.tag} ")
    assert re.search(r"^epoch 1/1 ", proc.stdout, re.MULTILINE)
    [package] = output.glob("team_linear-*.zip")
    assert f"package {package} " in proc.stdout, "the container's path was not turned back into the host's"
    assert package.stat().st_uid == os.getuid()
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        config = json.loads(archive.read("config.json"))
    assert manifest["image"] == {"id": built.id, "tag": built.tag}
    assert manifest["code_commit"] == code_commit()
    assert config["keys"]["epochs"] == {"value": 1, "source": "environment TRAINER_EPOCHS"}
    assert config["variants_file"]["sha256"] == hashlib.sha256(team_file.read_bytes()).hexdigest()


def test_train_in_the_image_reads_and_writes_gcs_through_the_hosts_cache(
    built: BuiltImage, run_fab: Runner, sample_path: Path, cloud_env: dict[str, str], gcs_prefix: str
) -> None:
    upload(sample_path, f"{gcs_prefix}/data/sample.json")
    proc = run_fab("train", "--variant", "linear_v1", "--image", built.tag, "--dataset", f"{gcs_prefix}/data/*.json",
                   "--output", f"{gcs_prefix}/runs", env={**cloud_env, **QUICK})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [package] = storage.expand(f"{gcs_prefix}/runs/linear_v1-*.zip")
    assert f"package {package} " in proc.stdout
    cached = list((Path(cloud_env["XDG_CACHE_HOME"]) / "trainer" / "gcs").rglob("sample.json"))
    assert len(cached) == 1 and cached[0].read_bytes() == sample_path.read_bytes()
    assert cached[0].stat().st_uid == os.getuid()


def test_an_image_of_another_commit_is_noted_before_training(
    built: BuiltImage, engine: docker.DockerClient, run_fab: Runner, tmp_path: Path
) -> None:
    older = "0" * 40
    dockerfile = io.BytesIO(f"FROM {built.id}\nENV CODE_COMMIT={older}\n".encode())
    engine.images.build(fileobj=dockerfile, tag="trainer:older-commit", network_mode="none", rm=True)
    try:
        proc = run_fab("train", "--variant", "linear_v1", "--image", "trainer:older-commit",
                       "--output", str(tmp_path), env=QUICK)
    finally:
        engine.images.remove("trainer:older-commit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[0] == (
        f"note: trainer:older-commit was built from commit {older[:12]}, this checkout is {code_commit()[:12]}; "
        "`fab build` to train the current code")


def test_stopping_fab_stops_its_container_and_the_run_resumes(
    built: BuiltImage, engine: docker.DockerClient, run_fab: Runner, sample_path: Path, tmp_path: Path
) -> None:
    output = tmp_path / "runs"
    args = ["train", "--variant", "deep_v1", "--image", built.tag, "--dataset", str(sample_path),
            "--output", str(output)]
    env = {"TRAINER_EPOCHS": "6", "TRAINER_BATCH_SIZE": "64", "TRAINER_EARLY_STOPPING_PATIENCE": "0"}
    fab = Path(sys.executable).parent / "fab"
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errors, subprocess.Popen([str(fab), *args], cwd=PROJECT_ROOT, env=clean_env(env),
                                                      text=True, stdout=subprocess.PIPE, stderr=errors) as proc:
        watchdog = threading.Timer(300, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                if line.startswith("epoch 2/6"):
                    proc.send_signal(signal.SIGTERM)  # what a CI server's abort sends
                    break
            proc.wait(timeout=60)
        finally:
            watchdog.cancel()
    # As python -m trainer ends on Ctrl-C: one line, no traceback, the shell's status for an interrupt.
    assert proc.returncode == EXIT_INTERRUPTED, stderr.read_text()[-3000:]
    assert stderr.read_text().splitlines()[-1] == STOPPED_LINE
    assert "Traceback" not in stderr.read_text()
    assert not engine.containers.list(all=True, filters={"label": CONTAINER_LABEL}), "the container outlived fab"
    assert not list(output.glob("*.zip"))

    again = run_fab(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"^resuming run deep_v1-\S+ after epoch [1-3]/6$", again.stdout, re.MULTILINE), again.stdout
    assert len(list(output.glob("deep_v1-*.zip"))) == 1


def test_a_failing_run_in_the_container_is_fabs_exit_status(
    built: BuiltImage, run_fab: Runner, sample_path: Path, tmp_path: Path, lines_of: Lines
) -> None:
    broken = tmp_path / "broken.json"
    lines = sample_path.read_text().splitlines()
    broken.write_text("\n".join([*lines[:5], "{not json", *lines[5:20]]) + "\n")
    proc = run_fab("train", "--variant", "deep_v1", "--image", built.tag, "--dataset", str(broken),
                   "--output", str(tmp_path / "runs"), env=QUICK)
    assert proc.returncode == 2
    assert lines_of(proc)[-1].startswith(f"error: {broken} line 6: not valid JSON")
    assert not list((tmp_path / "runs").glob("*.zip"))


def test_sanity_in_the_image_trains_every_variant_and_says_so(
    built: BuiltImage, run_fab: Runner, tmp_path: Path
) -> None:
    output = tmp_path / "sanity"
    proc = run_fab(f"test_sanity:image={built.tag},output={output}")  # the design card's form (Fabric 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith(f"runner: the Docker image {built.tag}")
    for variant in load_variants(DEFAULT_VARIANTS_FILE):
        assert re.search(rf"^{variant}\s+ok\s", proc.stdout, re.MULTILINE), proc.stdout[-3000:]
    assert len(list(output.glob("*.zip"))) == len(load_variants(DEFAULT_VARIANTS_FILE))


def test_gpu_on_an_engine_without_nvidia_runtime_is_one_line(
    built: BuiltImage, engine: docker.DockerClient, run_fab: Runner, lines_of: Lines
) -> None:
    if "nvidia" in engine.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    before = len(engine.containers.list(all=True))
    proc = run_fab("train", "--gpu", "--image", built.tag)
    assert proc.returncode == 2
    [line] = lines_of(proc)
    assert line.startswith("error: this Docker engine has no NVIDIA GPU runtime") and "nvidia-container-toolkit" in line
    assert len(engine.containers.list(all=True)) == before, "the failed container was left behind"


def test_gpu_training_in_the_gpu_image(engine: docker.DockerClient, run_fab: Runner, tmp_path: Path) -> None:
    if "nvidia" not in engine.info().get("Runtimes", {}):
        pytest.skip("needs a GPU and the NVIDIA runtime (and `fab build --gpu`)")
    proc = run_fab("train", "--gpu", "--variant", "deep_v1", "--output", str(tmp_path), env=QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " on GPU:0 " in proc.stdout


@pytest.mark.parametrize("command", [["train", "--variant", "deep_v1"], ["build"]])
def test_no_engine_is_one_line_naming_the_fix(
    command: list[str], run_fab: Runner, tmp_path: Path, lines_of: Lines
) -> None:
    proc = run_fab(*command, env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    assert proc.returncode == 2
    [line] = lines_of(proc)
    assert line.startswith(f"error: no Docker engine answers at unix://{tmp_path}/docker.sock")
    # Only train has an in-process way round a missing engine.
    assert "local-engine.sh start" in line and (("--local" in line) == (command[0] == "train"))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--variant", "nope"], {}, "error: unknown variant 'nope'"),
        (["--dataset", "/nowhere/rows.json"], {}, "error: /nowhere/rows.json: no such file"),
        ([], {"GOOGLE_APPLICATION_CREDENTIALS": "/nowhere/key.json"},
         "error: GOOGLE_APPLICATION_CREDENTIALS=/nowhere/key.json: no such file"),
        (["--image", "trainer:absent"], {}, "error: no image trainer:absent on this Docker engine: run `fab build`"),
    ],
)
def test_bad_input_is_one_line_before_any_container_starts(
    args: list[str], env: dict[str, str], expected: str, engine: docker.DockerClient, run_fab: Runner,
    lines_of: Lines,
) -> None:
    before = len(engine.containers.list(all=True))
    proc = run_fab("train", *args, env=env)
    assert proc.returncode == 2
    [line] = lines_of(proc)
    assert line.startswith(expected), line
    assert len(engine.containers.list(all=True)) == before


def test_a_failing_build_step_is_named_with_its_last_lines(
    engine: docker.DockerClient, run_fab: Runner, lines_of: Lines
) -> None:
    no_shell = io.BytesIO()
    with tarfile.open(fileobj=no_shell, mode="w") as tar:
        readme = tarfile.TarInfo("README")
        readme.size = 0
        tar.addfile(readme)
    engine.api.import_image_from_data(no_shell.getvalue(), repository="local/no-shell", tag="test")
    proc = run_fab("build", "--base-image", "local/no-shell:test", "--tag", "trainer:never")
    # The steps before the failing one left untagged images (" ---> id" lines); removing
    # the last one removes its untagged parents with it.
    step_images = re.findall(r"^ ---> ([0-9a-f]{12})$", proc.stdout, re.MULTILINE)
    if step_images:
        engine.images.remove(step_images[-1], force=True)
    engine.images.remove("local/no-shell:test", force=True)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()
    assert error[0].startswith("error: build failed: ")
    assert re.fullmatch(r"  at Step \d+/\d+ : RUN .*python3.*", error[1]), error
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get("trainer:never")


def test_a_bad_tag_is_one_line_before_building(run_fab: Runner, lines_of: Lines) -> None:
    proc = run_fab("build", "--tag", "My Image")
    assert proc.returncode == 2
    assert lines_of(proc) == ["error: --tag My Image: not an image name; use NAME[:TAG] in lower case, "
                              "e.g. trainer:exp-7"]


@pytest.mark.parametrize(("content", "expected"), [(None, "no such file"), ("hello", "not a PEM certificate file")])
def test_a_bad_extra_ca_is_one_line(
    content: str | None, expected: str, run_fab: Runner, tmp_path: Path, lines_of: Lines
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    proc = run_fab("build", "--extra-ca", str(ca))
    assert proc.returncode == 2
    [line] = lines_of(proc)
    assert line.startswith(f"error: --extra-ca {ca}: {expected}")


def test_credentials_and_overrides_reach_the_container_but_not_the_image(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text("{}")
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key), "TRAINER_EPOCHS": "3", "GOOGLE_CLOUD_PROJECT": "p",
               "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "x"}
    job = training_job("trainer:cpu", "deep_v1", "gs://bucket/data-*.json", str(tmp_path / "out"), False, environ)
    assert job.environment == {"GOOGLE_APPLICATION_CREDENTIALS": CREDENTIALS_MOUNT, "TRAINER_EPOCHS": "3",
                               "GOOGLE_CLOUD_PROJECT": "p", "XDG_CACHE_HOME": CACHE_MOUNT}
    [credentials] = [m for m in job.mounts if m["Target"] == CREDENTIALS_MOUNT]
    assert credentials["Source"] == str(key) and credentials["ReadOnly"] is True
    assert "gs://bucket/data-*.json" in job.arguments


def test_gpu_image_requirements_resolve_for_the_cuda_base_python(tmp_path: Path) -> None:
    """What the GPU build's pip step installs (docker/Dockerfile swaps the TensorFlow line) exists on PyPI
    for Ubuntu 24.04's Python 3.12, so `fab build --gpu` does not fail there on a machine with a GPU."""
    requirements = tmp_path / "requirements-gpu.txt"
    text = (PROJECT_ROOT / "requirements.txt").read_text()
    # pyformance ships only a source archive, which a cross-platform resolve cannot take; it is pure Python.
    lines = [line for line in text.splitlines() if not line.startswith("pyformance")]
    requirements.write_text("\n".join(lines).replace("tensorflow-cpu==", f"{TENSORFLOW_BUILDS['gpu']}==") + "\n")
    platforms = [f"--platform=manylinux_2_{minor}_x86_64" for minor in (17, 24, 27, 28, 31, 34, 39)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--only-binary=:all:",
         "--python-version=3.12", *platforms, "--platform=manylinux2014_x86_64", "--target", str(tmp_path / "t"),
         "--report", str(tmp_path / "report.json"), "-r", str(requirements)],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {i["metadata"]["name"]: i["metadata"]["version"]
                 for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert installed["tensorflow"] == re.search(r"^tensorflow-cpu==(\S+)", text, re.MULTILINE).group(1)
    assert "nvidia-cudnn-cu12" in installed
