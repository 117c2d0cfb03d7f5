"""Every private attribute of Keras and google-cloud-bigquery the trainer uses, and nowhere else.

Each was read in the pinned versions (`PINNED`, as requirements.txt pins
them) and has no public equivalent there. Importing this module warns once
when another version is installed. On an upgrade, re-check each entry below
in the new library's source, run the tests it names, then update `PINNED`.

- Keras `Adam._momentums`, `._velocities`, `._velocity_hats` (one slot
  variable per trainable variable, in the order `build` got them) and
  `Optimizer._get_variable_index` (a variable's place in that order), for
  `adam_slots`. LazyAdam updates Adam's own slots on the rows a batch
  touches, so its sparse steps and Adam's dense ones share one state and a
  checkpoint keeps Adam's variables; Keras has no public way to find the
  slot of a variable (`optimizer.variables` is one flat list).
  Re-check: keras/src/optimizers/adam.py (`build`, `update_step`) and
  base_optimizer.py (`build`, `_get_variable_index`). Tests: tests/test_optimizers.py.
- Keras `Functional._nodes_by_depth` (the graph's nodes by depth, 0 at the
  outputs) and a node's `is_input`, `input_tensors` and `outputs`, for
  `functional_layer_calls`: the serving export's title tower split walks the
  graph. The public `model.operations` lists a layer once, however many
  times it is called; a shared layer has one node per call.
  Re-check: keras/src/ops/function.py (`map_graph`) and keras/src/ops/node.py.
  Tests: tests/test_serving.py -k tower.
- google-cloud-bigquery `QueryJob._properties` (the job resource the API
  returned), for `export_data_statistics`: `EXPORT DATA` reports its rows and
  files in `statistics.query.exportDataStatistics`, which no property of the
  client exposes, and `QueryJob.to_api_repr()` keeps only the job's
  reference and configuration. Re-check: google/cloud/bigquery/job/query.py.
  Tests: tests/test_bigquery_export.py -k gcs.

The installed versions are read from the packages' metadata, not by importing
them: `fab dataset` uses this module and must not start TensorFlow.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    from google.cloud import bigquery

# The versions this module's private attributes were read in (requirements.txt pins the same).
PINNED = {"keras": "3.15.1", "google-cloud-bigquery": "3.47.0"}
MODULE_FILE = "trainer/library_internals.py"


class LibraryVersionWarning(UserWarning):
    """A library this module reaches into is not the version it was checked against."""


def installed_versions() -> dict[str, str | None]:
    """Each pinned library's installed version (None when it is not installed: nothing of it is used)."""
    versions: dict[str, str | None] = {}
    for name in PINNED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def version_mismatch(installed: Mapping[str, str | None]) -> str | None:
    """One line naming what to re-check when an installed version is not the pinned one, else None."""
    changed = [f"{name} {version} (checked against {PINNED[name]})"
               for name, version in installed.items() if version is not None and version != PINNED[name]]
    if not changed:
        return None
    return (f"installed {', '.join(changed)}: re-check the private attributes {MODULE_FILE} lists "
            f"for each, run the tests it names, then update its PINNED")


def warn_on_upgrade(installed: Mapping[str, str | None] | None = None) -> None:
    """Warn (never fail) when a library is not the version this module was checked against."""
    if message := version_mismatch(installed_versions() if installed is None else installed):
        warnings.warn(message, LibraryVersionWarning, stacklevel=2)


warn_on_upgrade()  # once per process: a module is imported once


def adam_slots(optimizer: keras.optimizers.Adam,
               variable: keras.Variable) -> tuple[keras.Variable, keras.Variable, keras.Variable | None]:
    """Adam's (momentum, velocity, velocity_hat) of a trainable `variable`; velocity_hat is None without amsgrad."""
    index = optimizer._get_variable_index(variable)
    velocity_hat = optimizer._velocity_hats[index] if optimizer.amsgrad else None
    return optimizer._momentums[index], optimizer._velocities[index], velocity_hat


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer in a functional graph: the tensors it read and those it made."""

    inputs: list[keras.KerasTensor]
    outputs: list[keras.KerasTensor]


def functional_layer_calls(model: keras.Model) -> Iterator[LayerCall]:
    """Every layer call of a functional `model` (a shared layer once per call), each after the calls that
    made its inputs; the model's inputs themselves are not calls."""
    nodes_by_depth = model._nodes_by_depth
    for depth in sorted(nodes_by_depth, reverse=True):  # Keras numbers depth from the outputs
        for node in nodes_by_depth[depth]:
            if not node.is_input:
                yield LayerCall(list(node.input_tensors), list(node.outputs))


def export_data_statistics(job: bigquery.QueryJob) -> dict[str, Any]:
    """A finished `EXPORT DATA` job's exportDataStatistics (rowCount, fileCount, as strings); {} if absent."""
    return job._properties.get("statistics", {}).get("query", {}).get("exportDataStatistics", {})
