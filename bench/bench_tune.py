"""Tuning on a generated 200K-row dataset, at a fixed budget of trials.

    python bench/bench_tune.py [--rows 200000] [--trials 16] [--epochs 6]

Three studies of deep_v1 over configs/search_space.json, each run by
`python -m trainer tune` worker processes sharing one SQLite study:

- random search, no pruning, 1 worker: the seed's baseline;
- TPE with median pruning, 1 worker;
- random search and TPE with median pruning again, each with 2 workers sharing
  the study: the wall time against 1 worker.

For each: the best test AUC after every finished trial (the curve), the
epochs actually trained (what pruning saves) and the wall time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import ROOT, dataset, save
from optuna.trial import TrialState

from trainer.tuning.study import DEFAULT_SPACE_FILE, define_study, study_spec


def run_study(name: str, data: Path, folder: Path, trials: int, epochs: int, sampler: str, pruner: str,
              workers: int) -> dict:
    url = f"sqlite:///{folder / 'studies.db'}"
    spec = study_spec("deep_v1", DEFAULT_SPACE_FILE, str(data), str(folder / name), trials, sampler, pruner,
                      {"TRAINER_EPOCHS": str(epochs)})
    define_study(name, spec, url)
    started = time.perf_counter()
    logs = [(folder / f"{name}-{i}.log").open("w") for i in range(workers)]
    processes = [subprocess.Popen([sys.executable, "-m", "trainer", "tune", "--study", name, "--storage", url],
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    if any(process.wait() for process in processes):
        raise RuntimeError(f"a worker of {name} failed; see {folder}")
    seconds = time.perf_counter() - started
    finished = [t for t in optuna.load_study(study_name=name, storage=url).get_trials()
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    finished.sort(key=lambda t: t.datetime_complete)
    best_so_far, best = [], 0.0
    for trial in finished:  # a pruned trial's value is its last epoch's, and it left no model
        if trial.state == TrialState.COMPLETE:
            best = max(best, trial.value)
        best_so_far.append(round(best, 4))
    return {
        "sampler": sampler, "pruner": pruner, "workers": workers, "wall_s": round(seconds, 1),
        "best_test_auc": best_so_far[-1], "best_after_each_trial": best_so_far,
        "pruned": sum(t.state == TrialState.PRUNED for t in finished),
        "epochs_trained": sum(len(t.intermediate_values) for t in finished),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    data = dataset(args.rows)
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        folder = Path(tmp)
        arms = {
            "random": run_study("random", data, folder, args.trials, args.epochs, "random", "none", 1),
            "tpe_median": run_study("tpe", data, folder, args.trials, args.epochs, "tpe", "median", 1),
            "random_2_workers": run_study("random2", data, folder, args.trials, args.epochs, "random", "none", 2),
            "tpe_median_2_workers": run_study("tpe2", data, folder, args.trials, args.epochs, "tpe", "median", 2),
        }
    for arm in arms.values():  # pruning and the sampled sizes change the work: seconds per epoch trained
        arm["s_per_epoch"] = round(arm["wall_s"] / arm["epochs_trained"], 2)
    save("tune", {"rows": args.rows, "trials": args.trials, "epochs": args.epochs, "arms": arms,
                  "speedup_2_workers_vs_1": {
                      "random": round(arms["random"]["wall_s"] / arms["random_2_workers"]["wall_s"], 2),
                      "tpe_median": round(arms["tpe_median"]["wall_s"] / arms["tpe_median_2_workers"]["wall_s"], 2),
                  }})


if __name__ == "__main__":
    main()
