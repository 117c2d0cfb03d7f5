"""The network registry: a name maps to a builder.

Contract of a builder: `builder(net_config, dataset_shapes) -> keras.Model`,
an uncompiled functional model whose inputs are those of
`blocks.model_inputs(dataset_shapes)` and whose single output is the click
probability, shape (batch, 1). `build_model_graph` compiles it for training.

Adding a network is one file in this package with one decorated function:

    @register_network("my_net_v1")
    def build_my_net(config: NetConfig, shapes: DatasetShapes) -> keras.Model: ...
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.errors import ConfigError
from trainer.registry import Registry

NetworkBuilder = Callable[[NetConfig, DatasetShapes], keras.Model]
NETWORKS: Registry[NetworkBuilder] = Registry("network")


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    return NETWORKS.register(name)


def network_names() -> list[str]:
    return sorted(NETWORKS.names())


def get_network(name: str) -> NetworkBuilder:
    # Its own wording: a variant's network is a config key, not an option typed on a command line.
    if name not in NETWORKS:
        raise ConfigError(f"unknown network '{name}'; registered networks: {', '.join(network_names())}")
    return NETWORKS.get(name)
