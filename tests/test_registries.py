"""The choices by name (optimizers, samplers, pruners): every registered
name is listed in its option's help, works where a user types it, and an unknown one is
one line listing them all."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import optuna
import pytest
from conftest import Runner

from trainer.config import NetConfig, resolve_config
from trainer.data.dataset import load_dataset
from trainer.data.features import DatasetShapes
from trainer.data.fitting import fit_frame
from trainer.errors import ConfigError
from trainer.networks import build_model_graph
from trainer.registry import Registry
from trainer.serving.encoding import RawRowEncoder, encode_frame
from trainer.training.optimizer_registry import OPTIMIZERS
from trainer.tuning.search import PRUNERS, SAMPLERS
from trainer.tuning.study import DEFAULT_SPACE_FILE, quiet_experimental, study_spec

REGISTRIES = {"optimizer": OPTIMIZERS, "sampler": SAMPLERS, "pruner": PRUNERS}
# Where each registry's names are listed for a user: (command, registry).
HELP = [
    (("fab", "--help", "tune"), "sampler"),
    (("fab", "--help", "tune"), "pruner"),
    (("fab", "keys"), "optimizer"),
]


@pytest.mark.parametrize(("command", "kind"), HELP, ids=[f"{' '.join(c)}-{k}" for c, k in HELP])
def test_the_help_lists_every_registered_name_with_its_meaning(
    command: tuple[str, ...], kind: str, run_fab: Runner, run_python: Runner
) -> None:
    proc = run_fab(*command[1:]) if command[0] == "fab" else run_python(*command[1:])
    assert proc.returncode == 0, proc.stderr
    # Help is wrapped to the terminal's width: compare without any whitespace.
    assert "".join(REGISTRIES[kind].described().split()) in "".join(proc.stdout.split())


@pytest.mark.parametrize("kind", REGISTRIES)
def test_an_unknown_name_is_one_line_listing_the_registered_ones(kind: str) -> None:
    registry: Registry = REGISTRIES[kind]
    with pytest.raises(ConfigError) as caught:
        registry.get("nope")
    assert str(caught.value) == f"{registry.option} nope: unknown; use one of {', '.join(registry.names())}"


def test_a_name_registered_twice_is_refused() -> None:
    registry: Registry[int] = Registry("number")
    registry.add("one", 1, "the first")
    with pytest.raises(ValueError, match="number 'one' is registered twice"):
        registry.add("one", 2)
    assert registry.described() == "one (the first)"


# --- each registered name works ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoded_sample(sample_path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes]:
    config = NetConfig()
    frame, _ = load_dataset(str(sample_path), config)
    fitted = fit_frame(frame, config)
    inputs = encode_frame(RawRowEncoder(fitted.preprocessor, fitted.overrides), frame)
    labels = frame[config.label_column].to_numpy(np.float32).reshape(-1, 1)
    return inputs, labels, fitted.preprocessor.shapes()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_is_a_config_value_that_trains(
    name: str, encoded_sample: tuple[dict[str, np.ndarray], np.ndarray, DatasetShapes]
) -> None:
    assert resolve_config("deep_v1", environ={"TRAINER_OPTIMIZER": name}).config.optimizer == name
    inputs, labels, shapes = encoded_sample
    keras.utils.set_random_seed(0)
    model = build_model_graph(NetConfig(optimizer=name, xla=False), shapes)  # XLA: more compile than steps here
    assert type(model.optimizer) is type(OPTIMIZERS.get(name)(0.01))
    losses = model.fit(inputs, labels, batch_size=128, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_defines_a_study_and_searches(name: str, sample_path: Path, tmp_path: Path) -> None:
    spec = study_spec("deep_v1", DEFAULT_SPACE_FILE, str(sample_path), str(tmp_path), 8, name, "none", {})
    study = _searched(SAMPLERS.get(spec.sampler)(spec.trials), optuna.pruners.NopPruner(), spec.trials)
    assert len({trial.params["x"] for trial in study.trials}) == spec.trials  # a new point each trial


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_defines_a_study_and_runs_its_trials(name: str, sample_path: Path, tmp_path: Path) -> None:
    spec = study_spec("deep_v1", DEFAULT_SPACE_FILE, str(sample_path), str(tmp_path), 8, "random", name, {})
    study = _searched(optuna.samplers.RandomSampler(seed=0), PRUNERS.get(spec.pruner)(), spec.trials)
    assert all(trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for trial in study.trials)


def _searched(sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner, trials: int) -> optuna.Study:
    """An in-memory study of `trials` trials, each reporting five 'epochs' as a worker does."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        for epoch in range(1, 6):
            trial.report(1 - x * x - 0.1 / epoch, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 1 - x * x

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with quiet_experimental():
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        study.optimize(objective, n_trials=trials)
    return study
