"""deep_v1 training throughput on 1M rows against a naive baseline, same run.

    python bench/bench_train.py [--rows 1000000] [--epochs 4] [--networks linear_v1,deep_v1,dcn_v1]
    python bench/bench_train.py --levers [--rounds 2]

Baseline: the same Keras model, `model.fit` on numpy arrays, batch 1024,
default Adam, default compile options. Ours: `build_model_graph` with the
config defaults (auto batch size, XLA, several steps per call). Both train
the same epochs on the same split; the validation AUC after each epoch shows
whether speed cost quality (ours may trail the baseline by AUC_TOLERANCE at
most, at every epoch). `--networks` adds a quality table:
each network's best test AUC with the default config (early stopping on).

Each arm's speed is the median and range of its steady epochs (every epoch
after the first, which compiles), so `--epochs` is at least 4. Beside it: the
model's Dense FLOPs per training example (`common.flops_per_example`), the
GFLOP/s that makes, and this run's `tf.matmul` peak at the model's Dense
shapes, through oneDNN and through XLA, at our batch size and at 8192
(`PEAK_BATCHES`), whichever is higher.

`--levers` instead trains each speed lever of `LEVERS` (one change from our
default each) in paired rounds, and prints per lever its steady examples/s, its
GFLOP/s as a fraction of the matmul peak at its own precision, and its best
validation AUC in the same epochs beside the default's: a lever that moves
the AUC by more than `AUC_TOLERANCE` is not a speed-up.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from common import dataset, dense_shapes, flops_per_example, in_memory, matmul_peak, prepared, save, steady_summary

from trainer import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402

from trainer.config import NetConfig, resolve_config  # noqa: E402
from trainer.networks import build_model_graph, get_network  # noqa: E402
from trainer.networks import compile as network_compile  # noqa: E402
from trainer.training.batches import StreamedBatches  # noqa: E402
from trainer.training.callbacks import EpochEvaluation  # noqa: E402
from trainer.training.fit import effective_batch_size  # noqa: E402

MIN_EPOCHS = 4  # epoch 1 compiles; a median and range need 3 steady epochs after it
AUC_TOLERANCE = 0.002  # the most a speed lever may move the validation AUC at equal epochs


PEAK_BATCHES = (8192,)  # the peak is also measured here, where the matmuls run fastest; the higher one counts


@dataclasses.dataclass(frozen=True)
class Lever:
    """One change from the default training step."""

    name: str
    xla: bool = True
    precision: str = "float32"  # a Keras dtype policy: mixed_bfloat16 keeps float32 master weights
    steps_per_call: int = network_compile.STEPS_PER_EXECUTION
    batch_size: int = 0  # 0 = the automatic batch size
    learning_rate_factor: float = 1.0


LEVERS = (
    Lever(f"default: float32, XLA, {network_compile.STEPS_PER_EXECUTION} steps per call, automatic batch"),
    Lever("32 steps per call", steps_per_call=32),
    Lever("batch 8192 (the cap before)", batch_size=8192),
    Lever("batch 8192, learning rate x2", batch_size=8192, learning_rate_factor=2.0),
    Lever("oneDNN matmuls (XLA off)", xla=False),
    Lever("bfloat16 through oneDNN (XLA off)", xla=False, precision="mixed_bfloat16"),
    Lever("bfloat16 under XLA", precision="mixed_bfloat16"),
)


class EpochClock(keras.callbacks.Callback):
    """Training seconds of each epoch, stopped before any evaluation starts."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.test_auc: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._started = time.perf_counter()

    def on_test_begin(self, logs=None) -> None:  # Keras' own validation (the baseline)
        self.seconds.append(time.perf_counter() - self._started)

    def on_epoch_end(self, epoch, logs=None) -> None:  # runs before EpochEvaluation (ours)
        if len(self.seconds) == epoch:
            self.seconds.append(time.perf_counter() - self._started)


def fit(model: keras.Model, data: dict, batches: int | StreamedBatches, epochs: int, evaluation: list) -> dict:
    """Fit with the given evaluation callbacks; the held-out AUC is read after them.
    `batches`: a batch size over the arrays (the baseline), or the pipeline's epoch-shuffled batches."""
    clock = EpochClock()
    read_auc = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: clock.test_auc.append(
        round(logs["val_auc"], 4)))
    validation = {} if evaluation else {"validation_data": (data["test_x"], data["test_y"]),
                                         "validation_batch_size": 16384}
    keras.utils.set_random_seed(0)
    arrays = {"x": data["train_x"], "y": data["train_y"], "batch_size": batches} if isinstance(batches, int) \
        else {"x": batches.dataset, "shuffle": False}
    model.fit(**arrays, epochs=epochs, verbose=0, callbacks=[clock, *evaluation, read_auc], **validation)
    batch_size = batches if isinstance(batches, int) else batches.batch_size
    rows = len(data["train_y"])
    steady = steady_summary([rows / seconds for seconds in clock.seconds[1:]])
    flops = flops_per_example(dense_shapes(model), training=True)
    return {"batch_size": batch_size, "train_rows": rows, "epoch_train_seconds": [round(s, 2) for s in clock.seconds],
            "examples_per_second": steady["median"], "examples_per_second_range": steady["range"],
            "steady_epochs": steady["epochs"], "dense_shapes": dense_shapes(model), "flops_per_example": flops,
            "gflops": round(steady["median"] * flops / 1e9, 1),
            "gflops_range": [round(rate * flops / 1e9, 1) for rate in steady["range"]],
            "test_auc_per_epoch": clock.test_auc}


