"""Preprocessing: vocabularies fitted on the training rows, the rules the one encoder
(`RawRowEncoder`) applies with them (out-of-vocabulary row, standardisation, title
tokens), and the JSON form that travels in the package."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trainer.config import NetConfig
from trainer.data.features import EMPTY_TEXT_TOKEN, NUMERIC_INPUT, TEXT_INPUT, Preprocessor
from trainer.data.fitting import fit_frame
from trainer.serving.encoding import RawRowEncoder, encode_frame

CONFIG = NetConfig(
    categorical_columns=("color",), numeric_columns=("size",), text_column="title",
    min_category_count=2, text_min_count=2, text_max_tokens=4,
)


def frame(colors: list[str | None], sizes: list[float], titles: list[str | None]) -> pd.DataFrame:
    """Rows as `load_dataset` gives them: categoricals for text, float32 numbers."""
    return pd.DataFrame({
        "color": pd.Series(colors, dtype="category"),
        "size": np.array(sizes, dtype=np.float32),
        "title": pd.Series(titles, dtype="category"),
    })


def encode(preprocessor: Preprocessor, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The rows as training and the serving export encode them (no title needs spaCy's own tokens here)."""
    return encode_frame(RawRowEncoder(preprocessor, overrides={}), rows)


@pytest.fixture(scope="module")
def train_frame() -> pd.DataFrame:
    return frame(
        colors=["red", "red", "red", "blue", "blue", "green", None, "blue", "red"],
        sizes=[1.0, 2.0, 3.0, 4.0, np.nan, 6.0, 7.0, 8.0, 9.0],
        titles=["Big News!", "big deal", "Big, big news.", "small news", "news", None, "deal or no deal",
                "BIG", "rare words here"],
    )


@pytest.fixture(scope="module")
def fitted(train_frame: pd.DataFrame) -> Preprocessor:
    return fit_frame(train_frame, CONFIG).preprocessor


def test_vocabulary_is_by_descending_frequency_without_rare_values(fitted: Preprocessor) -> None:
    # red 4x, blue 3x, green once (below min_category_count 2).
    assert fitted.vocabularies["color"] == ["red", "blue"]


def test_rare_unseen_and_null_values_share_index_zero(fitted: Preprocessor) -> None:
    rows = frame(colors=["red", "blue", "green", "purple", None], sizes=[1.0] * 5, titles=["x"] * 5)
    np.testing.assert_array_equal(encode(fitted, rows)["color"], [1, 2, 0, 0, 0])


def test_encoding_is_by_value_not_by_the_frame_category_codes(fitted: Preprocessor) -> None:
    # A scoring file lists its categories in another order than the training file.
    rows = frame(colors=["blue", "red"], sizes=[1.0, 1.0], titles=["x", "x"])
    rows["color"] = rows["color"].cat.reorder_categories(["red", "blue"])
    np.testing.assert_array_equal(encode(fitted, rows)["color"], [2, 1])


def test_max_categories_keeps_the_most_frequent(train_frame: pd.DataFrame) -> None:
    config = NetConfig(categorical_columns=("color",), numeric_columns=("size",), text_column="title",
                       min_category_count=1, max_categories=2)
    assert fit_frame(train_frame, config).preprocessor.vocabularies["color"] == ["red", "blue"]


def test_cardinality_is_vocabulary_plus_one_and_sizes_shapes(fitted: Preprocessor) -> None:
    shapes = fitted.shapes()
    assert shapes.categorical_cardinalities == {"color": 3}
    assert shapes.numeric_features == ("size",)
    assert shapes.text_vocabulary_size == len(fitted.token_vocabulary) + 3  # + padding, out-of-vocabulary, no text
    assert shapes.text_sequence_length == 4
    assert shapes.has_text


