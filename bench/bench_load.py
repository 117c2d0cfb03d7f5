"""Reading 1M rows of NDJSON, against pandas' default: into one DataFrame
(`load_dataset`, as `fab sanity` and the deploy gate read rows), and into the
parse cache training reads (`parse_dataset`, from an empty cache: the first
run's cost; later runs on the same bytes reuse it).

    python bench/bench_load.py [--rows 1000000]

Each loader runs in a fresh interpreter so its peak memory is its own.
Targets (issue 2): `load_dataset` at least 5x faster than
`pandas.read_json(lines=True)`, peak memory growth at most 2.5x the file's
size. The same rows gzipped (as BigQuery's EXPORT DATA ... compression='GZIP'
writes them) load in the same run, streamed: the gzip arm's time and memory
are reported against the plain file's.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

from common import dataset, run_isolated, save

MEASURE = """
import json, time
from common import peak_rss_mb, rss_mb
{imports}
before = rss_mb()
started = time.perf_counter()
{load}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "peak_growth_mb": peak_rss_mb() - before, "rows": rows}}))
"""

PARSE_ARM = "trainer.data.parsed.parse_dataset (empty cache)"
LOADERS = {
    "pandas.read_json(lines=True)": ("import pandas as pd", "rows = len(pd.read_json(PATH, lines=True))"),
    "trainer.data.dataset.load_dataset": (
        "from trainer.config import NetConfig\nfrom trainer.data.dataset import load_dataset",
        "frame, _ = load_dataset(PATH, NetConfig())\nrows = len(frame)",
    ),
    PARSE_ARM: (
        "import os\nfrom trainer.config import NetConfig\nfrom trainer.data.parsed import parse_dataset\n"
        "from trainer.data.storage import CACHE_HOME_VARIABLE\nos.environ[CACHE_HOME_VARIABLE] = CACHE_FOLDER",
        "rows = parse_dataset(PATH, NetConfig()).rows",
    ),
}


GZIP_ARM = "trainer load_dataset, the same rows gzipped"


def gzipped(path: Path) -> Path:
    """`path` gzipped beside it, made once."""
    target = path.with_name(path.name + ".gz")
    if not target.exists():
        with path.open("rb") as plain, gzip.open(target, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(plain, packed)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    path = dataset(args.rows)
    size_mb = path.stat().st_size / 2**20
    results = {}
    arms = [(name, imports, load, path) for name, (imports, load) in LOADERS.items()]
    arms.append((GZIP_ARM, *LOADERS["trainer.data.dataset.load_dataset"], gzipped(path)))
    with tempfile.TemporaryDirectory(prefix="bench-load-cache-") as cache:  # the parse arm's, removed after
        for name, imports, load, file in arms:
            code = "import sys; sys.path.insert(0, 'bench')\n" + MEASURE.format(
                imports=imports.replace("CACHE_FOLDER", repr(cache)), load=load.replace("PATH", repr(str(file)))
            )
            results[name] = run_isolated(code)
            print(f"{name:<50} {results[name]['seconds']:6.2f} s  peak +{results[name]['peak_growth_mb']:7.0f} MB")
    baseline, ours = results["pandas.read_json(lines=True)"], results["trainer.data.dataset.load_dataset"]
    packed = results[GZIP_ARM]
    save("load", {
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "loaders": results,
        "speedup": round(baseline["seconds"] / ours["seconds"], 2),
        "peak_growth_over_file_size": round(ours["peak_growth_mb"] / size_mb, 2),
        "baseline_peak_growth_over_file_size": round(baseline["peak_growth_mb"] / size_mb, 2),
        "gzip_file_mb": round(gzipped(path).stat().st_size / 2**20, 1),
        "gzip_seconds_over_plain": round(packed["seconds"] / ours["seconds"], 2),
        "gzip_peak_growth_over_plain": round(packed["peak_growth_mb"] / ours["peak_growth_mb"], 2),
        "parse_seconds_over_load": round(results[PARSE_ARM]["seconds"] / ours["seconds"], 2),
        "parse_peak_growth_over_file_size": round(results[PARSE_ARM]["peak_growth_mb"] / size_mb, 2),
    })


if __name__ == "__main__":
    main()
