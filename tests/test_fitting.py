"""The fitting pass over blocks gives what the rules say, computed here with pandas and spaCy on the training
rows: vocabularies, standardisation and range, title vocabulary, data contract and distinct values; and the
same result whatever the block size."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import SAMPLE

from trainer.config import NetConfig
from trainer.data import fitting, values
from trainer.data.dataset import hash_files, read_rows
from trainer.data.features import EMPTY_TEXT_TOKEN, tokenize
from trainer.data.fitting import FittedPreprocessing, PreprocessingFitter
from trainer.data.ndjson import ReadTally
from trainer.data.splits import TRAIN, VALIDATION
from trainer.data.values import ColumnRoles

# Titles the export's rules and spaCy split apart, and titles without a word; each in a few rows.
ODD_TITLES = ["🔥 breaking: prices 📈 up", "東京の天気は晴れ", "中文标题，测试一下", "!!! ... ???", None, "",
              "U.S. stocks rally", "C++ tips & tricks"]
CONFIG = dataclasses.replace(NetConfig(), categorical_columns=(*NetConfig().categorical_columns, "rare_id"),
                             numeric_columns=(*NetConfig().numeric_columns, "blank_number"))
# Mean and standard deviation are summed in another order than pandas sums them.
STATISTICS = ("numeric_mean", "numeric_std", "mean", "std")
ONE_ROW_BLOCKS = 200


@pytest.fixture(scope="module")
def rows() -> tuple[pa.Table, np.ndarray]:
    """The 2K sample decoded as parsing decodes it, with odd titles, a numeric column without a number, and a
    categorical column whose every value is unique (rarer than min_category_count); random split ids."""
    plain = dataclasses.replace(ColumnRoles.of(CONFIG, with_label=True), categorical=NetConfig().categorical_columns,
                                numeric=NetConfig().numeric_columns)
    table = pa.Table.from_batches(list(read_rows(hash_files(str(SAMPLE)), plain, CONFIG, ReadTally())),
                                  values.decoded_schema(plain)).combine_chunks()
    titles = table.column(CONFIG.text_column).to_pylist()
    for i, title in enumerate(ODD_TITLES):
        for row in range(i, 12 * 97, 97):
            titles[row] = title
    table = table.set_column(table.schema.get_field_index(CONFIG.text_column), CONFIG.text_column,
                             pa.array(titles, pa.string()))
    table = table.append_column("rare_id", pa.array([f"r{i}" for i in range(table.num_rows)]))
    table = table.append_column("blank_number", pa.nulls(table.num_rows, pa.float32()))
    split_ids = np.random.default_rng(0).choice(3, table.num_rows, p=[0.7, 0.1, 0.2]).astype(np.int8)
    return table, split_ids


def most_frequent(counts: pd.Series | Counter[str], min_count: int, max_size: int) -> list[str]:
    """The rule: kept at least `min_count` times, by descending count, ties by value, at most `max_size`."""
    kept = [(-int(n), value) for value, n in dict(counts).items() if n >= min_count]
    return [value for _, value in sorted(kept)][:max_size]


def expected(table: pa.Table, split_ids: np.ndarray) -> dict[str, Any]:
    """The preprocessing JSON, data contract and distinct values, from pandas and spaCy on the split frames."""
    frame = table.to_pandas()
    train, validation = frame[split_ids == TRAIN], frame[split_ids == VALIDATION]
    text, contract = CONFIG.text_column, {}
    vocabularies = {c: most_frequent(train[c].value_counts(), CONFIG.min_category_count, CONFIG.max_categories)
                    for c in CONFIG.categorical_columns}
    for column, vocabulary in vocabularies.items():
        seen = validation[column].dropna()
        contract[column] = {"kind": "categorical", "null_rate": train[column].isna().mean(),
                            "oov_rate": (~seen.isin(vocabulary)).mean(), "vocabulary": vocabulary}
    statistics = []
    for column in CONFIG.numeric_columns:
        numbers = train[column].dropna().astype(np.float64)
        mean, std, low, high = ((numbers.mean(), numbers.std(ddof=0) or 1.0, numbers.min(), numbers.max())
                                if len(numbers) else (0.0, 1.0, 0.0, 0.0))
        statistics.append((mean, std, low, high))
        contract[column] = {"kind": "numeric", "null_rate": train[column].isna().mean(),
                            "mean": mean, "std": std, "min": low, "max": high}
    titles = train[text].fillna("").value_counts()  # spaCy tokenizes each distinct title once; rows weigh them
    tokens_by_title, token_rows = tokenize(titles.index), Counter[str]()
    for tokens, count in zip(tokens_by_title, titles):
        for token in tokens:
            token_rows[token] += count
    contract[text] = {"kind": "text", "null_rate": (train[text].fillna("") == "").mean()}
    mean, std, low, high = (list(map(float, s)) for s in zip(*statistics))
    preprocessor = {
        "categorical_columns": list(CONFIG.categorical_columns), "numeric_columns": list(CONFIG.numeric_columns),
        "text_column": text, "vocabularies": vocabularies,
        "numeric_mean": mean, "numeric_std": std, "numeric_min": low, "numeric_max": high,
        "token_vocabulary": most_frequent(token_rows, CONFIG.text_min_count, CONFIG.text_max_vocabulary),
        "sequence_length": min(max([1, *map(len, tokens_by_title)]), CONFIG.text_max_tokens),
        "empty_text_token": EMPTY_TEXT_TOKEN}
    return {"preprocessor": preprocessor, "contract": {"columns": contract},
            "distinct_values": {c: frame[c].nunique() for c in CONFIG.categorical_columns}}


def streamed(table: pa.Table, split_ids: np.ndarray, block_rows: int) -> FittedPreprocessing:
    """Fitted over blocks of `block_rows`; one-row blocks stop after ONE_ROW_BLOCKS rows (the rest is
    one block): 2,000 of them would take seconds and try nothing more."""
    fitter = PreprocessingFitter(CONFIG)
    last = min(table.num_rows, ONE_ROW_BLOCKS if block_rows == 1 else table.num_rows)
    ends = [*range(block_rows, last, block_rows), table.num_rows]
    for start, end in zip([0, *ends], ends):
        fitter.add(table.slice(start, end - start).to_batches()[0], split_ids[start:end])
    return fitter.result()


def close(found: Any, wanted: Any) -> Any:
    """`found` with its STATISTICS compared within 1e-12 (`wanted == close(found, wanted)`), the rest exactly."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        return {k: (pytest.approx(v, rel=1e-12, abs=1e-12) if k in STATISTICS and k in wanted
                    else close(v, wanted.get(k))) for k, v in found.items()}
    return found


