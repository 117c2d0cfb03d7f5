"""The automatic batch size (`batch_size = 0`): today's rule against the candidate, same run.

    python bench/bench_batch.py [--sizes 2000,100000,1000000] [--networks linear_v1,deep_v1]
                                [--large-networks linear_v1,deep_v1] [--seeds 42,43] [--extra-steps 64,128]

Baseline: the rule before this benchmark, 1/16 of the training rows between
64 and 8192 (`old_rule`, 16 steps per epoch until the cap). Candidate: the
pipeline's `effective_batch_size` as the code stands. `--extra-steps S` adds
arms of clamp(train_rows // S, AUTO_BATCH_RANGE) to explore other floors on the steps
per epoch. Every arm trains with the default config of its network (8 epochs,
early stopping on validation AUC with patience 2 keeping the best weights,
learning rate 0.005), on the pipeline's own pieces: the same split, encoding,
compiled model, epoch-shuffled batches and per-epoch evaluation as
`fab train`, in-process, each dataset parsed, fitted and encoded once
(`common.prepared`). The test split is encoded with the others but never
scored. Arms whose batch sizes are equal are trained once and reported for
each rule.

2K is data/sample_2k.json (about 200 validation rows: its AUCs are noisy, `--seeds`
shows by how much); the other sizes are generated once (bench/common.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import statistics
import time
from pathlib import Path

from common import ROOT, dataset, prepared, save

from trainer import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from trainer.config import NetConfig, resolve_config  # noqa: E402
from trainer.networks import build_model_graph  # noqa: E402
from trainer.training.backup import ResumableEarlyStopping  # noqa: E402
from trainer.training.batches import StreamedBatches  # noqa: E402
from trainer.training.callbacks import EpochEvaluation  # noqa: E402
from trainer.training.encoded import EncodedSplit  # noqa: E402
from trainer.training.fit import AUTO_BATCH_RANGE, AUTO_BATCH_STEPS, effective_batch_size  # noqa: E402

SAMPLE = ROOT / "data" / "sample_2k.json"


def old_rule(train_rows: int) -> int:
    """The automatic batch size before this benchmark: 16 steps per epoch, 64 to 8192."""
    return max(64, min(8192, train_rows // 16))


def steps_rule(steps: int):
    low, high = AUTO_BATCH_RANGE
    return lambda train_rows: max(low, min(high, train_rows // steps))


class EpochClock(keras.callbacks.Callback):
    """Training seconds of each epoch, stopped before the epoch's evaluation starts (put it first)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def prepare(path: Path, config: NetConfig) -> tuple[object, EncodedSplit, EncodedSplit]:
    """Parse, split, fit and encode as `fab train` does (`common.prepared`); the test split is never read."""
    fitted, splits = prepared(path, config)
    return fitted.fitted.preprocessor.shapes(), splits["train"], splits["validation"]


def train_arm(config: NetConfig, shapes, train: EncodedSplit, validation: EncodedSplit, batch_size: int) -> dict:
    """fit_model's training (batches, evaluation, early stopping), without its files (backups, CSV, TensorBoard)."""
    keras.utils.set_random_seed(config.seed)
    model = build_model_graph(config, shapes)
    batches = StreamedBatches(train, batch_size, config.seed, config.shuffle_buffer_rows)
    train_sample = train.sample(len(validation), config.seed, train.folder.with_name("sample"))
    stopping = ResumableEarlyStopping(monitor="val_auc", mode="max", patience=config.early_stopping_patience,
                                      restore_best_weights=True)
    clock = EpochClock()
    started = time.perf_counter()
    history = model.fit(batches.dataset, epochs=config.epochs, shuffle=False, verbose=0,
                        callbacks=[batches, clock, EpochEvaluation(train_sample, validation), stopping])
    wall = time.perf_counter() - started
    aucs = [round(a, 4) for a in history.history["val_auc"]]
    best_epoch = int(np.argmax(aucs)) + 1
    steady = clock.seconds[1:] or clock.seconds  # the first epoch also compiles
    return {"batch_size": batch_size, "steps_per_epoch": batches.steps, "epochs_trained": len(aucs),
            "best_epoch": best_epoch, "best_validation_auc": max(aucs),
            "still_improving": best_epoch == len(aucs) == config.epochs,
            "train_seconds": round(sum(clock.seconds), 1), "fit_seconds": round(wall, 1),
            "examples_per_second": round(len(train) / statistics.median(steady)),
            "validation_auc_per_epoch": aucs}


