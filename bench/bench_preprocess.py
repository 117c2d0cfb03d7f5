"""Preprocessing 1M rows as `fab train` does once they are parsed: the fitting
pass (each row's split and the splits' sizes, the vocabularies, spaCy on the
distinct training titles, the serving rules against spaCy) and the encode pass
(every split through the one encoder into blocks on disk); and tokenization
alone: every row's title vs each distinct title once.

    python bench/bench_preprocess.py [--rows 1000000]

The parse before them (trainer.data.parsed, paid once per dataset: its cache
serves every later run) is not counted here; bench_load measures reading.
Target (issue 2): preprocessing 1M rows in 15 s or less on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from common import dataset, save

from trainer.config import NetConfig
from trainer.data.features import tokenize
from trainer.data.parsed import ParsedDataset, parse_dataset
from trainer.training.inputs import encoded_splits, fit_pass


def time_preprocessing(parsed: ParsedDataset, config: NetConfig, folder: Path) -> dict[str, float]:
    """The two passes of `fab train` over the parsed rows (trainer.training.inputs), timed apart."""
    started = time.perf_counter()
    fitted = fit_pass(parsed, config)
    fit_done = time.perf_counter()
    encoded_splits(fitted, config, folder)
    encode_done = time.perf_counter()
    return {
        "fit_pass_s": round(fit_done - started, 2),
        "encode_pass_s": round(encode_done - fit_done, 2),
        "total_s": round(encode_done - started, 2),
    }


def time_tokenization(titles: pa.ChunkedArray) -> dict[str, float]:
    """Naive: spaCy's default tokenizer (10,000-entry cache) over every row's title (a missing one as "")."""
    import spacy

    naive_tokenizer = spacy.blank("en").tokenizer
    started = time.perf_counter()
    for doc in naive_tokenizer.pipe(pc.fill_null(titles, "").to_pylist()):
        [t.lower_ for t in doc if not (t.is_punct or t.is_space)]
    naive = time.perf_counter() - started

    started = time.perf_counter()
    distinct = pc.unique(titles).drop_null().to_pylist()
    tokenize(distinct)
    ours = time.perf_counter() - started
    return {"rows": len(titles), "distinct_titles": len(distinct), "every_row_s": round(naive, 2),
            "distinct_once_s": round(ours, 2), "speedup": round(naive / ours, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    config = NetConfig()
    parsed = parse_dataset(str(dataset(args.rows)), config)
    tokenize(["warm up spaCy"])  # its first call loads language data
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as folder:
        preprocessing = time_preprocessing(parsed, config, Path(folder))
    print(f"preprocessing {parsed.rows:,} rows: {preprocessing}")
    titles = pa.chunked_array([batch.column(0) for batch in parsed.batches([config.text_column])])
    tokenization = time_tokenization(titles)
    print(f"tokenization: {tokenization}")
    save("preprocess", {"rows": parsed.rows, "preprocessing": preprocessing, "tokenization": tokenization,
                        "target_s": 15})


if __name__ == "__main__":
    main()
