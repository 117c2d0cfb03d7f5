"""deep_v1 training throughput on 1M rows against a naive baseline, same run.

    python bench/bench_train.py [--rows 1000000] [--epochs 2] [--networks linear_v1,deep_v1,dcn_v1]

Baseline: the same Keras model, `model.fit` on numpy arrays, batch 1024,
default Adam, default compile options. Ours: `build_model_graph` with the
config defaults (auto batch size, scaled learning rate, XLA, several steps per
call). Both train the same epochs on the same split; the test AUC after each
epoch shows whether speed cost quality. `--networks` adds a quality table:
each network's best test AUC with the default config (early stopping on).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import dataset, save

from trainer import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402

from trainer.config import NetConfig, resolve_config  # noqa: E402
from trainer.data.dataset import load_dataset  # noqa: E402
from trainer.data.features import Preprocessor  # noqa: E402
from trainer.data.splits import split_dataset  # noqa: E402
from trainer.networks import build_model_graph, get_network  # noqa: E402
from trainer.training.arrays import SplitArrays  # noqa: E402
from trainer.training.batches import EpochShuffledBatches  # noqa: E402
from trainer.training.callbacks import EpochEvaluation  # noqa: E402
from trainer.training.fit import effective_batch_size  # noqa: E402


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


def fit(model: keras.Model, data: dict, batches: int | EpochShuffledBatches, epochs: int, evaluation: list) -> dict:
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
    steady = clock.seconds[1:] or clock.seconds
    return {"batch_size": batch_size, "epoch_train_seconds": [round(s, 2) for s in clock.seconds],
            "examples_per_second": round(rows / statistics.median(steady)),
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
    train = SplitArrays(data["train_x"], data["train_y"])
    batches = EpochShuffledBatches(train, effective_batch_size(config, len(train)), config.seed)
    evaluation = [batches, EpochEvaluation(train, SplitArrays(data["test_x"], data["test_y"]), config.seed)]
    return fit(model, data, batches, epochs, evaluation)


def prepare(path: str, config: NetConfig) -> tuple[object, dict]:
    frame, _ = load_dataset(path, config)
    # "test_*" here is the validation split, the one the pipeline evaluates every epoch.
    splits = split_dataset(frame, config)
    train, test = splits.train, splits.validation
    preprocessor = Preprocessor.fit(train, config)
    label = config.label_column
    data = {"train_x": preprocessor.encode(train), "train_y": train[label].to_numpy("float32").reshape(-1, 1),
            "test_x": preprocessor.encode(test), "test_y": test[label].to_numpy("float32").reshape(-1, 1)}
    return preprocessor.shapes(), data


def quality(networks: list[str], shapes, data: dict, max_epochs: int = 6) -> dict:
    """Best test AUC of each network with the default config and early stopping."""
    table = {}
    for network in networks:
        config = resolve_config(network, environ={}).config
        keras.utils.set_random_seed(config.seed)
        model = build_model_graph(config, shapes)
        evaluation = EpochEvaluation(SplitArrays(data["train_x"], data["train_y"]),
                                     SplitArrays(data["test_x"], data["test_y"]), config.seed)
        stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2, restore_best_weights=True)
        history = model.fit(data["train_x"], data["train_y"], epochs=max_epochs, verbose=0,
                            batch_size=effective_batch_size(config, len(data["train_y"])),
                            callbacks=[evaluation, stop])
        table[network] = {"best_test_auc": round(max(history.history["val_auc"]), 4),
                          "epochs_run": len(history.history["val_auc"])}
        print(f"{network:<10} best test AUC {table[network]['best_test_auc']}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--networks", default="", help="comma-separated networks for the quality table")
    args = parser.parse_args()
    config = resolve_config("deep_v1", environ={}).config
    shapes, data = prepare(str(dataset(args.rows)), config)
    baseline = naive_baseline(config, shapes, data, args.epochs)
    print(f"baseline: {baseline}")
    fast = ours(config, shapes, data, args.epochs)
    print(f"ours:     {fast}")
    result = {"rows": args.rows, "train_rows": len(data["train_y"]), "epochs": args.epochs,
              "cpu_cores": os.cpu_count(), "baseline": baseline, "ours": fast,
              "speedup": round(fast["examples_per_second"] / baseline["examples_per_second"], 2)}
    if args.networks:
        result["quality"] = quality(args.networks.split(","), shapes, data)
    save("train", result)


if __name__ == "__main__":
    main()
