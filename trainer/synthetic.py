"""Synthetic click-through data in BigQuery's newline-delimited JSON export format.

The rows imitate a content-recommendation widget: a publisher's page shows
items (articles) in numbered slots, and `is_click` says whether the shown item
was clicked. Everything a training pipeline meets in a real export is there:
heavy-tailed ids (Zipf over publishers and items, so a long tail of rare
items), skewed countries, a diurnal traffic curve, titles as free text, and
BigQuery's JSON encoding (INT64 as JSON strings, FLOAT64 as numbers,
TIMESTAMP as "YYYY-MM-DD HH:MM:SS UTC").

The label carries a planted signal, so models can be compared on it:
position, item quality, publisher, item age and title words move the logit
additively, and strong interactions (country x category, platform x hour,
platform x position) move it in ways a linear model over one-hot features
cannot represent. Crosses, or a deep model, must beat logistic regression.

The "world" (catalog of items with their categories, titles and quality,
publisher effects, interaction tables, the bias that sets the click rate) is
built once from a fixed seed, so files made with different seeds share it:
seed 1 is a fair test set for a model trained on seed 0. `seed` only picks
which impressions are drawn.

Generation is numpy-vectorised and strings are built and serialised with
pyarrow compute kernels; no Python runs per row.

    python -m trainer.synthetic --rows 2000 --seed 0 --out data/sample_2k.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

COLUMNS = (
    "impression_id",
    "event_time",
    "publisher_id",
    "item_id",
    "category",
    "country",
    "platform",
    "hour",
    "day_of_week",
    "position",
    "item_age_hours",
    "title",
    "is_click",
)
CHUNK_ROWS = 250_000
# Independent of the `seed` argument, so every file shares one catalog.
WORLD_SEED = 20261001
# Rows drawn (from the world seed) to solve for the bias that gives the target
# click rate; enough for the rate to land within a few hundredths of a point.
CALIBRATION_ROWS = 200_000
TARGET_CLICK_RATE = 0.08

WINDOW_START = np.datetime64("2026-10-01", "D")
WINDOW_DAYS = 30
N_PUBLISHERS = 2_000
N_ITEMS = 200_000
PUBLISHER_ZIPF = 1.1
ITEM_ZIPF = 0.9
CATEGORY_ZIPF = 0.6  # a few big sections (sports, finance), many niche ones
# Not every widget has 12 slots, so later positions are served less often.
POSITION_SERVING_DECAY = 0.12
ID_DIGITS = 10
POSITIONS = 12
MIN_TITLE_WORDS, MAX_TITLE_WORDS = 4, 12

PLATFORMS = ("desktop", "mobile", "tablet")
PLATFORM_SHARES = (0.42, 0.50, 0.08)
COUNTRY_SHARES = {
    "US": 30.0, "GB": 9.0, "DE": 7.0, "FR": 6.0, "CA": 5.0, "IN": 5.0, "JP": 4.0,
    "BR": 4.0, "AU": 3.0, "IT": 3.0, "ES": 3.0, "MX": 2.5, "NL": 2.0, "KR": 2.0,
    "SE": 1.5, "PL": 1.5, "TR": 1.5, "ID": 1.5, "ZA": 1.0, "AR": 1.0, "BE": 1.0,
    "CH": 1.0, "IE": 0.8, "NZ": 0.6, "SG": 0.6,
}  # fmt: skip

# Every category has the same number of words so one stride table serves all.
CATEGORY_WORDS = {
    "sports": "match coach striker playoff championship league season quarterback "
    "goalkeeper transfer tournament injury stadium referee marathon olympic rookie "
    "derby knockout pitcher",
    "finance": "stocks market investors bank mortgage inflation rates savings "
    "retirement dividend crypto bitcoin portfolio earnings tax budget debt wall "
    "lender pension",
    "travel": "beach flights airline hotel cruise island passport vacation resort "
    "backpacking itinerary airport destinations luggage road-trip tourists visa "
    "cabin europe getaway",
    "technology": "smartphone app ai chip software startup laptop robot cloud gadget "
    "battery browser hackers privacy algorithm silicon wearable 5g chatbot quantum",
    "health": "diet sleep heart vitamin doctors cancer workout fitness brain anxiety "
    "vaccine protein gut blood pressure weight hospital symptoms therapy stress",
    "entertainment": "movie trailer netflix series sequel box-office director actor "
    "premiere oscar streaming finale episode comedy thriller documentary cast studio "
    "festival reboot",
    "politics": "election senate vote president campaign congress governor minister "
    "parliament debate bill voters candidate ballot poll scandal lawmakers mayor "
    "supreme court",
    "science": "nasa planet fossil asteroid telescope dinosaur species climate ocean "
    "researchers galaxy mars dna experiment volcano physics moon discovery lab "
    "evolution",
    "food": "recipe chicken pasta dinner chef restaurant dessert pizza vegan coffee "
    "cheese breakfast baking salad soup wine grill cookies spicy kitchen",
    "fashion": "dress outfit sneakers designer runway style jeans jacket trends "
    "handbag vintage boots makeup skincare model wardrobe couture denim summer sale",
    "autos": "car suv electric truck engine tesla sedan recall dealership horsepower "
    "hybrid pickup mileage drivers highway crash ford toyota motor ev",
    "real-estate": "housing home-prices rent apartment condo landlord mansion listing "
    "buyers renters property realtor neighborhood downtown foreclosure zoning loft "
    "suburbs square-feet bedroom",
    "gaming": "console playstation xbox nintendo gamers esports multiplayer boss level "
    "speedrun rpg shooter indie patch controller steam minecraft fortnite "
    "leaderboard dlc",
    "music": "album concert singer band tour guitar rapper lyrics grammy playlist "
    "vinyl rock pop jazz drummer ballad chart hit songwriter orchestra",
    "parenting": "kids toddler baby parents school-age teens moms dads bedtime nursery "
    "daycare pregnancy newborn siblings tantrums homework screen-time playground "
    "stroller family",
    "education": "students teachers college university exam scholarship tuition "
    "classroom graduates campus degree curriculum admissions professor lecture "
    "semester loans kindergarten reading math",
    "weather": "storm hurricane forecast snow rain heatwave tornado flood drought "
    "winds temperatures frost blizzard thunderstorms wildfire humidity sunshine fog "
    "hail meteorologists",
    "pets": "dog cat puppy kitten vet breed rescue shelter adoption leash parrot "
    "hamster groomer paws fur pet-food aquarium tabby retriever litter",
    "home-garden": "garden plants backyard lawn furniture decor renovation tomatoes "
    "flowers patio bathroom paint sofa mattress cleaning closet compost seeds fence "
    "lighting",
    "celebrity": "star royal prince princess wedding divorce red-carpet paparazzi "
    "billionaire influencer couple engaged split rumors stylist memoir heiress "
    "tiktok instagram feud",
}
GENERAL_WORDS = (
    "new how the best first after big world year day people life time inside week "
    "top 10 2026 ways things guide plan city local study experts says could will more "
    "than most just still now here's what this your every long small old real last "
    "next finally ahead behind under over"
)
CLICKBAIT_WORDS = (
    "shocking secret amazing you why unbelievable won't believe incredible insane "
    "stunning jaw-dropping truth revealed hack epic must-see you'll mind-blowing weird"
)
DULL_WORDS = (
    "report update quarterly announces statement results committee policy review "
    "notice annual memo filing minutes regulatory guidance fiscal procedural"
)
CATEGORIES = tuple(CATEGORY_WORDS)

# Logit weights. The interaction scales are what make crosses pay off: with
# them a linear model over one-hot features loses several points of AUC.
POSITION_SLOPE = 0.45  # per unit of log(position)
ITEM_QUALITY_STD = 0.35
PUBLISHER_STD = 0.35
AGE_DECAY = 0.35  # per unit of log1p(age in days)
CLICKBAIT_EFFECT = (0.25, 0.6)  # uniform range, per word
DULL_EFFECT = (-0.6, -0.25)
CATEGORY_WORD_STD = 0.1
COUNTRY_STD = 0.2
CATEGORY_STD = 0.25
COUNTRY_CATEGORY_STD = 1.0
PLATFORM_HOUR_SCALE = 1.0
MOBILE_BELOW_FOLD = -0.6  # mobile slots past the first screen
MOBILE_FOLD_POSITION = 4

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


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


def generate_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` impressions in export representation: strings and one float column.

    Rows come in chunks of `CHUNK_ROWS`, each from its own random stream, so
    the frame is exactly what `generate` writes for the same arguments.
    """
    _check_arguments(rows, seed)
    frames = [_chunk_frame(seed, index, start, stop) for index, start, stop in _chunks(rows)]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def write_ndjson(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as BigQuery-style NDJSON, atomically (temp file, then rename)."""
    with _atomic_output(path) as out:
        _write_lines(out, frame)


def generate(rows: int, path: Path, seed: int = 0) -> None:
    """Generate and write `rows` impressions chunk by chunk, so memory stays flat."""
    _check_arguments(rows, seed)
    with _atomic_output(path) as out:
        for index, start, stop in _chunks(rows):
            _write_lines(out, _chunk_frame(seed, index, start, stop))


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m trainer.synthetic --rows N [--seed S] --out FILE`."""
    parser = argparse.ArgumentParser(prog="python -m trainer.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="number of impressions")
    parser.add_argument("--seed", type=int, default=0, help="picks the impressions drawn")
    parser.add_argument("--out", type=Path, required=True, help="NDJSON file to write")
    args = parser.parse_args(argv)
    generate(args.rows, args.out, args.seed)


# --- chunks -----------------------------------------------------------------


def _check_arguments(rows: int, seed: int) -> None:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _chunks(rows: int) -> Iterator[tuple[int, int, int]]:
    # An empty request still yields one (empty) chunk so callers get columns.
    starts = range(0, max(rows, 1), CHUNK_ROWS)
    for index, start in enumerate(starts):
        yield index, start, min(start + CHUNK_ROWS, rows)


def _chunk_frame(seed: int, index: int, start: int, stop: int) -> pd.DataFrame:
    world = _world()
    # Seeding by (seed, chunk) keeps chunks independent and reproducible
    # without drawing all earlier chunks first.
    rng = np.random.default_rng([seed, index])
    impressions = _sample_impressions(world, rng, stop - start)
    clicks = rng.random(stop - start) < _sigmoid(_logit(world, impressions))
    return _to_frame(world, impressions, clicks, _row_ids(seed, start, stop))


# --- the world --------------------------------------------------------------


@cache
def _world() -> World:
    rng = np.random.default_rng(WORLD_SEED)
    category = _draw(rng, _zipf_cdf(len(CATEGORIES), CATEGORY_ZIPF), N_ITEMS)
    titles, title_effect = _titles(rng, category)
    world = World(
        publisher_cdf=_zipf_cdf(N_PUBLISHERS, PUBLISHER_ZIPF),
        publisher_by_rank=rng.permutation(N_PUBLISHERS),
        publisher_effect=rng.normal(0.0, PUBLISHER_STD, N_PUBLISHERS),
        item_cdf=_zipf_cdf(N_ITEMS, ITEM_ZIPF),
        item_by_rank=rng.permutation(N_ITEMS),
        item_category=category,
        item_effect=rng.normal(0.0, ITEM_QUALITY_STD, N_ITEMS) + title_effect,
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


def _calibrated(world: World, rng: np.random.Generator) -> World:
    """The world with the bias that gives `TARGET_CLICK_RATE` on average."""
    logit = _logit(world, _sample_impressions(world, rng, CALIBRATION_ROWS))
    bias = math.log(TARGET_CLICK_RATE / (1 - TARGET_CLICK_RATE)) - float(np.median(logit))
    for _ in range(50):  # Newton on a monotone function: a few steps suffice
        p = _sigmoid(logit + bias)
        step = (p.mean() - TARGET_CLICK_RATE) / (p * (1 - p)).mean()
        bias -= float(step)
        if abs(step) < 1e-9:
            break
    return replace(world, bias=bias)


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


def _diurnal_weights() -> FloatArray:
    hours = np.arange(24)
    return 1.0 + 0.6 * np.cos(2 * np.pi * (hours - 19) / 24)


# --- titles -----------------------------------------------------------------


def _vocabulary() -> tuple[list[str], dict[str, slice]]:
    """All title words in one list, and where each word group sits in it."""
    groups = {name: words.split() for name, words in CATEGORY_WORDS.items()}
    groups |= {"general": GENERAL_WORDS.split()}
    groups |= {"clickbait": CLICKBAIT_WORDS.split(), "dull": DULL_WORDS.split()}
    words: list[str] = []
    where: dict[str, slice] = {}
    for name, group in groups.items():
        where[name] = slice(len(words), len(words) + len(group))
        words += group
    # Word effects are per word, and topical words are found by category
    # number times group width: both break if the lists drift.
    if len(set(words)) != len(words):
        raise AssertionError("title word groups must not share words")
    if len({_width(where[name]) for name in CATEGORIES}) != 1:
        raise AssertionError("every category needs the same number of title words")
    return words, where


def _word_effects(rng: np.random.Generator, size: int, where: dict[str, slice]) -> FloatArray:
    effect = np.zeros(size)
    for name in CATEGORIES:
        effect[where[name]] = rng.normal(0.0, CATEGORY_WORD_STD, _width(where[name]))
    effect[where["clickbait"]] = rng.uniform(*CLICKBAIT_EFFECT, _width(where["clickbait"]))
    effect[where["dull"]] = rng.uniform(*DULL_EFFECT, _width(where["dull"]))
    return effect


def _width(span: slice) -> int:
    return span.stop - span.start


def _titles(rng: np.random.Generator, category: IntArray) -> tuple[pa.Array, FloatArray]:
    """Each item's title, and the sum of its words' effects on the logit."""
    words, where = _vocabulary()
    effect = _word_effects(rng, len(words), where)
    slots = _title_slots(rng, category, where)
    used = slots >= 0
    title_effect = np.where(used, effect[np.maximum(slots, 0)], 0.0).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(used.sum(axis=1))])
    flat = pa.array(words, pa.large_string()).take(pa.array(slots[used]))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), flat)
    titles = pc.binary_join(lists, pa.scalar(" ", pa.large_string()))
    return titles, title_effect


