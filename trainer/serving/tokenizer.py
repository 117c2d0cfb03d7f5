"""The title tokenizer inside the serving graph, and its agreement with spaCy.

spaCy (`trainer.data.features.tokenize`) defines the vocabulary and encodes
every title at training time. A SavedModel cannot call spaCy, so the export
tokenizes with `tf.strings`: lower-case, then three RE2 rewrites that put
spaces where spaCy's English prefix, suffix and infix rules split a chunk,
then a split on whitespace, dropping tokens that are all punctuation (spaCy's
`is_punct`). The rules follow `spacy/lang/punctuation.py`:

1. characters spaCy always splits off (brackets, ! ? ; double quotes, ellipses,
   dashes, CJK punctuation), and runs of periods or hyphens;
2. characters split off only at the start or the end of a chunk (. , : ' % & #
   currency ...), so that "3.14", "1,000" and "o'neil" stay whole;
3. clitics ("here's" -> here 's, "won't" -> wo n't), units after numbers
   ("10km" -> 10 km, "5g" -> 5 g) and infixes between letters ("state-of-the-art",
   "a/b"), while "covid-19" stays whole.

What RE2 (no look-around) and these rules do not reproduce: spaCy's
tokenizer exceptions (abbreviations such as "U.S." or "Dr.", emoticons), URLs,
"C++"-style tokens, single-letter hyphen chains ("a-b-c"). For the titles of
the training split that tokenize differently, the export carries spaCy's
tokens (`ServingTokenizer.overrides`), so every training title is encoded in
the graph exactly as training encoded it; an unseen title of those kinds may
differ. `agreement` measures how often the rules alone agree, for the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

ALWAYS_SPLIT = r"[()\[\]{}!?;\"“”«»…—–¿¡。？！，、；：～·]|--+|\.\.+"
EDGE_CHARACTERS = r"[.,:'’%=&#*_<>$£€¥§`‘´‚„]"
UNITS = ("km|km²|km³|m|m²|m³|dm|cm|mm|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|km/h|kmh|mph|hpa|pa|mbar"
         "|mb|kb|gb|tb")
CLITIC = r"n['’]t|['’](?:s|re|ve|ll|d|m)"
# (pattern, rewrite) in order. A rewrite names each group of every alternative; the groups of the
# alternatives that did not match are empty, so `\1\4\7 \2\5\8 \3\6\9` spaces the matched one only.
REWRITES = (
    (ALWAYS_SPLIT, r" \0 "),
    (rf"(^|\s)({EDGE_CHARACTERS}+)|({EDGE_CHARACTERS}+)(\s|$)", r"\1\2 \3 \4"),
    (rf"([\pL\pN_])({CLITIC})(\s|$)|(\pN)({UNITS})(\s|$)|([\pL\pN])([:<>=/]|-)(\pL)", r"\1\4\7 \2\5\8 \3\6\9"),
)
PUNCTUATION_TOKEN = r"\p{P}+"
TOKEN_SEPARATOR = "\x1f"  # joins an override's tokens; no title token holds it (it is a control character)


# Letters, spaces and numbers standing alone: no rule applies, so no rewrite runs (most titles).
PLAIN_TITLE = r"(?:[\pL\s]|\pN+(?:\s|$))*"


def rule_tokens(titles: tf.Tensor) -> tf.RaggedTensor:
    """(titles,) strings -> (titles, None) ragged token strings, by the rules above.

    Titles of only letters, spaces and free-standing numbers (most of them) are split as they are:
    no rule applies to them and none of their tokens is punctuation.
    """
    text = tf.strings.lower(titles, encoding="utf-8")
    plain = tf.strings.regex_full_match(text, PLAIN_TITLE)
    positions = tf.range(tf.size(text))
    plain_at, special_at = tf.boolean_mask(positions, plain), tf.boolean_mask(positions, ~plain)
    special = tf.gather(text, special_at)
    for pattern, rewrite in REWRITES:
        special = tf.strings.regex_replace(special, pattern, rewrite)
    special_tokens = tf.strings.split(special)
    words = tf.logical_not(tf.strings.regex_full_match(special_tokens.flat_values, PUNCTUATION_TOKEN))
    special_tokens = tf.ragged.boolean_mask(special_tokens, special_tokens.with_flat_values(words))
    both = tf.concat([tf.strings.split(tf.gather(text, plain_at)), special_tokens], axis=0)
    return tf.gather(both, tf.argsort(tf.concat([plain_at, special_at], axis=0)))


@dataclass(frozen=True)
class Agreement:
    """How the rules compare with spaCy on a set of distinct titles."""

    titles: int
    overrides: dict[str, list[str]] = field(default_factory=dict)  # title -> spaCy's tokens, where they differ

    @property
    def agreeing(self) -> int:
        return self.titles - len(self.overrides)

    @property
    def rate(self) -> float:
        return self.agreeing / self.titles if self.titles else 1.0

    def summary(self) -> dict[str, object]:
        """For the manifest: the rate, and a few titles the rules alone get wrong."""
        return {"distinct_titles": self.titles, "rules_agree": self.agreeing, "rules_agreement_rate": self.rate,
                "carried_as_overrides": len(self.overrides), "examples": sorted(self.overrides)[:5]}


def agreement(titles: Sequence[str], spacy_tokens: Sequence[list[str]], batch: int = 65_536) -> Agreement:
    """Compare the rules with spaCy's tokens of the same titles (distinct ones: each counts once)."""
    overrides: dict[str, list[str]] = {}
    for start in range(0, len(titles), batch):
        chunk, by_spacy = list(titles[start:start + batch]), spacy_tokens[start:start + batch]
        # Joined token lists compare as the lists do: no token is empty or holds the separator.
        ruled = tf.strings.reduce_join(rule_tokens(tf.constant(chunk, tf.string)), axis=1,
                                       separator=TOKEN_SEPARATOR).numpy()
        spacy_joined = np.array([TOKEN_SEPARATOR.join(tokens).encode() for tokens in by_spacy], object)
        for row in np.flatnonzero(ruled != spacy_joined):
            overrides[chunk[row]] = by_spacy[row]
    return Agreement(len(titles), overrides)
