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
which impressions are drawn. The catalog's size is a parameter (`Catalog`:
items, publishers, the Zipf exponent of item popularity), so a benchmark can
make millions of distinct item ids; each catalog is a world of its own, and
the default one is that of data/sample_2k.json.

Generation is numpy-vectorised and strings are built and serialised with
pyarrow compute kernels; no Python runs per row.

The modules, each importing only those before it:

    titles    title vocabulary, titles and their words' effects
    world     the shared world, impression sampling, click probability
    writer    rows in export form, NDJSON files, `generate`, `generate_frame`,
              `write_ndjson` and the command line (`main`)

Import from the module itself (`from trainer.data.synthetic.writer import
generate`); this package re-exports nothing. The first line above is the
command line's help text.

    python -m trainer.data.synthetic --rows 2000 --seed 0 --out data/sample_2k.json
    python -m trainer.data.synthetic --rows 1000000 --items 2000000 --out data/ctr_1m_2m_items.json
"""
