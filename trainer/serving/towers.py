"""The trained model cut where its title tower ends, so that the export runs
the tower once per distinct title rather than once per row.

Titles repeat with their items (a 200K-row scoring block holds far fewer
distinct titles than rows: see the README's benchmarks), and everything a
network computes from the title alone (token embeddings, their masked mean,
a GRU over them) depends on nothing else in the row. `TitleTowerSplit` finds
that part in any registered network's functional graph, without the network
declaring it:

- the tower: every layer whose inputs all come, through other such layers,
  from the title's token ids alone;
- its outputs: the tower's tensors that a layer outside it reads (for
  deep_v1 the mean of the token embeddings, for rnn_v1 the GRU's state);
- the rest: the model from the other inputs and those tensors to the score.

Each row then takes its title's tower outputs by index. Every layer of a
network treats each row on its own, so the scores are the whole model's
(tested to 1e-5, in practice bit-identical, for every network); the split
only saves the work of repeated titles.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.data.features import TEXT_INPUT
from trainer.library_internals import functional_layer_calls
from trainer.serving.encoding import EncodedRows

KerasTensor = keras.KerasTensor


class TitleTowerSplit:
    """`model` as (title tower, rest); a model without a title input, or whose title input a layer reads
    together with other inputs straight away, has no tower and runs whole."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.tower: keras.Model | None = None
        self.rest: keras.Model | None = None
        self.others = [name for name in _input_names(model) if name != TEXT_INPUT]
        title = _input_named(model, TEXT_INPUT)
        frontier = _tower_outputs(model, title) if title is not None else []
        if not frontier or [id(t) for t in frontier] == [id(title)]:
            return
        self.tower = keras.Model(title, frontier, name=f"{model.name}_title_tower")
        self.rest = keras.Model([_input_named(model, name) for name in self.others] + frontier, model.outputs,
                                name=f"{model.name}_after_title_tower")

    def __call__(self, encoded: EncodedRows) -> tf.Tensor:
        """The model's output for each row of `encoded`."""
        if self.tower is None or encoded.title_tokens is None:
            return self.model(encoded.per_row(), training=False)
        per_title = tf.nest.flatten(self.tower(encoded.title_tokens, training=False))
        per_row = [tf.gather(values, encoded.title_of_row) for values in per_title]
        return self.rest([encoded.inputs[name] for name in self.others] + per_row, training=False)


def _input_names(model: keras.Model) -> list[str]:
    return [tensor.name for tensor in model.inputs]


def _input_named(model: keras.Model, name: str) -> KerasTensor | None:
    return next((tensor for tensor in model.inputs if tensor.name == name), None)


def _tower_outputs(model: keras.Model, title: KerasTensor) -> list[KerasTensor]:
    """The tensors computed from `title` alone that a layer outside the tower, or the model's output, reads."""
    from_title_only = {id(title): title}
    read_outside: dict[int, KerasTensor] = {}
    for call in functional_layer_calls(model):  # inputs first: a call's inputs are classified before it
        if call.inputs and all(id(tensor) in from_title_only for tensor in call.inputs):
            from_title_only.update((id(tensor), tensor) for tensor in call.outputs)
        else:
            read_outside.update((id(t), t) for t in call.inputs if id(t) in from_title_only)
    read_outside.update((id(t), t) for t in model.outputs if id(t) in from_title_only)
    return list(read_outside.values())
