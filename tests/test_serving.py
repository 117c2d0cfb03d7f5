"""The serving export: raw rows in, the scores training recorded out (it holds the one
encoder training used), for every network, loaded by TensorFlow alone and by
`saved_model_cli`; `score` streams through it."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import NO_XLA, TrainedPackage

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset
from trainer.data.features import NUMERIC_INPUT, TEXT_INPUT, DatasetShapes, tokenize
from trainer.data.parsed import parse_dataset
from trainer.data.splits import plan_splits, split_frame
from trainer.data.values import ColumnRoles
from trainer.networks import get_network, network_names
from trainer.package.layout import SERVING_FOLDER
from trainer.package.loader import Package, load_package
from trainer.run import TrainRequest, train
from trainer.score import score
from trainer.serving import export, scoring
from trainer.serving.encoding import EncodedRows, RawRowEncoder, encode_frame
from trainer.serving.tokenizer import agreement
from trainer.serving.towers import TitleTowerSplit
from trainer.training.arrays import predict
from trainer.training.metrics import binary_metrics

SCORE_PARITY = 1e-6  # the export against the Keras model fed by the same encoder: the title tower split alone
# Titles the export's rules split unlike spaCy (abbreviations, "C++", one-letter hyphen chains).
EXOTIC_TITLES = ["U.S. stocks rally after Dr. Smith speaks", "C++ tips for a-b-c testing", "N.Y. weekend :)"]
UNSEEN_EXOTIC = "Mr. Jones's U.K. trip"
# Titles of emoji and CJK, one of a kind per row: those in the test split were never seen in training.
WORLD_TITLES = ["東京タワー 夜景 🗼✨ {}", "🔥🔥 deals {} 🔥", "北京天气：晴 ☀️ {}", "café ☕ naïve résumé {}…",
                "서울 뉴스 {}😀"]


def messy_rows(sample_path: Path) -> list[dict[str, Any]]:
    """The sample with what real exports hold: null, empty, missing and punctuation-only titles,
    titles spaCy tokenizes its own way, emoji and CJK titles, null and missing numbers and categories."""
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    for number, row in enumerate(rows):
        kind = number % 20
        if kind == 0:
            row["title"] = [None, "", "!!! ..."][number // 20 % 3]
        elif kind == 1:
            del row["title"]
        elif kind == 2:
            row["title"] = EXOTIC_TITLES[number // 20 % len(EXOTIC_TITLES)]
        elif kind == 3:
            row["item_age_hours"] = None
        elif kind == 4:
            del row["position"]
        elif kind == 5:
            row["category"] = None
        elif kind in (6, 7):
            row["title"] = WORLD_TITLES[number // 20 % len(WORLD_TITLES)].format(number)
    return rows


def scoring_rows(sample_path: Path) -> list[dict[str, Any]]:
    """Messy rows, plus values training never saw: unknown and empty categories, numbers far outside
    the training range, an unseen title of the kind the rules split differently."""
    rows = messy_rows(sample_path)
    for number, row in enumerate(rows[:200]):
        row.pop("is_click", None)
        kind = number % 5
        if kind == 0:
            row["publisher_id"], row["item_id"] = "pub-never-seen", ""
        elif kind == 1:
            row["item_age_hours"], row["position"] = 1e9, -1e9
        elif kind == 2:
            row["title"] = UNSEEN_EXOTIC
        elif kind == 3:
            row["item_age_hours"] = "NaN"
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def messy_sample(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(messy_rows(sample_path), tmp_path_factory.mktemp("messy") / "messy.json")


@pytest.fixture(scope="module")
def scoring_input(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(scoring_rows(sample_path), tmp_path_factory.mktemp("scoring") / "rows.json")


@pytest.fixture(scope="module")
def network_packages(messy_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """One package per registered network trained one epoch on the messy sample: (zip, training log)."""
    output = tmp_path_factory.mktemp("networks")
    packages = {}
    for network in network_names():
        log = io.StringIO()
        environ = {"TRAINER_EPOCHS": "1", "TRAINER_BATCH_SIZE": "256", "TRAINER_NETWORK": network, **NO_XLA}
        if network == "deep_v1":  # and one with Keras' Adam (the others train with lazy_adam, the default)
            environ |= {"TRAINER_OPTIMIZER": "adam"}
        result = train(TrainRequest("deep_v1", dataset=str(messy_sample), output=str(output), environ=environ),
                       log)
        packages[network] = (result.package_uri, log.getvalue())
    return packages


def raw_frame(package: Package, path: Path) -> Any:
    config = package.config
    frame, _ = load_dataset(str(path), config, with_label=False)
    return frame


def test_the_served_test_scores_are_the_ones_training_recorded(
    network_packages: dict[str, tuple[str, str]], messy_sample: Path
) -> None:
    """Emoji, CJK, punctuation-only, null and missing titles in the test split: model/serving/1 scores them as
    training evaluated them, so the served test AUC is the manifest's."""
    package = load_package(network_packages["deep_v1"][0])
    test = split_test_rows(package, messy_sample)
    titles = test[package.config.text_column].astype(str)
    assert titles.str.contains("東京|北京|서울|🔥").sum() >= 5 and titles.isin(["", "!!! ..."]).sum() >= 5
    served = package.score_frame(test)
    assert auc_of(test, served, package) == pytest.approx(package.manifest["test_metrics"]["auc"], abs=1e-9)
    # The Keras model fed by the encoder training built: the export's scores, to float32's rounding.
    by_training = predict(package.model, encode_frame(training_encoder(package, messy_sample), test))
    np.testing.assert_allclose(served, by_training, atol=SCORE_PARITY, rtol=0)


