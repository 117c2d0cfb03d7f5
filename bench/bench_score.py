"""Scoring speed of a package: items per second through the model alone
(encoded inputs, a large batch), and through the whole raw-row path.

    python bench/bench_score.py [--rows 1000000] [--batch 65536]

The seed's production ranker scored 600K items/s; this says how close
deep_v1 comes on this machine's CPUs. Every row of the file is scored (the
package itself is trained on a fifth of them, quickly). Beside the rate: the
model's Dense FLOPs per scored example (forward only, `common`), the GFLOP/s
that makes, and this run's `tf.matmul` peak at the model's Dense shapes and
the scoring batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from typing import Any

from common import dataset, dense_shapes, flops_per_example, matmul_peak, save

from trainer import import_tensorflow_quietly

SEED_RANKER_ITEMS_PER_SECOND = 600_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    args = parser.parse_args()
    import_tensorflow_quietly()
    from trainer.data.dataset import load_dataset

    path = str(dataset(args.rows))
    package = trained_package(path)
    # The package's config keeps its subsample (0.2); scoring reads every row of the file.
    frame, _ = load_dataset(path, dataclasses.replace(package.config, subsample=1.0), with_label=False)
    encode_s, model_s = scoring_seconds(package, frame, args.batch)
    result = figures(package.model, len(frame), args.batch, encode_s, model_s)
    save("score", {"rows": len(frame), "batch": args.batch, "cpu_cores": os.cpu_count(), **result})
    batch, peak = min(args.batch, len(frame)), result["matmul_peak"]
    print(f"scored all {len(frame):,} rows of {path}")
    print(f"model only: {result['model_items_per_second']:,} items/s at batch {args.batch:,} "
          f"({result['fraction_of_seed_600k']:.0%} of the seed's 600K items/s), "
          f"{result['gflops']} GFLOP/s at {result['flops_per_example']:,} FLOP per item")
    print(f"raw rows (encode + model): {result['raw_rows_items_per_second']:,} items/s")
    print(f"matmul peak at the model's Dense shapes, batch {batch:,}: oneDNN {peak['oneDNN_gflops']} GFLOP/s, "
          f"XLA {peak['xla_gflops']} GFLOP/s; scoring reaches {result['fraction_of_matmul_peak']:.0%} of the best")


def trained_package(path: str) -> Any:
    """A real package: deep_v1, one epoch on a fifth of the rows (its speed, not its AUC, matters here)."""
    from trainer.package.loader import load_package
    from trainer.run import TrainRequest, train

    with tempfile.TemporaryDirectory() as output:
        environ = {**os.environ, "TRAINER_EPOCHS": "1", "TRAINER_SUBSAMPLE": "0.2"}
        result = train(TrainRequest("deep_v1", path, output, environ=environ), out=sys.stderr)
        return load_package(result.package_uri)


def scoring_seconds(package: Any, frame: Any, batch: int) -> tuple[float, float]:
    """Seconds to encode the raw rows, and for the model to score them (the second of two passes)."""
    from trainer.serving.encoding import RawRowEncoder, encode_frame

    started = time.perf_counter()
    inputs = encode_frame(RawRowEncoder(package.preprocessor, {}), frame)
    encode_s = time.perf_counter() - started
    # A whole warm-up pass: the last, smaller batch is a shape of its own, traced on first use.
    package.model.predict(inputs, batch_size=batch, verbose=0)
    started = time.perf_counter()
    package.model.predict(inputs, batch_size=batch, verbose=0)
    return encode_s, time.perf_counter() - started


def figures(model: Any, rows: int, batch: int, encode_s: float, model_s: float) -> dict[str, Any]:
    """Rates, the Dense FLOPs per item (forward), the GFLOP/s they make and the matmul peak at the scoring batch."""
    model_rate = rows / model_s
    shapes = dense_shapes(model)
    flops = flops_per_example(shapes, training=False)
    gflops = model_rate * flops / 1e9
    peak = matmul_peak(shapes, min(batch, rows))
    return {
        "model_items_per_second": round(model_rate),
        "raw_rows_items_per_second": round(rows / (encode_s + model_s)),
        "encode_s": round(encode_s, 2), "model_s": round(model_s, 2),
        "fraction_of_seed_600k": round(model_rate / SEED_RANKER_ITEMS_PER_SECOND, 3),
        "dense_shapes": shapes, "flops_per_example": flops, "gflops": round(gflops, 1), "matmul_peak": peak,
        "fraction_of_matmul_peak": round(gflops / peak["best_gflops"], 3),
    }


if __name__ == "__main__":
    main()
