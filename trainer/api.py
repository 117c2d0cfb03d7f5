"""The Python API: train a variant and score raw rows from a notebook or a script.

    import trainer
    result = trainer.train("deep_v1", overrides={"learning_rate": 0.02})
    scores = trainer.load_package(result.package_uri).score(rows)

The same pipeline as `fab train --local` (`trainer.run`) and `fab score`
(`Package.score` decodes rows as `fab score` decodes NDJSON). Overrides are
typed Python values in the place of the `TRAINER_*` environment, which these
functions do not read, so a notebook's run does not depend on its shell.
Problems a user can fix raise `trainer.errors.TrainerError` (a `ConfigError`,
`DatasetError`, `PackageError`, ...) whose message is the one line `fab`
would print. TensorFlow is imported on the first call, not by `import trainer`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trainer.config import DEFAULT_DATASET, DEFAULT_OUTPUT, DEFAULT_VARIANTS_FILE, resolve_config
from trainer.outputs import check_output_folder

if TYPE_CHECKING:
    from trainer.package.loader import Package
    from trainer.run import TrainResult


def train(variant: str, *, dataset: str = DEFAULT_DATASET, output: str = DEFAULT_OUTPUT,
          overrides: Mapping[str, Any] | None = None, variants_file: str | Path = DEFAULT_VARIANTS_FILE,
          gpu: bool = False, out: TextIO | None = None) -> TrainResult:
    """Train `variant` on `dataset` and publish its package under `output`, printing one line per
    epoch to `out` (stdout by default). `overrides` sets config keys (`fab keys` lists them) to typed
    values: {"learning_rate": 0.02, "epochs": 2, "numeric_columns": ["position"]}. Returns the
    `TrainResult`: `package_uri`, `package` (read back), `validation_metrics`, `test_metrics`,
    `best_epoch`, the per-epoch table `epochs` and the trained Keras `model`."""
    typed = {key: _plain(value) for key, value in (overrides or {}).items()}
    resolve_config(variant, Path(variants_file), {}, typed)  # a config error before TensorFlow's start
    check_output_folder(output)
    from trainer.run import TrainRequest
    from trainer.run import train as run_pipeline

    request = TrainRequest(variant, dataset, output, variants_file=Path(variants_file), environ={},
                           overrides=typed, require_gpu=gpu)
    return run_pipeline(request, out or sys.stdout)


def load_package(package_uri: str) -> Package:
    """A package zip (local or gs://) read back; `.score(rows)` gives each raw row's click probability."""
    from trainer.package.loader import load_package as read_package

    return read_package(package_uri)


def _plain(value: Any) -> Any:
    """NumPy's scalars (a value read off a DataFrame) as the Python values the config's types check."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value
