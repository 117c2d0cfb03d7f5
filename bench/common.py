"""Shared helpers of the benchmarks: the generated datasets, peak memory in a
fresh process, and one results file per benchmark under bench/results/.

Benchmarks report ratios against a baseline measured in the same run: these
machines are noisy, so absolute seconds from different runs do not compare.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def save(name: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
