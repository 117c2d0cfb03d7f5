"""One epoch of deep_v1 at 1M, 5M and 20M generated rows: does memory or speed grow with the data?

    python bench/bench_scale.py [--rows 1000000,5000000,20000000] [--data-dir DIR] [--keep-data]
                                [--baseline-ref REF [--epochs 3] [--seeds 1,2,3,4,5]]

The datasets are generated (`trainer.data.synthetic.writer.generate`, as
`fab generate_data`; seed 0) into `--data-dir`, outside the repository, and
deleted at the end; `--keep-data` keeps them and reuses those already there.

Each size trains one epoch through the project's own entry point,
`python -m trainer train --variant deep_v1`, in a fresh process
(TRAINER_EPOCHS=1, its package and work folder in a temporary folder, and a
temporary XDG_CACHE_HOME so that no cache of an earlier run is reused: the
load is a first run's). Every size trains the same model: `--max-categories`
(7,000, which the 1M dataset fills) caps the item table, which would
otherwise grow with the rows (more ids pass min_category_count) and slow each
step whatever the data path does. Per size it prints, from the package the run wrote:

- load (the parse), fit-pass and encode seconds: the manifest's
  `stage_seconds` "load", "preprocess" and "encode" (every stage is in the
  results file; "encode" is absent before the streamed path);
- steady examples/s: metrics.csv's `examples_per_second`, the training rows
  over the epoch's training seconds, which leave out the step's compile time
  (`trainer.training.metrics.split_compile_seconds` estimates it from the
  steady calls of the same epoch; where it cannot, compile is NaN and the
  rate includes it). Over several epochs, the median of the epochs';
- peak RSS of the training process alone, in GB and as a multiple of the
  dataset file's size: `os.wait4`'s rusage of that child (its maximum
  resident set, TensorFlow's threads included).

The ratios are against the smallest size in the same run. `goal:` says
whether the largest size's peak RSS is at most `RSS_GOAL` times the smallest's
and its examples/s at least `SPEED_GOAL` times; the last line is
`scale: 20M rows peak RSS X GB (Y x 1M's), examples/s Z (W x 1M's)`.

`--baseline-ref REF` also trains the smallest size for `--epochs` epochs
with the code of git ref REF (checked out in a temporary `git worktree`,
removed afterwards) and with the current code, once per `seed` of `--seeds`
(the two codes taking turns to go first), all split by `event_time` (a random
split differs between the two codes; a time split is the same rows). Per seed
it prints both packages' validation AUC (of the packaged weights, from the
manifest; early stopping off, so both train every epoch) and steady
examples/s; then the mean AUC difference with its standard error, and the
median speed ratio. One seed cannot tell: the initial weights and the shuffle
move this AUC by as much as the tolerance. The current code should be within
`AUC_TOLERANCE` on average and at least `SPEED_GOAL` times as fast (issue 23:
the streamed path against the in-memory one of 35213e9).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
from common import ROOT, save, worktree

from trainer.data.synthetic.writer import generate

DEFAULT_ROWS = "1000000,5000000,20000000"
DEFAULT_SEEDS = "1,2,3,4,5"
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "trainer-bench-scale"
VARIANT = "deep_v1"
RSS_GOAL = 1.2  # the largest size's peak RSS at most this times the smallest's
SPEED_GOAL = 0.9  # its steady examples/s at least this times the smallest's (and the current code's vs the ref's)
AUC_TOLERANCE = 0.002  # the current code's validation AUC within this of the ref's, at equal epochs
GB = 1024**3


def size_label(rows: int) -> str:
    """20000000 -> 20M, 400000 -> 400K, 1500000 -> 1.5M."""
    for unit, scale in (("M", 1_000_000), ("K", 1_000)):
        if rows >= scale:
            return f"{rows / scale:g}{unit}"
    return str(rows)


def dataset_file(rows: int, folder: Path, keep: bool) -> tuple[Path, float | None]:
    """The generated dataset of `rows` rows and the seconds generating it took (None when reused)."""
    path = folder / f"ctr_{size_label(rows)}.json"
    if keep and path.exists():
        print(f"reusing {path} ({path.stat().st_size / GB:.2f} GB)", flush=True)
        return path, None
    started = time.perf_counter()
    generate(rows, path, seed=0)
    seconds = time.perf_counter() - started
    print(f"generated {rows:,} rows ({path.stat().st_size / GB:.2f} GB) in {seconds:.1f} s", flush=True)
    return path, seconds


def train_once(code: Path, dataset: Path, epochs: int, keys: dict[str, str] | None = None) -> dict[str, Any]:
    """Train `epochs` epochs of VARIANT with the code at `code` in a fresh process (config `keys` as
    TRAINER_* variables); what it used and wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-run-", dir=dataset.parent) as scratch:
        output = Path(scratch) / "runs"
        env = {name: value for name, value in os.environ.items() if not name.startswith("TRAINER_")}
        env.update(PYTHONPATH=str(code), XDG_CACHE_HOME=str(Path(scratch) / "cache"),
                   TRAINER_EPOCHS=str(epochs), TRAINER_EARLY_STOPPING_PATIENCE="0")
        env.update({f"TRAINER_{key.upper()}": value for key, value in (keys or {}).items()})
        command = [sys.executable, "-m", "trainer", "train", "--variant", VARIANT,
                   "--dataset", str(dataset), "--output", str(output)]
        started = time.perf_counter()
        status, max_rss_kb, log = run_measured(command, code, env)
        run = {"wall_seconds": round(time.perf_counter() - started, 1), "peak_rss_gb": round(max_rss_kb * 1024 / GB, 3),
               "peak_rss_x_file": round(max_rss_kb * 1024 / dataset.stat().st_size, 2)}
        if status:
            return run | {"failed": describe_status(status), "log_tail": log[-20:]}
        return run | package_figures(next(output.glob("*.zip")))


