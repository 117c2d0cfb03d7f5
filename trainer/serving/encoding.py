"""The one encoder: raw rows in, model inputs out, as TensorFlow ops.

Training encodes its train, validation and test rows with `RawRowEncoder`
(`encode_arrow`), and the serving export is the model composed with the same
encoder (`trainer.serving.export`): a row scores through the export exactly
as training encoded it. `trainer.data.features` fits what the rules read; the
rules themselves:
- categorical: a hash table from each vocabulary value to its index (from 1);
  anything else (a rare or unseen value, a null, the empty string) is index 0,
  the out-of-vocabulary row the embedding shares between them;
- numeric: a missing or non-finite number becomes the training mean, then is
  clipped to the training range and standardised (so a number beyond anything
  training saw scores as the nearest one it did see, not as an extrapolation
  no weight was fitted for), in float32;
- text: `tokenizer.rule_tokens`, or spaCy's tokens for the training titles the
  rules split differently (`overrides`: every training title is encoded as
  spaCy tokenized it when the vocabulary was fitted, every other title by the
  rules), looked up in the token vocabulary (1 when unknown), truncated to the
  sequence length and padded with 0. A title with no token (null, missing,
  empty, only punctuation) is the one "no text" token: an all-padding row
  would be masked out whole and its mean embedding be 0/0 = NaN, so such rows
  get a learned embedding of their own. Each distinct title of a batch is
  tokenized once, and stays once in `EncodedRows` (`TitleTowerSplit` runs the
  model's title tower on it before the rows take their title's result).

`encode_distinct` takes each string column already as its distinct values and
each row's index into them (what an Arrow dictionary array holds): each
distinct value is then looked up once and the rows gather its result, the
same values as looking up every row.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from trainer.data.features import NUMERIC_INPUT, OOV_INDEX, OOV_TOKEN, PAD_TOKEN, TEXT_INPUT, Preprocessor
from trainer.serving.tokenizer import TOKEN_SEPARATOR, rule_tokens

NO_VALUE = "\x1e"  # a key no input holds: the override table's default, the one key of an empty table


def index_table(keys: list[str], first: int, default: int) -> tf.lookup.StaticHashTable:
    """keys[i] -> first + i; anything else -> default."""
    if not keys:  # every value was rarer than its minimum count; a table cannot be empty
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant([NO_VALUE], tf.string), tf.constant([default], tf.int64)), default_value=default)
    values = np.arange(first, first + len(keys), dtype=np.int64)
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values))
    return tf.lookup.StaticHashTable(initializer, default_value=default)


@dataclass(frozen=True)
class EncodedRows:
    """A batch's model inputs, the title's token ids once per distinct title."""

    inputs: dict[str, tf.Tensor]  # per row: each categorical's index, the numbers
    title_tokens: tf.Tensor | None = None  # (titles, sequence_length): each distinct title's token ids
    title_of_row: tf.Tensor | None = None  # (rows,): each row's index into title_tokens

    def per_row(self) -> dict[str, tf.Tensor]:
        """Every input row by row, as the Keras model takes them."""
        if self.title_tokens is None:
            return self.inputs
        return {**self.inputs, TEXT_INPUT: tf.gather(self.title_tokens, self.title_of_row)}


class RawRowEncoder(tf.Module):
    """Callable on a dict of raw columns: (batch,) string or float32 tensors by column name."""

    def __init__(self, preprocessor: Preprocessor, overrides: dict[str, list[str]]) -> None:
        super().__init__(name="raw_row_encoder")
        self.categorical_columns = preprocessor.categorical_columns
        self.numeric_columns = preprocessor.numeric_columns
        self.text_column = preprocessor.text_column
        # The columns fed as strings: the categoricals, then the title.
        self.string_columns = (*self.categorical_columns, *([self.text_column] if self.text_column else []))
        self.categories = {c: index_table(preprocessor.vocabularies[c], 1, OOV_INDEX)
                           for c in self.categorical_columns}
        if self.numeric_columns:
            self.mean = tf.constant(preprocessor.numeric_mean, tf.float32)
            self.std = tf.constant(preprocessor.numeric_std, tf.float32)
            self.low, self.high = _clip_range(preprocessor)
        if self.text_column:
            self.sequence_length = preprocessor.sequence_length
            self.empty_text_token = preprocessor.empty_text_token
            self.tokens = index_table(preprocessor.token_vocabulary, preprocessor.first_word_token, OOV_TOKEN)
            titles = sorted(overrides)
            self.overrides = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(titles, tf.string), tf.constant([TOKEN_SEPARATOR.join(overrides[t]) for t in titles],
                                                            tf.string)),
                default_value=NO_VALUE) if titles else None

    def __call__(self, features: dict[str, tf.Tensor]) -> EncodedRows:
        inputs = {c: tf.cast(self.categories[c].lookup(features[c]), tf.int32) for c in self.categorical_columns}
        if self.numeric_columns:
            inputs[NUMERIC_INPUT] = self.numeric_inputs(features)
        if not self.text_column:
            return EncodedRows(inputs)
        titles, title_of_row = tf.unique(features[self.text_column])
        return EncodedRows(inputs, self.title_token_ids(titles), title_of_row)

    def encode_distinct(self, distinct: dict[str, tuple[tf.Tensor, tf.Tensor]],
                        numbers: dict[str, tf.Tensor]) -> EncodedRows:
        """`distinct`: (values, row indices into them) per string column; `numbers`: the numeric columns."""
        inputs = {c: tf.gather(tf.cast(self.categories[c].lookup(distinct[c][0]), tf.int32), distinct[c][1])
                  for c in self.categorical_columns}
        if self.numeric_columns:
            inputs[NUMERIC_INPUT] = self.numeric_inputs(numbers)
        if not self.text_column:
            return EncodedRows(inputs)
        titles, title_of_row = distinct[self.text_column]
        return EncodedRows(inputs, self.title_token_ids(titles), title_of_row)

    def numeric_inputs(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        values = tf.stack([tf.cast(features[c], tf.float32) for c in self.numeric_columns], axis=1)
        known = tf.where(tf.math.is_finite(values), values, self.mean)
        if self.low is not None:
            known = tf.clip_by_value(known, self.low, self.high)
        return (known - self.mean) / self.std

    def title_token_ids(self, titles: tf.Tensor) -> tf.Tensor:
        """(titles, sequence_length) token ids of each title."""
        ids = self.tokens.lookup(self.title_words(titles))[:, : self.sequence_length]
        padded = tf.cast(ids.to_tensor(PAD_TOKEN, shape=[None, self.sequence_length]), tf.int32)
        if self.empty_text_token is None:
            return padded
        first = tf.where(tf.equal(ids.row_lengths(), 0), self.empty_text_token, padded[:, 0])
        return tf.concat([first[:, None], padded[:, 1:]], axis=1)

    def title_words(self, titles: tf.Tensor) -> tf.RaggedTensor:
        """Each title's tokens: spaCy's where the export carries them, else the rules'."""
        if self.overrides is None:  # the rules agree with spaCy on every training title
            return rule_tokens(titles)
        carried = self.overrides.lookup(titles)
        by_rules = tf.strings.reduce_join(rule_tokens(titles), axis=1, separator=TOKEN_SEPARATOR)
        joined = tf.where(tf.equal(carried, NO_VALUE), by_rules, carried)
        tokens = tf.strings.split(joined, sep=TOKEN_SEPARATOR)
        return tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)


