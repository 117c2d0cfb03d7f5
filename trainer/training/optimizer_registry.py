"""The optimizers the config key `optimizer` names: `OPTIMIZERS.get(name)(learning_rate)`.

Contract of an entry: `factory(learning_rate) -> keras.optimizers.Optimizer`, a new
optimizer for one model. The config, which every `fab` command imports, checks the
key against these names and lists them in its help, so each entry imports Keras
itself, when a model is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trainer.registry import Registry

if TYPE_CHECKING:
    import keras

OptimizerFactory = Callable[[float], "keras.optimizers.Optimizer"]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


@OPTIMIZERS.register("lazy_adam", "Adam on the embedding rows a batch touches: step cost independent of table size")
def lazy_adam(learning_rate: float) -> keras.optimizers.Optimizer:
    from trainer.training.optimizers import LazyAdam

    return LazyAdam(learning_rate=learning_rate)


@OPTIMIZERS.register("adam", "Keras' Adam: every row of every table each step")
def adam(learning_rate: float) -> keras.optimizers.Optimizer:
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate)
