"""The pipeline, stage by stage: what `python -m trainer train` does (`trainer.score` scores).

    resolve config -> parse the dataset (cached) -> one pass: each row's split (train, validation, test)
    and the preprocessing fitted -> encode every split to disk with the serving export's encoder
    -> build_model_graph -> fit, streaming the encoded blocks (validation picks the epoch)
    -> score test once -> package -> publish
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keras
import pandas as pd
import tensorflow as tf

from trainer.config import (
    DEFAULT_DATASET,
    DEFAULT_OUTPUT,
    DEFAULT_VARIANTS_FILE,
    NetConfig,
    ResolvedConfig,
    resolve_config,
)
from trainer.data import storage
from trainer.data.dataset import DatasetSource
from trainer.data.features import Preprocessor
from trainer.data.parsed import parse_dataset
from trainer.errors import ConfigError, RunAbandonedError, TrainingDivergedError
from trainer.networks import build_model_graph, get_network
from trainer.networks.compile import use_xla
from trainer.package.assemble import PackageContents, dataset_metadata, write_package
from trainer.package.loader import Package, load_package
from trainer.package.writer import write_json
from trainer.serving.export import raw_columns
from trainer.serving.tokenizer import Agreement
from trainer.training.callbacks import split_metrics
from trainer.training.encoded import EncodedSplit
from trainer.training.fit import (
    FitOutcome,
    WorkFolders,
    describe_device,
    effective_batch_size,
    fit_model,
    one_step_warning,
    split_cpu_for_tests,
    training_strategy,
)
from trainer.training.inputs import FittedData, encoded_splits, fit_pass
from trainer.training.metrics import RunMetrics, epoch_table
from trainer.training.tensorboard import (
    FinalMetrics,
    HParamValue,
    dataset_label,
    session_hparams,
    write_final_metrics,
    write_session_start,
)
from trainer.training.unfinished import RUN_FILE, read_run_record, run_record, unfinished_runs_note


@dataclass(frozen=True)
class TrainRequest:
    """What a user asks for; every field has the embedded default."""

    variant: str
    dataset: str = DEFAULT_DATASET
    output: str = DEFAULT_OUTPUT
    variants_file: Path = DEFAULT_VARIANTS_FILE
    environ: Mapping[str, str] | None = None  # None: the process environment
    overrides: Mapping[str, Any] | None = None  # typed values, above the environment (trainer.train's)
    require_gpu: bool = False
    # Tells apart runs of the same config on the same data (a tuning trial), and names the package.
    run_label: str = ""
    # More Keras callbacks, called after the run's own each epoch (a tuning trial reports and prunes).
    callbacks: tuple[keras.callbacks.Callback, ...] = ()


@dataclass
class TrainResult:
    package_uri: str
    run_id: str
    model: keras.Model
    preprocessor: Preprocessor
    epochs: pd.DataFrame
    best_epoch: int  # the epoch whose weights were packaged, from 1
    validation_metrics: dict[str, float]  # of the packaged weights: what early stopping and tuning read
    test_metrics: dict[str, float]  # of the packaged weights, scored once: the package's test metric

    @functools.cached_property
    def package(self) -> Package:
        """The published package, read back: it scores raw rows as `fab score` does."""
        return load_package(self.package_uri)


def train(request: TrainRequest, out: TextIO = sys.stdout) -> TrainResult:
    """Run the whole pipeline and publish one package; returns where it went."""
    resolved = _resolve(request)
    config = resolved.config
    split_cpu_for_tests()  # a test hook, before TensorFlow initialises its devices
    device = describe_device(request.require_gpu)
    strategy = training_strategy()  # None on one device: Keras' default path
    keras.utils.set_random_seed(config.seed)
    run_metrics = RunMetrics()
    print(f"variant {resolved.variant} (network {config.network}) on {device}", file=out)

    data = _prepare(request.dataset, config, run_metrics, out)
    preprocessor, train_rows = data.fitted.preprocessor, data.stats.rows("train")
    # The batch is per device: with N replicas each step takes N batches, one per device.
    batch_size = effective_batch_size(config, train_rows) * _replicas(strategy)
    print(f"{train_rows:,} train / {data.stats.rows('validation'):,} validation / {data.stats.rows('test'):,} test "
          f"rows, batch size {batch_size}" + ("" if config.batch_size else " (auto)")
          + (f", {batch_size // _replicas(strategy)} per device" if strategy else ""), file=out)
    if warning := one_step_warning(config, train_rows, batch_size):
        print(warning, file=out)
    source = data.parsed.source
    work, run_id = _work_folder(request, resolved, source, _replicas(strategy))
    with work.exclusive():
        if not request.run_label:  # a tuning study resumes its own trials' folders
            for note in unfinished_runs_note(work):
                print(note, file=out)
        write_session_start(work.tensorboard, run_id, _hparams(resolved, source))  # TensorBoard's HParams
        with run_metrics.stage("encode"):
            encoded = encoded_splits(data, config, work.encoded)  # what training and evaluation read
        run_metrics.count("rows_encoded", data.parsed.rows, run_metrics.stage_seconds["encode"])
        model, outcome = _fit_or_reuse(request, config, preprocessor, encoded, work, run_metrics, out, batch_size,
                                       run_id, strategy)
        print(f"scoring the weights of epoch {outcome.best_epoch} on validation and test ...", file=out, flush=True)
        with run_metrics.stage("evaluate"):
            validation_metrics = split_metrics(model, encoded["validation"])
            test_metrics = split_metrics(model, encoded["test"])  # the only time

        epochs = epoch_table(work.keras_csv)
        write_final_metrics(work.tensorboard, FinalMetrics(validation_metrics, test_metrics, outcome.best_epoch,
                                                           len(epochs)))
        package_uri = storage.join(request.output, f"{run_id}.zip")
        run_facts = {"run_id": run_id, "variant": resolved.variant, "device": device, "batch_size": batch_size,
                     "xla": outcome.xla, "epochs_trained": len(epochs), "best_epoch": outcome.best_epoch,
                     "validation_metrics": validation_metrics, "test_metrics": test_metrics}
        with run_metrics.stage("package"):
            fitted = data.fitted
            run_facts["serving_tokenizer"] = fitted.agreement.summary() if fitted.agreement else None
            contents = PackageContents(
                work.trained_model, preprocessor, resolved,
                dataset_metadata(source, data.stats, data.schema, fitted.distinct_values, preprocessor, config),
                epochs, work.tensorboard, fitted.overrides, fitted.contract,
                _raw_row(data.first_train_row, preprocessor))
            write_package(work.root / "package", package_uri, contents, run_facts, run_metrics, out)
        _remove_work(work)
    print(f"package {package_uri}  (weights of epoch {outcome.best_epoch}; validation auc "
          f"{validation_metrics['auc']:.4f}; test: {_summary(test_metrics)})", file=out)
    return TrainResult(package_uri, run_id, model, preprocessor, epochs, outcome.best_epoch,
                       validation_metrics, test_metrics)


def _tokenizer_note(tokenizer: Agreement | None, out: TextIO) -> None:
    """One line when the serving rules split some training titles unlike spaCy: training and the export
    both carry spaCy's tokens for those."""
    if tokenizer and tokenizer.overrides:
        examples = "; ".join(repr(t) for t in list(tokenizer.overrides)[:3])
        print(f"title tokens: the serving rules split {len(tokenizer.overrides):,} of {tokenizer.titles:,} training "
              f"titles unlike spaCy (e.g. {examples}); those keep spaCy's tokens in training and in the export, "
              f"titles training never saw go by the rules (README: Serving)", file=out)


