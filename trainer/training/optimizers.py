"""Optimizers for models with large embedding tables.

Keras 3's ``Adam`` updates its moment estimates with dense arithmetic
(``m += (g - m) * (1 - beta_1)``), so a sparse ``tf.IndexedSlices`` gradient
coming out of an ``Embedding`` lookup is densified and the whole table, plus
both of its moment slots, is rewritten on every step, however few rows the
batch touched (keras-team/keras#19992). The cost of a step therefore grows
with the vocabulary size rather than the batch size.

``LazyAdam`` follows TF1's ``LazyAdamOptimizer`` / TensorFlow Addons'
``LazyAdam``: for a sparse gradient it reads and writes ``m``, ``v`` and the
variable only on the rows that appear in the batch (gather, compute, scatter),
with Keras Adam's arithmetic and bias correction from the global step. Dense
gradients take exactly the ``keras.optimizers.Adam`` code path. So on every
row a batch touches, a step equals Keras' Adam given the dense gradient
(tested). The slices of a row looked up several times are summed first, as
Adam's math has it: Keras' Adam given the sparse gradient squares each slice
before summing, so its second moment of such a row is a sum of squares, not
the square of the row's gradient. Rows absent from a
batch keep their moments and do not move on momentum alone, the intended
behaviour for embeddings, whose rows are absent far more often than present.

The step compiles with XLA: an embedding lookup yields one gradient slice per
looked-up id, duplicates included, and they are summed without `tf.unique`
(whose output size depends on the data, which XLA cannot compile well): the
ids are sorted, each run of equal ids becomes one segment, and the segments
are as many as the slices, those past the distinct ids being zero updates to
row 0. Every shape is the batch's, never the table's. Only the TensorFlow
backend produces sparse gradients; on other backends the class is ``Adam``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from trainer.library_internals import adam_slots


@keras.saving.register_keras_serializable(package="trainer")
class LazyAdam(keras.optimizers.Adam):
    """Adam that applies sparse (embedding) gradients to touched rows only.

    Takes the same arguments as ``keras.optimizers.Adam`` and produces the same
    updates for dense gradients.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Apply one update; sparse gradients update only the rows they index."""
        if isinstance(gradient, tf.IndexedSlices):
            self.sparse_update_step(gradient, variable, learning_rate)
        else:
            super().update_step(gradient, variable, learning_rate)

    def sparse_update_step(self, gradient: tf.IndexedSlices, variable: Any, learning_rate: Any) -> None:
        """Adam's update on the rows the sparse gradient indexes; the other rows and their slots keep their values."""
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(learning_rate, dtype) * tf.sqrt(1.0 - tf.pow(beta_2, local_step))
                 / (1.0 - tf.pow(beta_1, local_step)))

        slots = adam_slots(self, variable)
        if variable.shape[0] <= WHOLE_TABLE_PASS_ROWS:
            self.small_table_step(gradient, variable, slots, alpha, (beta_1, beta_2))
            return
        m, v, v_hat = slots
        rows, summed, touched = sum_duplicate_rows(gradient.indices, tf.cast(gradient.values, dtype))
        # Keras Adam's arithmetic, on the touched rows; the padding rows' deltas are zero.
        m_rows, v_rows = tf.gather(m.value, rows), tf.gather(v.value, rows)
        m_delta = (summed - m_rows) * (1.0 - beta_1) * touched
        v_delta = (tf.square(summed) - v_rows) * (1.0 - beta_2) * touched
        self.assign_add(m, tf.IndexedSlices(m_delta, rows))
        self.assign_add(v, tf.IndexedSlices(v_delta, rows))
        m_rows, v_rows = m_rows + m_delta, v_rows + v_delta
        if v_hat is not None:
            v_hat_rows = tf.gather(v_hat.value, rows)
            v_rows = tf.maximum(v_hat_rows, v_rows)
            self.assign_add(v_hat, tf.IndexedSlices((v_rows - v_hat_rows) * touched, rows))
        step = alpha * m_rows / (tf.sqrt(v_rows) + tf.cast(self.epsilon, dtype)) * touched
        self.assign_sub(variable, tf.IndexedSlices(step, rows))

    def small_table_step(self, gradient: tf.IndexedSlices, variable: Any, slots: tuple[Any, Any, Any], alpha: Any,
                         betas: tuple[Any, Any]) -> None:
        """The same update, computed over the whole table: for a table of up to `WHOLE_TABLE_PASS_ROWS`,
        one fused pass over it costs less than sorting the slices (XLA's sort is slow on CPUs)."""
        beta_1, beta_2 = betas
        m, v, v_hat = slots
        table_rows, dtype = variable.shape[0], variable.dtype
        summed = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), gradient.indices, table_rows)
        looked_up = tf.math.unsorted_segment_max(tf.ones_like(gradient.indices, dtype), gradient.indices, table_rows)
        touched = tf.reshape(tf.maximum(looked_up, 0.0), [-1] + [1] * (len(variable.shape) - 1))
        m_new = m.value + (summed - m.value) * (1.0 - beta_1) * touched
        v_new = v.value + (tf.square(summed) - v.value) * (1.0 - beta_2) * touched
        self.assign(m, m_new)
        self.assign(v, v_new)
        if v_hat is not None:
            v_new = tf.maximum(v_hat.value, v_new)
            self.assign(v_hat, v_new)
        self.assign_sub(variable, alpha * m_new / (tf.sqrt(v_new) + tf.cast(self.epsilon, dtype)) * touched)


# Tables up to this many rows are updated in one pass over the table, larger ones row by row (sorted
# slices, gathers and scatters). Keras' Adam, which rewrites whole tables, loses little speed with a
# 139K-row table but most of it with 939K rows (issue 13); sorting a batch's slices made the step
# much longer with every table row by row (bench/bench_vocab.py; figures: the README's benchmarks).
# The batch size is not known here (a trace may leave it open), so the line is drawn by rows alone.
WHOLE_TABLE_PASS_ROWS = 262_144


def sum_duplicate_rows(indices: tf.Tensor, values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The distinct rows of a sparse gradient and each one's summed slice, in shapes of `indices`' length:
    (rows, sums, touched), where `touched` is 1 for the distinct rows and 0 for the padding after them
    (whose row is 0 and sum is 0). No output size depends on the values, so XLA compiles it."""
    slices = tf.shape(indices)[0]
    order = tf.argsort(indices, stable=True)
    sorted_rows = tf.gather(indices, order)
    starts = tf.concat([tf.ones([1], tf.bool), sorted_rows[1:] != sorted_rows[:-1]], axis=0)
    segment = tf.cumsum(tf.cast(starts, tf.int32)) - 1  # each slice's distinct row, in sorted order
    sums = tf.math.unsorted_segment_sum(tf.gather(values, order), segment, slices)
    distinct = segment[-1] + 1
    touched = tf.cast(tf.range(slices) < distinct, values.dtype)
    rows = tf.tensor_scatter_nd_update(tf.zeros_like(indices), segment[:, None], sorted_rows)
    return rows, sums, tf.reshape(touched, [-1] + [1] * (len(values.shape) - 1))
