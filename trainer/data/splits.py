"""Splitting the loaded rows: which rows train the model and which are held out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer.errors import DatasetError


def split_dataset(frame: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random train/test split: the same rows land in test on every run."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = max(1, round(len(frame) * test_fraction))
    if n_test >= len(frame):
        raise DatasetError(f"{len(frame)} rows leave nothing to train on with test_fraction={test_fraction}")
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    return frame.iloc[train_rows].reset_index(drop=True), frame.iloc[test_rows].reset_index(drop=True)
