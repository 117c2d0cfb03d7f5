"""Preprocessing fitted on the training split: what the one encoder reads.

`Preprocessor.fit` computes, from the training split alone:
- per categorical column, its vocabulary: values seen at least
  `min_category_count` times, numbered from 1 by descending frequency (ties by
  value), capped at `max_categories`; the vocabulary size (cardinality, with
  the shared out-of-vocabulary index 0) sizes the embedding;
- per numeric column, its mean, standard deviation and range;
- for the text column, the token vocabulary: spaCy's rule-based English
  tokenizer (`spacy.blank("en")`, no model download), lower-cased, punctuation
  dropped; each word counted over the training rows, kept when seen at least
  `text_min_count` times, by descending count, capped at `text_max_vocabulary`.
  Token 0 pads, 1 is out-of-vocabulary, 2 is "no text", words start at 3. The
  sequence length is the longest title's token count, capped at `text_max_tokens`. Each distinct title is tokenized
  once: titles repeat with their items, so 1M rows hold far fewer distinct titles.

`trainer.serving.encoding.RawRowEncoder` applies it (the rules are described
there, once), in training and in the serving export alike. The fitted
`Preprocessor` is plain JSON and travels inside the package.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from trainer.config import NetConfig

OOV_INDEX = 0
PAD_TOKEN, OOV_TOKEN, EMPTY_TEXT_TOKEN = 0, 1, 2
NUMERIC_INPUT = "numeric_features"
TEXT_INPUT = "text_tokens"
# spaCy's tokenizer caches 10,000 chunks by default; a title dataset has tens
# of thousands of distinct words, and evicting them costs a re-tokenize each.
TOKENIZER_CACHE_ENTRIES = 1_000_000


@dataclass(frozen=True)
class DatasetShapes:
    """What a network builder needs to know about its inputs."""

    categorical_cardinalities: dict[str, int]
    numeric_features: tuple[str, ...]
    text_vocabulary_size: int
    text_sequence_length: int

    @property
    def has_text(self) -> bool:
        return self.text_sequence_length > 0


@dataclass
class Preprocessor:
    """Fitted vocabularies and statistics; `RawRowEncoder` turns rows into model inputs with them."""

    categorical_columns: tuple[str, ...]
    numeric_columns: tuple[str, ...]
    text_column: str
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    numeric_mean: list[float] = field(default_factory=list)
    numeric_std: list[float] = field(default_factory=list)
    # The training split's range; empty without numeric columns, and before package format version 4
    # (trainer/package/layout.py), whose numbers were not clipped.
    numeric_min: list[float] = field(default_factory=list)
    numeric_max: list[float] = field(default_factory=list)
    token_vocabulary: list[str] = field(default_factory=list)
    sequence_length: int = 0
    # None without a text column, and before package format version 2, whose words start at 2.
    empty_text_token: int | None = None
    # spaCy's tokens of each title seen so far: fitting, then comparing the serving rules with spaCy on the
    # same titles (trainer.serving.tokenizer.agreement), would otherwise tokenize every title twice. Not saved.
    token_cache: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fit(cls, train: pd.DataFrame, config: NetConfig) -> Preprocessor:
        pre = cls(config.categorical_columns, config.numeric_columns, config.text_column)
        for column in pre.categorical_columns:
            pre.vocabularies[column] = _fit_vocabulary(
                train[column].value_counts(sort=False), config.min_category_count, config.max_categories
            )
        if pre.numeric_columns:
            pre.numeric_mean, pre.numeric_std = _fit_standardisation(train, pre.numeric_columns)
            pre.numeric_min, pre.numeric_max = _fit_range(train, pre.numeric_columns)
        if pre.text_column:
            pre.token_vocabulary, pre.sequence_length = _fit_tokens(train[pre.text_column], config, pre.tokens_of)
            pre.empty_text_token = EMPTY_TEXT_TOKEN
        return pre

    def shapes(self) -> DatasetShapes:
        return DatasetShapes(
            categorical_cardinalities={c: len(v) + 1 for c, v in self.vocabularies.items()},
            numeric_features=self.numeric_columns,
            text_vocabulary_size=len(self.token_vocabulary) + self.first_word_token if self.text_column else 0,
            text_sequence_length=self.sequence_length,
        )

    @property
    def first_word_token(self) -> int:
        return OOV_TOKEN + 1 if self.empty_text_token is None else self.empty_text_token + 1

    def tokens_of(self, titles: Iterable[str]) -> list[list[str]]:
        """Each title's tokens, tokenizing only titles not seen before."""
        titles = list(titles)
        new = [t for t in dict.fromkeys(titles) if t not in self.token_cache]
        self.token_cache.update(zip(new, tokenize(new)))
        return [self.token_cache[t] for t in titles]

    def to_json_dict(self) -> dict[str, Any]:
        # The fitted state only: the token cache (compare=False) is a speed-up, not part of it.
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Preprocessor:
        data = dict(data)
        for key in ("categorical_columns", "numeric_columns"):
            data[key] = tuple(data[key])
        return cls(**data)