def naive_baseline(config: NetConfig, shapes, data: dict, epochs: int) -> dict:
    keras.utils.set_random_seed(config.seed)
    model = get_network(config.network)(config, shapes)
    model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return fit(model, data, batches=1024, epochs=epochs, evaluation=[])


def ours(config: NetConfig, shapes, data: dict, epochs: int) -> dict:
    """The pipeline's own fit: batches shuffled by (seed, epoch), per-epoch evaluation outside the step."""
    keras.utils.set_random_seed(config.seed)
    model = build_model_graph(config, shapes)
    train = data["train"]
    batches = StreamedBatches(train, effective_batch_size(config, len(train)), config.seed, config.shuffle_buffer_rows)
    evaluation = [batches, EpochEvaluation(data["train_sample"], data["test"])]
    return fit(model, data, batches, epochs, evaluation)


def prepare(path: Path, config: NetConfig) -> tuple[object, dict]:
    """The dataset as `fab train` prepares it (`common.prepared`); the baseline gets the same encoded
    rows as whole numpy arrays."""
    fitted, splits = prepared(path, config)
    # "test_*" here is the validation split, the one the pipeline evaluates every epoch.
    data = {"train": splits["train"], "test": splits["validation"]}
    train, test = in_memory(data["train"]), in_memory(data["test"])
    data |= {"train_x": train.inputs, "train_y": train.labels, "test_x": test.inputs, "test_y": test.labels}
    data["train_sample"] = data["train"].sample(len(test), config.seed, data["train"].folder.with_name("sample"))
    return fitted.fitted.preprocessor.shapes(), data


def quality(networks: list[str], shapes, data: dict, max_epochs: int = 6) -> dict:
    """Best test AUC of each network with the default config and early stopping."""
    table = {}
    for network in networks:
        config = resolve_config(network, environ={}).config
        keras.utils.set_random_seed(config.seed)
        model = build_model_graph(config, shapes)
        evaluation = EpochEvaluation(data["train_sample"], data["test"])
        stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2, restore_best_weights=True)
        history = model.fit(data["train_x"], data["train_y"], epochs=max_epochs, verbose=0,
                            batch_size=effective_batch_size(config, len(data["train_y"])),
                            callbacks=[evaluation, stop])
        table[network] = {"best_test_auc": round(max(history.history["val_auc"]), 4),
                          "epochs_run": len(history.history["val_auc"])}
        print(f"{network:<10} best test AUC {table[network]['best_test_auc']}")
    return table


@contextlib.contextmanager
def pulled(lever: Lever) -> Iterator[NetConfig]:
    """The default config with the lever applied, its precision and steps per call set while it trains."""
    config = resolve_config("deep_v1", environ={}).config
    config = dataclasses.replace(config, xla=lever.xla, batch_size=lever.batch_size,
                                 learning_rate=config.learning_rate * lever.learning_rate_factor)
    keras.mixed_precision.set_global_policy(lever.precision)
    network_compile.STEPS_PER_EXECUTION = lever.steps_per_call  # read when the model is compiled
    try:
        yield config
    finally:
        keras.mixed_precision.set_global_policy("float32")
        network_compile.STEPS_PER_EXECUTION = LEVERS[0].steps_per_call


def compare_levers(shapes, data: dict, epochs: int, rounds: int) -> dict:
    """Every lever trained `rounds` times, interleaved, so that the machine's noise falls on all alike."""
    runs: dict[str, list[dict]] = {lever.name: [] for lever in LEVERS}
    for _ in range(rounds):
        for lever in LEVERS:
            with pulled(lever) as config:
                runs[lever.name].append(ours(config, shapes, data, epochs))
    shapes_of_dense, batch = runs[LEVERS[0].name][0]["dense_shapes"], runs[LEVERS[0].name][0]["batch_size"]
    peaks = {precision: best_matmul_peak(shapes_of_dense, batch, dtype=precision.removeprefix("mixed_"))
             for precision in {"float32", "mixed_bfloat16"}}
    default_auc = max(runs[LEVERS[0].name][0]["test_auc_per_epoch"])
    return {lever.name: lever_summary(lever, runs[lever.name], peaks[lever.precision], default_auc)
            for lever in LEVERS}


def best_matmul_peak(shapes, batch: int, dtype: str = "float32") -> dict:
    """The matmul peak at the training batch and at PEAK_BATCHES: the highest is the bar."""
    peaks = [matmul_peak(shapes, size, dtype=dtype) | {"batch": size} for size in sorted({batch, *PEAK_BATCHES})]
    return max(peaks, key=lambda peak: peak["best_gflops"])