def row(size: str, network: str, seed: int, rule: str, arm: dict, baseline: dict) -> str:
    delta = arm["best_validation_auc"] - baseline["best_validation_auc"]
    speed = arm["examples_per_second"] / baseline["examples_per_second"]
    return (f"| {size} | {network} | {seed} | {rule} | {arm['batch_size']} | {arm['steps_per_epoch']} | "
            f"{arm['epochs_trained']} | {arm['best_epoch']} | {arm['best_validation_auc']:.4f} ({delta:+.4f}) | "
            f"{'yes' if arm['still_improving'] else 'no'} | {arm['train_seconds']} | "
            f"{arm['examples_per_second']:,} ({speed:.2f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,100000,1000000", help="dataset rows; 2000 is data/sample_2k.json")
    parser.add_argument("--networks", default="linear_v1,deep_v1")
    parser.add_argument("--large-networks", default="linear_v1,deep_v1",
                        help="networks trained on sizes of 1M rows and more (they take longest)")
    parser.add_argument("--seeds", default="42", help="weight seeds (the split stays fixed); sizes of 1M rows "
                        "and more use the first only")
    parser.add_argument("--extra-steps", default="", help="comma-separated steps-per-epoch floors to add as arms")
    parser.add_argument("--name", default="batch", help="results file bench/results/<name>.json")
    args = parser.parse_args()
    low, high = AUTO_BATCH_RANGE
    rules = {"old: rows//16": old_rule,  # the baseline
             f"new: rows//{AUTO_BATCH_STEPS}, {low} to {high}": lambda rows: effective_batch_size(NetConfig(), rows)}
    rules.update({f"rows//{s}": steps_rule(int(s)) for s in filter(None, args.extra_steps.split(","))})
    seeds = [int(s) for s in args.seeds.split(",")]
    header = ("| rows | network | seed | rule | batch | steps/epoch | epochs | best epoch | best val AUC (vs old) | "
              "still improving | train s | examples/s (vs old) |\n|" + "---|" * 12)
    lines, results = [header], []
    started = time.perf_counter()
    for rows in (int(r) for r in args.sizes.split(",")):
        size = f"{rows // 1000}K" if rows < 1_000_000 else f"{rows // 1_000_000}M"
        path = SAMPLE if rows == 2000 else dataset(rows)
        base = resolve_config("deep_v1", environ={}).config
        prepared = time.perf_counter()
        shapes, train, validation = prepare(path, base)
        print(f"{size}: {len(train):,} train / {len(validation):,} validation rows, "
              f"prepared in {time.perf_counter() - prepared:.1f} s")
        networks = (args.large_networks if rows >= 1_000_000 else args.networks).split(",")
        for network in filter(None, networks):
            for seed in seeds[:1] if rows >= 1_000_000 else seeds:
                config = dataclasses.replace(resolve_config(network, environ={}).config, seed=seed)
                assert config.batch_size == 0 and config.epochs == 8 and config.early_stopping_patience == 2
                trained: dict[int, dict] = {}  # by batch size: equal batches train once
                arms = {}
                for rule, pick in rules.items():
                    batch = pick(len(train))
                    if batch not in trained:
                        trained[batch] = train_arm(config, shapes, train, validation, batch)
                    arms[rule] = trained[batch]
                    print(f"{size} {network} seed {seed} {rule}: {arms[rule]}", flush=True)
                baseline = arms["old: rows//16"]
                for rule, arm in arms.items():
                    lines.append(row(size, network, seed, rule, arm, baseline))
                results.append({"rows": rows, "train_rows": len(train), "validation_rows": len(validation),
                                "network": network, "seed": seed, "arms": arms})
                # Saved after every network: a long run stopped early keeps what it measured.
                with contextlib.redirect_stdout(io.StringIO()):
                    save(args.name, {"cpu_cores": os.cpu_count(), "partial": True, "rules": list(rules),
                                     "results": results, "table": "\n".join(lines)})
    table = "\n".join(lines)
    print(table)
    print(summary(results))
    save(args.name, {"cpu_cores": os.cpu_count(), "total_seconds": round(time.perf_counter() - started),
                     "rules": list(rules), "results": results, "table": table, "summary": summary(results)})


def summary(results: list[dict]) -> str:
    """One line per (size, network, rule): the seeds' mean best validation AUC and its spread."""
    lines = ["| rows | network | rule | batch | steps/epoch | seeds | best val AUC mean (min-max) | best epochs | "
             "still improving | examples/s (median) |", "|" + "---|" * 10]
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        for rule, arm in result["arms"].items():
            groups.setdefault((result["rows"], result["network"], rule), []).append(arm)
    for (rows, network, rule), arms in groups.items():
        aucs = [a["best_validation_auc"] for a in arms]
        lines.append(f"| {rows:,} | {network} | {rule} | {arms[0]['batch_size']} | {arms[0]['steps_per_epoch']} | "
                     f"{len(arms)} | {statistics.mean(aucs):.4f} ({min(aucs):.4f}-{max(aucs):.4f}) | "
                     f"{','.join(str(a['best_epoch']) for a in arms)} | "
                     f"{sum(a['still_improving'] for a in arms)}/{len(arms)} | "
                     f"{statistics.median(a['examples_per_second'] for a in arms):,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
