"""Scoring speed of a package: items per second through the model alone
(encoded inputs, a large batch), and through the whole raw-row path.

    python bench/bench_score.py [--rows 1000000] [--batch 65536]

The seed's production ranker scored 600K items/s; this says how close
deep_v1 comes on this machine's CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from common import dataset, save

from trainer import import_tensorflow_quietly

SEED_RANKER_ITEMS_PER_SECOND = 600_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    args = parser.parse_args()
    import_tensorflow_quietly()
    from trainer.data.dataset import load_dataset
    from trainer.package.loader import load_package
    from trainer.run import TrainRequest, train

    path = str(dataset(args.rows))
    with tempfile.TemporaryDirectory() as output:
        # A real package: deep_v1, one epoch on a fifth of the rows (its speed, not its AUC, matters here).
        environ = {**os.environ, "TRAINER_EPOCHS": "1", "TRAINER_SUBSAMPLE": "0.2"}
        result = train(TrainRequest("deep_v1", path, output, environ=environ), out=sys.stderr)
        package = load_package(result.package_uri)
    frame, _ = load_dataset(path, package.config, with_label=False)

    started = time.perf_counter()
    inputs = package.preprocessor.encode(frame)
    encode_s = time.perf_counter() - started
    package.model.predict({k: v[: args.batch] for k, v in inputs.items()}, batch_size=args.batch, verbose=0)
    started = time.perf_counter()
    package.model.predict(inputs, batch_size=args.batch, verbose=0)
    model_s = time.perf_counter() - started

    model_rate = len(frame) / model_s
    print(f"model only: {model_rate:,.0f} items/s at batch {args.batch:,} "
          f"({model_rate / SEED_RANKER_ITEMS_PER_SECOND:.0%} of the seed's 600K items/s)")
    print(f"raw rows (encode + model): {len(frame) / (encode_s + model_s):,.0f} items/s")
    save("score", {
        "rows": len(frame), "batch": args.batch, "cpu_cores": os.cpu_count(),
        "model_items_per_second": round(model_rate),
        "raw_rows_items_per_second": round(len(frame) / (encode_s + model_s)),
        "encode_s": round(encode_s, 2), "model_s": round(model_s, 2),
        "fraction_of_seed_600k": round(model_rate / SEED_RANKER_ITEMS_PER_SECOND, 3),
    })


if __name__ == "__main__":
    main()
