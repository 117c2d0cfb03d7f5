"""linear_v1: logistic regression over one-hot categoricals, numbers and a bag of words.

The baseline every deep network has to beat: one weight per categorical value
(an embedding of width 1), per number and per token, summed.
"""

import keras

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.networks import blocks
from trainer.networks.registry import register_network


@register_network("linear_v1")
def build_linear(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    inputs = blocks.model_inputs(shapes)
    terms = blocks.embed_categoricals(inputs, shapes, config, width=1)
    terms += blocks.numeric_features(inputs)
    if shapes.has_text:
        terms.append(blocks.bag_of_tokens(inputs, shapes, config, width=1))
    return keras.Model(inputs, blocks.click_probability(blocks.concatenate(terms)), name="linear_v1")
