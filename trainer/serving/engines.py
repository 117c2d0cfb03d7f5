"""The scoring engines `fab score --engine` chooses between: `SCORING_ENGINES.get(name)`.

An engine tells `trainer.score` how to turn a package and raw rows into scores.
The command lines list these names in their help, so nothing here imports
TensorFlow: an engine only names which of the package's own paths it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from trainer.package.loader import Package


@dataclass(frozen=True)
class ScoringEngine:
    # Through the package's serving export, a block of the input at a time, when the package has
    # an export and a data contract; otherwise the whole input is read and given to `score_frame`.
    streams: bool
    score_frame: Callable[[Package, pd.DataFrame], np.ndarray]


SCORING_ENGINES: Registry[ScoringEngine] = Registry("scoring engine", "--engine")
SCORING_ENGINES.add("export", ScoringEngine(streams=True,
                                            score_frame=lambda package, frame: package.score_frame(frame)),
                    "the package's serving SavedModel, streamed: what TF Serving would answer")
SCORING_ENGINES.add("keras", ScoringEngine(streams=False,
                                           score_frame=lambda package, frame: package.score_with_keras(frame)),
                    "the project's preprocessing and the Keras model: the reference, to debug skew with")
