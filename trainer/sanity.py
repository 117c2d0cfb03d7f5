"""Sanity training: every shipped variant, a few epochs on the 2K sample.

What `fab test_sanity` (and Jenkins) runs after any change: each variant must
train, its loss must go down, and its package must be complete and score its
own rows with valid probabilities.
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from pathlib import Path
from typing import TextIO

import numpy as np

from trainer.config import DEFAULT_DATASET, DEFAULT_VARIANTS_FILE, ENV_PREFIX, load_variants
from trainer.data.dataset import load_dataset
from trainer.package.layout import REQUIRED_FILES
from trainer.package.loader import load_package
from trainer.run import TrainRequest, TrainResult, train

# A Level-3 override, the mechanism a user has: short runs.
SANITY_OVERRIDES = {f"{ENV_PREFIX}EPOCHS": "3"}
# The epoch line's "train: logloss": the same training rows scored after each epoch, so the first
# and last epochs compare like for like (metrics.csv's train_mean_batch_loss mixes the epoch's weights).
SANITY_LOSS = "train_logloss"


def run_sanity(output: str, dataset: str = DEFAULT_DATASET, out: TextIO = sys.stdout,
               variants_file: Path = DEFAULT_VARIANTS_FILE) -> list[str]:
    """Train and check every variant of the file; returns the variants that failed."""
    failed, lines = [], []
    variants = list(load_variants(variants_file))
    for number, variant in enumerate(variants, 1):
        print(f"[{number}/{len(variants)}] sanity training {variant}", file=out, flush=True)
        started = time.perf_counter()
        result = train(TrainRequest(variant, dataset, output, variants_file=variants_file,
                                    environ={**os.environ, **SANITY_OVERRIDES}), out)
        problems = package_problems(result, dataset)
        losses = result.epochs[SANITY_LOSS]
        lines.append(
            f"{variant:<10} {'ok' if not problems else 'FAILED':<7} train logloss {losses.iloc[0]:.4f} -> "
            f"{losses.iloc[-1]:.4f}  validation auc {result.validation_metrics['auc']:.3f}  "
            f"test auc {result.test_metrics['auc']:.3f}  "
            f"{time.perf_counter() - started:5.1f} s  {'; '.join(problems)}"
        )
        if problems:
            failed.append(variant)
    print("\nsanity training on " + dataset, *lines, sep="\n", file=out)
    return failed


def package_problems(result: TrainResult, dataset: str) -> list[str]:
    """What is wrong with a sanity run's package, in words (empty when fine)."""
    problems = []
    losses = result.epochs[SANITY_LOSS]
    if not losses.iloc[-1] < losses.iloc[0]:
        problems.append("the train logloss did not go down")
    with zipfile.ZipFile(result.package_uri) as archive:
        names = archive.namelist()
    problems += [f"{name} missing from the package" for name in REQUIRED_FILES if name not in names]
    if not any("tfevents" in name for name in names):
        problems.append("no TensorBoard event files in the package")
    package = load_package(result.package_uri)
    frame, _ = load_dataset(dataset, package.config, with_label=False)
    scores = package.score_frame(frame)
    if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
        problems.append("scores outside [0, 1]")
    return problems
