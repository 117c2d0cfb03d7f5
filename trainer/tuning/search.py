"""How a study searches: its sampler picks each trial's values, its pruner stops poor trials early.

Contract of a sampler entry: `factory(trials) -> optuna.samplers.BaseSampler`, given the
study's target of finished trials; of a pruner entry: `factory() -> optuna.pruners.BasePruner`.
`fab tune` lists these names in its help, so each entry imports Optuna itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trainer.registry import Registry

if TYPE_CHECKING:
    import optuna

SAMPLERS: Registry[Callable[[int], optuna.samplers.BaseSampler]] = Registry("sampler", "--sampler")
PRUNERS: Registry[Callable[[], optuna.pruners.BasePruner]] = Registry("pruner", "--pruner")


@SAMPLERS.register("tpe", "learns from earlier trials")
def tpe_sampler(trials: int) -> optuna.samplers.BaseSampler:
    """TPE models good and bad trials from the first random ones; constant_liar
    keeps parallel workers from all proposing the same point."""
    import optuna

    from trainer.tuning.study import quiet_experimental

    with quiet_experimental():
        return optuna.samplers.TPESampler(n_startup_trials=max(3, min(10, trials // 4)), multivariate=True,
                                          constant_liar=True)


@SAMPLERS.register("random", "the seed's baseline")
def random_sampler(trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler()


@PRUNERS.register("median", "stop a trial whose validation AUC is below the median at that epoch")
def median_pruner() -> optuna.pruners.BasePruner:
    """Steps are epochs, from 1: never on the first epoch's noisy AUC alone (a step below
    n_warmup_steps is not pruned), nor before 3 trials have finished to compare with."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


@PRUNERS.register("hyperband", "successive halving of the trials, in brackets of epochs")
def hyperband_pruner() -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)


@PRUNERS.register("none", "every trial runs all its epochs")
def no_pruner() -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()
