"""Small building blocks shared by the networks (inputs, embeddings, towers)."""

from __future__ import annotations

import keras
from keras import layers

from trainer.config import NetConfig
from trainer.data.features import NUMERIC_INPUT, TEXT_INPUT, DatasetShapes

KerasTensor = keras.KerasTensor
# The MLP tower's halving stops here: a deep tower's last layers keep some width (256 >> 6 would be 4).
MIN_HIDDEN_WIDTH = 8


def model_inputs(shapes: DatasetShapes) -> dict[str, KerasTensor]:
    """One input per categorical column, one vector of numbers, one token sequence."""
    inputs = {
        column: keras.Input(shape=(), dtype="int32", name=column)
        for column in shapes.categorical_cardinalities
    }
    if shapes.numeric_features:
        inputs[NUMERIC_INPUT] = keras.Input(
            shape=(len(shapes.numeric_features),), dtype="float32", name=NUMERIC_INPUT
        )
    if shapes.has_text:
        inputs[TEXT_INPUT] = keras.Input(shape=(shapes.text_sequence_length,), dtype="int32", name=TEXT_INPUT)
    return inputs


def embedding_width(cardinality: int, config: NetConfig) -> int:
    # A column with 4 values gains nothing from 16 dimensions.
    return max(1, min(config.embedding_dim, cardinality))


def looked_up_rows_l2(config: NetConfig) -> keras.regularizers.Regularizer | None:
    """`embedding_l2` on the rows a batch looks up, as an activity penalty (Keras averages it over
    the batch): a penalty on the whole table would give every row a gradient at every step."""
    return keras.regularizers.L2(config.embedding_l2) if config.embedding_l2 else None


def kernel_l2(config: NetConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(config.dense_l2) if config.dense_l2 else None


def embed_categoricals(
    inputs: dict[str, KerasTensor], shapes: DatasetShapes, config: NetConfig, width: int | None = None
) -> list[KerasTensor]:
    """A (batch, width) embedding per categorical column; `width` fixes it for all."""
    return [
        layers.Embedding(card, width or embedding_width(card, config), name=f"embed_{column}",
                         activity_regularizer=looked_up_rows_l2(config))(inputs[column])
        for column, card in shapes.categorical_cardinalities.items()
    ]


def embed_tokens(inputs: dict[str, KerasTensor], shapes: DatasetShapes, config: NetConfig,
                 width: int) -> KerasTensor:
    """(batch, sequence, width) token embeddings; padding is masked downstream.
    Every row has at least one unmasked token: a title without any is the
    preprocessor's "no text" token, so means and GRUs never see an empty row."""
    return layers.Embedding(shapes.text_vocabulary_size, width, mask_zero=True, name="embed_tokens",
                            activity_regularizer=looked_up_rows_l2(config))(inputs[TEXT_INPUT])


def bag_of_tokens(inputs: dict[str, KerasTensor], shapes: DatasetShapes, config: NetConfig,
                  width: int) -> KerasTensor:
    """The mean of a title's token embeddings (padding excluded): (batch, width)."""
    return layers.GlobalAveragePooling1D(name="mean_tokens")(embed_tokens(inputs, shapes, config, width))


def numeric_features(inputs: dict[str, KerasTensor]) -> list[KerasTensor]:
    return [inputs[NUMERIC_INPUT]] if NUMERIC_INPUT in inputs else []


def concatenate(features: list[KerasTensor], name: str = "features") -> KerasTensor:
    return features[0] if len(features) == 1 else layers.Concatenate(name=name)(features)


def mlp_tower(x: KerasTensor, config: NetConfig) -> KerasTensor:
    """`hidden_layers` ReLU layers, the first `hidden_width` wide, each next half as wide down to
    MIN_HIDDEN_WIDTH (a first layer narrower than that keeps its width: the network config.json records)."""
    floor = min(MIN_HIDDEN_WIDTH, config.hidden_width)
    for depth in range(config.hidden_layers):
        x = layers.Dense(max(floor, config.hidden_width >> depth), activation="relu", name=f"hidden_{depth}",
                         kernel_regularizer=kernel_l2(config))(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, seed=config.seed + depth)(x)
    return x


def click_probability(x: KerasTensor) -> KerasTensor:
    return layers.Dense(1, activation="sigmoid", name="click_probability")(x)