def _raw_row(frame: pd.DataFrame, preprocessor: Preprocessor) -> dict[str, object]:
    """One row as a serving request sends it (model/README.md's example)."""
    row = frame.iloc[0]  # the decoded first training row
    values: dict[str, object] = {}
    for column in raw_columns(preprocessor):
        value, text = row[column], column not in preprocessor.numeric_columns
        if pd.isna(value):
            values[column] = "" if text else float("nan")  # json.dumps writes NaN, which TF Serving reads
        else:
            values[column] = str(value) if text else float(value)
    return values


def _hparams(resolved: ResolvedConfig, source: DatasetSource) -> dict[str, HParamValue]:
    return session_hparams(resolved.to_json_dict(), dataset_label(source.uri, source.sha256))


def _summary(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _resolve(request: TrainRequest) -> ResolvedConfig:
    """The config, with its network checked before any data is read."""
    resolved = resolve_config(request.variant, request.variants_file, request.environ, request.overrides)
    try:
        get_network(resolved.config.network)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (network set by {resolved.sources['network']})") from None
    return resolved


def _prepare(dataset: str, config: NetConfig, run_metrics: RunMetrics, out: TextIO) -> FittedData:
    """Parse (or find the parse cached), then one pass: each row's split (degenerate splits refused) and the
    preprocessing fitted on the training rows."""
    with run_metrics.stage("load"):
        parsed = parse_dataset(dataset, config, out)
    run_metrics.count("rows_loaded", parsed.source.rows_read, run_metrics.stage_seconds["load"])
    if warning := parsed.source.beyond_float32_warning():
        print(warning, file=out)
    with run_metrics.stage("preprocess"):
        data = fit_pass(parsed, config)
    run_metrics.count("rows_preprocessed", parsed.rows, run_metrics.stage_seconds["preprocess"])
    _tokenizer_note(data.fitted.agreement, out)
    return data


def _fit_or_reuse(request: TrainRequest, config: NetConfig, preprocessor: Preprocessor,
                  encoded: dict[str, EncodedSplit], work: WorkFolders, run_metrics: RunMetrics, out: TextIO,
                  batch_size: int, run_id: str,
                  strategy: tf.distribute.Strategy | None = None) -> tuple[keras.Model, FitOutcome]:
    """The trained model: fitted now (resuming a killed attempt), or kept by an attempt that finished training."""
    if (outcome := work.finished_training()) is not None:
        print(f"run {run_id} finished training earlier (weights of epoch {outcome.best_epoch}); "
              f"packaging it without retraining", file=out)
        model = keras.saving.load_model(work.trained_model, compile=False)
        model.jit_compile = use_xla(config)  # evaluated as the fitted model would be: the same numbers
        return model, outcome
    if completed := work.completed_epochs():
        print(f"resuming run {run_id} after epoch {completed}/{config.epochs}", file=out)
    # Variables made under a strategy's scope are mirrored on its devices, and fit then splits each batch.
    with run_metrics.stage("build"), strategy.scope() if strategy else contextlib.nullcontext():
        model = build_model_graph(config, preprocessor.shapes())
    try:
        with run_metrics.stage("fit"):
            outcome = fit_model(model, encoded["train"], encoded["validation"], config, work, run_metrics, out,
                                batch_size, request.callbacks)
    except (TrainingDivergedError, RunAbandonedError):
        # Resuming would only diverge again, and an abandoned run is over: nothing to keep.
        _remove_work(work)
        raise
    return model, outcome


def _replicas(strategy: tf.distribute.Strategy | None) -> int:
    return strategy.num_replicas_in_sync if strategy else 1


def _work_folder(request: TrainRequest, resolved: ResolvedConfig, source: DatasetSource,
                 replicas: int = 1) -> tuple[WorkFolders, str]:
    """The same config on the same data is the same run: it finds its earlier work."""
    identity = json.dumps({"config": resolved.to_json_dict()["keys"], "data": source.sha256,
                           **({"label": request.run_label} if request.run_label else {}),
                           # Several devices take another batch per step: not the same run to resume.
                           **({"replicas": replicas} if replicas > 1 else {})}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:10]
    work = WorkFolders(storage.work_folder(request.output) / f"{resolved.variant}-{key}")
    if earlier := read_run_record(work):
        return work, earlier["run_id"]
    name = "-".join(filter(None, [resolved.variant, request.run_label]))
    run_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{key[:6]}"
    environ = os.environ if request.environ is None else request.environ
    write_json(work.root / RUN_FILE, run_record(run_id, resolved.variant, source.uri, source.sha256, environ,
                                                request.overrides))
    return work, run_id


def _remove_work(work: WorkFolders) -> None:
    shutil.rmtree(work.root, ignore_errors=True)
    with contextlib.suppress(OSError):  # other runs' work may still be there
        work.root.parent.rmdir()