def run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, int, list[str]]:
    """Run `command`, echoing its output; its exit code, its peak RSS in KB (os.wait4's rusage of this
    child alone) and its output lines."""
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    with child.stdout:
        for line in child.stdout:
            print(f"    {line}", end="", flush=True)
            lines.append(line.rstrip("\n"))
    _, wait_status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here: Popen must not wait again
    return child.returncode, usage.ru_maxrss, lines


def describe_status(code: int) -> str:
    if code < 0:  # killed: SIGKILL is most likely the kernel's out-of-memory killer
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def package_figures(package: Path) -> dict[str, Any]:
    """Stage seconds, steady examples/s and validation AUC, from the package's manifest and metrics.csv."""
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        epochs = pd.read_csv(io.BytesIO(archive.read("metrics.csv")))
    stages = manifest["stage_seconds"]
    rates = epochs["examples_per_second"].tolist()
    return {"load_seconds": stages.get("load"), "fit_pass_seconds": stages.get("preprocess"),
            "encode_seconds": stages.get("encode"),
            "stage_seconds": stages, "examples_per_second": round(statistics.median(rates)),
            "examples_per_second_per_epoch": [round(rate) for rate in rates],
            "compile_seconds_per_epoch": [round(s, 2) for s in epochs["compile_seconds"]],
            "validation_auc": round(manifest["validation_metrics"]["auc"], 5)}


def size_line(label: str, run: dict[str, Any]) -> str:
    memory = f"peak RSS {run['peak_rss_gb']:.2f} GB ({run['peak_rss_x_file']:.2f} x the file)"
    if "failed" in run:
        return f"{label} rows: FAILED ({run['failed']}) after {run['wall_seconds']} s, {memory}"
    return (f"{label} rows: load {seconds(run['load_seconds'])}, fit pass {seconds(run['fit_pass_seconds'])}, "
            f"encode {seconds(run.get('encode_seconds'))}, steady {run['examples_per_second']:,} examples/s, {memory}")


def seconds(value: float | None) -> str:
    # A stage the run did not record under that name (the results file holds every stage it did).
    return "unknown" if value is None else f"{value:.1f} s"


