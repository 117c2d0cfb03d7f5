"""Serving speed and parity: raw NDJSON rows through the package's serving
export, end to end, against the current path and the model alone.

    python bench/bench_serving.py [--variant deep_v1] [--train-rows 200000] [--score-rows 1000000] [--rounds 3]

Arms, in paired rounds of one run (these machines are noisy; compare ratios):
- raw rows: what `fab score` does once the package is loaded: the NDJSON file
  streamed block by block through the SavedModel, the drift profile and the
  score lines written (parsing, tokenizing, lookups and the model all counted);
- current path: `load_dataset` of the same file into one DataFrame, the
  encoder on the whole frame (`encode_frame`, as a package without an export
  scores) and Keras `predict`;
- model only: Keras `predict` on the already-encoded arrays (every row through
  the whole model);
- parse only: the NDJSON file streamed into Arrow blocks, nothing else;
- export only: the SavedModel on the blocks' columns already parsed
  (encoding and model in the graph, the title tower once per distinct title).
Raw rows do at least the work of parse only and export only, so their CPU
time, spread perfectly over the cores, bounds what raw rows can reach here:
the line `bound:` says how far, and what the 600K items/s goal leaves.
First, the parity check: the export's scores on the test split of the generated
`--train-rows` dataset against the Keras model fed by the same encoder, and the
served test AUC against the manifest's.
Last line: `serving: raw rows N items/s, current path M items/s, model only K items/s`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import dataset, dense_shapes, flops_per_example, matmul_peak, save

from trainer import import_tensorflow_quietly

GOAL_ITEMS_PER_SECOND = 600_000
MODEL_BATCH = 65_536


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="deep_v1", help="the shipped variant to train and score")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import_tensorflow_quietly()

    with tempfile.TemporaryDirectory() as output:
        package_uri = trained_package(args.variant, str(dataset(args.train_rows)), output)
        parity = test_split_parity(package_uri)
        print(f"parity: max |export - keras| = {parity['max_abs_difference']:.2e} on the "
              f"{parity['rows']:,} test rows of {args.train_rows:,}; served test auc {parity['served_auc']:.6f}, "
              f"the manifest's {parity['manifest_auc']:.6f}", flush=True)
        rates = timed_arms(package_uri, dataset(args.score_rows), args.rounds, Path(output))
        floor = matmul_floor(package_uri)
    name = "serving" if args.variant == "deep_v1" else f"serving_{args.variant}"
    save(name, {"variant": args.variant, "train_rows": args.train_rows, "score_rows": args.score_rows,
                "rounds": args.rounds, "cpu_cores": os.cpu_count(), "parity": parity, **rates,
                "matmul_floor": floor})
    raw, current, model = (rates[arm]["median"] for arm in ("raw_rows", "current_path", "model_only"))
    print(bound_line(rates, raw))
    print(floor_line(floor, rates["parse_only"]["cpu_seconds_per_million"]))
    print(f"raw rows reach {raw / GOAL_ITEMS_PER_SECOND:.0%} of the {GOAL_ITEMS_PER_SECOND:,} items/s goal; "
          f"{raw / current:.2f}x the current path")
    print(f"serving: raw rows {raw:,.0f} items/s, current path {current:,.0f} items/s, model only {model:,.0f} items/s")


def bound_line(rates: dict[str, Any], raw: float) -> str:
    """What parsing and the export alone cost in CPU time, spread perfectly over every core."""
    cores = os.cpu_count() or 1
    parse, export = (rates[arm]["cpu_seconds_per_million"] for arm in ("parse_only", "export_only"))
    bound = cores * 1e6 / (parse + export)
    goal_budget = cores * 1e6 / GOAL_ITEMS_PER_SECOND
    return (f"bound: per 1M rows parsing alone takes {parse:.2f} CPU-s and the export alone {export:.2f} CPU-s; "
            f"on {cores} cores busy all the time that is at most {bound:,.0f} items/s, and raw rows reach "
            f"{raw / bound:.0%} of it ({GOAL_ITEMS_PER_SECOND:,} items/s leaves {goal_budget:.2f} CPU-s per 1M rows)")


def matmul_floor(package_uri: str) -> dict[str, float]:
    """The model's Dense matmuls alone at this machine's float32 matmul peak, in CPU-seconds per 1M rows:
    no scoring in float32 can take less."""
    from trainer.package.loader import load_package

    shapes = dense_shapes(load_package(package_uri).model)
    peak = matmul_peak(shapes, MODEL_BATCH)["best_gflops"]
    flops = flops_per_example(shapes, training=False)
    return {"flops_per_row": flops, "peak_gflops": peak,
            "cpu_seconds_per_million": flops * 1e6 / (peak * 1e9) * (os.cpu_count() or 1)}


def floor_line(floor: dict[str, float], parse: float) -> str:
    cores = os.cpu_count() or 1
    matmuls = floor["cpu_seconds_per_million"]
    return (f"floor: the model's matmuls alone ({floor['flops_per_row']:,.0f} FLOP per row) at this machine's "
            f"float32 matmul peak ({floor['peak_gflops']:.0f} GFLOP/s) take {matmuls:.2f} CPU-s per 1M rows; with "
            f"parsing, {parse + matmuls:.2f} CPU-s: no more than {cores * 1e6 / (parse + matmuls):,.0f} items/s "
            f"on {cores} cores, whatever the rest costs")


def trained_package(variant: str, path: str, output: str) -> str:
    """The variant as defined, two epochs: a real package (its speed and parity matter here, not its AUC)."""
    from trainer.run import TrainRequest, train

    environ = {**os.environ, "TRAINER_EPOCHS": "2"}
    return train(TrainRequest(variant, path, output, environ=environ), out=sys.stderr).package_uri


def test_split_parity(package_uri: str) -> dict[str, Any]:
    """The export's scores on the package's own test split against the Keras model fed by the encoder (no
    title needs spaCy's own tokens in the generated data), and the served test AUC against the manifest's."""
    from trainer.data.parsed import parse_dataset
    from trainer.data.splits import plan_splits, split_frame
    from trainer.data.values import ColumnRoles
    from trainer.package.loader import load_package
    from trainer.serving.encoding import RawRowEncoder, encode_frame
    from trainer.training.arrays import predict
    from trainer.training.metrics import binary_metrics

    package = load_package(package_uri)
    parsed = parse_dataset(_source(package_uri), package.config)  # the training run's cache
    test = split_frame(parsed, plan_splits(parsed, package.config), "test",
                       ColumnRoles.of(package.config, with_label=True))
    served = package.score_frame(test)
    difference = np.abs(served - predict(package.model, encode_frame(RawRowEncoder(package.preprocessor, {}), test)))
    served_auc = binary_metrics(test[package.config.label_column].to_numpy(), served)["auc"]
    return {"rows": len(test), "max_abs_difference": float(difference.max()), "served_auc": served_auc,
            "manifest_auc": package.manifest["test_metrics"]["auc"]}


def _source(package_uri: str) -> str:
    import json
    import zipfile

    from trainer.package.layout import DATASET_FILE

    with zipfile.ZipFile(package_uri) as archive:
        return json.loads(archive.read(DATASET_FILE))["source"]


def timed_arms(package_uri: str, score_path: Path, rounds: int, folder: Path) -> dict[str, Any]:
    from trainer.data.dataset import load_dataset
    from trainer.data.ndjson import stream_file
    from trainer.data.values import ColumnRoles
    from trainer.package.loader import load_package
    from trainer.serving.contract import Profile
    from trainer.serving.encoding import RawRowEncoder, encode_frame
    from trainer.serving.scoring import SCORE_BLOCK_BYTES, score_stream, serving_columns

    package = load_package(package_uri)
    roles = ColumnRoles.of(package.config, with_label=False)
    config = dataclasses.replace(package.config, subsample=1.0)
    frame, _ = load_dataset(str(score_path), config, with_label=False)
    rows, encoded = len(frame), encode_frame(RawRowEncoder(package.preprocessor, {}), frame)
    del frame
    parsed = [serving_columns(package.serving, block) for block in stream_file(score_path, roles, SCORE_BLOCK_BYTES)]

    def raw_rows() -> None:
        with (folder / "scores.json").open("wb") as lines:
            score_stream(package.serving, str(score_path), roles, Profile(package.contract), lines.write)

    def current_path() -> None:
        loaded, _ = load_dataset(str(score_path), config, with_label=False)
        inputs = encode_frame(RawRowEncoder(package.preprocessor, {}), loaded)
        package.model.predict(inputs, batch_size=MODEL_BATCH, verbose=0)

    def model_only() -> None:
        package.model.predict(encoded, batch_size=MODEL_BATCH, verbose=0)

    def parse_only() -> None:  # on one thread, as the scorer parses
        for _ in stream_file(score_path, roles, SCORE_BLOCK_BYTES, use_threads=False):
            pass

    def export_only() -> None:
        for columns in parsed:
            package.serving(columns)

    arms = {"raw_rows": raw_rows, "current_path": current_path, "model_only": model_only, "parse_only": parse_only,
            "export_only": export_only}
    for arm in arms.values():  # warm-up: tracing, the tokenizer's cache, the page cache
        arm()
    wall: dict[str, list[float]] = {name: [] for name in arms}
    cpu: dict[str, list[float]] = {name: [] for name in arms}
    for round_number in range(rounds):
        for name, arm in arms.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            arm()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
        print(f"round {round_number + 1}: " + ", ".join(f"{n} {rows / s[-1]:,.0f} items/s"
                                                       for n, s in wall.items()), flush=True)
    return {name: {"median": rows / statistics.median(s), "best": rows / min(s), "worst": rows / max(s),
                   "cpu_seconds_per_million": statistics.median(cpu[name]) * 1e6 / rows}
            for name, s in wall.items()} | {"rows": rows}


if __name__ == "__main__":
    main()
