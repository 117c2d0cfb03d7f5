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

A split of at most `shuffle_rows` rows is one window: shuffled whole, each epoch.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from trainer.training.encoded import ArraySpec, EncodedSplit

Batch = tuple[dict[str, tf.Tensor], tf.Tensor]


class StreamedBatches(keras.callbacks.Callback):
    """A tf.data pipeline of the split's batches (pass `.dataset` to fit) and the
    callback that sets each epoch's order before that epoch's iterator starts."""

    def __init__(self, split: EncodedSplit, batch_size: int, seed: int, shuffle_rows: int) -> None:
        super().__init__()
        self.split, self.seed = split, seed
        self.steps = math.ceil(split.rows / batch_size)
        self.blocks_per_window = max(1, shuffle_rows // split.block_rows)
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
        # its sleep ended (2 to 60 s, at random; the README's benchmarks). Blocks are read by a few
        # parallel calls, the next window is shuffled while this one is batched, and batches prefetched.
        options = tf.data.Options()
        options.autotune.enabled = False
        self.dataset = (tf.data.Dataset.range(split.blocks_count)
                        .map(self._block_bytes, num_parallel_calls=2, deterministic=True)
                        .batch(self.blocks_per_window)
                        .enumerate()
                        .map(self._shuffled_window, num_parallel_calls=1, deterministic=True)
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

    def _block_bytes(self, position: tf.Tensor) -> tf.Tensor:
        """The raw bytes of the epoch's `position`-th block: one string per array (inputs, then labels)."""
        files = self.files[self.block_order[position]]
        return tf.stack([tf.io.read_file(files[index]) for index in range(len(self.split.specs) + 1)])

    def _shuffled_window(self, window: tf.Tensor, blocks: tf.Tensor) -> Batch:
        """A window's blocks (strings: blocks x arrays) decoded and concatenated, its rows shuffled by
        (seed, epoch, window)."""
        specs = [*self.split.specs.values(), self.split.labels]
        arrays = [_decode(tf.strings.reduce_join(blocks[:, index]), spec) for index, spec in enumerate(specs)]
        seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.constant(self.seed, tf.int64), self.epoch]),
                                                        window)
        rows = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(arrays[-1])[0]), seed=seed)
        shuffled = [tf.gather(values, rows) for values in arrays]
        return dict(zip(self.split.specs, shuffled[:-1], strict=True)), shuffled[-1]


def _decode(data: tf.Tensor, spec: ArraySpec) -> tf.Tensor:
    """Raw little-endian bytes as the array they hold: rows x the spec's shape."""
    values = tf.io.decode_raw(data, tf.as_dtype(spec.dtype), little_endian=True)
    return tf.reshape(values, [-1, *spec.shape])
