"""Assembling a finished run's package: every file written into a staging
folder, then published as one zip (`writer.publish_package`).

The model is the one training kept in its work folder, saved again without
its optimizer (so plain Keras loads it, whatever optimizer trained it), and
exported for serving with its preprocessing (`trainer.serving.export`): a
package written by a rerun after a kill holds the same model as a first attempt's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keras
import pandas as pd

from trainer.config import NetConfig, ResolvedConfig
from trainer.data.dataset import DatasetSource
from trainer.data.features import Preprocessor
from trainer.data.splits import SPLITS, SplitStats
from trainer.faults import fault_point
from trainer.package.layout import (
    CONFIG_FILE,
    CONTRACT_FILE,
    DATASET_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    METRICS_PLOT,
    MODEL_FILE,
    MODEL_FOLDER,
    PREPROCESSING_FILE,
    SERVING_FOLDER,
    SERVING_README,
    TENSORBOARD_FOLDER,
)
from trainer.package.writer import manifest, publish_package, write_json
from trainer.serving.export import serving_readme, write_serving_export
from trainer.training.metrics import RunMetrics, plot_epochs
from trainer.training.tensorboard import package_logs


@dataclass(frozen=True)
class PackageContents:
    """What a package is made of, besides the per-run facts of its manifest."""

    model_file: Path
    preprocessor: Preprocessor
    resolved: ResolvedConfig
    dataset: dict[str, Any]
    epochs: pd.DataFrame
    tensorboard: Path  # the run's live TensorBoard logs (trainer.training.tensorboard)
    tokenizer_overrides: dict[str, list[str]]  # training titles the export's rules split unlike spaCy
    contract: dict[str, Any]  # trainer.data.fitting's data contract
    example_row: dict[str, Any]  # a raw row, for model/README.md's request


def write_package(staging: Path, package_uri: str, contents: PackageContents, run_facts: dict[str, Any],
                  run_metrics: RunMetrics, out: TextIO) -> None:
    """Write every file of the package into `staging`, then publish it as one zip. The two steps that
    take seconds each say so to `out` as they start: the export (tracing its signatures) and the rest."""
    shutil.rmtree(staging, ignore_errors=True)  # a killed attempt's half-written files
    (staging / MODEL_FOLDER).mkdir(parents=True)
    print(f"exporting the serving model ({SERVING_FOLDER}/) ...", file=out, flush=True)
    model = keras.saving.load_model(contents.model_file, compile=False)
    model.save(staging / MODEL_FILE)  # loaded uncompiled: saved without the optimizer
    write_serving_export(model, contents.preprocessor, contents.tokenizer_overrides, staging / SERVING_FOLDER)
    print(f"writing the package ({METRICS_PLOT}, TensorBoard events, the zip) ...", file=out, flush=True)
    (staging / SERVING_README).write_text(serving_readme(contents.preprocessor, contents.example_row))
    write_json(staging / PREPROCESSING_FILE, contents.preprocessor.to_json_dict())
    write_json(staging / CONTRACT_FILE, contents.contract)
    write_json(staging / CONFIG_FILE, contents.resolved.to_json_dict())
    write_json(staging / DATASET_FILE, contents.dataset)
    write_json(staging / MANIFEST_FILE, manifest(run_facts, run_metrics.snapshot()))
    contents.epochs.to_csv(staging / METRICS_FILE, index=False)
    plot_epochs(contents.epochs, staging / METRICS_PLOT, run_facts["run_id"], run_facts["best_epoch"],
                accuracy=contents.resolved.config.plot_accuracy)
    package_logs(contents.tensorboard, staging / TENSORBOARD_FOLDER)
    fault_point("packaging")
    publish_package(staging, package_uri)


def dataset_metadata(source: DatasetSource, stats: SplitStats, schema: dict[str, str],
                     distinct_values: dict[str, int], preprocessor: Preprocessor, config: NetConfig) -> dict[str, Any]:
    """dataset.json: where the rows came from, how they were split, their schema and vocabularies."""
    shapes = preprocessor.shapes()
    split = stats.describe(config)
    rows = sum(split[name]["rows"] for name in SPLITS)
    label_rate = {"all": sum(split[name]["rows"] * split[name]["label_rate"] for name in SPLITS) / rows}
    label_rate.update((name, split[name]["label_rate"]) for name in SPLITS)
    return {
        "source": source.uri,
        "files": list(source.files),
        "sha256": source.sha256,
        "size_bytes": source.size_bytes,
        "rows_read": source.rows_read,
        "rows": rows,
        # Per numeric column: numbers too large for float32 (1e40), read as missing (the null rates of
        # model/data_contract.json count them among the nulls).
        "numbers_beyond_float32": source.numbers_beyond_float32,
        "subsample": config.subsample,
        "export": source.export,  # fab dataset's metadata: query hash, job id, rows, schema, time
        "split": split,
        "schema": schema,
        "label": config.label_column,
        "label_rate": label_rate,
        "categorical_cardinalities": shapes.categorical_cardinalities,
        "distinct_values": distinct_values,
        "text": {"column": config.text_column, "vocabulary_size": shapes.text_vocabulary_size,
                 "sequence_length": shapes.text_sequence_length},
    }
