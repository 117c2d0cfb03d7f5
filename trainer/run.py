"""The pipeline, stage by stage: what `python -m trainer train` and `score` do.

    resolve config -> load dataset -> split -> fit preprocessing -> encode
    -> build_model_graph -> fit -> evaluate -> package -> publish
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keras
import numpy as np
import pandas as pd

from trainer.config import (
    DEFAULT_DATASET,
    DEFAULT_OUTPUT,
    DEFAULT_VARIANTS_FILE,
    NetConfig,
    ResolvedConfig,
    resolve_config,
)
from trainer.data import storage
from trainer.data.dataset import DatasetSource, load_dataset
from trainer.data.features import Preprocessor
from trainer.data.splits import split_dataset
from trainer.errors import ConfigError, RunAbandonedError, TrainingDivergedError
from trainer.networks import build_model_graph, get_network
from trainer.package.layout import MODEL_FILE, PREPROCESSING_FILE
from trainer.package.loader import load_package
from trainer.package.writer import manifest, publish_package, write_json
from trainer.training.arrays import SplitArrays, predict
from trainer.training.fit import WorkFolders, describe_device, effective_batch_size, fit_model
from trainer.training.metrics import RunMetrics, binary_metrics, epoch_table, plot_epochs


@dataclass(frozen=True)
class TrainRequest:
    """What a user asks for; every field has the embedded default."""

    variant: str
    dataset: str = DEFAULT_DATASET
    output: str = DEFAULT_OUTPUT
    variants_file: Path = DEFAULT_VARIANTS_FILE
    environ: Mapping[str, str] | None = None  # None: the process environment
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
    test_metrics: dict[str, float]


@dataclass
class PreparedData:
    """The dataset after loading, splitting and encoding."""

    source: DatasetSource
    frame: pd.DataFrame
    train_frame: pd.DataFrame
    test_frame: pd.DataFrame
    preprocessor: Preprocessor
    train: SplitArrays
    test: SplitArrays


def train(request: TrainRequest, out: TextIO = sys.stdout) -> TrainResult:
    """Run the whole pipeline and publish one package; returns where it went."""
    resolved = _resolve(request)
    config = resolved.config
    device = describe_device(request.require_gpu)
    keras.utils.set_random_seed(config.seed)
    run_metrics = RunMetrics()
    print(f"variant {resolved.variant} (network {config.network}) on {device}", file=out)

    data = _prepare(request.dataset, config, run_metrics, out)
    batch_size = effective_batch_size(config, len(data.train))
    print(f"{len(data.train):,} train / {len(data.test):,} test rows, batch size {batch_size}"
          + ("" if config.batch_size else " (auto)"), file=out)
    work, run_id = _work_folder(request, resolved, data.source)
    with work.exclusive():
        if completed := work.completed_epochs():
            print(f"resuming run {run_id} after epoch {completed}/{config.epochs}", file=out)

        with run_metrics.stage("build"):
            model = build_model_graph(config, data.preprocessor.shapes())
        try:
            with run_metrics.stage("fit"):
                fit_model(model, data.train, data.test, config, work, run_metrics, out, batch_size,
                          request.callbacks)
        except (TrainingDivergedError, RunAbandonedError):
            # Resuming would only diverge again, and an abandoned run is over: nothing to keep.
            _remove_work(work)
            raise
        with run_metrics.stage("evaluate"):
            test_metrics = binary_metrics(data.test.labels, predict(model, data.test.inputs))

        epochs = epoch_table(work.keras_csv)
        package_uri = storage.join(request.output, f"{run_id}.zip")
        run_facts = {"run_id": run_id, "variant": resolved.variant, "device": device, "batch_size": batch_size,
                     "xla": bool(model.jit_compile), "epochs_trained": len(epochs), "test_metrics": test_metrics}
        with run_metrics.stage("package"):
            _package(work.root / "package", package_uri, model, data, resolved, epochs, run_facts, run_metrics)
        _remove_work(work)
    summary = " ".join(f"{k} {v:.4f}" for k, v in test_metrics.items())
    print(f"package {package_uri}  (test: {summary})", file=out)
    return TrainResult(package_uri, run_id, model, data.preprocessor, epochs, test_metrics)


def _resolve(request: TrainRequest) -> ResolvedConfig:
    """The config, with its network checked before any data is read."""
    resolved = resolve_config(request.variant, request.variants_file, request.environ)
    try:
        get_network(resolved.config.network)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (network set by {resolved.sources['network']})") from None
    return resolved


def _prepare(dataset: str, config: NetConfig, run_metrics: RunMetrics, out: TextIO) -> PreparedData:
    """Load, split, fit the preprocessing on the train split and encode both splits."""
    with run_metrics.stage("load"):
        frame, source = load_dataset(dataset, config)
    run_metrics.count("rows_loaded", source.rows_read, run_metrics.stage_seconds["load"])
    print(f"dataset {dataset}: {len(frame):,} rows in {run_metrics.stage_seconds['load']:.1f} s", file=out)
    with run_metrics.stage("preprocess"):
        train_frame, test_frame = split_dataset(frame, config.test_fraction, config.seed)
        preprocessor = Preprocessor.fit(train_frame, config)
        train = _encode(preprocessor, train_frame, config.label_column)
        test = _encode(preprocessor, test_frame, config.label_column)
    run_metrics.count("rows_preprocessed", len(frame), run_metrics.stage_seconds["preprocess"])
    return PreparedData(source, frame, train_frame, test_frame, preprocessor, train, test)


def _package(staging: Path, package_uri: str, model: keras.Model, data: PreparedData, resolved: ResolvedConfig,
             epochs: pd.DataFrame, run_facts: dict[str, Any], run_metrics: RunMetrics) -> None:
    """Write every file of the package into `staging`, then publish it as one zip."""
    (staging / "model").mkdir(parents=True, exist_ok=True)
    model.save(staging / MODEL_FILE)
    write_json(staging / PREPROCESSING_FILE, data.preprocessor.to_json_dict())
    write_json(staging / "config.json", resolved.to_json_dict())
    write_json(staging / "dataset.json", _dataset_metadata(data, resolved.config))
    write_json(staging / "manifest.json", manifest(run_facts, run_metrics.snapshot()))
    epochs.to_csv(staging / "metrics.csv", index=False)
    plot_epochs(epochs, staging / "metrics.png", title=run_facts["run_id"])
    tensorboard = staging.parent / "tensorboard"
    if tensorboard.exists():
        shutil.copytree(tensorboard, staging / "tensorboard", dirs_exist_ok=True)
    publish_package(staging, package_uri)


def _encode(preprocessor: Preprocessor, frame: pd.DataFrame, label: str) -> SplitArrays:
    # Labels as a (rows, 1) float column, the shape of the model's output.
    return SplitArrays(preprocessor.encode(frame), frame[label].to_numpy(np.float32).reshape(-1, 1))


def _work_folder(request: TrainRequest, resolved: ResolvedConfig, source: DatasetSource) -> tuple[WorkFolders, str]:
    """The same config on the same data is the same run: it finds its earlier work."""
    identity = json.dumps({"config": resolved.to_json_dict()["keys"], "data": source.sha256,
                           **({"label": request.run_label} if request.run_label else {})}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:10]
    work = WorkFolders(storage.work_folder(request.output) / f"{resolved.variant}-{key}")
    run_file = work.root / "run.json"
    if run_file.exists():
        return work, json.loads(run_file.read_text())["run_id"]
    name = "-".join(filter(None, [resolved.variant, request.run_label]))
    run_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{key[:6]}"
    write_json(run_file, {"run_id": run_id})
    return work, run_id


def _remove_work(work: WorkFolders) -> None:
    shutil.rmtree(work.root, ignore_errors=True)
    with contextlib.suppress(OSError):  # other runs' work may still be there
        work.root.parent.rmdir()


def _dataset_metadata(data: PreparedData, config: NetConfig) -> dict[str, Any]:
    source, frame, train, test = data.source, data.frame, data.train_frame, data.test_frame
    shapes = data.preprocessor.shapes()
    return {
        "source": source.uri,
        "files": list(source.files),
        "sha256": source.sha256,
        "size_bytes": source.size_bytes,
        "rows_read": source.rows_read,
        "rows": len(frame),
        "subsample": config.subsample,
        "export": source.export,  # fab dataset's metadata: query hash, job id, rows, schema, time
        "split": {"train": len(train), "test": len(test), "test_fraction": config.test_fraction,
                  "seed": config.seed},
        "schema": {column: str(dtype) for column, dtype in frame.dtypes.items()},
        "label": config.label_column,
        "label_rate": {"all": float(frame[config.label_column].mean()),
                       "train": float(train[config.label_column].mean()),
                       "test": float(test[config.label_column].mean())},
        "categorical_cardinalities": shapes.categorical_cardinalities,
        "distinct_values": {c: int(frame[c].nunique()) for c in config.categorical_columns},
        "text": {"column": config.text_column, "vocabulary_size": shapes.text_vocabulary_size,
                 "sequence_length": shapes.text_sequence_length},
    }


def score(package_uri: str, input_uri: str, output: str | None, out: TextIO = sys.stdout) -> int:
    """Score raw rows with a package; writes NDJSON {id, score} lines. Returns the row count."""
    package = load_package(package_uri)
    config = dataclasses.replace(package.config, subsample=1.0)
    frame, _ = load_dataset(input_uri, config, with_label=False)
    scores = package.score(frame)
    result = pd.DataFrame({"score": scores})
    if config.id_column and frame.get(config.id_column) is not None and frame[config.id_column].notna().any():
        result.insert(0, config.id_column, frame[config.id_column].to_numpy())
    text = result.to_json(orient="records", lines=True)
    if output:
        Path(output).write_text(text)
    else:
        out.write(text)
    return len(result)
