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

NetworkBuilder = Callable[[NetConfig, DatasetShapes], keras.Model]
_NETWORKS: dict[str, NetworkBuilder] = {}


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    def add(builder: NetworkBuilder) -> NetworkBuilder:
        if name in _NETWORKS:
            raise ValueError(f"network '{name}' is registered twice")
        _NETWORKS[name] = builder
        return builder

    return add


def network_names() -> list[str]:
    return sorted(_NETWORKS)


def get_network(name: str) -> NetworkBuilder:
    if name not in _NETWORKS:
        raise ConfigError(f"unknown network '{name}'; registered networks: {', '.join(network_names())}")
    return _NETWORKS[name]