def _fit_vocabulary(counts: pd.Series, min_count: int, max_size: int) -> list[str]:
    kept = counts[counts >= min_count]
    # Ties broken by value, so the same data always gives the same indices.
    ordered = sorted(zip(kept.to_numpy(), kept.index.astype(str)), key=lambda cv: (-cv[0], cv[1]))
    return [value for _, value in ordered[:max_size]]


def _fit_standardisation(train: pd.DataFrame, columns: tuple[str, ...]) -> tuple[list[float], list[float]]:
    values = train[list(columns)].astype(np.float64)
    mean = values.mean().fillna(0.0)
    std = values.std(ddof=0).fillna(1.0).replace(0.0, 1.0)
    return mean.tolist(), std.tolist()


def _fit_range(train: pd.DataFrame, columns: tuple[str, ...]) -> tuple[list[float], list[float]]:
    values = train[list(columns)].astype(np.float64)
    # A column with no number at all: any value is outside it; its mean (0) is then what it scores as.
    return values.min().fillna(0.0).tolist(), values.max().fillna(0.0).tolist()


def _fit_tokens(
    titles: pd.Series, config: NetConfig, tokens_of: Callable[[Iterable[str]], list[list[str]]]
) -> tuple[list[str], int]:
    categories, codes = _categories_and_codes(titles)
    rows_per_title = np.bincount(codes[codes >= 0], minlength=len(categories))
    counts: Counter[str] = Counter()
    longest = 1
    for tokens, rows in zip(tokens_of(categories), rows_per_title):
        if rows:
            longest = max(longest, len(tokens))
            for token in tokens:
                counts[token] += int(rows)
    kept = [(c, t) for t, c in counts.items() if c >= config.text_min_count]
    kept.sort(key=lambda ct: (-ct[0], ct[1]))
    vocabulary = [t for _, t in kept[: config.text_max_vocabulary]]
    return vocabulary, min(longest, config.text_max_tokens)


def _categories_and_codes(values: pd.Series) -> tuple[pd.Index, np.ndarray]:
    """Distinct values and each row's position among them (-1 for null)."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")
    return values.cat.categories, values.cat.codes.to_numpy()


def tokenize(texts: Any) -> list[list[str]]:
    """Lower-cased word tokens of each text, punctuation and spaces dropped."""
    tokenizer = _tokenizer()
    return [
        [t.lower_ for t in doc if not (t.is_punct or t.is_space)]
        for doc in tokenizer.pipe(str(text) for text in texts)
    ]


@cache
def _tokenizer() -> Any:
    import spacy  # slow to import (see the README's benchmarks); only runs with a text column pay for it

    tokenizer = spacy.blank("en").tokenizer
    tokenizer.max_cache_size = TOKENIZER_CACHE_ENTRIES
    return tokenizer
