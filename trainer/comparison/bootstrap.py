"""The paired bootstrap of an AUC difference: both packages scored on the same test
rows, and each resample draws the same rows for both, so the row-to-row variation
they share cancels and the interval measures only how they differ.

A resample is a vector of counts (how often each row was drawn), and AUC with
weights is computed for all resamples at once from one sort by score: each
positive row earns the weight of the negatives scored below it, half of those
tied with it (the Mann-Whitney form of the rank AUC, ties averaged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95
# Cells of a (resamples x rows) block computed at once: about 32 MB of float64.
BLOCK_CELLS = 4_000_000
# binary_metrics clips probabilities before ranking them: the same clip gives the manifests' AUC exactly.
CLIP = 1e-7


@dataclass(frozen=True)
class AucDifference:
    """other - baseline on the same rows, with its bootstrap interval."""

    difference: float
    low: float
    high: float
    rows: int
    resamples: int
    confidence: float = CONFIDENCE

    @property
    def verdict(self) -> str:
        """Which is better, said only when the whole interval is on one side of 0."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no measurable difference (the interval includes 0)"


def paired_auc_difference(labels: np.ndarray, baseline: np.ndarray, other: np.ndarray,
                          resamples: int = RESAMPLES, seed: int = SEED) -> AucDifference:
    """AUC(other) - AUC(baseline) on these rows, and its percentile interval over seeded paired resamples."""
    y = np.asarray(labels).reshape(-1) == 1
    a, b = (np.clip(np.asarray(s, np.float64).reshape(-1), CLIP, 1 - CLIP) for s in (baseline, other))
    if not len(y) == len(a) == len(b):
        raise ValueError(f"labels and scores differ in length: {len(y)}, {len(a)}, {len(b)}")
    ones = np.ones((1, len(y)))
    point = float(weighted_auc(y, b, ones)[0] - weighted_auc(y, a, ones)[0])
    differences = np.concatenate([weighted_auc(y, b, counts) - weighted_auc(y, a, counts)
                                  for counts in resample_counts(len(y), resamples, seed)])
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.nanpercentile(differences, [tail, 100 - tail])
    return AucDifference(point, float(low), float(high), len(y), resamples)


def resample_counts(rows: int, resamples: int, seed: int) -> list[np.ndarray]:
    """Blocks of (resamples, rows) counts: how many times each row is drawn, `rows` draws with replacement."""
    rng = np.random.default_rng(seed)
    per_block = max(1, BLOCK_CELLS // max(rows, 1))
    blocks = []
    for start in range(0, resamples, per_block):
        size = min(per_block, resamples - start)
        drawn = rng.integers(0, rows, size=(size, rows)) + rows * np.arange(size)[:, None]
        blocks.append(np.bincount(drawn.ravel(), minlength=size * rows).reshape(size, rows).astype(np.float64))
    return blocks


def weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of `scores` for each row of `weights` (resamples x rows); NaN where a resample lacks a class."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, y, w = scores[order], positive[order], weights[:, order]
    new_score = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    group = np.cumsum(new_score) - 1  # the tie group of each row, in score order
    negatives = np.where(y, 0.0, w)
    per_group = np.add.reduceat(negatives, np.flatnonzero(new_score), axis=1)
    below = np.cumsum(per_group, axis=1) - per_group
    credit = below[:, group] + 0.5 * per_group[:, group]
    positives = np.where(y, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives * credit).sum(axis=1) / (positives.sum(axis=1) * negatives.sum(axis=1))
