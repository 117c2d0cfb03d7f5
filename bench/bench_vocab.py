"""Training speed against embedding-table size: a catalog of 1M+ item ids
against the default catalog, with LazyAdam and with Keras' Adam, in paired rounds.

    python bench/bench_vocab.py [--rows 2000000] [--items 5000000] [--rounds 2] [--epochs 3]

Two generated datasets of the same rows: the default catalog (200K items, the
item table capped at `max_categories`), and a uniform catalog of `--items`
items with every id kept (`min_category_count` 1, `max_categories` above the
count), so the item table has 1M+ rows. Each round trains deep_v1 through the
real pipeline (`trainer.run.train`) in four arms: LazyAdam and Keras' Adam on
each dataset, early stopping off. An arm's speed is the training examples per
second of its steady epochs (every epoch after the first, which compiles;
evaluation and compilation are not in the figure), median over rounds; beside
it, the packaged weights' validation AUC (the optimizers differ on rows a batch
does not touch, so the AUC says whether that costs quality).

Last line: `vocab: large tables N ex/s, default tables M ex/s, ratio R, keras adam on large tables K ex/s`
(N and M with LazyAdam; the goal is R >= 0.9).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from common import ROOT, save

from trainer import import_tensorflow_quietly
from trainer.package.layout import DATASET_FILE

EVERY_ID_KEPT = {"TRAINER_MIN_CATEGORY_COUNT": "1", "TRAINER_MAX_CATEGORIES": "100000000"}
OPTIMIZERS = {"lazy_adam": "lazy_adam", "keras_adam": "adam"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--items", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import_tensorflow_quietly()
    datasets = {"default": (generated(args.rows, None), {}),
                "large": (generated(args.rows, args.items), EVERY_ID_KEPT)}
    rates: dict[str, list[float]] = {}
    aucs: dict[str, list[float]] = {}
    tables: dict[str, int] = {}
    for round_number in range(args.rounds):
        for (table, (path, keys)), (optimizer, name) in _arms(datasets):
            arm = f"{optimizer} on {table} tables"
            steady, auc, tables[table] = trained_rates(path, {**keys, "TRAINER_OPTIMIZER": name}, args.epochs)
            rates.setdefault(arm, []).extend(steady)
            aucs.setdefault(arm, []).append(auc)
            print(f"round {round_number + 1}: {arm} ({tables[table]:,} item rows): "
                  f"{statistics.median(steady):,.0f} ex/s, validation auc {auc:.4f}", flush=True)
    summary = {arm: {"median": statistics.median(r), "min": min(r), "max": max(r)} for arm, r in rates.items()}
    save("vocab", {"rows": args.rows, "items": args.items, "rounds": args.rounds, "epochs": args.epochs,
                   "item_table_rows": tables, "examples_per_second": summary, "validation_auc": aucs,
                   "cpu_cores": os.cpu_count()})
    large, default = summary["lazy_adam on large tables"]["median"], summary["lazy_adam on default tables"]["median"]
    keras_large = summary["keras_adam on large tables"]["median"]
    keras_default = summary["keras_adam on default tables"]["median"]
    print(f"lazy_adam vs keras adam on default tables: {default / keras_default:.2f}x")
    print(f"vocab: large tables {large:,.0f} ex/s, default tables {default:,.0f} ex/s, ratio {large / default:.2f}, "
          f"keras adam on large tables {keras_large:,.0f} ex/s")


def _arms(datasets: dict[str, tuple[Path, dict[str, str]]]) -> list[tuple[Any, tuple[str, str]]]:
    return [(table, optimizer) for table in datasets.items() for optimizer in OPTIMIZERS.items()]


def generated(rows: int, items: int | None) -> Path:
    """A generated dataset under data/, made once: the default catalog, or `items` uniform ones."""
    from trainer.data.synthetic.world import Catalog
    from trainer.data.synthetic.writer import generate

    path = ROOT / "data" / (f"ctr_{rows // 1000}k.json" if items is None else
                            f"ctr_{rows // 1000}k_items_{items // 1000}k.json")
    if not path.exists():
        started = time.perf_counter()
        generate(rows, path, seed=3, **({} if items is None else {"catalog": Catalog(items=items, item_zipf=0.0)}))
        print(f"generated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def trained_rates(path: Path, keys: dict[str, str], epochs: int) -> tuple[list[float], float, int]:
    """The steady epochs' training examples/s of one run, its validation AUC and its item table's rows."""
    from trainer.run import TrainRequest, train

    environ = {**os.environ, **keys, "TRAINER_EPOCHS": str(epochs), "TRAINER_EARLY_STOPPING_PATIENCE": "0"}
    with tempfile.TemporaryDirectory() as output:
        result = train(TrainRequest("deep_v1", str(path), output, environ=environ), out=io.StringIO())
        with zipfile.ZipFile(result.package_uri) as archive:
            item_rows = json.loads(archive.read(DATASET_FILE))["categorical_cardinalities"]["item_id"]
    return result.epochs["examples_per_second"].iloc[1:].tolist(), result.validation_metrics["auc"], item_rows


if __name__ == "__main__":
    main()
