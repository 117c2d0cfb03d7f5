"""Scoring raw rows through a package's serving export.

`ServingModel` is the SavedModel's `distinct_values` signature, fed raw
columns (the NDJSON reader's Arrow arrays, or a DataFrame's columns) with
missing values as the signature expects them. `EncodedModel` scores a package
written before the export (format version 3 or older) the same way: the one
encoder built from its preprocessing.json, then its Keras model. `score_stream`
streams NDJSON files a block at a time through either: memory holds one block
whatever the input's size, and no Python runs per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from trainer import spend_onednn_boolean_notice
from trainer.data import storage
from trainer.data.dataset import dataset_files
from trainer.data.features import Preprocessor
from trainer.data.ndjson import stream_file
from trainer.data.values import ColumnRoles
from trainer.package.layout import DISTINCT_SIGNATURE
from trainer.serving.contract import Profile
from trainer.serving.encoding import (
    RawRowEncoder,
    Strings,
    distinct_strings,
    encode_arrow,
    encode_frame,
    float32_numbers,
    frame_batch,
)
from trainer.serving.export import DISTINCT_VALUES, OUTPUT_NAME, ROW_INDEX
from trainer.training.arrays import predict

SCORE_BATCH_ROWS = 262_144  # at most one signature call per block
# Blocks of 64 MB (about 200K rows): titles repeat with their items, and a larger block tokenizes each
# distinct title of more rows at once (a larger block has fewer distinct titles per row: see the
# README's benchmarks).
SCORE_BLOCK_BYTES = 64 << 20


# A string column goes as its distinct values and each row's index among them: no Python string
# object is made per row (that cost more than the model), and each distinct value is looked up once.
Column = Strings | np.ndarray


class ServingModel:
    """A loaded export: raw columns in, click probabilities out, through its `distinct_values`
    signature, or `serving_default` where the package's format version predates it (`distinct_values`
    False: see trainer/package/layout.py)."""

    def __init__(self, folder: Path, distinct_values: bool = True) -> None:
        self.loaded = tf.saved_model.load(str(folder))  # keeps the tables and variables alive
        spend_onednn_boolean_notice()  # before the first call of rnn_v1's graph
        self.signatures = self.loaded.signatures
        default = self.signatures["serving_default"]
        self.columns = {name: spec.dtype for name, spec in default.structured_input_signature[1].items()}
        self.distinct_values = distinct_values
        self.signature = self.signatures[DISTINCT_SIGNATURE] if distinct_values else default

    def __call__(self, columns: dict[str, Column]) -> np.ndarray:
        """Scores of `columns`: each string column a (distinct values, row indices) pair, each
        numeric column a float32 array; at most SCORE_BATCH_ROWS rows per signature call."""
        rows = self.row_count(columns)
        scores = [self.signature(**self.signature_inputs(columns, slice(start, start + SCORE_BATCH_ROWS)))[OUTPUT_NAME]
                  .numpy() for start in range(0, rows, SCORE_BATCH_ROWS)]
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    def score_arrow(self, batch: pa.RecordBatch) -> np.ndarray:
        return self(serving_columns(self, batch))

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score_arrow(frame_batch(frame, list(self.columns)))

    def row_count(self, columns: dict[str, Column]) -> int:
        column, values = next(iter(columns.items()))
        return len(values[1]) if self.columns[column] == tf.string else len(values)

    def signature_inputs(self, columns: dict[str, Column], rows: slice) -> dict[str, tf.Tensor]:
        inputs = {}
        for column, values in columns.items():
            if self.columns[column] != tf.string:
                inputs[column] = tf.constant(values[rows])
            elif self.distinct_values:
                inputs[column + DISTINCT_VALUES] = tf.constant(values[0], tf.string)
                inputs[column + ROW_INDEX] = tf.constant(values[1][rows])
            else:  # serving_default: the rows' strings themselves
                inputs[column] = tf.gather(tf.constant(values[0], tf.string), tf.constant(values[1][rows]))
        return inputs


class EncodedModel:
    """A package without a serving export: `RawRowEncoder` from its preprocessing, then its Keras model.
    Such a package carries no spaCy tokens for its training titles, so every title goes by the rules."""

    def __init__(self, model: keras.Model, preprocessor: Preprocessor) -> None:
        self.model, self.encoder = model, RawRowEncoder(preprocessor, overrides={})

    def score_arrow(self, batch: pa.RecordBatch) -> np.ndarray:
        return predict(self.model, encode_arrow(self.encoder, batch))

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return predict(self.model, encode_frame(self.encoder, frame))


Scorer = ServingModel | EncodedModel


def signature_names(saved_model_pb: bytes) -> frozenset[str] | None:
    """The signatures an export's saved_model.pb declares, read without loading its graph (None: the
    bytes are not a SavedModel)."""
    try:
        proto = saved_model_pb2.SavedModel.FromString(saved_model_pb)
    except DecodeError:
        return None
    return frozenset(name for graph in proto.meta_graphs for name in graph.signature_def)


def serving_columns(serving: ServingModel, batch: pa.RecordBatch) -> dict[str, Column]:
    """The columns `serving` takes, from the NDJSON reader's Arrow arrays."""
    return {c: _from_arrow(batch.column(c), dtype) for c, dtype in serving.columns.items()}


