"""`fab doctor` on this machine: a real Docker engine, no GPU, no NVIDIA driver or runtime.

The GPU checks' failure lines are what this machine can show; their success
lines come from nvidia-smi's and TensorFlow's documented output (parsed here).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import docker
import pytest
from conftest import Lines, Runner
from docker_fixtures import BuiltImage
from service_fixtures import Postgres

from launch import doctor
from launch.containers import NO_GPU_RUNTIME
from launch.tensorflow_probe import TensorFlowFacts, probe_in_image

# These assert the GPU checks' failure lines, which a GPU machine (one with an NVIDIA driver) passes instead.
without_a_gpu = pytest.mark.skipif(shutil.which("nvidia-smi") is not None,
                                   reason="a GPU machine passes the GPU checks whose failure lines this asserts")

A100_QUERY = "0, NVIDIA A100-SXM4-80GB, 550.54.15\n1, NVIDIA A100-SXM4-80GB, 550.54.15\n"
A100_HEADER = "| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |\n"


@without_a_gpu
def test_fab_doctor_passes_the_cpu_path_and_names_each_missing_gpu_piece_with_its_fix(
        built: BuiltImage, run_fab: Runner, lines_of: Lines) -> None:
    plain = run_fab("doctor")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    lines = lines_of(plain)
    assert re.fullmatch(r"✓ Docker engine: \S+ \(API [\d.]+\) at unix:///var/run/docker\.sock", lines[0])
    assert re.fullmatch(r"✓ image trainer:cpu: \w{12}, code commit \w{12} \(.*\)", lines[1])
    assert "✗ nvidia-smi: not found, so no NVIDIA driver is installed: install the NVIDIA driver for the GPU " \
           "(e.g. `apt install nvidia-driver`) and reboot" in lines
    assert any(line.startswith("✗ NVIDIA container runtime: the engine lists ") and "nvidia-ctk runtime configure"
               in line for line in lines)
    assert any(line.startswith("✗ TensorFlow CUDA build (this Python): TensorFlow 2.") for line in lines)
    assert all(line[0] in "✓✗" for line in lines[:-1])
    assert lines[-1].startswith("doctor: exit status 0, ready for CPU training; failed but not counted: 6 GPU checks "
                                "(`fab doctor --gpu` counts them)")
    asked = run_fab("doctor", "--gpu")
    assert asked.returncode == 2 and lines_of(asked)[:-1] == lines[:-1]
    assert lines_of(asked)[-1].startswith("doctor: exit status 2, not ready because these checks failed: "
                                          "image trainer:gpu, nvidia-smi, NVIDIA container runtime, ")


def test_fab_doctor_without_an_engine_is_one_failed_line_and_exit_2(run_fab: Runner, lines_of: Lines) -> None:
    proc = run_fab("doctor", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 2
    assert lines_of(proc)[0].startswith("✗ Docker engine: no Docker engine answers at unix:///nonexistent/docker.sock "
                                        "(no socket there): start Docker")
    assert lines_of(proc)[-1].startswith("doctor: exit status 2, not ready because these checks failed: "
                                         "Docker engine, image trainer:cpu; failed but not counted: ")


@without_a_gpu
def test_tensorflow_in_an_image_asks_for_every_gpu_and_an_engine_without_the_runtime_says_so(
        engine: docker.DockerClient, built: BuiltImage) -> None:
    facts = probe_in_image(engine, built.tag)
    assert facts.problem.startswith("this Docker engine has no NVIDIA GPU runtime (could not select device driver")
    assert facts.problem.endswith(NO_GPU_RUNTIME.split("): ")[1]) and "\n" not in facts.problem
    assert not engine.containers.list(all=True, filters={"ancestor": built.tag, "status": "created"})


def test_the_summary_names_the_failed_checks_that_decide_the_exit_status_and_those_that_do_not() -> None:
    credentials = doctor.Check("Google credentials", False, "none", counted=False,
                               counts_when="when GOOGLE_APPLICATION_CREDENTIALS is set")
    checks = [doctor.Check("Docker engine", True, "20.10"), doctor.Check("image trainer:cpu", False, "not built"),
              doctor.Check("nvidia-smi", False, "not found", gpu=True), credentials]
    assert doctor.summary(checks, require_gpu=False) == (
        "doctor: exit status 2, not ready because this check failed: image trainer:cpu; failed but not counted: "
        "1 GPU check (`fab doctor --gpu` counts them), Google credentials (counted when "
        "GOOGLE_APPLICATION_CREDENTIALS is set)")
    passed = [checks[0], doctor.Check("nvidia-smi", True, "driver 550.54.15", gpu=True)]
    assert doctor.summary(passed, require_gpu=True) == (
        "doctor: exit status 0, ready for CPU and GPU training (all 2 checks passed)")


def test_nvidia_smi_output_gives_the_driver_its_cuda_and_gpus() -> None:
    driver = doctor.parse_driver(A100_QUERY, A100_HEADER)
    assert driver == doctor.Driver("550.54.15", "12.4", ["NVIDIA A100-SXM4-80GB"] * 2)
    assert doctor.parse_driver("", "").problem == "lists no GPU"


@pytest.mark.parametrize(("tensorflow_cuda", "image_cuda", "ok"), [
    ("12.3.2", "12.4.1", True),   # both within what the driver runs
    ("12.5.1", "", False),        # TensorFlow built for a newer CUDA than the driver's
    ("12.3.2", "12.8.1", False),  # the GPU image's base is newer than the driver
])
def test_cuda_versions_against_the_driver(tensorflow_cuda: str, image_cuda: str, ok: bool) -> None:
    driver = doctor.parse_driver(A100_QUERY, A100_HEADER)
    tensorflow = TensorFlowFacts("trainer:gpu", {"cuda": tensorflow_cuda})
    check = doctor.cuda_check(driver, tensorflow, image_cuda)
    assert check.ok is ok
    if not ok:
        assert check.line().startswith("✗ CUDA versions: TensorFlow (trainer:gpu) CUDA ")
        assert check.line().endswith(f"the driver runs CUDA up to 12.4: update the NVIDIA driver to one for CUDA "
                                     f"{max(tensorflow_cuda, image_cuda)}")


def test_google_credentials_count_only_when_a_key_file_is_named(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud login of this machine's user
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    none = doctor.google_check()
    assert not none.ok and not none.counted and doctor.exit_status([none], require_gpu=True) == 0
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    named = doctor.google_check()
    assert named.line() == (f"✗ Google credentials: File {tmp_path}/missing-key.json was not found: set "
                            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file or run `gcloud auth "
                            "application-default login` (needed for gs:// data and fab dataset only)")
    assert doctor.exit_status([named], require_gpu=False) == 2


def test_the_study_storage_answers_or_says_why(postgres: Postgres) -> None:
    url = postgres.new_database("doctor")
    answers = doctor.storage_check(url)
    assert answers.ok and re.fullmatch(r"✓ study storage postgresql://\*\*\*@127\.0\.0\.1:\d+/doctor_\w+: "
                                       r"postgresql \d+\.\d+ answers", answers.line()), answers.line()
    refused = doctor.storage_check("postgresql://tuner:s3cret@127.0.0.1:1/studies")
    assert not refused.ok and "s3cret" not in refused.line()
    assert refused.line().startswith("✗ study storage postgresql://***@127.0.0.1:1/studies: connection failed: ")