def lever_summary(lever: Lever, runs: list[dict], peak: dict, default_auc: float) -> dict:
    rates = [rate for run in runs for rate in steady_rates(run)]
    flops = runs[0]["flops_per_example"]
    median = statistics.median(rates)
    auc = max(runs[0]["test_auc_per_epoch"])  # what early stopping would keep from these epochs
    return {"examples_per_second": round(median), "examples_per_second_range": [round(min(rates)), round(max(rates))],
            "steady_epochs": len(rates), "gflops": round(median * flops / 1e9, 1), "matmul_peak": peak,
            "fraction_of_matmul_peak": round(median * flops / 1e9 / peak["best_gflops"], 3),
            "validation_auc": auc, "auc_difference": round(auc - default_auc, 4),
            "auc_unchanged": abs(auc - default_auc) <= AUC_TOLERANCE, "precision": lever.precision}


def steady_rates(run: dict) -> list[float]:
    return [run["train_rows"] / seconds for seconds in run["epoch_train_seconds"][1:]]


def print_levers(table: dict) -> None:
    default = table[LEVERS[0].name]["examples_per_second"]
    for name, lever in table.items():
        low, high = lever["examples_per_second_range"]
        auc = "AUC unchanged" if lever["auc_unchanged"] else f"AUC moved past {AUC_TOLERANCE}"
        print(f"lever {name}: {lever['examples_per_second']:,} examples/s ({low:,}-{high:,}; "
              f"{lever['examples_per_second'] / default:.2f}x the default), {lever['gflops']} GFLOP/s = "
              f"{lever['fraction_of_matmul_peak']:.0%} of the {lever['precision'].removeprefix('mixed_')} matmul peak; "
              f"best validation AUC {lever['validation_auc']} ({lever['auc_difference']:+.4f}, {auc})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=MIN_EPOCHS, help=f"at least {MIN_EPOCHS}")
    parser.add_argument("--networks", default="", help="comma-separated networks for the quality table")
    parser.add_argument("--levers", action="store_true", help="compare the speed levers instead")
    parser.add_argument("--rounds", type=int, default=2, help="paired rounds of --levers")
    args = parser.parse_args()
    if args.epochs < MIN_EPOCHS:
        parser.error(f"--epochs must be at least {MIN_EPOCHS}: epoch 1 compiles, and the median needs 3 steady epochs")
    config = resolve_config("deep_v1", environ={}).config
    shapes, data = prepare(dataset(args.rows), config)
    if args.levers:
        table = compare_levers(shapes, data, args.epochs, args.rounds)
        save("train_levers", {"rows": args.rows, "epochs": args.epochs, "rounds": args.rounds, "levers": table})
        print_levers(table)
        return
    baseline = naive_baseline(config, shapes, data, args.epochs)
    print(f"baseline: {baseline}")
    fast = ours(config, shapes, data, args.epochs)
    print(f"ours:     {fast}")
    peak = best_matmul_peak(fast["dense_shapes"], fast["batch_size"])
    auc_gap = [round(ours_auc - naive, 4) for ours_auc, naive in zip(fast["test_auc_per_epoch"],
                                                                   baseline["test_auc_per_epoch"], strict=True)]
    result = {"rows": args.rows, "train_rows": len(data["train_y"]), "epochs": args.epochs,
              "cpu_cores": os.cpu_count(), "baseline": baseline, "ours": fast, "matmul_peak": peak,
              "fraction_of_matmul_peak": round(fast["gflops"] / peak["best_gflops"], 3),
              "speedup": round(fast["examples_per_second"] / baseline["examples_per_second"], 2),
              "validation_auc_minus_baseline": auc_gap}
    if args.networks:
        result["quality"] = quality(args.networks.split(","), shapes, data)
    save("train", result)
    for name, arm in (("baseline", baseline), ("ours", fast)):
        print(speed_line(name, arm))
    unchanged = all(gap >= -AUC_TOLERANCE for gap in auc_gap)
    print(f"validation AUC, ours minus the baseline at equal epochs: {auc_gap} "
          f"({'never' if unchanged else 'not always'} more than {AUC_TOLERANCE} lower)")
    print(f"matmul peak at deep_v1's Dense shapes, batch {peak['batch']:,}: oneDNN {peak['oneDNN_gflops']} "
          f"GFLOP/s, XLA {peak['xla_gflops']} GFLOP/s; ours reaches "
          f"{result['fraction_of_matmul_peak']:.0%} of the best")


def speed_line(name: str, arm: dict) -> str:
    low, high = arm["examples_per_second_range"]
    return (f"{name + ':':<9} {arm['examples_per_second']:,} examples/s (median of {arm['steady_epochs']} steady "
            f"epochs; {low:,}-{high:,}), {arm['gflops']} GFLOP/s at {arm['flops_per_example']:,} FLOP per example")


if __name__ == "__main__":
    main()
