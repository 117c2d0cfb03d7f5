"""Serving speed and parity: raw NDJSON rows through the package's serving
export, end to end, against the current path and the model alone.

    python bench/bench_serving.py [--train-rows 200000] [--score-rows 1000000] [--rounds 3]

Arms, in paired rounds of one run (these machines are noisy; compare ratios):
- raw rows: what `fab score` does once the package is loaded: the NDJSON file
  streamed block by block through the SavedModel, the drift profile and the
  score lines written (parsing, tokenizing, lookups and the model all counted);
- current path: `load_dataset` of the same file, `Preprocessor.encode` and
  Keras `predict` (what `--engine keras` does);
- model only: Keras `predict` on the already-encoded arrays;
- parse only: the NDJSON file streamed into Arrow blocks, nothing else.
Parse only and model only each use both cores, so one after the other they
bound what raw rows can reach here: the line `bound:` says how far.
First, the parity check the issue asks for: the export's scores against the
Keras path's on the test split of the generated `--train-rows` dataset.
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
from common import dataset, save

from trainer import import_tensorflow_quietly

GOAL_ITEMS_PER_SECOND = 600_000
MODEL_BATCH = 65_536


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import_tensorflow_quietly()

    with tempfile.TemporaryDirectory() as output:
        package_uri = trained_package(str(dataset(args.train_rows)), output)
        parity = test_split_parity(package_uri)
        print(f"parity: max |export - keras| = {parity['max_abs_difference']:.2e} on the "
              f"{parity['rows']:,} test rows of {args.train_rows:,}", flush=True)
        rates = timed_arms(package_uri, dataset(args.score_rows), args.rounds, Path(output))
    save("serving", {"train_rows": args.train_rows, "score_rows": args.score_rows, "rounds": args.rounds,
                     "cpu_cores": os.cpu_count(), "parity": parity, **rates})
    raw, current, model = (rates[arm]["median"] for arm in ("raw_rows", "current_path", "model_only"))
    parse = rates["parse_only"]["median"]
    bound = 1 / (1 / parse + 1 / model)
    print(f"bound: parsing alone {parse:,.0f} items/s and the model alone {model:,.0f} items/s, one after the "
          f"other at most {bound:,.0f} items/s on these {os.cpu_count()} cores; raw rows reach {raw / bound:.0%} of it")
    print(f"raw rows reach {raw / GOAL_ITEMS_PER_SECOND:.0%} of the {GOAL_ITEMS_PER_SECOND:,} items/s goal; "
          f"{raw / current:.2f}x the current path")
    print(f"serving: raw rows {raw:,.0f} items/s, current path {current:,.0f} items/s, model only {model:,.0f} items/s")


def trained_package(path: str, output: str) -> str:
    """deep_v1 as defined, two epochs: a real package (its speed and parity matter here, not its AUC)."""
    from trainer.run import TrainRequest, train

    environ = {**os.environ, "TRAINER_EPOCHS": "2"}
    return train(TrainRequest("deep_v1", path, output, environ=environ), out=sys.stderr).package_uri


def test_split_parity(package_uri: str) -> dict[str, Any]:
    """The export's scores against the Keras path's on the package's own test split."""
    from trainer.data.dataset import load_dataset
    from trainer.data.splits import split_dataset
    from trainer.package.loader import load_package

    package = load_package(package_uri)
    frame, _ = load_dataset(_source(package_uri), package.config)
    test = split_dataset(frame, package.config).test
    difference = np.abs(package.score(test) - package.score_with_keras(test).reshape(-1))
    return {"rows": len(test), "max_abs_difference": float(difference.max())}


def _source(package_uri: str) -> str:
    import json
    import zipfile

    with zipfile.ZipFile(package_uri) as archive:
        return json.loads(archive.read("dataset.json"))["source"]


def timed_arms(package_uri: str, score_path: Path, rounds: int, folder: Path) -> dict[str, Any]:
    from trainer.data.dataset import load_dataset
    from trainer.data.features import Preprocessor
    from trainer.data.ndjson import stream_file
    from trainer.data.values import ColumnRoles
    from trainer.package.loader import load_package
    from trainer.serving.contract import Profile
    from trainer.serving.scoring import SCORE_BLOCK_BYTES, score_stream

    package = load_package(package_uri)
    roles = ColumnRoles.of(package.config, with_label=False)
    config = dataclasses.replace(package.config, subsample=1.0)
    frame, _ = load_dataset(str(score_path), config, with_label=False)
    rows, encoded = len(frame), package.preprocessor.encode(frame)
    del frame

    def raw_rows() -> None:
        with (folder / "scores.json").open("wb") as lines:
            score_stream(package.serving, str(score_path), roles, Profile(package.contract), lines.write)

    def current_path() -> None:
        # A fresh Preprocessor, as `fab score --engine keras` has: none of the titles tokenized before.
        preprocessor = Preprocessor.from_json_dict(package.preprocessor.to_json_dict())
        loaded, _ = load_dataset(str(score_path), config, with_label=False)
        package.model.predict(preprocessor.encode(loaded), batch_size=MODEL_BATCH, verbose=0)

    def model_only() -> None:
        package.model.predict(encoded, batch_size=MODEL_BATCH, verbose=0)

    def parse_only() -> None:
        for _ in stream_file(score_path, roles, SCORE_BLOCK_BYTES):
            pass

    arms = {"raw_rows": raw_rows, "current_path": current_path, "model_only": model_only, "parse_only": parse_only}
    for arm in arms.values():  # warm-up: tracing, the tokenizer's cache, the page cache
        arm()
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for round_number in range(rounds):
        for name, arm in arms.items():
            started = time.perf_counter()
            arm()
            seconds[name].append(time.perf_counter() - started)
        print(f"round {round_number + 1}: " + ", ".join(f"{n} {rows / s[-1]:,.0f} items/s"
                                                       for n, s in seconds.items()), flush=True)
    return {name: {"median": rows / statistics.median(s), "best": rows / min(s), "worst": rows / max(s)}
            for name, s in seconds.items()} | {"rows": rows}


if __name__ == "__main__":
    main()