def _title_slots(rng: np.random.Generator, category: IntArray, where: dict[str, slice]) -> IntArray:
    """Word ids per item, shape (items, MAX_TITLE_WORDS), -1 past the title's end."""
    n = len(category)
    length = MIN_TITLE_WORDS + rng.binomial(MAX_TITLE_WORDS - MIN_TITLE_WORDS, 0.5, n)
    bait, dull = _tone_counts(rng, n)
    topical = np.ceil((length - bait - dull) / 2).astype(np.int64)
    general = length - bait - dull - topical
    per_category = _width(where[CATEGORIES[0]])
    groups = [
        (bait, where["clickbait"].start, _width(where["clickbait"])),
        (topical, where[CATEGORIES[0]].start + category * per_category, per_category),
        (general, where["general"].start, _width(where["general"])),
        (dull, where["dull"].start, _width(where["dull"])),
    ]
    slots = np.full((n, MAX_TITLE_WORDS), -1, dtype=np.int64)
    filled = np.zeros(n, dtype=np.int64)
    for count, first_word, size in groups:
        base = np.broadcast_to(first_word, n)
        for j, word in enumerate(_distinct_picks(rng, n, size, int(count.max(initial=0)))):
            rows = np.flatnonzero(j < count)
            slots[rows, filled[rows]] = base[rows] + word[rows]
            filled[rows] += 1
    return _shuffled(rng, slots)


