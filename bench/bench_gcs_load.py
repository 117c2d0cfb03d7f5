"""A sharded dataset in Cloud Storage to one DataFrame (`load_dataset`), against download_as_bytes + pandas.

    python bench/bench_gcs_load.py [--rows 1000000] [--shards 8]

The generated dataset (1M rows, 317 MB) is cut into BigQuery-named shards and
uploaded to a gcp-storage-emulator started here (in memory, on a free port):
the real google-cloud-storage client, no network in the way, so what is
measured is the client and the parsing. Each loader runs in a fresh
interpreter so its peak memory is its own:

- trainer (cold): `load_dataset("gs://.../part-*.json")` with an empty cache:
  stream each shard to disk, then pyarrow's reader;
- trainer (cached): the same again, as a re-run finds it;
- baseline: `blob.download_as_bytes()` + `pandas.read_json(lines=True)` per shard.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_load import MEASURE  # the same timing and memory snippet
from common import dataset, run_isolated, save

BUCKET = "bench"
PATTERN = f"gs://{BUCKET}/ctr/part-*.json"

TRAINER = ("from trainer.config import NetConfig\nfrom trainer.data.dataset import load_dataset",
           f"frame, _ = load_dataset({PATTERN!r}, NetConfig())\nrows = len(frame)")
LOADERS = {
    "trainer load_dataset (cold cache)": TRAINER,
    "trainer load_dataset (cached)": TRAINER,
    "download_as_bytes + pandas.read_json": (
        "import io\nimport pandas as pd\nfrom google.cloud import storage",
        f"client = storage.Client()\n"
        f"blobs = [b for b in client.list_blobs({BUCKET!r}, prefix='ctr/part-')]\n"
        f"frame = pd.concat([pd.read_json(io.BytesIO(b.download_as_bytes()), lines=True) for b in blobs],"
        f" ignore_index=True)\nrows = len(frame)",
    ),
}


def start_emulator() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emulator = Path(sys.executable).parent / "gcp-storage-emulator"
    process = subprocess.Popen([str(emulator), "start", "--port", str(port), "--default-bucket", BUCKET,
                                "--in-memory", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gcp-storage-emulator did not start")


def upload_shards(path: Path, shards: int, folder: Path) -> int:
    """Cut the file into `shards` pieces at line boundaries and upload each; returns the bytes uploaded."""
    from trainer.data import storage

    lines = path.read_bytes().splitlines(keepends=True)
    per_shard = -(-len(lines) // shards)
    for index in range(shards):
        shard = folder / f"part-{index:012d}.json"
        shard.write_bytes(b"".join(lines[index * per_shard:(index + 1) * per_shard]))
        storage.publish(shard, PATTERN.replace("*", f"{index:012d}"))
        shard.unlink()
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    path = dataset(args.rows)
    process, url = start_emulator()
    try:
        with tempfile.TemporaryDirectory() as folder:
            # Every interpreter started below inherits these: the emulator, and an empty cache.
            os.environ.update({"STORAGE_EMULATOR_HOST": url, "XDG_CACHE_HOME": str(Path(folder) / "cache")})
            size_mb = upload_shards(path, args.shards, Path(folder)) / 2**20
            results = {}
            for name, (imports, load) in LOADERS.items():
                code = "import sys; sys.path.insert(0, 'bench')\n" + MEASURE.format(imports=imports, load=load)
                results[name] = run_isolated(code)
                print(f"{name:<40} {results[name]['seconds']:6.2f} s  peak +{results[name]['peak_growth_mb']:7.0f} MB")
    finally:
        process.kill()
        process.wait()
    baseline = results["download_as_bytes + pandas.read_json"]
    cold, cached = results["trainer load_dataset (cold cache)"], results["trainer load_dataset (cached)"]
    save("gcs_load", {
        "rows": args.rows,
        "shards": args.shards,
        "data_mb": round(size_mb, 1),
        "loaders": results,
        "speedup_cold": round(baseline["seconds"] / cold["seconds"], 2),
        "speedup_cached": round(baseline["seconds"] / cached["seconds"], 2),
        "cold_mb_per_s": round(size_mb / cold["seconds"], 1),
        "peak_growth_over_data_size": round(cold["peak_growth_mb"] / size_mb, 2),
        "baseline_peak_growth_over_data_size": round(baseline["peak_growth_mb"] / size_mb, 2),
    })


if __name__ == "__main__":
    main()