@pytest.fixture(scope="module")
def whole(rows: tuple[pa.Table, np.ndarray]) -> FittedPreprocessing:
    """Fitted with all rows in one block."""
    return streamed(*rows, block_rows=rows[0].num_rows)


def test_the_fit_is_the_rules_applied_to_the_training_rows(
        rows: tuple[pa.Table, np.ndarray], whole: FittedPreprocessing) -> None:
    wanted = expected(*rows)
    assert wanted["preprocessor"] == close(whole.preprocessor.to_json_dict(), wanted["preprocessor"])
    assert wanted["contract"] == close(whole.contract, wanted["contract"])
    assert whole.distinct_values == wanted["distinct_values"]
    # Overrides carry spaCy's own tokens, in the order training first saw the titles (the run's warning
    # names the first few).
    table, split_ids = rows
    train_titles = list(dict.fromkeys(pd.Series(table.column(CONFIG.text_column).to_pylist())[split_ids == TRAIN]
                                      .fillna("")))
    assert whole.overrides and list(whole.overrides) == [t for t in train_titles if t in whole.overrides]
    assert list(whole.overrides.values()) == tokenize(whole.overrides)
    assert whole.agreement is not None and whole.agreement.titles == len(train_titles)


@pytest.mark.parametrize("block_rows", [1, 7])
def test_fitting_in_smaller_blocks_gives_the_same_fit(
        rows: tuple[pa.Table, np.ndarray], whole: FittedPreprocessing, block_rows: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fitting, "PENDING_ROWS", 100)  # block counts join the running totals many times
    fitted = streamed(*rows, block_rows=block_rows)
    wanted = whole.preprocessor.to_json_dict()
    assert wanted == close(fitted.preprocessor.to_json_dict(), wanted)
    assert whole.contract == close(fitted.contract, whole.contract)
    assert fitted.agreement is not None and whole.agreement is not None
    assert fitted.agreement.summary() == whole.agreement.summary()
    assert list(fitted.overrides.items()) == list(whole.overrides.items())
    assert fitted.distinct_values == whole.distinct_values


def test_the_odd_columns_fit_as_the_rules_say(rows: tuple[pa.Table, np.ndarray]) -> None:
    """A column without a number standardises to 0 +- 1; a column of values each rarer than
    min_category_count has an empty vocabulary; null and "" titles are the text column's nulls."""
    fitted = streamed(*rows, block_rows=500)
    pre, contract = fitted.preprocessor, fitted.contract["columns"]
    blank = pre.numeric_columns.index("blank_number")
    assert (pre.numeric_mean[blank], pre.numeric_std[blank], pre.numeric_min[blank]) == (0.0, 1.0, 0.0)
    assert contract["blank_number"]["null_rate"] == 1.0
    assert pre.vocabularies["rare_id"] == [] and contract["rare_id"]["oov_rate"] == 1.0
    assert fitted.distinct_values["rare_id"] == rows[0].num_rows
    assert 0 < contract[CONFIG.text_column]["null_rate"] < 0.02
    assert "東京の天気は晴れ" in pre.token_vocabulary  # a CJK title is one spaCy token, seen in several rows
    assert {"中文标题，测试一下", "U.S. stocks rally"} <= set(fitted.overrides)  # split unlike the TF rules
