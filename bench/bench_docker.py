"""The Docker image's costs: its size, the rebuild after a code-only change,
and the time from `fab train` to the first epoch in the container vs --local.

    python bench/bench_docker.py [--base-image local/python-base:bookworm] [--extra-ca FILE] [--repeats 3]

Needs a running engine (docker/local-engine.sh start). Baselines in the same
run: a rebuild with nothing changed, and the same training started --local.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import ROOT, save

FAB = str(Path(sys.executable).parent / "fab")
# A throwaway module: adding it is a code-only change to the image's last layers.
PROBE = ROOT / "trainer" / "_bench_code_change.py"
QUICK = {"TRAINER_EPOCHS": "1", "TRAINER_BATCH_SIZE": "256"}


def fab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([FAB, *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"fab {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def timed_build(build_args: list[str]) -> float:
    started = time.perf_counter()
    fab("build", *build_args)
    return time.perf_counter() - started


def code_change_rebuild(build_args: list[str]) -> float:
    PROBE.write_text(f"# {uuid.uuid4()}\n")
    try:
        return timed_build(build_args)
    finally:
        PROBE.unlink()


def seconds_to_first_epoch(train_args: list[str]) -> float:
    """From starting `fab train` to its first epoch line: start-up, loading and the first epoch."""
    started = time.perf_counter()
    with subprocess.Popen([FAB, "train", "--variant", "deep_v1", *train_args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, env={**os.environ, **QUICK}) as proc:
        for line in proc.stdout:
            if line.startswith("epoch 1/"):
                elapsed = time.perf_counter() - started
        if proc.wait():
            raise RuntimeError(f"fab train {' '.join(train_args)} failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-image", default="local/python-base:bookworm")
    parser.add_argument("--extra-ca", default="/etc/ssl/certs/ca-certificates.crt")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    build_args = ["--base-image", args.base_image, *(["--extra-ca", args.extra_ca] if args.extra_ca else [])]

    import docker

    timed_build(build_args)  # whatever the cache holds, the image is current from here on
    unchanged = [timed_build(build_args) for _ in range(args.repeats)]
    code_only = [code_change_rebuild(build_args) for _ in range(args.repeats)]
    timed_build(build_args)  # back to the committed code
    image = docker.from_env().images.get("trainer:cpu")

    output = ["--output", "/tmp/bench-docker-runs"]
    local, container = [], []
    for _ in range(args.repeats):  # interleaved, so drift on this noisy machine hits both alike
        local.append(seconds_to_first_epoch(["--local", *output]))
        container.append(seconds_to_first_epoch(output))
    save("docker", {
        "image_size_mb": round(image.attrs["Size"] / 1e6),
        "rebuild_unchanged_s": round(statistics.median(unchanged), 2),
        "rebuild_code_change_s": round(statistics.median(code_only), 2),
        "first_epoch_local_s": round(statistics.median(local), 2),
        "first_epoch_container_s": round(statistics.median(container), 2),
        "container_overhead_s": round(statistics.median(container) - statistics.median(local), 2),
    })


if __name__ == "__main__":
    main()
