"""The package's serving export: `model/serving/1/`, a SavedModel in TF
Serving's versioned layout that scores raw rows, with no Python beyond TensorFlow.

Signatures (both return `click_probability`, float32 of shape (batch,)):
- `serving_default`: one (batch,) input per column the package reads:
  categorical and text columns as strings ("" when missing), numeric columns
  as float32 (NaN when missing);
- `from_examples`: `examples`, serialized `tf.Example` protos (TFX's
  convention), each feature optional, with the same defaults;
- `distinct_values`: each string column as `<column>__distinct`, its distinct
  values, and `<column>__index`, each row's index into them (int64); numeric
  columns as in `serving_default`. `fab score` calls it with Arrow's
  dictionary arrays, so each distinct value is looked up and tokenized once.

Written with Keras 3's `ExportArchive`: the trained model's weights, the
vocabularies as hash tables and the tokenizer's rules all live in one graph.
Every signature runs the model's title tower once per distinct title of the
request (`TitleTowerSplit`), then the rest of the model once per row.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from trainer.data.features import Preprocessor
from trainer.package.layout import DISTINCT_SIGNATURE
from trainer.serving.encoding import EncodedRows, RawRowEncoder
from trainer.serving.towers import TitleTowerSplit

OUTPUT_NAME = "click_probability"
EXAMPLES_INPUT = "examples"
DISTINCT_VALUES, ROW_INDEX = "__distinct", "__index"  # suffixes of a string column's two inputs there


def raw_columns(preprocessor: Preprocessor) -> dict[str, tf.DType]:
    """The signature's inputs, in the order a request lists them."""
    columns = {c: tf.string for c in preprocessor.categorical_columns}
    columns.update((c, tf.float32) for c in preprocessor.numeric_columns)
    if preprocessor.text_column:
        columns[preprocessor.text_column] = tf.string
    return columns


def write_serving_export(model: keras.Model, preprocessor: Preprocessor, overrides: dict[str, list[str]],
                         folder: Path) -> None:
    """Write the SavedModel into `folder` (TF Serving's `<name>/1/`)."""
    encoder, split = RawRowEncoder(preprocessor, overrides), TitleTowerSplit(model)
    columns = raw_columns(preprocessor)

    def probabilities(encoded: EncodedRows) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: tf.reshape(tf.cast(split(encoded), tf.float32), [-1])}

    def click_probability(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return probabilities(encoder(features))

    def from_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return click_probability(tf.io.parse_example(examples, _example_features(columns)))

    def from_distinct_values(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        strings = [c for c, dtype in columns.items() if dtype == tf.string]
        return probabilities(encoder.encode_distinct(
            {c: (features[c + DISTINCT_VALUES], features[c + ROW_INDEX]) for c in strings},
            {c: features[c] for c, dtype in columns.items() if dtype != tf.string}))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(encoder)
    archive.add_endpoint("serving_default", click_probability, input_signature=[
        {c: tf.TensorSpec([None], dtype, name=c) for c, dtype in columns.items()}])
    archive.add_endpoint("from_examples", from_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    archive.add_endpoint(DISTINCT_SIGNATURE, from_distinct_values, input_signature=[_distinct_inputs(columns)])
    archive.write_out(str(folder), verbose=False)


def _distinct_inputs(columns: dict[str, tf.DType]) -> dict[str, tf.TensorSpec]:
    specs = {}
    for column, dtype in columns.items():
        if dtype == tf.string:
            specs[column + DISTINCT_VALUES] = tf.TensorSpec([None], tf.string, name=column + DISTINCT_VALUES)
            specs[column + ROW_INDEX] = tf.TensorSpec([None], tf.int64, name=column + ROW_INDEX)
        else:
            specs[column] = tf.TensorSpec([None], dtype, name=column)
    return specs


def _example_features(columns: dict[str, tf.DType]) -> dict[str, tf.io.FixedLenFeature]:
    return {c: tf.io.FixedLenFeature([], dtype, default_value="" if dtype == tf.string else float("nan"))
            for c, dtype in columns.items()}


def serving_readme(preprocessor: Preprocessor, example_row: dict[str, object]) -> str:
    """model/README.md: what the export takes and returns, and a request for TF Serving's REST API."""
    columns = raw_columns(preprocessor)
    rows = "\n".join(f"| `{c}` | {'string' if dtype == tf.string else 'float32'} | {_missing(c, preprocessor)} |"
                     for c, dtype in columns.items())
    request = json.dumps({"signature_name": "serving_default", "instances": [example_row]}, indent=2)
    return f"""# Serving this model

`serving/1/` is a TensorFlow SavedModel in TF Serving's layout (model name: any; version: 1).
It takes raw rows and returns the click probability; vocabularies, missing values, clipping and the
title tokenizer are inside the graph, so no code of the project that trained it is needed.

    docker run -p 8501:8501 -v "$PWD/serving:/models/ctr" -e MODEL_NAME=ctr tensorflow/serving

## `serving_default`

One input per column, each of shape `[batch]`:

| input | dtype | missing value |
| --- | --- | --- |
{rows}

Output: `{OUTPUT_NAME}`, float32 `[batch]`, the probability of a click.

A categorical value the training split did not have (or had fewer than `min_category_count` times)
scores as the shared unknown category. A number outside the training range scores as the nearest
end of that range.

## `from_examples`

Input `{EXAMPLES_INPUT}`: serialized `tf.Example` protos with the same feature names (a string
feature as bytes_list, a number as float_list); any feature may be absent. Same output.

## `distinct_values`

The same rows in a compact form: each string column as two inputs, `<column>__distinct` (its
distinct values, `[n]` string) and `<column>__index` (each row's index into them, int64 `[batch]`);
numeric columns as above. Each distinct value is looked up once. Same output.

## A request to TF Serving's REST API

`POST http://HOST:8501/v1/models/ctr:predict` with:

```json
{request}
```

TF Serving's JSON accepts `NaN` for a missing number. The answer is
`{{"predictions": [0.0123]}}`, one probability per instance.

## Checking it without a server

    saved_model_cli show --dir serving/1 --signature_def serving_default --tag_set serve
"""


def _missing(column: str, preprocessor: Preprocessor) -> str:
    if column in preprocessor.numeric_columns:
        return "NaN (scores as the training mean)"
    if column == preprocessor.text_column:
        return '"" (the "no text" token)'
    return '"" (the unknown category)'
