"""deep_v1: embeddings of every categorical, the numbers and a mean of title
token embeddings, concatenated into an MLP tower (the seed's first deep model)."""

import keras

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.networks import blocks
from trainer.networks.registry import register_network


@register_network("deep_v1")
def build_deep(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    inputs = blocks.model_inputs(shapes)
    features = blocks.embed_categoricals(inputs, shapes, config) + blocks.numeric_features(inputs)
    if shapes.has_text:
        features.append(blocks.bag_of_tokens(inputs, shapes, config, config.embedding_dim))
    x = blocks.mlp_tower(blocks.concatenate(features), config)
    return keras.Model(inputs, blocks.click_probability(x), name="deep_v1")
