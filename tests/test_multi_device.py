"""One run on several devices (tf.distribute.MirroredStrategy), on this machine's CPU.

There is no GPU here, so the test hook FAB_TEST_LOGICAL_CPUS=2 (`trainer.faults`) splits
the CPU into two logical devices before TensorFlow starts: the path a multi-GPU host takes (the
model mirrored on each device, each batch split between them), on CPU:0 and CPU:1.
Then `fab tune_workers --gpu`'s one worker per GPU: nvidia-smi's lines parsed, the
device requests as the real engine records them, process workers over real SSH
each seeing its own CUDA_VISIBLE_DEVICES, and the engine's refusal as one line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import zipfile
from pathlib import Path

import docker
import numpy as np
import pytest
from conftest import Runner
from docker.types import DeviceRequest
from docker_fixtures import BASE_IMAGE
from service_fixtures import Sshd

from launch import workers
from trainer.data.dataset import load_dataset
from trainer.errors import TrainerError
from trainer.faults import LOGICAL_CPUS_VARIABLE
from trainer.package.loader import load_package
from trainer.tuning.study import StudySpec

PACKAGE_LINE = re.compile(r"^package (\S+)  \(weights of epoch \d+; .* test: logloss \S+ auc (\S+)", re.MULTILINE)
# The 2K sample's 400 test rows are few: identical math gives identical AUC, noise stays below this.
AUC_NOISE = 0.03
SCORE_NOISE = 0.01


def _train(run_python: Runner, output: Path, sample: Path,
           **env: str) -> tuple[subprocess.CompletedProcess, Path, float]:
    proc = run_python("-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(sample),
                      "--output", str(output), env={"TRAINER_EPOCHS": "2", **env})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    match = PACKAGE_LINE.search(proc.stdout)
    assert match, proc.stdout
    return proc, Path(match.group(1)), float(match.group(2))


@pytest.fixture(scope="module")
def runs(run_python: Runner, sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same global batch of 256 rows: one device, and two devices of 128 rows each."""
    root = tmp_path_factory.mktemp("multi_device")
    return {
        "one": _train(run_python, root / "one", sample_path, TRAINER_BATCH_SIZE="256"),
        "two": _train(run_python, root / "two", sample_path, TRAINER_BATCH_SIZE="128",
                      **{LOGICAL_CPUS_VARIABLE: "2"}),
    }


def test_two_devices_train_one_run_named_in_its_first_line_and_manifest(runs: dict) -> None:
    proc, package, _ = runs["two"]
    lines = proc.stdout.splitlines()
    first, sizes = lines[0], next(line for line in lines if "batch size" in line)
    assert first == "variant deep_v1 (network deep_v1) on CPU (2 cores) as 2 logical devices, mirrored: CPU:0, CPU:1"
    assert "batch size 256, 128 per device" in sizes  # the batch scaled by the replicas
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["device"].endswith("mirrored: CPU:0, CPU:1") and manifest["batch_size"] == 256
    one_first = runs["one"][0].stdout.splitlines()[0]
    assert one_first.endswith(" on CPU (2 cores)")  # one device: the path as before


DESCRIBE_SPLIT_DESCRIBE = """
from trainer.training.fit import describe_device, split_cpu_for_tests
print(describe_device(False))
split_cpu_for_tests()
print(describe_device(False))
"""


