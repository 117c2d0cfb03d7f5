"""The world every seed shares, the impressions drawn from it, and their click probability.

`shared_world(catalog)` builds the catalog (items with their categories, titles
and quality), the publisher, country and category effects, the interaction
tables and the sampling tables once per `Catalog`, from `WORLD_SEED`, then
calibrates the bias to `TARGET_CLICK_RATE`. `sample_impressions` draws a block
of rows as integer codes and `click_probability` is the planted signal the
labels are drawn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from trainer.data.synthetic.titles import CATEGORIES, item_titles
from trainer.errors import TrainerError

# Independent of the `seed` argument, so every file shares one catalog.
WORLD_SEED = 20261001
# Rows drawn (from the world seed) to solve for the bias that gives the target
# click rate; enough for the rate to land within a few hundredths of a point.
CALIBRATION_ROWS = 200_000
TARGET_CLICK_RATE = 0.08

WINDOW_START = np.datetime64("2026-10-01", "D")
WINDOW_DAYS = 30
# The default catalog: the one data/sample_2k.json was made from.
N_PUBLISHERS = 2_000
N_ITEMS = 200_000
PUBLISHER_ZIPF = 1.1
ITEM_ZIPF = 0.9
CATEGORY_ZIPF = 0.6  # a few big sections (sports, finance), many niche ones
# Not every widget has 12 slots, so later positions are served less often.
POSITION_SERVING_DECAY = 0.12
POSITIONS = 12

PLATFORMS = ("desktop", "mobile", "tablet")
PLATFORM_SHARES = (0.42, 0.50, 0.08)
COUNTRY_SHARES = {
    "US": 30.0, "GB": 9.0, "DE": 7.0, "FR": 6.0, "CA": 5.0, "IN": 5.0, "JP": 4.0,
    "BR": 4.0, "AU": 3.0, "IT": 3.0, "ES": 3.0, "MX": 2.5, "NL": 2.0, "KR": 2.0,
    "SE": 1.5, "PL": 1.5, "TR": 1.5, "ID": 1.5, "ZA": 1.0, "AR": 1.0, "BE": 1.0,
    "CH": 1.0, "IE": 0.8, "NZ": 0.6, "SG": 0.6,
}  # fmt: skip

# Logit weights (title words have theirs in `titles`). The interaction scales
# are what make crosses pay off: with them a linear model over one-hot
# features loses several points of AUC.
POSITION_SLOPE = 0.45  # per unit of log(position)
ITEM_QUALITY_STD = 0.35
PUBLISHER_STD = 0.35
AGE_DECAY = 0.35  # per unit of log1p(age in days)
COUNTRY_STD = 0.2
CATEGORY_STD = 0.25
COUNTRY_CATEGORY_STD = 1.0
PLATFORM_HOUR_SCALE = 1.0
MOBILE_BELOW_FOLD = -0.6  # mobile slots past the first screen
MOBILE_FOLD_POSITION = 4

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class SyntheticDataError(TrainerError, ValueError):
    """A generator argument out of range (rows, seed, a catalog option): one line at the command line."""


@dataclass(frozen=True)
class Catalog:
    """How large the world's catalog is and how skewed its item traffic; each value makes a different world.

    The default is the catalog every shipped file was made from; a benchmark of
    large embedding tables raises `items` to millions of distinct ids.
    """

    items: int = N_ITEMS  # distinct item ids
    publishers: int = N_PUBLISHERS  # distinct publisher ids
    # Zipf exponent of item popularity: the item of rank r is shown in
    # proportion to r ** -item_zipf (0 is uniform; higher, a shorter tail).
    item_zipf: float = ITEM_ZIPF

    def __post_init__(self) -> None:
        problems = [f"{name} must be at least 1, got {value}" for name, value in
                    (("items", self.items), ("publishers", self.publishers)) if value < 1]
        if not (math.isfinite(self.item_zipf) and self.item_zipf >= 0):
            problems.append(f"item_zipf must be a finite number >= 0 (0 is uniform), got {self.item_zipf}")
        if problems:
            raise SyntheticDataError("; ".join(problems))


DEFAULT_CATALOG = Catalog()


@dataclass(frozen=True)
class World:
    """Everything shared by all seeds: catalog, effects and sampling tables."""

    publisher_cdf: FloatArray
    publisher_by_rank: IntArray
    publisher_effect: FloatArray
    item_cdf: FloatArray
    item_by_rank: IntArray
    item_category: IntArray
    item_effect: FloatArray  # quality plus title words
    titles: pa.Array
    country_cdf: FloatArray
    platform_cdf: FloatArray
    country_effect: FloatArray
    category_effect: FloatArray
    country_category: FloatArray
    platform_hour: FloatArray
    platform_position: FloatArray
    hour_cdf: FloatArray
    position_cdf: FloatArray
    bias: float


@dataclass(frozen=True)
class Impressions:
    """Integer codes and numbers for a block of rows, before any string exists."""

    day: IntArray
    second_of_day: IntArray
    publisher: IntArray
    item: IntArray
    country: IntArray
    platform: IntArray
    position: IntArray  # 1-based, as shown in the widget
    item_age_hours: FloatArray

    @property
    def hour(self) -> IntArray:
        return self.second_of_day // 3600


@cache
def shared_world(catalog: Catalog = DEFAULT_CATALOG) -> World:
    """The catalog's world, built on first use: every chunk of every seed draws from it."""
    rng = np.random.default_rng(WORLD_SEED)
    # The draw order below is part of the world's identity: reordering these
    # calls changes every generated file.
    category = _draw(rng, _zipf_cdf(len(CATEGORIES), CATEGORY_ZIPF), catalog.items)
    titles, title_effect = item_titles(rng, category)
    world = World(
        publisher_cdf=_zipf_cdf(catalog.publishers, PUBLISHER_ZIPF),
        publisher_by_rank=rng.permutation(catalog.publishers),
        publisher_effect=rng.normal(0.0, PUBLISHER_STD, catalog.publishers),
        item_cdf=_zipf_cdf(catalog.items, catalog.item_zipf),
        item_by_rank=rng.permutation(catalog.items),
        item_category=category,
        item_effect=rng.normal(0.0, ITEM_QUALITY_STD, catalog.items) + title_effect,
        titles=titles,
        country_cdf=_cdf(np.array(list(COUNTRY_SHARES.values()))),
        platform_cdf=_cdf(np.array(PLATFORM_SHARES)),
        country_effect=rng.normal(0.0, COUNTRY_STD, len(COUNTRY_SHARES)),
        category_effect=rng.normal(0.0, CATEGORY_STD, len(CATEGORIES)),
        country_category=_country_category(rng),
        platform_hour=_platform_hour(),
        platform_position=_platform_position(),
        hour_cdf=_cdf(_diurnal_weights()),
        position_cdf=_cdf(np.exp(-POSITION_SERVING_DECAY * np.arange(POSITIONS))),
        bias=0.0,
    )
    return _calibrated(world, np.random.default_rng([WORLD_SEED, 1]))