def split_rows(package: Package, path: Path, split: str) -> pd.DataFrame:
    """One split of the package's run, rebuilt as the run split its data."""
    parsed = parse_dataset(str(path), package.config)
    return split_frame(parsed, plan_splits(parsed, package.config), split,
                       ColumnRoles.of(package.config, with_label=True))


def split_test_rows(package: Package, path: Path) -> pd.DataFrame:
    return split_rows(package, path, "test")


def auc_of(rows: pd.DataFrame, scores: np.ndarray, package: Package) -> float:
    return binary_metrics(rows[package.config.label_column].to_numpy(), scores)["auc"]


def training_encoder(package: Package, path: Path) -> RawRowEncoder:
    """The encoder the run built: the package's preprocessing, spaCy's tokens for the training titles the
    rules split differently."""
    titles = split_rows(package, path, "train")[package.config.text_column].dropna().unique().tolist()
    return RawRowEncoder(package.preprocessor, agreement(titles, tokenize(titles)).overrides)


@pytest.mark.parametrize("network", network_names())
def test_the_distinct_values_signature_scores_as_serving_default(
    network_packages: dict[str, tuple[str, str]], scoring_input: Path, network: str
) -> None:
    """`fab score` calls `distinct_values`; TF Serving's users call `serving_default`: one score."""
    package = load_package(network_packages[network][0])
    signatures, frame = package.serving.signatures, raw_frame(package, scoring_input)
    row_strings, distinct = {}, {}
    for column, spec in signatures["serving_default"].structured_input_signature[1].items():
        if spec.dtype == tf.string:
            values = frame[column].astype(object).where(frame[column].notna(), "")
            row_strings[column] = tf.constant(values.to_numpy(), tf.string)
            codes, uniques = pd.factorize(values)
            distinct |= {column + export.DISTINCT_VALUES: tf.constant(uniques.to_numpy(), tf.string),
                         column + export.ROW_INDEX: tf.constant(codes.astype(np.int64))}
        else:
            row_strings[column] = distinct[column] = tf.constant(frame[column].to_numpy(np.float32))
    by_rows = signatures["serving_default"](**row_strings)[export.OUTPUT_NAME].numpy()
    by_distinct = signatures[export.DISTINCT_SIGNATURE](**distinct)[export.OUTPUT_NAME].numpy()
    assert len(by_rows) == 2000 and np.all(np.isfinite(by_rows))
    np.testing.assert_array_equal(by_distinct, by_rows)


@pytest.mark.parametrize("network", network_names())
def test_the_export_runs_every_networks_title_tower_once_per_distinct_title(network: str) -> None:
    """Found in each network's own graph: a network whose title layers the split missed would score
    every row through them again (rnn_v1's GRU per row: 2.5x the export's CPU time)."""
    shapes = DatasetShapes({"publisher_id": 50, "item_id": 300}, ("position",), text_vocabulary_size=100,
                           text_sequence_length=8)
    model = get_network(network)(dataclasses.replace(NetConfig(), network=network), shapes)
    split = TitleTowerSplit(model)
    assert split.tower is not None, f"{network}: no title tower found"
    assert {t.name for t in split.tower.inputs} == {TEXT_INPUT}
    rng = np.random.default_rng(0)
    rows, titles = 2000, 40
    tokens = rng.integers(0, 100, (titles, 8)) * (np.arange(8) < rng.integers(1, 9, (titles, 1)))  # padded
    tokens[:, 0] = np.maximum(tokens[:, 0], 1)  # every title has a token, as the preprocessor makes sure
    encoded = EncodedRows({"publisher_id": tf.constant(rng.integers(0, 50, rows), tf.int32),
                           "item_id": tf.constant(rng.integers(0, 300, rows), tf.int32),
                           NUMERIC_INPUT: tf.constant(rng.normal(size=(rows, 1)), tf.float32)},
                          tf.constant(tokens, tf.int32), tf.constant(rng.integers(0, titles, rows)))
    by_title = split(encoded).numpy()
    per_row = model(encoded.per_row(), training=False).numpy()
    np.testing.assert_allclose(by_title, per_row, atol=1e-6, rtol=0)


