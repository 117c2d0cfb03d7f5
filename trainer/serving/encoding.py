"""`Preprocessor.encode` as TensorFlow ops: raw rows in, model inputs out.

Each rule matches `trainer.data.features` exactly (the export's scores equal
the Keras path's, tested to 1e-5 for every network):
- categorical: a hash table from each vocabulary value to its index (from 1);
  anything else, the empty string (a missing value) included, is index 0;
- numeric: a missing or non-finite number becomes the training mean, then is
  clipped to the training range and standardised, in float32 as training does;
- text: `tokenizer.rule_tokens`, or spaCy's tokens for the training titles the
  rules split differently, looked up in the token vocabulary (1 when unknown),
  truncated to the sequence length and padded with 0; a title with no token
  is the one "no text" token. Each distinct title of a batch is tokenized once,
  and stays once in `EncodedRows` (`TitleTowerSplit` runs the model's title
  tower on it before the rows take their title's result).

`encode_distinct` takes each string column already as its distinct values and
each row's index into them (what an Arrow dictionary array holds): each
distinct value is then looked up once and the rows gather its result, the
same values as looking up every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