def sample_impressions(world: World, rng: np.random.Generator, n: int) -> Impressions:
    """`n` impressions drawn from the world's traffic, as integer codes."""
    hour = _draw(rng, world.hour_cdf, n)
    return Impressions(
        day=rng.integers(0, WINDOW_DAYS, n),
        second_of_day=hour * 3600 + rng.integers(0, 3600, n),
        publisher=world.publisher_by_rank[_draw(rng, world.publisher_cdf, n)],
        item=world.item_by_rank[_draw(rng, world.item_cdf, n)],
        country=_draw(rng, world.country_cdf, n),
        platform=_draw(rng, world.platform_cdf, n),
        position=_draw(rng, world.position_cdf, n) + 1,
        # Median age 18 h, with a long tail of evergreen items weeks old.
        item_age_hours=np.clip(np.round(rng.lognormal(np.log(18.0), 1.3, n), 2), 0.01, None),
    )


def click_probability(world: World, imp: Impressions) -> FloatArray:
    """The chance each impression is clicked: the planted signal labels are drawn from."""
    return _sigmoid(_logit(world, imp))


# --- calibration ------------------------------------------------------------


def _calibrated(world: World, rng: np.random.Generator) -> World:
    """The world with the bias that gives `TARGET_CLICK_RATE` on average."""
    logit = _logit(world, sample_impressions(world, rng, CALIBRATION_ROWS))
    bias = math.log(TARGET_CLICK_RATE / (1 - TARGET_CLICK_RATE)) - float(np.median(logit))
    for _ in range(50):  # Newton on a monotone function: a few steps suffice
        p = _sigmoid(logit + bias)
        step = (p.mean() - TARGET_CLICK_RATE) / (p * (1 - p)).mean()
        bias -= float(step)
        if abs(step) < 1e-9:
            break
    return replace(world, bias=bias)


