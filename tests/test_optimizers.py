"""LazyAdam: Keras' Adam on every row a batch touches, nothing on the others, eager and under XLA.

The reference is Keras' Adam given the dense gradient: Adam's own math, where a row looked up
twice in a batch has one gradient, the sum. (Given the sparse gradient itself, Keras' Adam
squares each looked-up slice before summing them, so its second moment of such a row is
the sum of squares, not the square of the sum.)"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.training.optimizers import WHOLE_TABLE_PASS_ROWS, LazyAdam, sum_duplicate_rows

WIDTH = 4
# A small table takes the whole-table pass; one over WHOLE_TABLE_PASS_ROWS the sorted row-by-row update.
TABLE_ROWS = [16, WHOLE_TABLE_PASS_ROWS + 1]
# Each batch looks some rows up several times (their slices must be summed) and leaves most untouched.
BATCHES = [np.array([[3, 7, 7], [7, 11, 3]]), np.array([[3, 3, 3], [7, 11, 15]]), np.array([[11, 7, 3], [3, 3, 7]])]
TOUCHED_EVERY_STEP = [3, 7, 11]


def trained_table(optimizer: keras.optimizers.Optimizer, jit_compile: bool, rows: int,
                  dense: bool = False) -> np.ndarray:
    """An embedding table after one step per batch of a loss that gives each looked-up row its own gradient."""
    keras.utils.set_random_seed(7)
    table = keras.layers.Embedding(rows, WIDTH)
    target = tf.constant(np.linspace(-1, 1, WIDTH), tf.float32)
    table.build((None, 3))
    variables = table.trainable_variables
    optimizer.build(variables)

    def step(ids: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(table(ids) - target) * tf.cast(ids + 1, tf.float32)[..., None])
        gradients = tape.gradient(loss, variables)
        optimizer.apply([tf.convert_to_tensor(g) for g in gradients] if dense else gradients, variables)

    step = tf.function(step, jit_compile=jit_compile)
    for ids in BATCHES:
        step(tf.constant(ids))
    return keras.ops.convert_to_numpy(table.embeddings)


@pytest.mark.parametrize("rows", TABLE_ROWS)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_lazy_adam_equals_keras_adam_on_touched_rows_and_leaves_the_others(jit_compile: bool, rows: int) -> None:
    initial = trained_table(keras.optimizers.SGD(learning_rate=0.0), jit_compile, rows)
    lazy = trained_table(LazyAdam(learning_rate=0.05), jit_compile, rows)
    dense = trained_table(keras.optimizers.Adam(learning_rate=0.05), jit_compile, rows, dense=True)
    # Rows touched by every batch: Keras' Adam and LazyAdam did the same arithmetic on them.
    np.testing.assert_allclose(lazy[TOUCHED_EVERY_STEP], dense[TOUCHED_EVERY_STEP], rtol=1e-5, atol=1e-6)
    assert not np.allclose(lazy[TOUCHED_EVERY_STEP], initial[TOUCHED_EVERY_STEP])
    # A row no batch touched never moves; Keras' Adam leaves it too (its gradient is always 0).
    never = [r for r in range(rows) if r not in {3, 7, 11, 15}]
    np.testing.assert_array_equal(lazy[never], initial[never])
    # Row 15, touched once in step 2: Keras' Adam moves it on momentum in step 3, LazyAdam does not.
    assert not np.allclose(lazy[15], dense[15])


def test_duplicate_rows_are_summed_in_shapes_of_the_batch() -> None:
    indices = tf.constant([5, 2, 5, 9, 2, 5])
    values = tf.constant(np.arange(12, dtype=np.float32).reshape(6, 2))
    rows, sums, touched = (t.numpy() for t in sum_duplicate_rows(indices, values))
    assert rows.shape == (6,) and sums.shape == (6, 2)
    assert rows[:3].tolist() == [2, 5, 9] and touched[:, 0].tolist() == [1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(sums[:3], [[2 + 8, 3 + 9], [0 + 4 + 10, 1 + 5 + 11], [6, 7]])
    np.testing.assert_array_equal(sums[3:], 0)
