"""What TensorFlow says about itself, asked in this Python or in a container of an image.

`fab doctor` runs PROBE both ways, so the GPU image is checked by the same code
as this machine's own TensorFlow: its version, whether it is a CUDA build (and
for which CUDA and cuDNN), the GPUs it lists, and a matmul on GPU:0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import docker
import requests
from docker.errors import APIError
from docker.types import DeviceRequest

from launch.containers import gpu_refusal

PROBE_TIMEOUT_S = 180
PROBE_MARK = "doctor-probe "
# What TensorFlow says about itself, run in this Python or in the GPU image: the same code either way.
PROBE = r"""
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
build = tf.sysconfig.get_build_info()
gpus = tf.config.list_physical_devices("GPU")
facts = {"version": tf.__version__, "cuda_build": bool(build.get("is_cuda_build")),
         "cuda": build.get("cuda_version", ""), "cudnn": build.get("cudnn_version", ""),
         "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
         "matmul": ""}
if gpus:
    try:
        with tf.device("/GPU:0"):
            x = tf.random.uniform((1024, 1024))
            facts["matmul"] = "ok %.1f" % float(tf.reduce_sum(tf.linalg.matmul(x, x)))
    except Exception as exc:
        facts["matmul"] = "failed: " + (str(exc).strip().splitlines() or ["?"])[0][:200]
print("doctor-probe " + json.dumps(facts))
"""


@dataclass(frozen=True)
class TensorFlowFacts:
    where: str  # "this Python" or the image's tag
    facts: dict = field(default_factory=dict)  # PROBE's output; empty when it did not run
    problem: str = ""


def probe_in_image(client: docker.DockerClient, tag: str) -> TensorFlowFacts:
    """PROBE in a short container of `tag` with every GPU, as `fab train --gpu` asks for them."""
    container = None
    try:
        container = client.containers.create(
            tag, ["-c", PROBE], entrypoint="python", network_mode="none",
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])])
        container.start()
        status = container.wait(timeout=PROBE_TIMEOUT_S)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    except APIError as exc:
        reason = (exc.explanation or str(exc)).strip()
        return TensorFlowFacts(tag, problem=gpu_refusal(reason) or f"the container did not run: {reason}")
    except requests.exceptions.RequestException:  # wait()'s timeout
        return TensorFlowFacts(tag, problem=f"TensorFlow did not answer within {PROBE_TIMEOUT_S} s in {tag}")
    finally:
        if container is not None:
            container.remove(force=True)
    return _parsed_probe(tag, output, status)


def probe_here() -> TensorFlowFacts:
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return TensorFlowFacts("this Python", problem=f"TensorFlow did not start in {PROBE_TIMEOUT_S} s")
    return _parsed_probe("this Python", proc.stdout + proc.stderr, proc.returncode)


def _parsed_probe(where: str, output: str, status: int) -> TensorFlowFacts:
    for line in output.splitlines():
        if line.startswith(PROBE_MARK):
            return TensorFlowFacts(where, json.loads(line[len(PROBE_MARK):]))
    last = (output.strip().splitlines() or [f"exit status {status}"])[-1]
    return TensorFlowFacts(where, problem=f"TensorFlow did not load: {last[:200]}")
