"""A split's encoded inputs and labels, and the model's probabilities for them."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

EVAL_BATCH_SIZE = 16384


@dataclass(frozen=True)
class SplitArrays:
    """Encoded model inputs and labels of one split."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def predict(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Click probabilities, one per row, as float32."""
    return model.predict(inputs, batch_size=EVAL_BATCH_SIZE, verbose=0).reshape(-1)