def _from_arrow(values: pa.Array, dtype: tf.DType) -> Column:
    return distinct_strings(values) if dtype == tf.string else float32_numbers(values)


def score_stream(scorer: Scorer, input_uri: str, roles: ColumnRoles, profile: Profile | None,
                 write: Callable[[bytes], None], on_block: Callable[[int], None] = lambda rows: None) -> int:
    """Score every row of the input's files, writing NDJSON lines as they come (then calling `on_block`
    with the block's rows), each block profiled against the data contract when the package has one;
    returns the row count."""
    rows = 0
    for batch in prefetched(_batches(input_uri, roles)):
        if profile is not None:
            profile.add({c: batch.column(c) for c in profile.contract["columns"]})
        write(score_lines(batch, scorer.score_arrow(batch), roles.row_id))
        rows += batch.num_rows
        on_block(batch.num_rows)
    return rows


def prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The same batches, the next one parsed in a thread while the current one is scored: pyarrow and
    TensorFlow both release the GIL, so the two cores overlap. Memory holds two blocks at most."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ndjson") as reader:
        ahead = reader.submit(next, batches, None)
        while (batch := ahead.result()) is not None:
            ahead = reader.submit(next, batches, None)
            yield batch


def _batches(input_uri: str, roles: ColumnRoles) -> Iterator[pa.RecordBatch]:
    files, _ = dataset_files(input_uri)
    for file_uri in files:
        # One thread parses the next block while TensorFlow scores this one on every core (`prefetched`):
        # pyarrow's own threads fought TensorFlow for the cores (slower on 2 cores: the README's benchmarks).
        yield from stream_file(storage.local_copy(file_uri), roles, SCORE_BLOCK_BYTES, use_threads=False)


def score_lines(batch: pa.RecordBatch, scores: np.ndarray, id_column: str | None) -> bytes:
    """`{"<id>": ..., "score": ...}` per row (the id when the rows have one); scores as float32's
    shortest exact decimal. Built by Arrow's string kernels, or by pandas when an id needs escaping."""
    if not len(scores):
        return b""
    score_text = pc.cast(pa.array(scores.reshape(-1), pa.float32()), pa.string())
    ids = batch.column(id_column) if id_column and batch.column(id_column).null_count < batch.num_rows else None
    if ids is not None and ids.type != pa.string():
        ids = ids.cast(pa.string())  # pandas' large strings or dictionary, pyarrow's plain ones
    if ids is None:
        lines = pc.binary_join_element_wise('{"score":', score_text, "}\n", "")
    elif ids.null_count or pc.any(pc.match_substring_regex(ids, JSON_ESCAPED)).as_py():
        return _score_lines_by_pandas(ids, scores, id_column)
    else:
        lines = pc.binary_join_element_wise(f'{{{json.dumps(id_column)}:"', ids, '","score":', score_text, "}\n", "")
    # The lines end in newlines, so the string array's data buffer is the text itself.
    _, offsets, data = lines.buffers()
    first, last = np.frombuffer(offsets, np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.to_pybytes()[first:last]


JSON_ESCAPED = r'["\\\x00-\x1f]'  # characters a JSON string must escape


def _score_lines_by_pandas(ids: pa.Array, scores: np.ndarray, id_column: str) -> str:
    result = pd.DataFrame({id_column: ids.to_numpy(zero_copy_only=False), "score": scores.reshape(-1)})
    return result.to_json(orient="records", lines=True).encode()
