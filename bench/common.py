"""Shared helpers of the benchmarks: the generated datasets, peak memory in a
fresh process, a model's FLOPs and the same run's matmul peak, and one results
file per benchmark under bench/results/.

Benchmarks report ratios against a baseline measured in the same run: these
machines are noisy, so absolute seconds from different runs do not compare.

FLOPs count the Dense layers' matmuls, from their kernel shapes: a Dense layer
of `in` inputs and `out` units does `2 * in * out` FLOPs per example forward
(one multiply and one add per weight). Training does 3 times that: the forward
matmul, and in the backward pass one for the gradient to the layer's inputs
and one for the gradient to its kernel, each as large. Embedding lookups,
activations, the loss and the optimizer's update are not counted (they are
memory-bound, not FLOPs), nor is the GRU of rnn_v1; so the count is a floor
for networks with other matmuls.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from trainer.config import NetConfig
    from trainer.training.arrays import SplitArrays
    from trainer.training.encoded import EncodedSplit
    from trainer.training.inputs import FittedData

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def dataset(rows: int, seed: int = 0) -> Path:
    """A generated dataset of `rows` rows under data/, made once and reused."""
    from trainer.data.synthetic.writer import generate

    path = ROOT / "data" / f"ctr_{rows // 1000}k.json"
    if not path.exists():
        started = time.perf_counter()
        generate(rows, path, seed=seed)
        print(f"generated {path.name} ({rows:,} rows) in {time.perf_counter() - started:.1f} s")
    return path


@functools.cache
def _encoded_root() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bench-encoded-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def prepared(path: Path, config: NetConfig) -> tuple[FittedData, dict[str, EncodedSplit]]:
    """A dataset as `fab train` prepares it: parsed (or found in the parse cache), split and fitted in one
    pass (`fit_pass`), every split encoded by the export's encoder (`encoded_splits`) into a temporary
    folder removed when the benchmark ends."""
    from trainer.data.parsed import parse_dataset
    from trainer.training.inputs import encoded_splits, fit_pass

    data = fit_pass(parse_dataset(str(path), config), config)
    return data, encoded_splits(data, config, _encoded_root() / path.name)


def in_memory(split: EncodedSplit) -> SplitArrays:
    """An encoded split's inputs and labels as whole arrays (a baseline's `model.fit` on numpy arrays)."""
    import numpy as np

    from trainer.training.arrays import SplitArrays

    blocks = list(split.blocks())
    inputs = {name: np.concatenate([block[name] for block, _ in blocks]) for name in split.specs}
    return SplitArrays(inputs, np.concatenate([labels for _, labels in blocks]))


def rss_mb() -> float:
    """Current resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(code: str) -> dict[str, Any]:
    """Run a snippet in a fresh interpreter; it prints one JSON object last."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"benchmark snippet failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def worktree(ref: str, folder: Path) -> Iterator[Path]:
    """The code of git ref `ref`, checked out in a temporary worktree under `folder`, removed afterwards:
    the baseline of a bench that compares the current code with an earlier commit's."""
    path = folder / f"code-{ref.replace('/', '_')}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def save(name: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


# --- FLOPs and the matmul peak ---------------------------------------------

TRAINING_FLOPS_FACTOR = 3  # forward, gradient to the inputs, gradient to the kernel


def dense_shapes(model: keras.Model) -> list[tuple[int, int]]:
    """(inputs, units) of every Dense layer of the model, nested models included, in layer order."""
    import keras

    shapes = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            shapes += dense_shapes(layer)
        elif isinstance(layer, keras.layers.Dense):
            inputs, units = layer.kernel.shape
            shapes.append((int(inputs), int(units)))
    return shapes


def flops_per_example(shapes: Sequence[tuple[int, int]], training: bool) -> int:
    """Dense FLOPs of one example: 2 * in * out per layer forward, 3 times that when training."""
    forward = sum(2 * inputs * units for inputs, units in shapes)
    return forward * (TRAINING_FLOPS_FACTOR if training else 1)


def matmul_peak(shapes: Sequence[tuple[int, int]], batch: int, seconds: float = 1.0,
                dtype: str = "float32") -> dict[str, float]:
    """GFLOP/s of `tf.matmul` at the model's Dense shapes ([batch, in] x [in, out], every layer in
    one tf.function), through TensorFlow's kernels (oneDNN on CPUs) and through XLA, and the best."""
    import tensorflow as tf

    inputs = [(tf.cast(tf.random.normal([batch, n]), dtype), tf.cast(tf.random.normal([n, units]), dtype))
              for n, units in shapes]
    flops = batch * flops_per_example(shapes, training=False)
    peak = {}
    for name, jit in (("oneDNN", False), ("xla", True)):
        matmuls = tf.function(_matmuls, jit_compile=jit)
        peak[f"{name}_gflops"] = round(flops / _best_call_seconds(functools.partial(matmuls, inputs), seconds) / 1e9, 1)
    return {**peak, "best_gflops": max(peak.values())}


def _matmuls(pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
    import tensorflow as tf

    return [tf.matmul(a, w) for a, w in pairs]


def _best_call_seconds(call: Callable[[], Any], seconds: float, rounds: int = 5) -> float:
    """The fastest per-call time of `rounds` rounds of about `seconds / rounds` each."""
    _finish(call())  # traces and compiles: not timed
    started = time.perf_counter()
    _finish(call())
    per_round = max(1, int(seconds / rounds / max(time.perf_counter() - started, 1e-6)))
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(per_round):
            _finish(call())
        times.append((time.perf_counter() - started) / per_round)
    return min(times)  # a peak: the round least disturbed by the machine's other work


def _finish(outputs: Sequence[Any]) -> None:
    # Reading one value of each output waits for the matmuls themselves, not just their dispatch.
    for output in outputs:
        output[0, 0].numpy()


def steady_summary(rates: Sequence[float]) -> dict[str, Any]:
    """Median and range of per-epoch rates (already without epoch 1, which compiles)."""
    return {"median": round(statistics.median(rates)), "range": [round(min(rates)), round(max(rates))],
            "epochs": len(rates)}