def _tone_counts(rng: np.random.Generator, n: int) -> tuple[IntArray, IntArray]:
    """How many clickbait and dull words each title gets."""
    tone = rng.choice(3, size=n, p=[0.6, 0.22, 0.18])  # neutral, clickbait, dull
    bait = np.where(tone == 1, rng.integers(1, 4, n), (rng.random(n) < 0.1).astype(np.int64))
    dull = np.where(tone == 2, rng.integers(1, 4, n), (rng.random(n) < 0.1).astype(np.int64))
    return bait, dull


def _distinct_picks(rng: np.random.Generator, n: int, size: int, count: int) -> list[IntArray]:
    # Walking a group with a stride coprime to its size visits `size`
    # different words before repeating, so no title repeats a word.
    strides = np.array([s for s in range(1, size) if math.gcd(s, size) == 1] or [1])
    start = rng.integers(0, size, n)
    stride = strides[rng.integers(0, len(strides), n)]
    return [(start + j * stride) % size for j in range(count)]


def _shuffled(rng: np.random.Generator, slots: IntArray) -> IntArray:
    keys = np.where(slots >= 0, rng.random(slots.shape), np.inf)
    return np.take_along_axis(slots, np.argsort(keys, axis=1), axis=1)


# --- impressions and labels -------------------------------------------------


