"""Item titles: the word lists, and titles drawn from them with their effect on the logit.

A title mixes topical words of its item's category, general filler, and for
some items clickbait or dull words; each word carries an effect, and an item's
title effect is the sum over its words. Everything here is vectorised over
items: titles are assembled as Arrow list arrays, never word by word in Python.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

MIN_TITLE_WORDS, MAX_TITLE_WORDS = 4, 12

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
# An item's category is its index here; the world and the export share it.
CATEGORIES = tuple(CATEGORY_WORDS)

# Logit weights of title words.
CLICKBAIT_EFFECT = (0.25, 0.6)  # uniform range, per word
DULL_EFFECT = (-0.6, -0.25)
CATEGORY_WORD_STD = 0.1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def item_titles(rng: np.random.Generator, category: IntArray) -> tuple[pa.Array, FloatArray]:
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
    # Sorting random keys per row shuffles each title's words in one call;
    # the inf keys keep the -1 padding at the end.
    keys = np.where(slots >= 0, rng.random(slots.shape), np.inf)
    return np.take_along_axis(slots, np.argsort(keys, axis=1), axis=1)