def test_every_training_title_is_encoded_as_spacy_tokenized_it_and_the_run_says_how_many_needed_it(
    network_packages: dict[str, tuple[str, str]], messy_sample: Path
) -> None:
    package_uri, log = network_packages["deep_v1"]
    package = load_package(package_uri)
    titles = split_rows(package, messy_sample, "train")[package.config.text_column].dropna().unique().tolist()
    encoder = training_encoder(package, messy_sample)
    in_graph = [[token.decode() for token in words] for words in encoder.title_words(tf.constant(titles)).to_list()]
    assert in_graph == tokenize(titles)
    # The rules alone miss the exotic titles: the manifest says how often, and the run said so once.
    carried = encoder.overrides.size().numpy()
    tokenizer = package.manifest["serving_tokenizer"]
    assert tokenizer["carried_as_overrides"] == carried >= len(EXOTIC_TITLES)
    assert tokenizer["distinct_titles"] == len(titles)
    [line] = [line for line in log.splitlines() if line.startswith("title tokens: ")]
    assert f"split {carried:,} of {len(titles):,} training titles unlike spaCy" in line


def test_the_rules_agree_with_spacy_on_ordinary_titles_and_name_the_rest(sample_path: Path) -> None:
    titles = sorted({json.loads(line)["title"] for line in sample_path.read_text().splitlines()})
    ordinary = agreement(titles, tokenize(titles))
    assert ordinary.rate == 1.0 and not ordinary.overrides
    exotic = agreement([*titles, *EXOTIC_TITLES], tokenize([*titles, *EXOTIC_TITLES]))
    assert sorted(exotic.overrides) == sorted(EXOTIC_TITLES)
    assert exotic.overrides["U.S. stocks rally after Dr. Smith speaks"][0] == "u.s."


LOAD_WITHOUT_PROJECT = r"""
import json, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"trainer", "spacy", "pandas"}:
            raise ImportError(f"{name} may not be imported here")

sys.meta_path.insert(0, Refuse())
import keras
import tensorflow as tf

folder, rows_file = sys.argv[1], sys.argv[2]
rows = json.load(open(rows_file))
serving = tf.saved_model.load(folder + "/model/serving/1").signatures["serving_default"]
inputs = {name: tf.constant([row[name] for row in rows], spec.dtype)
          for name, spec in serving.structured_input_signature[1].items()}
scores = serving(**inputs)["click_probability"].numpy().tolist()
model = keras.saving.load_model(folder + "/model/model.keras")
print(json.dumps({"scores": scores, "model_inputs": len(model.inputs), "pandas": "pandas" in sys.modules}))
"""


def request_rows(package: Package, path: Path, count: int) -> list[dict[str, Any]]:
    """Rows as a client sends them: every input named, "" and NaN for missing values."""
    rows = []
    for line in path.read_text().splitlines()[:count]:
        record = json.loads(line)
        row = {}
        for name in package.serving.columns:
            value = record.get(name)
            numeric = name in package.config.numeric_columns
            row[name] = (float("nan") if value in (None, "NaN") else float(value)) if numeric else \
                ("" if value is None else str(value))
        rows.append(row)
    return rows


# deep_v1's package was trained with Keras' Adam, rnn_v1's with lazy_adam: plain Keras loads both models.
@pytest.mark.parametrize("network", ["deep_v1", "rnn_v1"])
def test_the_export_loads_without_the_project_and_saved_model_cli_agrees(
    network_packages: dict[str, tuple[str, str]], scoring_input: Path, tmp_path: Path, network: str
) -> None:
    package_uri = network_packages[network][0]
    package = load_package(package_uri)
    with zipfile.ZipFile(package_uri) as archive:
        archive.extractall(tmp_path / "package")
    rows = request_rows(package, scoring_input, 12)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    plain = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PROJECT, str(tmp_path / "package"),
                            str(tmp_path / "rows.json")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           check=False)
    assert plain.returncode == 0, plain.stderr[-2000:]
    loaded = json.loads(plain.stdout.strip().splitlines()[-1])
    assert loaded["pandas"] is False
    expected = package.score_frame(raw_frame(package, scoring_input).head(12))
    np.testing.assert_allclose(loaded["scores"], expected, atol=SCORE_PARITY, rtol=0)

    cli = saved_model_cli_scores(tmp_path / "package" / SERVING_FOLDER, rows, tmp_path)
    np.testing.assert_allclose(cli, loaded["scores"], atol=1e-6, rtol=0)


