"""The fitting pass over blocks gives what fitting on the whole training frame gives: the same
preprocessing JSON, tokenizer overrides, data contract and distinct values, whatever the block size."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import SAMPLE

from trainer.config import NetConfig
from trainer.data import fitting
from trainer.data.dataset import to_frame
from trainer.data.features import Preprocessor
from trainer.data.fitting import FittedPreprocessing, PreprocessingFitter
from trainer.data.ndjson import read_file
from trainer.data.splits import SPLITS, split_dataset
from trainer.data.values import ColumnRoles
from trainer.serving.contract import fit_contract
from trainer.serving.tokenizer import agreement

# Titles the export's rules and spaCy split apart, and titles without a word; each in a few rows.
ODD_TITLES = ["🔥 breaking: prices 📈 up", "東京の天気は晴れ", "中文标题，测试一下", "!!! ... ???", None, "",
              "U.S. stocks rally", "C++ tips & tricks"]
CONFIG = dataclasses.replace(NetConfig(), categorical_columns=(*NetConfig().categorical_columns, "rare_id"),
                             numeric_columns=(*NetConfig().numeric_columns, "blank_number"))
# Mean and standard deviation are summed in another order than pandas sums them.
STATISTICS = ("numeric_mean", "numeric_std", "mean", "std")
ONE_ROW_BLOCKS = 200


@pytest.fixture(scope="module")
def rows() -> tuple[pa.Table, np.ndarray, dict[str, Any]]:
    """The 2K sample with odd titles, a numeric column without a number, and a categorical column whose
    every value is unique (rarer than min_category_count); split ids from today's split."""
    roles = ColumnRoles.of(CONFIG, with_label=True)
    plain = dataclasses.replace(roles, categorical=NetConfig().categorical_columns, numeric=NetConfig().numeric_columns)
    table = read_file(SAMPLE, plain, subsample=1.0, seed=0).table.combine_chunks()
    titles = table.column(CONFIG.text_column).to_pylist()
    for i, title in enumerate(ODD_TITLES):
        for row in range(i, 12 * 97, 97):
            titles[row] = title
    table = table.set_column(table.schema.get_field_index(CONFIG.text_column), CONFIG.text_column,
                             pa.array(titles, pa.string()))
    table = table.append_column("rare_id", pa.array([f"r{i}" for i in range(table.num_rows)]))
    table = table.append_column("blank_number", pa.nulls(table.num_rows, pa.float32()))
    frame = to_frame(table, roles).assign(row=np.arange(table.num_rows))
    split_ids = np.zeros(table.num_rows, np.int8)
    for split_id, (_, split) in enumerate(split_dataset(frame, CONFIG).items()):
        split_ids[split["row"].to_numpy()] = split_id
    return table, split_ids, expected(table, split_ids)


def expected(table: pa.Table, split_ids: np.ndarray) -> dict[str, Any]:
    """Today's fit on the loaded frame: Preprocessor.fit, the tokenizer check, fit_contract, dataset.json."""
    frame = to_frame(table, ColumnRoles.of(CONFIG, with_label=True))
    train, validation = (frame[split_ids == SPLITS.index(name)].reset_index(drop=True)
                         for name in ("train", "validation"))
    pre = Preprocessor.fit(train, CONFIG)
    titles = train[CONFIG.text_column].dropna().unique().tolist()
    tokenizer = agreement(titles, pre.tokens_of(titles))
    return {"preprocessor": pre.to_json_dict(), "agreement": tokenizer.summary(), "overrides": tokenizer.overrides,
            "contract": fit_contract(pre, train, validation),
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
    """`found` where it is within 1e-12 of `wanted` in STATISTICS, so that == compares the rest exactly."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        return {k: (pytest.approx(wanted[k], rel=1e-12, abs=1e-12) if k in STATISTICS and k in wanted
                    else close(v, wanted.get(k))) for k, v in found.items()}
    return found


@pytest.mark.parametrize("block_rows", [1, 7, 2000])
def test_fitting_block_by_block_equals_fitting_the_training_frame(
        rows: tuple[pa.Table, np.ndarray, dict[str, Any]], block_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    table, split_ids, wanted = rows
    monkeypatch.setattr(fitting, "PENDING_ROWS", 100)  # block counts join the running totals many times
    fitted = streamed(table, split_ids, block_rows)
    assert wanted["preprocessor"] == close(fitted.preprocessor.to_json_dict(), wanted["preprocessor"])
    assert fitted.agreement is not None and fitted.agreement.summary() == wanted["agreement"]
    # In the same order: the run's warning names the first few.
    assert list(fitted.overrides.items()) == list(wanted["overrides"].items()) and wanted["overrides"]
    assert wanted["contract"] == close(fitted.contract, wanted["contract"])
    assert fitted.distinct_values == wanted["distinct_values"]


def test_the_odd_columns_fit_as_the_frame_does(rows: tuple[pa.Table, np.ndarray, dict[str, Any]]) -> None:
    """A column without a number standardises to 0 +- 1; a column of values each rarer than
    min_category_count has an empty vocabulary; null and "" titles are the text column's nulls."""
    fitted = streamed(*rows[:2], block_rows=500)
    pre, contract = fitted.preprocessor, fitted.contract["columns"]
    blank = pre.numeric_columns.index("blank_number")
    assert (pre.numeric_mean[blank], pre.numeric_std[blank], pre.numeric_min[blank]) == (0.0, 1.0, 0.0)
    assert contract["blank_number"]["null_rate"] == 1.0
    assert pre.vocabularies["rare_id"] == [] and contract["rare_id"]["oov_rate"] == 1.0
    assert fitted.distinct_values["rare_id"] == rows[0].num_rows
    assert 0 < contract[CONFIG.text_column]["null_rate"] < 0.02
    assert "東京の天気は晴れ" in pre.token_vocabulary  # a CJK title is one spaCy token, seen in several rows
    assert {"中文标题，测试一下", "U.S. stocks rally"} <= set(fitted.overrides)  # split unlike the TF rules