def test_numbers_are_clipped_to_the_training_range_standardised_and_missing_ones_become_zero(
    fitted: Preprocessor, train_frame: pd.DataFrame
) -> None:
    known = train_frame["size"].dropna().to_numpy(np.float64)
    mean, std, low, high = known.mean(), known.std(), known.min(), known.max()
    rows = frame(colors=["red"] * 5, sizes=[mean, high, high + 1e6, low - 1e6, np.nan], titles=["x"] * 5)
    encoded = encode(fitted, rows)[NUMERIC_INPUT]
    assert encoded.dtype == np.float32 and encoded.shape == (5, 1)
    top, bottom = (high - mean) / std, (low - mean) / std
    np.testing.assert_allclose(encoded[:, 0], [0.0, top, top, bottom, 0.0], atol=1e-5)


def test_title_tokens_are_lower_cased_without_punctuation(fitted: Preprocessor) -> None:
    # "big" 5x, "news" 4x, "deal" 3x; words seen once are out of vocabulary.
    assert fitted.token_vocabulary == ["big", "news", "deal"]


def test_title_encoding_pads_marks_unknown_words_and_caps_length(fitted: Preprocessor) -> None:
    rows = frame(colors=["red"] * 4, sizes=[1.0] * 4,
                 titles=["BIG news!", "big unknown deal", "news news news news big big", "unheard of"])
    tokens = encode(fitted, rows)[TEXT_INPUT]
    big, news, deal, oov, pad = 3, 4, 5, 1, 0
    np.testing.assert_array_equal(tokens, [
        [big, news, pad, pad],
        [big, oov, deal, pad],
        [news, news, news, news],  # cut at text_max_tokens
        [oov, oov, pad, pad],  # words, just unknown ones: not "no text"
    ])


def test_a_title_without_tokens_is_the_no_text_token_not_all_padding(fitted: Preprocessor) -> None:
    # All padding would be masked out whole: a mean over no tokens is 0/0 = NaN.
    rows = frame(colors=["red"] * 4, sizes=[1.0] * 4, titles=[None, "", "!!! ...", "  "])
    tokens = encode(fitted, rows)[TEXT_INPUT]
    np.testing.assert_array_equal(tokens, [[EMPTY_TEXT_TOKEN, 0, 0, 0]] * 4)


def test_a_package_from_before_the_no_text_token_encodes_as_it_was_trained(fitted: Preprocessor) -> None:
    saved = fitted.to_json_dict()
    del saved["empty_text_token"]  # what preprocessing.json held before
    legacy = Preprocessor.from_json_dict(saved)
    rows = frame(colors=["red"] * 2, sizes=[1.0] * 2, titles=["big news", None])
    np.testing.assert_array_equal(encode(legacy, rows)[TEXT_INPUT], [[2, 3, 0, 0], [0, 0, 0, 0]])
    assert legacy.shapes().text_vocabulary_size == len(fitted.token_vocabulary) + 2


def test_sequence_length_is_the_longest_training_title_when_shorter_than_the_cap(
    train_frame: pd.DataFrame,
) -> None:
    config = NetConfig(categorical_columns=("color",), numeric_columns=("size",), text_column="title",
                       text_max_tokens=16)
    fitted = fit_frame(train_frame, config).preprocessor
    assert fitted.shapes().text_sequence_length == 4  # "deal or no deal"
    assert encode(fitted, train_frame)[TEXT_INPUT].shape == (len(train_frame), 4)


def test_json_round_trip_encodes_identically(fitted: Preprocessor, train_frame: pd.DataFrame) -> None:
    restored = Preprocessor.from_json_dict(json.loads(json.dumps(fitted.to_json_dict())))
    rows = pd.concat([train_frame, frame(["purple"], [np.nan], ["brand new words"])], ignore_index=True)
    original, again = encode(fitted, rows), encode(restored, rows)
    assert set(original) == set(again) == {"color", NUMERIC_INPUT, TEXT_INPUT}
    for name in original:
        np.testing.assert_array_equal(original[name], again[name])
    assert restored.shapes() == fitted.shapes()
