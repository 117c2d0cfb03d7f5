"""Preprocessing fitted on the training split: what the one encoder reads.

`trainer.data.fitting` fits it in one pass over the training rows, block by block:
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

from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

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

    def to_json_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Preprocessor:
        data = dict(data)
        for key in ("categorical_columns", "numeric_columns"):
            data[key] = tuple(data[key])
        return cls(**data)


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
