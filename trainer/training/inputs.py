"""The run's inputs, streamed: the parsed dataset split row by row, the preprocessing fitted in one pass,
then every split encoded by the serving export's own encoder into blocks on local disk.

    parse (cached, trainer.data.parsed) -> split plan -> pass 1: split sizes + fitting
    -> pass 2: RawRowEncoder on each batch -> EncodedSplits in the run's work folder
    -> a training split larger than one shuffle window spread over its blocks (encoded.spread_for_shuffling)

Memory holds one parsed batch, the fitting's counters and one split id per row (a byte); never the rows
(the spread holds up to encoded.SPREAD_GROUP_ROWS encoded rows at a time).
Training and evaluation then read the EncodedSplits (trainer.training.batches, encoded.predict_split), and
the export composes the model with the same encoder: the rows serving scores are encoded as training's were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from trainer.config import NetConfig
from trainer.data.dataset import to_frame
from trainer.data.fitting import FittedPreprocessing, PreprocessingFitter
from trainer.data.parsed import ParsedDataset
from trainer.data.splits import SPLITS, TRAIN, SplitPlan, SplitStats, numbered_batches, plan_splits
from trainer.data.values import ColumnRoles
from trainer.serving.encoding import RawRowEncoder, encode_arrow
from trainer.training.encoded import SPEC_FILE, EncodedSplit, EncodedSplitWriter, spread_for_shuffling


@dataclass(frozen=True)
class FittedData:
    """The dataset after the fitting pass: how it splits, the splits' sizes, the fitted preprocessing."""

    parsed: ParsedDataset
    plan: SplitPlan
    split_ids: list[np.ndarray]  # per parsed batch, each row's split (the plan's, kept: hashing costs)
    stats: SplitStats
    fitted: FittedPreprocessing
    first_train_row: pd.DataFrame  # one training row, decoded (model/README.md's request example)

    @property
    def schema(self) -> dict[str, str]:
        """dataset.json's schema: each column's type as the decoded rows hold it."""
        return {column: str(dtype) for column, dtype in self.first_train_row.dtypes.items()}


def fit_pass(parsed: ParsedDataset, config: NetConfig) -> FittedData:
    """One pass over the parsed rows: each row's split, the splits' sizes and label rates (degenerate splits
    refused), and the preprocessing fitted on the training rows."""
    plan = plan_splits(parsed, config)
    stats, fitter = SplitStats(config), PreprocessingFitter(config)
    split_ids: list[np.ndarray] = []
    first_train: pa.RecordBatch | None = None
    for first_row, batch in numbered_batches(parsed):
        ids = plan.of(batch, first_row)
        split_ids.append(ids)
        stats.add(batch, ids)
        fitter.add(batch, ids)
        if first_train is None and (ids == TRAIN).any():
            first_train = batch.filter(ids == TRAIN).slice(0, 1)
    stats.check(config)  # a split without rows or with one class is refused before anything is fitted on it
    assert first_train is not None  # check() refused an empty training split
    example = to_frame(pa.Table.from_batches([first_train]), ColumnRoles.of(config, with_label=True))
    return FittedData(parsed, plan, split_ids, stats, fitter.result(), example)


def encoded_splits(data: FittedData, config: NetConfig, folder: Path) -> dict[str, EncodedSplit]:
    """Every split encoded into `folder`/<split>: those a killed attempt of the run finished are reused
    (the same rows encode the same), the others written again."""
    if all((folder / name / SPEC_FILE).is_file() for name in SPLITS):
        return {name: EncodedSplit.open(folder / name) for name in SPLITS}
    encoder = RawRowEncoder(data.fitted.preprocessor, data.fitted.overrides)
    # Training rows are written in file order beside their split, then spread over its blocks: a kill before
    # the spread leaves no training split, so the rerun encodes again rather than train on the file's order.
    train = SPLITS[TRAIN]
    writers = [EncodedSplitWriter(folder / (f"{name}.in-file-order" if name == train else name)) for name in SPLITS]
    traced = len(data.split_ids) > 1  # one parse batch (up to 64K rows) encodes faster than a trace
    for (_, batch), ids in zip(numbered_batches(data.parsed), data.split_ids):
        inputs = encode_arrow(encoder, batch, traced)
        labels = _labels(batch, config.label_column)
        for split_id, writer in enumerate(writers):
            rows = ids == split_id
            if rows.any():
                writer.add({name: values[rows] for name, values in inputs.items()}, labels[rows])
    splits = {name: writer.close() for name, writer in zip(SPLITS, writers)}
    splits[train] = spread_for_shuffling(splits[train], folder / train, config.shuffle_buffer_rows)
    return splits


def _labels(batch: pa.RecordBatch, label_column: str) -> np.ndarray:
    # A (rows, 1) float column, the shape of the model's output.
    return batch.column(label_column).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)

