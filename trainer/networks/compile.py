"""From a config and the dataset's shapes to a model ready for `fit`."""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.config import NetConfig
from trainer.data.features import DatasetShapes
from trainer.networks.registry import get_network
from trainer.training.optimizer_registry import OPTIMIZERS

# Training steps per call of the train function: each call costs Python and a
# sync, small against 8 steps at 1M rows, and 32 steps per call were no faster
# (see the README's benchmarks: bench/bench_train.py --levers).
STEPS_PER_EXECUTION = 8


def use_xla(config: NetConfig) -> bool:
    """XLA unless dropout would run on the CPU: XLA's CPU random-number
    generator makes a Dropout model many times slower (see the README's benchmarks).
    Nor under a MirroredStrategy: XLA then failed to reach the other devices'
    variables (tested on two logical CPUs)."""
    cpu_dropout = config.dropout and not tf.config.list_physical_devices("GPU")
    return config.xla and not cpu_dropout and not tf.distribute.has_strategy()


def steps_per_execution() -> int:
    """STEPS_PER_EXECUTION, or 1 under a MirroredStrategy: Keras 3.15's several-step loop over a
    distributed dataset fails there ("You must feed a value for placeholder tensor")."""
    return 1 if tf.distribute.has_strategy() else STEPS_PER_EXECUTION


def build_model_graph(config: NetConfig, shapes: DatasetShapes) -> keras.Model:
    """Build the configured network and compile it for training.

    Every network trains with binary cross-entropy (log-loss); AUC, log-loss
    and accuracy are measured per epoch outside the training step
    (`training.EpochEvaluation`), so runs of different networks compare directly.
    """
    model = get_network(config.network)(config, shapes)
    model.compile(
        optimizer=OPTIMIZERS.get(config.optimizer)(config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(name="loss"),
        # Keras' default jit_compile="auto" leaves XLA off on CPUs; XLA fuses
        # Adam's whole-table embedding updates and the MLP (faster alone, more
        # so with large batches: see the README's benchmarks). Several steps per
        # call cut Python overhead.
        jit_compile=use_xla(config),
        steps_per_execution=steps_per_execution(),
    )
    return model
