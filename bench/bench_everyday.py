"""The two everyday commands, `make train` and `fab test_sanity`, timed with the current code and with a ref's.

    python bench/bench_everyday.py --baseline-ref REF [--rounds 3]

Each round runs, in fresh processes and with each code in turn (the order alternates between rounds, so
that a machine slowing down weighs on both):

- `fab train --variant deep_v1 --local` (what `make train` runs): data/sample_2k.json, the embedded
  defaults;
- `fab test_sanity --local`: every variant for a few epochs on the same sample, in this process's
  Python (the image's run adds the container's start, the same for both codes).

The ref's code is checked out in a temporary `git worktree`. Every run gets its own output folder and an
empty XDG_CACHE_HOME, so each reads the data as a first run does (a rerun of the current code reuses its
parse cache and is faster). It prints each command's median wall seconds per code, each round's ratio
(current over ref: a pair run one after the other, while the machine's speed drifts by as much as 1.5x
over minutes) and their median, and the epochs the runs trained (early stopping ends each run on its own
data: a code that splits the sample otherwise may train more epochs). The goal (issue 23) is that the
current code is as fast: a median ratio of at most `SLOWER_AT_MOST`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import ROOT, save, worktree

COMMANDS = {
    "make train": ["train", "--variant", "deep_v1", "--local"],
    "fab test_sanity": ["test_sanity", "--local"],
}
SLOWER_AT_MOST = 1.1  # wall seconds at most this times the ref's: within these machines' run-to-run noise
FAB = "import sys; from launch.program import main; sys.argv[0] = 'fab'; sys.exit(main())"


def run_fab(code: Path, arguments: list[str], scratch: Path) -> tuple[float, int]:
    """Wall seconds of `fab ARGUMENTS` run with the code at `code`, in a fresh process, and the epochs its
    packages trained (early stopping ends a run on its own data: other splits, other epochs)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRAINER_")}
    env.update(PYTHONPATH=str(code), XDG_CACHE_HOME=str(scratch / "cache"))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FAB, *arguments, "--output", str(scratch / "runs")], cwd=code,
                          env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"fab {' '.join(arguments)} failed with {code}'s code (exit {done.returncode}):\n"
                 + done.stdout[-2000:] + done.stderr[-2000:])
    return seconds, sum(epochs_trained(package) for package in (scratch / "runs").rglob("*.zip"))


def epochs_trained(package: Path) -> int:
    with zipfile.ZipFile(package) as archive:
        return len(archive.read("metrics.csv").decode().strip().splitlines()) - 1  # less the header


def measure(ref: str, rounds: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, int]]]:
    """Per command, per code (the ref, "current"): the wall seconds of every round, and the epochs trained."""
    seconds: dict[str, dict[str, list[float]]] = {name: {ref: [], "current": []} for name in COMMANDS}
    epochs: dict[str, dict[str, int]] = {name: {} for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="bench-everyday-") as folder, worktree(ref, Path(folder)) as ref_code:
        codes = [(ref, ref_code), ("current", ROOT)]
        for round_number in range(rounds):
            for name, arguments in COMMANDS.items():
                for code_name, code in codes if round_number % 2 == 0 else codes[::-1]:
                    with tempfile.TemporaryDirectory(dir=folder) as scratch:
                        took, epochs[name][code_name] = run_fab(code, arguments, Path(scratch))
                    seconds[name][code_name].append(round(took, 1))
                    print(f"round {round_number + 1}: {name} with {code_name}'s code: {took:.1f} s, "
                          f"{epochs[name][code_name]} epochs", flush=True)
    return seconds, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-ref", required=True, help="the git ref whose code is the baseline")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command with each code")
    args = parser.parse_args()
    seconds, epochs = measure(args.baseline_ref, args.rounds)
    summary = {}
    for name, by_code in seconds.items():
        before, now = statistics.median(by_code[args.baseline_ref]), statistics.median(by_code["current"])
        paired = [round(b / a, 3) for a, b in zip(by_code[args.baseline_ref], by_code["current"], strict=True)]
        summary[name] = {"ref_median_seconds": before, "current_median_seconds": now, "round_ratios": paired,
                         "ratio": statistics.median(paired),
                         "ref_epochs": epochs[name][args.baseline_ref], "current_epochs": epochs[name]["current"]}
    save("everyday", {"ref": args.baseline_ref, "rounds": args.rounds, "cpu_cores": os.cpu_count(),
                      "seconds": seconds, "summary": summary})
    for name, figures in summary.items():
        ratio = figures["ratio"]
        rounds = ", ".join(f"{r:.2f}x" for r in figures["round_ratios"])
        print(f"{name}: {figures['current_median_seconds']:.1f} s vs {args.baseline_ref}'s "
              f"{figures['ref_median_seconds']:.1f} s, the medians of {args.rounds}; rounds {rounds}: {ratio:.2f}x "
              f"the median (at most {SLOWER_AT_MOST}x: {'yes' if ratio <= SLOWER_AT_MOST else 'no'}); epochs "
              f"trained {figures['current_epochs']} vs {figures['ref_epochs']}")


if __name__ == "__main__":
    main()