def saved_model_cli_scores(folder: Path, rows: list[dict[str, Any]], tmp_path: Path) -> np.ndarray:
    """TensorFlow's own `saved_model_cli run` on the rows: inputs as .npy files, the output read back."""
    arrays = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        arrays[name] = tmp_path / f"{name}.npy"
        is_number = isinstance(values[0], float)
        np.save(arrays[name], np.array(values, np.float32) if is_number else np.array([v.encode() for v in values]))
    tool = Path(sys.executable).parent / "saved_model_cli"
    out = tmp_path / "cli"
    proc = subprocess.run([str(tool), "run", "--dir", str(folder), "--tag_set", "serve", "--signature_def",
                           "serving_default", "--inputs", ";".join(f"{n}={p}" for n, p in arrays.items()),
                           "--outdir", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(out / "click_probability.npy")


def test_the_package_documents_its_signature(trained: TrainedPackage) -> None:
    with zipfile.ZipFile(trained.zip_path) as archive:
        readme = archive.read("model/README.md").decode()
    config = NetConfig()
    for column in (*config.categorical_columns, *config.numeric_columns, config.text_column):
        assert f"`{column}`" in readme
    request = json.loads(readme.split("```json\n")[1].split("```")[0])
    assert request["signature_name"] == "serving_default"
    assert set(request["instances"][0]) == {*config.categorical_columns, *config.numeric_columns,
                                            config.text_column}
    assert ":predict" in readme


def scored_lines(text: str) -> dict[str, float]:
    return {row["impression_id"]: row["score"] for row in map(json.loads, text.splitlines())}


def test_score_streams_blocks_through_the_export_and_scores_as_the_whole_input_at_once(
    trained: TrainedPackage, scoring_input: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = scoring_rows_with_mixed_types(scoring_input, tmp_path / "mixed.json")
    monkeypatch.setattr(scoring, "SCORE_BLOCK_BYTES", 64 << 10)  # about ten blocks, and a mixed-type one late
    exported = io.StringIO()
    assert score(str(trained.zip_path), str(rows), None, out=exported, err=io.StringIO()) == 2000
    streamed = scored_lines(exported.getvalue())
    package = load_package(str(trained.zip_path))
    whole = raw_frame(package, rows)
    assert list(streamed) == list(whole["impression_id"])  # every row, in the input's order
    np.testing.assert_allclose(list(streamed.values()), package.score_frame(whole), atol=SCORE_PARITY, rtol=0)


def scoring_rows_with_mixed_types(source: Path, path: Path) -> Path:
    """The rows, where the last hundred write publisher_id as a number (pyarrow refuses the block)."""
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    for row in rows[-100:]:
        row["publisher_id"] = int(row["publisher_id"].removeprefix("pub-"))
    return write_rows(rows, path)


def test_score_prints_and_writes_the_columns_that_drifted(
    trained: TrainedPackage, sample_path: Path, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    for number, row in enumerate(rows):
        row["item_age_hours"] = row["item_age_hours"] * 1000  # far outside the training range
        row["publisher_id"] = f"pub-new-{number}"  # a catalog training never saw
        if number % 2:
            row["category"] = None  # half the categories lost upstream
    drifted = write_rows(rows, tmp_path / "drifted.json")
    err = io.StringIO()
    score(str(trained.zip_path), str(drifted), str(tmp_path / "scores.json"), err=err)
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("scoring: block ")]  # progress
    assert [line.split("'")[1] for line in lines] == ["publisher_id", "category", "item_age_hours"]
    assert "null rate 50.0%" in lines[1] and "outside the training range" in lines[2]
    summary = json.loads((tmp_path / "scores.drift.json").read_text())
    assert summary["drift"] == lines
    assert summary["columns"]["item_age_hours"]["scored"]["above_training_max"] > 1900

    calm = io.StringIO()
    score(str(trained.zip_path), str(sample_path), str(tmp_path / "calm.json"), err=calm)
    # The data it was trained on has not drifted: the progress line alone.
    [progress] = calm.getvalue().splitlines()
    assert progress.startswith("scoring: block 1, 2,000 rows at ")


def test_a_package_whose_vocabularies_are_all_empty_exports_and_serves_its_test_scores(
    sample_path: Path, tmp_path: Path
) -> None:
    # Every value and word rarer than its minimum count: every row is the unknown category and unknown words.
    environ = {"TRAINER_EPOCHS": "1", "TRAINER_MIN_CATEGORY_COUNT": "100000", "TRAINER_TEXT_MIN_COUNT": "100000",
               **NO_XLA}
    result = train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(tmp_path), environ=environ),
                   io.StringIO())
    package = load_package(result.package_uri)
    assert all(not vocabulary for vocabulary in package.preprocessor.vocabularies.values())
    test = split_test_rows(package, sample_path)
    assert auc_of(test, package.score_frame(test), package) == pytest.approx(result.test_metrics["auc"], abs=1e-9)
