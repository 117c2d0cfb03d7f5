"""Every registered network builds from the sample's shapes and learns; an
unknown name is a clear error; a new network is one decorated builder."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from trainer.config import NetConfig
from trainer.data.dataset import load_dataset
from trainer.data.features import DatasetShapes
from trainer.data.fitting import fit_frame
from trainer.errors import ConfigError
from trainer.networks import blocks, build_model_graph, get_network, network_names, register_network
from trainer.package.loader import load_package
from trainer.run import TrainRequest, train
from trainer.serving.encoding import RawRowEncoder, encode_frame

NO_TITLE_EVERY = 10  # one row in ten: title null, "", no key, or only punctuation
EVEN_BATCH = 125  # divides the 2,000 sample rows


def sample_without_some_titles(sample_path: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """The sample with every tenth title null, empty, left out or tokenless, as
    BigQuery exports NULL titles; also which rows have no title."""
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    no_title = np.arange(len(rows)) % NO_TITLE_EVERY == 0
    for number in np.flatnonzero(no_title):
        form = (number // NO_TITLE_EVERY) % 4
        if form == 2:
            del rows[number]["title"]
        else:
            rows[number]["title"] = [None, "", None, "!!! ..."][form]
    path = folder / "sample_no_titles.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, no_title


@pytest.fixture(scope="module")
def encoded_sample(sample_path: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes, np.ndarray]:
    config = NetConfig()
    path, no_title = sample_without_some_titles(sample_path, tmp_path_factory.mktemp("no_titles"))
    frame, _ = load_dataset(str(path), config)
    fitted = fit_frame(frame, config)
    inputs = encode_frame(RawRowEncoder(fitted.preprocessor, fitted.overrides), frame)
    labels = frame[config.label_column].to_numpy(np.float32).reshape(-1, 1)
    return inputs, labels, fitted.preprocessor.shapes(), no_title


def squared_norms(model: keras.Model) -> tuple[float, float]:
    """(mean squared embedding weight, mean squared dense kernel weight) of a model."""
    embeddings = [w for layer in model.layers if isinstance(layer, keras.layers.Embedding) for w in layer.weights]
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)
               and layer.name != "click_probability"]
    def mean_square(weights: list) -> float:
        return float(np.mean([np.mean(np.square(keras.ops.convert_to_numpy(w))) for w in weights])) if weights else 0.0
    return mean_square(embeddings), mean_square(kernels)


@pytest.mark.parametrize("network", network_names())
def test_l2_keys_shrink_the_embeddings_and_the_dense_kernels(
    network: str, encoded_sample: tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes, np.ndarray]
) -> None:
    inputs, labels, shapes, _ = encoded_sample
    norms = {}
    for name, keys in {"none": {}, "embedding": {"embedding_l2": 0.05}, "dense": {"dense_l2": 0.05}}.items():
        keras.utils.set_random_seed(0)
        # Without XLA: compiling costs more than these few steps; the penalty is the same either way.
        model = build_model_graph(NetConfig(network=network, xla=False, **keys), shapes)
        history = model.fit(inputs, labels, batch_size=EVEN_BATCH, epochs=1, verbose=0, shuffle=False)
        assert np.all(np.isfinite(history.history["loss"]))
        norms[name] = squared_norms(model)
    # Each key shrinks its own weights (the other kind may grow to make up for it).
    assert norms["embedding"][0] < norms["none"][0], norms
    if norms["none"][1]:  # linear_v1 has no hidden or cross layers
        assert norms["dense"][1] < norms["none"][1], norms


def test_the_four_networks_are_registered() -> None:
    assert {"linear_v1", "deep_v1", "rnn_v1", "dcn_v1"} <= set(network_names())


@pytest.mark.parametrize("network", network_names())
def test_network_builds_from_sample_shapes_and_a_short_fit_lowers_the_loss(
    network: str, encoded_sample: tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes, np.ndarray]
) -> None:
    # One title in ten is missing: no NaN anywhere, and those rows still score by their other features.
    inputs, labels, shapes, no_title = encoded_sample
    keras.utils.set_random_seed(0)
    model = build_model_graph(NetConfig(network=network), shapes)  # with XLA, as a user's run compiles it
    # Batches that divide the sample: every step has one shape, so XLA compiles the step once, not twice.
    history = model.fit(inputs, labels, batch_size=EVEN_BATCH, epochs=3, verbose=0, shuffle=True)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    scores = model.predict(inputs, batch_size=len(labels), verbose=0)
    assert scores.shape == (len(labels), 1)
    assert np.all((scores >= 0) & (scores <= 1))  # NaN fails this too
    assert len(np.unique(scores[no_title])) > 1


@pytest.mark.parametrize(("width", "layers", "built"),
                         [(2, 3, [2, 2, 2]), (12, 3, [12, 8, 8]), (256, 3, [256, 128, 64])])
def test_the_tower_is_as_wide_as_hidden_width_says(
    width: int, layers: int, built: list[int],
    encoded_sample: tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes, np.ndarray],
) -> None:
    # config.json records hidden_width: the first layer is that wide even below the halving's floor of 8.
    model = build_model_graph(NetConfig(hidden_width=width, hidden_layers=layers, xla=False), encoded_sample[2])
    assert [model.get_layer(f"hidden_{depth}").units for depth in range(layers)] == built


def test_unknown_network_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        get_network("transformer_v9")
    message = str(caught.value)
    assert "unknown network 'transformer_v9'" in message
    assert f"registered networks: {', '.join(network_names())}" in message


def test_variant_naming_an_unknown_network_fails_before_training(
    tmp_path: Path, output_dir: Path, quick_env: dict[str, str]
) -> None:
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"future": {"network": "transformer_v9"}}))
    with pytest.raises(ConfigError) as caught:
        train(TrainRequest("future", output=str(output_dir), variants_file=variants, environ=quick_env),
              io.StringIO())
    message = str(caught.value)
    assert "unknown network 'transformer_v9'" in message
    assert "network set by variant 'future' in variants.json" in message
    assert not output_dir.exists()


def build_tiny(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    """A network a user might add: width-2 embeddings, the numbers and a bag of words into one unit."""
    inputs = blocks.model_inputs(shapes)
    features = blocks.embed_categoricals(inputs, shapes, config, width=2) + blocks.numeric_features(inputs)
    features.append(blocks.bag_of_tokens(inputs, shapes, config, width=2))
    return keras.Model(inputs, blocks.click_probability(blocks.concatenate(features)), name="tiny_test_v1")


def test_a_new_network_is_one_registered_builder(
    tmp_path: Path, output_dir: Path, sample_path: Path, quick_env: dict[str, str]
) -> None:
    register_network("tiny_test_v1")(build_tiny)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"tiny": {"network": "tiny_test_v1", "learning_rate": 0.01}}))
    log = io.StringIO()
    result = train(TrainRequest("tiny", dataset=str(sample_path), output=str(output_dir), variants_file=variants,
                                environ=quick_env), log)
    assert "variant tiny (network tiny_test_v1)" in log.getvalue()
    assert Path(result.package_uri).is_file()
    assert list(result.epochs["epoch"]) == [1, 2]
    package = load_package(result.package_uri)
    assert package.config.network == "tiny_test_v1"
    frame, _ = load_dataset(str(sample_path), package.config, with_label=False)
    scores = package.score(frame)
    assert scores.shape == (2000,) and np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize(("dropout", "compiled_with_xla"), [(0.0, True), (0.2, False)])
def test_dropout_on_a_cpu_trains_without_xla(
    dropout: float, compiled_with_xla: bool,
    encoded_sample: tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes, np.ndarray]
) -> None:
    # XLA's CPU random numbers make a Dropout model many times slower (the README's benchmarks).
    _, _, shapes, _ = encoded_sample
    model = build_model_graph(NetConfig(dropout=dropout), shapes)
    assert model.jit_compile is compiled_with_xla


def test_a_package_trained_with_missing_titles_scores_them_by_their_other_features(
    tmp_path: Path, output_dir: Path, sample_path: Path, quick_env: dict[str, str]
) -> None:
    # Trained on a gzip export, as EXPORT DATA ... compression='GZIP' writes it.
    plain, no_title = sample_without_some_titles(sample_path, tmp_path)
    path = tmp_path / "train-000000000000.json.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    result = train(TrainRequest("deep_v1", dataset=str(path), output=str(output_dir), environ=quick_env),
                   io.StringIO())
    package = load_package(result.package_uri)
    frame, _ = load_dataset(str(path), package.config, with_label=False)
    scores = package.score(frame.iloc[np.flatnonzero(no_title)])
    assert np.all((scores >= 0) & (scores <= 1))
    assert len(np.unique(scores)) > 1