def _logit(world: World, imp: Impressions) -> FloatArray:
    category = world.item_category[imp.item]
    return (
        world.bias
        - POSITION_SLOPE * np.log(imp.position)
        + world.item_effect[imp.item]
        + world.publisher_effect[imp.publisher]
        - AGE_DECAY * np.log1p(imp.item_age_hours / 24.0)
        + world.country_effect[imp.country]
        + world.category_effect[category]
        + world.country_category[imp.country, category]
        + world.platform_hour[imp.platform, imp.hour]
        + world.platform_position[imp.platform, imp.position - 1]
    )


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


# --- sampling tables --------------------------------------------------------


def _zipf_cdf(n: int, exponent: float) -> FloatArray:
    return _cdf(np.arange(1, n + 1, dtype=np.float64) ** -exponent)


def _cdf(weights: FloatArray) -> FloatArray:
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: FloatArray, n: int) -> IntArray:
    # Inverse-CDF sampling: one uniform and one binary search per row, far
    # cheaper than Generator.choice(p=...) re-validating p on every call.
    codes = np.searchsorted(cdf, rng.random(n), side="right")
    return np.minimum(codes, len(cdf) - 1).astype(np.int64)


def _diurnal_weights() -> FloatArray:
    hours = np.arange(24)
    return 1.0 + 0.6 * np.cos(2 * np.pi * (hours - 19) / 24)


# --- interaction tables -----------------------------------------------------


def _centred(table: FloatArray) -> FloatArray:
    # Removing row and column means leaves a pure interaction: nothing of it
    # can be absorbed by the one-hot main effects of a linear model.
    table = table - table.mean(axis=0, keepdims=True)
    return table - table.mean(axis=1, keepdims=True)


def _country_category(rng: np.random.Generator) -> FloatArray:
    raw = _centred(rng.normal(size=(len(COUNTRY_SHARES), len(CATEGORIES))))
    return raw * (COUNTRY_CATEGORY_STD / raw.std())


def _platform_hour() -> FloatArray:
    hours = np.arange(24)
    night = ((hours >= 22) | (hours < 6)).astype(np.float64)
    office = ((hours >= 9) & (hours < 18)).astype(np.float64)
    evening = ((hours >= 18) & (hours < 23)).astype(np.float64)
    # Mobile clicks at night, desktop in office hours, tablet in the evening.
    table = np.stack([1.0 * office, 1.2 * night, 1.0 * evening])
    return PLATFORM_HOUR_SCALE * _centred(table)


def _platform_position() -> FloatArray:
    table = np.zeros((len(PLATFORMS), POSITIONS))
    table[PLATFORMS.index("mobile"), MOBILE_FOLD_POSITION:] = MOBILE_BELOW_FOLD
    return table