def _sample_impressions(world: World, rng: np.random.Generator, n: int) -> Impressions:
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


# --- export representation --------------------------------------------------


def _row_ids(seed: int, start: int, stop: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start, stop, dtype=np.int64)), pa.large_string())
    return _join(f"imp-{seed}-", pc.utf8_lpad(numbers, ID_DIGITS, "0"))


def _to_frame(world: World, imp: Impressions, clicks: NDArray[np.bool_], row_ids: pa.Array) -> pd.DataFrame:
    tables = _string_tables()
    hour = imp.hour
    columns = {
        "impression_id": row_ids,
        "event_time": _join(
            _lookup(tables["date_hour"], imp.day * 24 + hour),
            _lookup(tables["minute_second"], imp.second_of_day % 3600),
        ),
        "publisher_id": _lookup(tables["publisher"], imp.publisher),
        "item_id": _lookup(tables["item"], imp.item),
        "category": _lookup(tables["category"], world.item_category[imp.item]),
        "country": _lookup(tables["country"], imp.country),
        "platform": _lookup(tables["platform"], imp.platform),
        "hour": _lookup(tables["number"], hour),
        "day_of_week": _lookup(tables["number"], _bigquery_day_of_week(imp.day)),
        "position": _lookup(tables["number"], imp.position),
        "item_age_hours": pa.array(imp.item_age_hours),
        "title": world.titles.take(pa.array(imp.item)),
        "is_click": _lookup(tables["number"], clicks.astype(np.int64)),
    }
    # Arrow-backed string columns convert to pandas' `str` dtype without a copy.
    return pa.table(columns).to_pandas()


