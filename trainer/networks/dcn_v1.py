"""dcn_v1: Deep & Cross Network (DCN-V2, Wang et al. 2021).

Explicit feature crosses x_{l+1} = x0 * (W x_l + b) + x_l, stacked
`cross_layers` deep, beside the MLP tower: click-through data is full of
interactions (country x topic, platform x hour) that crosses learn directly.
"""

import keras
from keras import layers

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.networks import blocks
from trainer.networks.registry import register_network


@register_network("dcn_v1")
def build_dcn(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    inputs = blocks.model_inputs(shapes)
    features = blocks.embed_categoricals(inputs, shapes, config) + blocks.numeric_features(inputs)
    if shapes.has_text:
        features.append(blocks.bag_of_tokens(inputs, shapes, config, config.embedding_dim))
    x0 = blocks.concatenate(features)
    crossed = x0
    for depth in range(config.cross_layers):
        projected = layers.Dense(x0.shape[-1], name=f"cross_{depth}", kernel_regularizer=blocks.kernel_l2(config))(
            crossed)
        crossed = layers.Add(name=f"cross_residual_{depth}")([layers.Multiply()([x0, projected]), crossed])
    deep = blocks.mlp_tower(x0, config)
    x = blocks.concatenate([crossed, deep], name="cross_and_deep") if config.hidden_layers else crossed
    return keras.Model(inputs, blocks.click_probability(x), name="dcn_v1")