def _clip_range(preprocessor: Preprocessor) -> tuple[tf.Tensor | None, tf.Tensor | None]:
    if not preprocessor.numeric_min:  # a preprocessor of package format version 3 or older: never clipped
        return None, None
    return tf.constant(preprocessor.numeric_min, tf.float32), tf.constant(preprocessor.numeric_max, tf.float32)


# A string column as (its distinct values, each row's index into them).
Strings = tuple[np.ndarray, np.ndarray]

# encoder -> its `encode_distinct(...).per_row()`, traced once with open batch dimensions. Kept outside
# the encoder: a tf.function attribute of the tracked encoder would be saved into the export too.
_ROW_FUNCTIONS: weakref.WeakKeyDictionary[RawRowEncoder, Callable] = weakref.WeakKeyDictionary()


def encode_arrow(encoder: RawRowEncoder, batch: pa.RecordBatch, traced: bool = True) -> dict[str, np.ndarray]:
    """Per-row model inputs of `batch` (int32 ids, float32 numbers, int32 token ids): exactly what the export
    feeds the model. Its string columns may be plain or dictionary arrays; null is missing.

    `traced`: through the encoder traced once as a tf.function, for an encoder given many batches; tracing
    takes about 0.6 s, more than the eager ops take for one batch of any size (`traced=False`)."""
    strings = {c: distinct_strings(batch.column(c)) for c in encoder.string_columns}
    numbers = {c: float32_numbers(batch.column(c)) for c in encoder.numeric_columns}
    if traced:
        encoded = _row_function(encoder)(strings, numbers)
    else:
        encoded = encoder.encode_distinct({c: tuple(map(tf.constant, pair)) for c, pair in strings.items()},
                                          {c: tf.constant(values) for c, values in numbers.items()}).per_row()
    return {name: values.numpy() for name, values in encoded.items()}


def encode_frame(encoder: RawRowEncoder, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """`encode_arrow` of a DataFrame's rows, in one batch (so eagerly)."""
    batch = frame_batch(frame, [*encoder.string_columns, *encoder.numeric_columns])
    return encode_arrow(encoder, batch, traced=False)


def frame_batch(frame: pd.DataFrame, columns: list[str]) -> pa.RecordBatch:
    """A DataFrame's columns as one Arrow batch (a categorical becomes a dictionary array without a copy;
    pyarrow may give a string column in chunks, joined here)."""
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    return pa.RecordBatch.from_arrays([column.combine_chunks() for column in table.columns], names=columns)


def distinct_strings(values: pa.Array) -> Strings:
    """A string column as its distinct values (object strings, "" last, for nulls) and each row's int64 index."""
    if not pa.types.is_dictionary(values.type):
        values = pc.dictionary_encode(values)
    distinct = np.append(values.dictionary.to_numpy(zero_copy_only=False), "")
    return distinct, pc.fill_null(values.indices.cast(pa.int64()), len(distinct) - 1).to_numpy()


def float32_numbers(values: pa.Array) -> np.ndarray:
    """A numeric column as float32, null as NaN."""
    return pc.fill_null(values.cast(pa.float32()), np.nan).to_numpy(zero_copy_only=False)


def _row_function(encoder: RawRowEncoder) -> Callable:
    if encoder not in _ROW_FUNCTIONS:
        strings = {c: (tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64))
                   for c in encoder.string_columns}
        numbers = {c: tf.TensorSpec([None], tf.float32) for c in encoder.numeric_columns}
        held = weakref.ref(encoder)  # the cache holds the encoder weakly: its function must too
        _ROW_FUNCTIONS[encoder] = tf.function(
            lambda strings, numbers: held().encode_distinct(strings, numbers).per_row(),
            input_signature=[strings, numbers])
    return _ROW_FUNCTIONS[encoder]
