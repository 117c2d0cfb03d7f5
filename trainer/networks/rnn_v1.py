"""rnn_v1: a GRU reads the title's tokens in order (word order and phrases
count, not just the bag of words); its final state joins the embeddings."""

import keras
from keras import layers

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.networks import blocks
from trainer.networks.registry import register_network


@register_network("rnn_v1")
def build_rnn(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    inputs = blocks.model_inputs(shapes)
    features = blocks.embed_categoricals(inputs, shapes, config) + blocks.numeric_features(inputs)
    if shapes.has_text:
        tokens = blocks.embed_tokens(inputs, shapes, config, config.embedding_dim)
        features.append(layers.GRU(config.rnn_units, name="title_gru")(tokens))
    x = blocks.mlp_tower(blocks.concatenate(features), config)
    return keras.Model(inputs, blocks.click_probability(x), name="rnn_v1")