def test_describing_the_device_leaves_it_as_it_is_and_the_split_is_its_own_step(run_python: Runner) -> None:
    proc = run_python("-c", DESCRIBE_SPLIT_DESCRIBE, env={LOGICAL_CPUS_VARIABLE: "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cores = os.cpu_count()
    # The first description neither split the CPU nor started TensorFlow's runtime, so the split still applies.
    assert proc.stdout.splitlines() == [f"CPU ({cores} cores)",
                                        f"CPU ({cores} cores) as 2 logical devices, mirrored: CPU:0, CPU:1"]


def test_two_devices_reach_the_single_device_auc_and_a_package_that_scores_alike(runs: dict,
                                                                                  sample_path: Path) -> None:
    _, one_package, one_auc = runs["one"]
    _, two_package, two_auc = runs["two"]
    assert abs(two_auc - one_auc) < AUC_NOISE, (one_auc, two_auc)
    two = load_package(str(two_package))
    frame, _ = load_dataset(str(sample_path), two.config, with_label=False)
    np.testing.assert_allclose(two.score(frame), load_package(str(one_package)).score(frame), atol=SCORE_NOISE)


# --- tune_workers: one worker per GPU of a host ------------------------------------------------------------------

FOUR_GPUS = """0, NVIDIA A100-SXM4-80GB, GPU-5c3c6d0e-0000-0000-0000-000000000000
1, NVIDIA A100-SXM4-80GB, GPU-5c3c6d0e-0000-0000-0000-000000000001
2, NVIDIA A100-SXM4-80GB, GPU-5c3c6d0e-0000-0000-0000-000000000002
3, NVIDIA A100-SXM4-80GB, GPU-5c3c6d0e-0000-0000-0000-000000000003
"""


def _request(tmp_path: Path, image: str = BASE_IMAGE, **fields: object) -> workers.WorkerRequest:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "rows.json").write_text("{}\n")  # the study's dataset: there on the host
    spec = StudySpec("deep_v1", {}, {}, {}, str(tmp_path / "data" / "rows.json"), str(tmp_path / "trials"), 4,
                     "random", "none")
    return workers.WorkerRequest(**{"study": "gpus", "storage_url": "postgresql://u@h/db", "spec": spec, "gpu": True,
                                    "image": image, "workdir": str(tmp_path), "environment": {}, **fields})


def _indices(groups: list[list[workers.Gpu]]) -> list[list[int]]:
    return [[gpu.index for gpu in group] for group in groups]


def test_nvidia_smi_lines_give_one_worker_per_gpu_or_share_them_out() -> None:
    gpus = workers.parse_gpus(FOUR_GPUS)
    assert gpus[3] == workers.Gpu(3, "NVIDIA A100-SXM4-80GB", "GPU-5c3c6d0e-0000-0000-0000-000000000003")
    assert _indices(workers.worker_devices(gpus, 0)) == [[0], [1], [2], [3]]  # the default
    assert _indices(workers.worker_devices(gpus, 2)) == [[0, 1], [2, 3]]
    assert _indices(workers.worker_devices(gpus, 3)) == [[0, 1], [2], [3]]
    assert workers.worker_devices([], 0) == [[]] and workers.worker_devices([], 3) == [[], [], []]  # no --gpu
    assert workers.parse_gpus("No devices were found\n") == []
    with pytest.raises(TrainerError, match=r"^--workers-per-host 5: the host has 4 GPU\(s\).*pass at most 4$"):
        workers.worker_devices(gpus, 5)


def test_n_gpus_give_n_containers_each_with_its_device_request(engine: docker.DockerClient, tmp_path: Path) -> None:
    """The workers' `docker run` flags, created (not started) by the real engine: what it will ask the GPU runtime."""
    request = _request(tmp_path)
    gpus = workers.parse_gpus(FOUR_GPUS)
    groups = [*workers.worker_devices(gpus, 0), gpus[:2]]  # one each, and one worker with two
    recorded = []
    for number, group in enumerate(groups):
        command = workers.container_command(request, f"trainer-test-gpu-request-{number}", group)
        created = subprocess.run(["docker", "create", *command[3:]], capture_output=True, text=True, check=False)
        assert created.returncode == 0, created.stderr
        container = engine.containers.get(created.stdout.strip())
        recorded.append(container.attrs["HostConfig"]["DeviceRequests"])
        container.remove(force=True)
    expected = [[str(i)] for i in range(4)] + [["0", "1"]]
    assert recorded == [[DeviceRequest(device_ids=ids, capabilities=[["gpu"]])] for ids in expected]


def test_n_gpus_give_n_worker_processes_each_seeing_its_own(sshd: Sshd, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Over real SSH: the host's nvidia-smi answers with four GPUs (a canned reply), and its 'checkout'
    has a python that writes what it was given, so each worker's log shows its CUDA_VISIBLE_DEVICES."""
    monkeypatch.setattr(workers, "GPU_QUERY", f"printf '%s' {shlex.quote(FOUR_GPUS)}")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES $*"\n')
    python.chmod(0o755)
    lines = list(workers.start_workers(sshd.connection(), _request(tmp_path, use_docker=False)))
    assert [re.sub(r"process \d+ in", "process PID in", line.split("; log: ")[0]) for line in lines] == [
        f"worker process PID in {tmp_path}, GPU {i} (NVIDIA A100-SXM4-80GB)" for i in range(4)]
    logs = [Path(line.split("; log: ")[1]) for line in lines]
    deadline = time.monotonic() + 20
    while not all(log.exists() and log.read_text() for log in logs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [log.read_text().split()[0] for log in logs] == [f"CUDA_VISIBLE_DEVICES={i}" for i in range(4)]
    assert all("trainer tune --study gpus --storage postgresql://u@h/db --gpu" in log.read_text() for log in logs)
    for log in logs:  # the workers' logs go to the host's /tmp, as a real worker's do
        log.unlink()


def test_gpu_workers_where_there_is_no_gpu_are_one_line(sshd: Sshd, engine: docker.DockerClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # This host's own nvidia-smi: there is none.
    with pytest.raises(TrainerError) as no_driver:
        workers.host_gpus(sshd.connection())
    assert re.fullmatch(r"127\.0\.0\.1: --gpu, but nvidia-smi finds no GPU there \(.*nvidia-smi.*not found\): "
                        r"install the NVIDIA driver on that host .*, or drop --gpu", str(no_driver.value))
    # GPUs listed, but an engine without the NVIDIA runtime refuses their device requests.
    monkeypatch.setattr(workers, "GPU_QUERY", f"printf '%s' {shlex.quote(FOUR_GPUS)}")
    with pytest.raises(TrainerError) as refused:
        list(workers.start_workers(sshd.connection(), _request(tmp_path, workers_per_host=1)))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("127.0.0.1: this Docker engine has no NVIDIA GPU runtime "
                                                      "(docker: Error response from daemon: could not select device")
    assert message.endswith("install the NVIDIA Container Toolkit (nvidia-container-toolkit) and restart Docker, "
                            "or train on the CPU without --gpu")
    assert not engine.containers.list(all=True, filters={"label": f"{workers.STUDY_LABEL}=gpus"})
