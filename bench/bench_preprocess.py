"""Preprocessing 1M rows (vocabularies, spaCy tokenization, the serving rules
against spaCy, encoding by the one encoder), and tokenization alone: every row's
title vs each distinct title once.

    python bench/bench_preprocess.py [--rows 1000000]

Target (issue 2): preprocessing 1M rows in 15 s or less on 2 cores.
"""

from __future__ import annotations

import argparse
import time

from common import dataset, save

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset
from trainer.data.features import Preprocessor, tokenize
from trainer.data.splits import split_dataset
from trainer.serving.encoding import RawRowEncoder, encode_frame
from trainer.serving.tokenizer import agreement


def time_preprocessing(frame, config: NetConfig) -> dict[str, float]:
    started = time.perf_counter()
    splits = split_dataset(frame, config)
    split_done = time.perf_counter()
    preprocessor = Preprocessor.fit(splits.train, config)
    titles = splits.train[config.text_column].dropna().unique().tolist()
    encoder = RawRowEncoder(preprocessor, agreement(titles, preprocessor.tokens_of(titles)).overrides)
    fit_done = time.perf_counter()
    for _, rows in splits.items():
        encode_frame(encoder, rows)
    encode_done = time.perf_counter()
    return {
        "split_s": round(split_done - started, 2),
        "fit_s": round(fit_done - split_done, 2),
        "encode_s": round(encode_done - fit_done, 2),
        "total_s": round(encode_done - started, 2),
    }


def time_tokenization(titles) -> dict[str, float]:
    """Naive: spaCy's default tokenizer (10,000-entry cache) over every row's title."""
    import spacy

    naive_tokenizer = spacy.blank("en").tokenizer
    started = time.perf_counter()
    for doc in naive_tokenizer.pipe(str(t) for t in titles):
        [t.lower_ for t in doc if not (t.is_punct or t.is_space)]
    naive = time.perf_counter() - started

    started = time.perf_counter()
    distinct = titles.cat.categories
    tokenize(distinct)
    ours = time.perf_counter() - started
    return {"rows": len(titles), "distinct_titles": len(distinct), "every_row_s": round(naive, 2),
            "distinct_once_s": round(ours, 2), "speedup": round(naive / ours, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    config = NetConfig()
    frame, _ = load_dataset(str(dataset(args.rows)), config)
    tokenize(["warm up spaCy"])  # its first call loads language data
    preprocessing = time_preprocessing(frame, config)
    print(f"preprocessing {len(frame):,} rows: {preprocessing}")
    tokenization = time_tokenization(frame[config.text_column])
    print(f"tokenization: {tokenization}")
    save("preprocess", {"rows": len(frame), "preprocessing": preprocessing, "tokenization": tokenization,
                        "target_s": 15})


if __name__ == "__main__":
    main()
