"""A split's encoded inputs and labels, and the model's probabilities for them."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trainer import spend_onednn_boolean_notice

EVAL_BATCH_SIZE = 16384

# model -> {(jit_compile, input signature): its traced predict function}
_PREDICT_FUNCTIONS: weakref.WeakKeyDictionary[keras.Model, dict[tuple, Callable]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SplitArrays:
    """Encoded model inputs and labels of one split."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def predict(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Click probabilities, one per row, as float32, in blocks of EVAL_BATCH_SIZE rows.

    Not Keras' `predict`: it traces its step again for each new batch shape (the
    validation split, the test split's, a last smaller block), and TensorFlow
    counts the traces of every model in a process as one function's, so sanity
    and tuning, which train several models, printed its retracing WARNING. Here
    each model has one function whose batch dimension is open: traced once.
    """
    function = _predict_function(model, inputs)
    rows = len(next(iter(inputs.values())))
    blocks = [function({name: values[start:start + EVAL_BATCH_SIZE] for name, values in inputs.items()}).numpy()
              for start in range(0, rows, EVAL_BATCH_SIZE)]
    return np.concatenate(blocks).reshape(-1) if blocks else np.zeros(0, np.float32)


def _predict_function(model: keras.Model, inputs: dict[str, np.ndarray]) -> Callable:
    """The model called as Keras' predict calls it (training=False, XLA when the model uses it), traced once."""
    signature = {name: tf.TensorSpec((None, *values.shape[1:]), tf.as_dtype(values.dtype))
                 for name, values in inputs.items()}
    key = (bool(model.jit_compile), tuple((name, spec.shape, spec.dtype) for name, spec in signature.items()))
    functions = _PREDICT_FUNCTIONS.setdefault(model, {})
    if key not in functions:
        spend_onednn_boolean_notice()
        held = weakref.ref(model)  # the cache holds the model weakly: its functions must too
        functions[key] = tf.function(lambda batch: held()(batch, training=False), input_signature=[signature],
                                     jit_compile=key[0])
    return functions[key]