# A random split was a seeded permutation of the rows (35213e9) and is a hash of each row now: other
# validation rows, whose AUC differs by more than the tolerance from noise alone. A time split is the same.
SAME_SPLIT = {"split_time_column": "event_time"}


def compare_with_ref(ref: str, dataset: Path, label: str, epochs: int, seeds: list[int]) -> dict[str, Any]:
    """The smallest size trained `epochs` epochs by the ref's code and by the current code, once per seed in
    `seeds`, both split by time (SAME_SPLIT): the one split both codes make alike, so both validate on the
    same rows. The two codes take turns going first, so that a machine slowing down mid-bench weighs on both."""
    pairs = []
    with worktree(ref, dataset.parent) as ref_code:
        for turn, seed in enumerate(seeds):
            codes = [(ref, ref_code), ("current", ROOT)]
            runs = {}
            for name, code in codes if turn % 2 == 0 else codes[::-1]:
                print(f"{label} rows, {epochs} epochs, seed {seed}, with {name}'s code:", flush=True)
                runs[name] = train_once(code, dataset, epochs, SAME_SPLIT | {"seed": str(seed)})
            before, now = runs[ref], runs["current"]
            pairs.append({"seed": seed, "ref_run": before, "current_run": now} | pair_figures(before, now))
    result = {"ref": ref, "rows": label, "epochs": epochs, "seeds": pairs}
    if all("auc_difference" in pair for pair in pairs):
        result.update(seed_summary(pairs))
    return result