@cache
def _string_tables() -> dict[str, pa.Array]:
    """Every string a column can take, so a row's string is one array lookup."""
    days = WINDOW_START + np.arange(WINDOW_DAYS)
    return {
        "date_hour": _strings(f"{day} {hour:02d}:" for day in days for hour in range(24)),
        "minute_second": _strings(f"{s // 60:02d}:{s % 60:02d} UTC" for s in range(3600)),
        "publisher": _strings(f"pub-{i:05d}" for i in range(N_PUBLISHERS)),
        "item": _strings(f"item-{i:07d}" for i in range(N_ITEMS)),
        "category": _strings(CATEGORIES),
        "country": _strings(COUNTRY_SHARES),
        "platform": _strings(PLATFORMS),
        "number": _strings(str(i) for i in range(max(POSITIONS, 24) + 1)),
    }


def _bigquery_day_of_week(day: IntArray) -> IntArray:
    # 1970-01-01 was a Thursday, which EXTRACT(DAYOFWEEK) numbers 5 (Sunday = 1).
    epoch_day = (WINDOW_START - np.datetime64("1970-01-01", "D")).astype(np.int64)
    return (epoch_day + day + 4) % 7 + 1


def _strings(values: Iterable[str]) -> pa.Array:
    return pa.array(list(values), pa.large_string())


