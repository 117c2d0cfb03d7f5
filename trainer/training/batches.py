"""The training split as batches whose order depends only on (seed, epoch).

`fit(shuffle=True)` draws each epoch's order from a random generator that
starts again when a killed run is resumed, so the resumed epochs would see
other batches than an uninterrupted run. Here the order of epoch `e` is a
stateless permutation seeded by `(seed, e)`, set at the start of each epoch,
so a resumed run trains on exactly the batches an uninterrupted one does.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from trainer.training.arrays import SplitArrays


class EpochShuffledBatches(keras.callbacks.Callback):
    """A tf.data pipeline of the split's batches (pass `.dataset` to fit) and the
    callback that draws each epoch's order before that epoch's iterator starts."""

    def __init__(self, split: SplitArrays, batch_size: int, seed: int) -> None:
        super().__init__()
        self.rows, self.batch_size, self.seed = len(split), batch_size, seed
        self.steps = math.ceil(self.rows / batch_size)
        # Keras opens a new iterator each epoch after on_epoch_begin, so every
        # batch of an epoch is gathered with that epoch's order. On the CPU,
        # where tf.data gathers batches, even when a GPU trains.
        with tf.device("/CPU:0"):
            self.order = tf.Variable(tf.range(self.rows, dtype=tf.int64), trainable=False, name="epoch_order")
            inputs = {name: tf.constant(values) for name, values in split.inputs.items()}
            labels = tf.constant(split.labels)

        def batch(step: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
            rows = self.order[step * batch_size: tf.minimum((step + 1) * batch_size, self.rows)]
            return {name: tf.gather(values, rows) for name, values in inputs.items()}, tf.gather(labels, rows)

        # No tf.data autotuning: Keras starts an iterator at each epoch's end and replaces it at the
        # next one's start, and the replaced iterator's autotuning thread kept the epoch waiting until
        # its sleep ended (2 to 60 s, at random; the README's benchmarks). A batch is one gather, so
        # the default parallelism (the cores) and prefetching train as fast.
        options = tf.data.Options()
        options.autotune.enabled = False
        self.dataset = (tf.data.Dataset.range(self.steps)
                        .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                        .prefetch(tf.data.AUTOTUNE)
                        .with_options(options))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.order.assign(tf.random.experimental.stateless_shuffle(
            tf.range(self.rows, dtype=tf.int64), seed=tf.constant([self.seed, epoch], dtype=tf.int64)))