def pair_figures(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The current code's validation AUC minus the ref's, and its examples/s over the ref's, for one seed."""
    if "failed" in before or "failed" in now:
        return {}
    return {"auc_difference": round(now["validation_auc"] - before["validation_auc"], 5),
            "speed_ratio": round(now["examples_per_second"] / before["examples_per_second"], 3)}


def seed_summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds: the mean AUC difference with its standard error (a seed's shuffle and initial weights
    move the AUC by about the tolerance, so one seed cannot tell), and the median speed ratio."""
    differences = [pair["auc_difference"] for pair in pairs]
    mean = statistics.fmean(differences)
    error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else float("nan")
    speed = statistics.median(pair["speed_ratio"] for pair in pairs)
    return {"auc_difference": round(mean, 5), "auc_difference_standard_error": round(error, 5),
            "speed_ratio": round(speed, 3), "met": abs(mean) <= AUC_TOLERANCE and speed >= SPEED_GOAL}


def ref_lines(result: dict[str, Any]) -> list[str]:
    lines = [seed_line(result, pair) for pair in result["seeds"]]
    if "met" in result:
        count, auc, speed = len(result["seeds"]), result["auc_difference"], result["speed_ratio"]
        lines.append(f"against {result['ref']} over {count} seed{'s' * (count > 1)}: AUC {auc:+.4f} on average "
                     f"(standard error {result['auc_difference_standard_error']:.4f}; within {AUC_TOLERANCE}: "
                     f"{yes(abs(auc) <= AUC_TOLERANCE)}), examples/s {speed:.2f}x, the median "
                     f"(>= {SPEED_GOAL}: {yes(speed >= SPEED_GOAL)})")
    return lines


def seed_line(result: dict[str, Any], pair: dict[str, Any]) -> str:
    line = (f"{result['rows']} rows, {result['epochs']} epochs, seed {pair['seed']}: {result['ref']} "
            f"{run_figures(pair['ref_run'])}; current {run_figures(pair['current_run'])}")
    if "auc_difference" in pair:
        line += f"; AUC {pair['auc_difference']:+.4f}, examples/s {pair['speed_ratio']:.2f}x"
    return line


def run_figures(run: dict[str, Any]) -> str:
    if "failed" in run:
        return f"FAILED ({run['failed']})"
    return f"validation AUC {run['validation_auc']:.4f}, steady {run['examples_per_second']:,} examples/s"


def yes(condition: bool) -> str:
    return "yes" if condition else "no"


def goal_lines(small: str, large: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    """The `goal:` line and the last `scale:` line: the largest size against the smallest."""
    first, last = runs[small], runs[large]
    rss = last["peak_rss_gb"] / first["peak_rss_gb"]
    if "failed" in first or "failed" in last:
        return [f"goal: not met ({large}: {last.get('failed', 'ran')}, {small}: {first.get('failed', 'ran')})",
                f"scale: {large} rows peak RSS {last['peak_rss_gb']:.2f} GB ({rss:.2f} x {small}'s), "
                f"examples/s none (a run failed)"]
    speed = last["examples_per_second"] / first["examples_per_second"]
    met = rss <= RSS_GOAL and speed >= SPEED_GOAL
    return [f"goal: {'met' if met else 'not met'}: peak RSS {rss:.2f}x {small}'s (<= {RSS_GOAL}: "
            f"{yes(rss <= RSS_GOAL)}), examples/s {speed:.2f}x (>= {SPEED_GOAL}: {yes(speed >= SPEED_GOAL)})",
            f"scale: {large} rows peak RSS {last['peak_rss_gb']:.2f} GB ({rss:.2f} x {small}'s), "
            f"examples/s {last['examples_per_second']:,} ({speed:.2f} x {small}'s)"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated sizes (default {DEFAULT_ROWS})")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"where the datasets go, outside the repository (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--keep-data", action="store_true", help="keep the datasets, and reuse those already there")
    parser.add_argument("--baseline-ref", default="", help="also compare the smallest size against this git ref")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the --baseline-ref comparison")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS,
                        help=f"the --baseline-ref pairs' `seed` values (default {DEFAULT_SEEDS})")
    parser.add_argument("--max-categories", type=int, default=7000,
                        help="max_categories of every size's run, so the model is the same size at each "
                             "(default 7000: the 1M dataset fills it); 0 keeps the default config")
    args = parser.parse_args()
    args.rows = sorted({int(rows) for rows in args.rows.split(",")})
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.data_dir = args.data_dir.resolve()
    if args.data_dir.is_relative_to(ROOT):
        parser.error(f"--data-dir must be outside the repository ({ROOT}): the datasets take gigabytes")
    return args


def same_model(max_categories: int) -> dict[str, str]:
    """The config that keeps the model the same size at every size: more rows bring more categorical
    values past min_category_count (about 7,100 item ids at 1M rows, ten times more at 20M), and a larger
    embedding table is a slower step, whatever the data path. 0: the defaults."""
    return {"max_categories": str(max_categories)} if max_categories else {}


def main() -> None:
    args = parse_arguments()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    labels = [size_label(rows) for rows in args.rows]
    runs: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {"variant": VARIANT, "cpu_cores": os.cpu_count(), "sizes": runs}
    files = []
    try:
        for rows, label in zip(args.rows, labels, strict=True):
            dataset, generated_seconds = dataset_file(rows, args.data_dir, args.keep_data)
            files.append(dataset)
            print(f"{label} rows, one epoch:", flush=True)
            runs[label] = {"rows": rows, "file_gb": round(dataset.stat().st_size / GB, 3),
                           "generate_seconds": None if generated_seconds is None else round(generated_seconds, 1),
                           **train_once(ROOT, dataset, epochs=1, keys=same_model(args.max_categories))}
            print(size_line(label, runs[label]), flush=True)
            if args.baseline_ref and rows == args.rows[0]:
                result["baseline"] = compare_with_ref(args.baseline_ref, dataset, label, args.epochs, args.seeds)
    finally:
        if not args.keep_data:
            for path in files:
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # only when nothing else is there
                args.data_dir.rmdir()
    save("scale", result)
    for label in labels:
        print(size_line(label, runs[label]))
    if "baseline" in result:
        print("\n".join(ref_lines(result["baseline"])))
    print("\n".join(goal_lines(labels[0], labels[-1], runs)))


if __name__ == "__main__":
    main()