def _lookup(table: pa.Array, codes: IntArray) -> pa.Array:
    return table.take(pa.array(codes))


def _join(*parts: pa.Array | str) -> pa.Array:
    args = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", pa.large_string()))


# --- NDJSON -----------------------------------------------------------------


@contextmanager
def _atomic_output(path: Path) -> Iterator[BinaryIO]:
    """Binary file at `path.with_suffix(".tmp")`, renamed onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    try:
        with open(temporary, "wb") as out:
            yield out
    except BaseException:
        # A half-written file must never be mistaken for a finished one.
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _write_lines(out: BinaryIO, frame: pd.DataFrame) -> None:
    lines = _ndjson_lines(frame)
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    out.writelines(_string_bytes(chunk) for chunk in chunks)


def _string_bytes(array: pa.Array) -> memoryview:
    # A string array stores its values back to back, so with "\n" already at
    # the end of each line the whole file chunk is one slice of that buffer.
    if len(array) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
    return memoryview(array.buffers()[2])[offsets[0] : offsets[-1]]


def _ndjson_lines(frame: pd.DataFrame) -> pa.Array | pa.ChunkedArray:
    """One JSON object per row, keys in column order, each ending in a newline."""
    if len(frame.columns) == 0:
        return _strings(["{}\n"] * len(frame))
    parts: list[pa.Array | str] = []
    literal = "{"
    for position, name in enumerate(frame.columns):
        quoted, values = _json_values(frame[name])
        literal += ("," if position else "") + json.dumps(str(name)) + ":"
        parts += [literal + ('"' if quoted else ""), values]
        literal = '"' if quoted else ""
    parts.append(literal + "}\n")
    return _join(*parts)


def _json_values(column: pd.Series) -> tuple[bool, pa.Array]:
    """JSON text of each value, and whether it still needs surrounding quotes."""
    if column.isna().any():
        raise ValueError(f"column {column.name!r} has missing values; NDJSON needs none")
    if pd.api.types.is_bool_dtype(column):
        return False, _lookup(_strings(["false", "true"]), column.to_numpy(np.int64))
    if pd.api.types.is_integer_dtype(column):
        # BigQuery exports INT64 as strings: doubles cannot hold all 64 bits.
        return True, pc.cast(pa.array(column.to_numpy()), pa.large_string())
    if pd.api.types.is_float_dtype(column):
        return False, _json_floats(column)
    if pd.api.types.is_string_dtype(column):
        return True, _json_escaped(pc.cast(pa.array(column), pa.large_string()))
    raise TypeError(f"column {column.name!r} has dtype {column.dtype}, not exportable")


def _json_floats(column: pd.Series) -> pa.Array:
    values = column.to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"column {column.name!r} has NaN or infinity; JSON has neither")
    # Shortest round-trip text, with ".0" on whole numbers as Python writes them.
    text = pc.cast(pa.array(values), pa.large_string())
    whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(whole, _join(text, ".0"), text)


def _json_escaped(text: pa.Array) -> pa.Array:
    if not pc.any(pc.match_substring_regex(text, r'["\\\x00-\x1f]')).as_py():
        return text  # the common case: nothing to escape, nothing to copy
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    for code in range(0x20):
        text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    return text


if __name__ == "__main__":
    main()
