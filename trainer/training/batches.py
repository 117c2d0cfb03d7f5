"""The training split, streamed from disk as batches whose order depends only on (seed, epoch).

`fit(shuffle=True)` draws each epoch's order from a random generator that
starts again when a killed run is resumed, so the resumed epochs would see
other batches than an uninterrupted run. Here epoch `e`'s order is drawn from
`(seed, e)` alone, set at the start of each epoch, so a resumed run trains on
exactly the batches an uninterrupted one does:

1. the split's blocks (`encoded.EncodedSplit`) in a stateless permutation seeded by (seed, e);
2. consecutive blocks of that order grouped in windows of at most `shuffle_rows` rows (at least one
   block), each read in-graph (`tf.io.read_file` + `decode_raw`), its rows in a stateless permutation
   seeded by (seed, e, window): memory holds a window or two, not the split;
3. the rows cut into batches of `batch_size`, only the epoch's last one smaller.

A split of at most `shuffle_rows` rows is one window: read once and kept in memory (tf.data's
cache), its rows shuffled whole each epoch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import tensorflow as tf

from trainer.training.encoded import ArraySpec, EncodedSplit, window_blocks

Batch = tuple[dict[str, tf.Tensor], tf.Tensor]


class StreamedBatches(keras.callbacks.Callback):
    """A tf.data pipeline of the split's batches (pass `.dataset` to fit) and the
    callback that sets each epoch's order before that epoch's iterator starts."""

    def __init__(self, split: EncodedSplit, batch_size: int, seed: int, shuffle_rows: int) -> None:
        super().__init__()
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.steps = math.ceil(split.rows / batch_size)
        self.blocks_per_window = window_blocks(shuffle_rows, split.block_rows)
        # Keras opens a new iterator each epoch after on_epoch_begin, so every
        # window of an epoch is read with that epoch's order. On the CPU, where
        # tf.data reads and shuffles, even when a GPU trains.
        with tf.device("/CPU:0"):
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_epoch")
            self.block_order = tf.Variable(tf.range(split.blocks_count, dtype=tf.int64), trainable=False,
                                           name="batches_block_order")
            self.files = tf.constant([[str(path) for path in split.block_files(block)]
                                      for block in range(split.blocks_count)])
        # No tf.data autotuning: Keras starts an iterator at each epoch's end and replaces it at the
        # next one's start, and the replaced iterator's autotuning thread kept the epoch waiting until
        # its sleep ended (2 to 60 s, at random; the README's benchmarks). Two calls read blocks, the
        # next window is read while this one is batched, batches are gathered by as many calls as
        # cores, and prefetched.
        options = tf.data.Options()
        options.autotune.enabled = False
        self.dataset = (self._windows()
                        .enumerate()
                        .map(self._ordered, num_parallel_calls=1, deterministic=True)
                        .flat_map(self._window_batches)
                        # A window's last batch is smaller: joined with the next window's first rows.
                        .rebatch(batch_size)
                        # Known to Keras, as an in-memory dataset's would be: it then ends each epoch
                        # at the last step, not by running out of data (with a warning).
                        .apply(tf.data.experimental.assert_cardinality(self.steps))
                        .prefetch(4)
                        .with_options(options))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.assign(epoch)
        self.block_order.assign(tf.random.experimental.stateless_shuffle(
            tf.range(self.split.blocks_count, dtype=tf.int64), seed=tf.constant([self.seed, epoch], dtype=tf.int64)))

    def _windows(self) -> tf.data.Dataset:
        """The epoch's windows, each its blocks' arrays (inputs, then labels) concatenated."""
        # One window holds every block whatever their order: read in file order once and kept,
        # so an epoch starts with its first batch, not with reading the split again.
        one_window = self.split.blocks_count <= self.blocks_per_window
        windows = (tf.data.Dataset.range(self.split.blocks_count)
                   .map(self._block if one_window else self._epoch_block, num_parallel_calls=2, deterministic=True)
                   .ragged_batch(self.blocks_per_window)
                   .map(_concatenated))
        return windows.cache() if one_window else windows

    def _epoch_block(self, position: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The block at `position` in this epoch's order."""
        return self._block(self.block_order[position])

    def _block(self, block: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """One block of the split, read and decoded: its arrays (inputs, then labels)."""
        specs = [*self.split.specs.values(), self.split.labels]
        return tuple(_decode(tf.io.read_file(self.files[block][index]), spec) for index, spec in enumerate(specs))

    def _ordered(self, window: tf.Tensor, arrays: tuple[tf.Tensor, ...]) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """A window's arrays and the order of its rows, shuffled by (seed, epoch, window)."""
        seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.constant(self.seed, tf.int64), self.epoch]),
                                                        window)
        return arrays, tf.random.experimental.stateless_shuffle(tf.range(tf.shape(arrays[-1])[0]), seed=seed)

    def _window_batches(self, arrays: tuple[tf.Tensor, ...], order: tf.Tensor) -> tf.data.Dataset:
        """The window's rows in its order, gathered a batch at a time (not the whole window before
        the first batch: training would wait for it at every epoch's start)."""
        batch_size = self.batch_size

        def batch(step: tf.Tensor) -> Batch:
            rows = order[step * batch_size:(step + 1) * batch_size]
            gathered = [tf.gather(values, rows) for values in arrays]
            return dict(zip(self.split.specs, gathered[:-1], strict=True)), gathered[-1]

        batches = (tf.shape(order, out_type=tf.int64)[0] + batch_size - 1) // batch_size
        return tf.data.Dataset.range(batches).map(batch, num_parallel_calls=os.cpu_count() or 1, deterministic=True)


def _concatenated(*blocks: tf.RaggedTensor) -> tuple[tf.Tensor, ...]:
    """A window's arrays, each its blocks' rows one after the other (blocks x rows -> rows)."""
    return tuple(values.values for values in blocks)


def _decode(data: tf.Tensor, spec: ArraySpec) -> tf.Tensor:
    """Raw little-endian bytes as the array they hold: rows x the spec's shape."""
    values = tf.io.decode_raw(data, tf.as_dtype(spec.dtype), little_endian=True)
    return tf.reshape(values, [-1, *spec.shape])
