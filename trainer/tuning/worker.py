"""A tuning worker: runs trials of a study until it has its target of finished trials.

A trial draws its values from the study's space and trains with them as
`TRAINER_*` overrides, the same level 3 a user has. It reports the validation
AUC after every epoch, so the pruner can stop a poor trial early, and its
value is the validation AUC of the model it packaged. The test split plays no
part in the search: its metrics are recorded beside each trial, held out. How dead, stopped and diverging trials
are handled is in `trainer.tuning.study`'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keras
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from trainer.config import ENV_PREFIX
from trainer.data import storage
from trainer.errors import RunAbandonedError, TrainerError, TrainingDivergedError
from trainer.interrupts import StopRequest, sigterm_as_interrupt
from trainer.run import TrainRequest, TrainResult, train
from trainer.training.fit import describe_device, split_cpu_for_tests
from trainer.tuning.evidence import ValidationSplit, validation_warning
from trainer.tuning.search import PRUNERS, SAMPLERS
from trainer.tuning.space import as_environment, suggest
from trainer.tuning.study import (
    HEARTBEAT_INTERVAL_S,
    MAX_FAILURES_IN_A_ROW,
    MAX_RETRIES,
    StudySpec,
    load_study,
    quiet_experimental,
    shown,
    storage_errors,
)


@dataclass
class WorkerResult:
    trials_run: int
    finished: int
    target: int



def trial_label(study: str, variant: str, number: int) -> str:
    """What a trial's package is named by, after its variant: the study joins in only when its name
    says more than the variant's (study deep_v1's trial 7 is deep_v1-trial7-..., not deep_v1-deep_v1-...)."""
    return f"trial{number}" if study == variant else f"{study}-trial{number}"

def run_worker(name: str, url: str, require_gpu: bool = False, out: TextIO = sys.stdout,
               poll_s: float = HEARTBEAT_INTERVAL_S) -> WorkerResult:
    """Run trials of the study until it has its target of finished trials.

    While the last trials run on other workers this one waits rather than
    overshooting the target, and takes over any of them whose worker dies.
    """
    study, spec = load_study(name, url)
    split_cpu_for_tests()  # a test hook, before TensorFlow initialises its devices (each trial's run finds it done)
    device = describe_device(require_gpu)  # no GPU for --gpu: one line now, not a failed trial
    worker = f"{socket.gethostname()}/{os.getpid()}"
    stop = StopRequest()
    objective = TrialObjective(study, spec, name, worker, require_gpu, out, stop)
    study.sampler, study.pruner = SAMPLERS.get(spec.sampler)(spec.trials), PRUNERS.get(spec.pruner)()
    # This worker prints a line for every failed and pruned trial: Optuna's own
    # warnings for them would add a traceback each, Ctrl-C included.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"worker {worker} on {device} joins study '{name}' in {shown(url)}: {spec.variant}, "
          f"target {spec.trials} trials", file=out, flush=True)
    waiting_said, failures_in_a_row = False, 0
    # `docker stop`, `fab tune_workers --stop` and CI aborts send SIGTERM: the worker stops
    # as on Ctrl-C, and queues its trial again (TrialObjective.run_one).
    # A database user that may read the study but not add trials to it: one line, not Optuna's traceback.
    with sigterm_as_interrupt(stop), objective.variants_file(), storage_errors(url):
        while (finished := _finished(study)) < spec.trials:
            stop.raise_if_requested()
            if _others_finish_it(study, spec.trials):
                if not waiting_said:
                    print("the last trials run on other workers; waiting (a trial whose worker dies is taken over)",
                          file=out, flush=True)
                    waiting_said = True
                time.sleep(poll_s)
                with quiet_experimental():
                    optuna.storages.fail_stale_trials(study)
                continue
            failed = objective.run_one() == TrialState.FAIL
            failures_in_a_row = failures_in_a_row + 1 if failed else 0
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise TrainerError(f"{failures_in_a_row} trials in a row failed, the last with: "
                                   f"{objective.last_failure}; narrow the search space (configs/search_space.json)")
    print(f"study '{name}' has {finished} finished trials (target {spec.trials}); this worker ran "
          f"{objective.trials_run}", file=out, flush=True)
    return WorkerResult(objective.trials_run, finished, spec.trials)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _others_finish_it(study: optuna.Study, target: int) -> bool:
    """Whether the trials running now reach the target, with none queued (a dead worker's) to take over."""
    counts = _counts(study)
    started = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.RUNNING]
    return started >= target and not counts[TrialState.WAITING]


def _counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


class TrialObjective:
    """One trial: values from the space, a training run with them as overrides, its validation AUC."""

    def __init__(self, study: optuna.Study, spec: StudySpec, name: str, worker: str, require_gpu: bool,
                 out: TextIO, stop: StopRequest) -> None:
        self.study, self.spec, self.name, self.worker = study, spec, name, worker
        self.require_gpu, self.out, self.stop = require_gpu, out, stop
        self.trials_run = 0
        self.study_variants_file: Path | None = None
        self.current_trial: int | None = None
        self.last_failure = "no reason recorded"
        self.warned_of_validation = False

    @contextlib.contextmanager
    def variants_file(self) -> Iterator[None]:
        """The study's own copy of its variant: later edits of variant_config.json change no trial."""
        with tempfile.TemporaryDirectory(prefix="trainer-tune-") as folder:
            self.study_variants_file = Path(folder) / "variant_config.json"
            self.study_variants_file.write_text(json.dumps({self.spec.variant: self.spec.variant_keys}))
            yield

    def run_one(self) -> TrialState:
        """Run one trial (a new one, or one queued again); returns how it ended."""
        try:
            self.study.optimize(self, n_trials=1, catch=(TrainingDivergedError,), gc_after_trial=True)
        except KeyboardInterrupt:
            self.queue_again()
            raise
        finally:
            self.trials_run += 1
            keras.backend.clear_session()  # each trial's graphs would otherwise pile up
        keep_best_package(self.study, self.current_trial)
        trial = self.trial_numbered(self.current_trial)
        self.last_failure = trial.user_attrs.get("failure", self.last_failure)
        print(trial_line(self.study, trial, self.spec.trials), file=self.out, flush=True)
        return trial.state

    def trial_numbered(self, number: int | None) -> FrozenTrial:
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial = trial.number
        overrides = suggest(trial, self.spec.space)
        origin = _origin_number(self.study, trial.number)
        trial.set_user_attr("worker", self.worker)
        retry = f" (retry of trial {origin})" if origin != trial.number else ""
        print(f"trial {trial.number}{retry}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in overrides.items()),
              file=self.out, flush=True)
        request = TrainRequest(
            self.spec.variant, self.spec.dataset, self.spec.output, variants_file=self.study_variants_file,
            environ=as_environment(overrides) | {f"{ENV_PREFIX}{k.upper()}": v for k, v in
                                                 self.spec.fixed_overrides.items()},
            require_gpu=self.require_gpu, run_label=trial_label(self.name, self.spec.variant, origin),
            callbacks=(EpochToTrial(trial, self.spec.pruner, self.stop),),
        )
        try:
            result = train(request, self.out)
        except RunAbandonedError as pruned:
            print(f"trial {trial.number} pruned: {pruned}", file=self.out, flush=True)
            raise optuna.TrialPruned(str(pruned)) from None
        except Exception as exc:  # diverged (the study goes on), or anything else (the worker stops)
            trial.set_user_attr("failure", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            print(f"trial {trial.number} failed: {exc}", file=self.out, flush=True)
            raise
        self.record(trial, result)
        self.check_validation_split(trial, result)
        return result.validation_metrics["auc"]

    def record(self, trial: optuna.Trial, result: TrainResult) -> None:
        trial.set_user_attr("package", result.package_uri)
        trial.set_user_attr("run_id", result.run_id)
        trial.set_user_attr("epochs", len(result.epochs))
        trial.set_user_attr("best_epoch", result.best_epoch)
        for split, metrics in (("validation", result.validation_metrics), ("test", result.test_metrics)):
            for name, value in metrics.items():
                trial.set_user_attr(f"{split}_{name}", value)

    def check_validation_split(self, trial: optuna.Trial, result: TrainResult) -> None:
        """Record the trial's validation split; say once if it has too few positives to rank trials by AUC."""
        split = ValidationSplit.of_package(result.package_uri)
        trial.set_user_attr("validation_split", split.as_attr())
        warning = validation_warning(split, result.validation_metrics["auc"])
        if warning and not self.warned_of_validation:
            print(warning, file=self.out, flush=True)
            self.warned_of_validation = True

    def queue_again(self) -> None:
        """A stopped worker's trial runs again elsewhere, as a dead worker's would."""
        if self.current_trial is None:
            return
        trial = self.trial_numbered(self.current_trial)
        if trial.state == TrialState.FAIL:
            with quiet_experimental():
                RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(self.study, trial)
            print(f"worker stopped: trial {trial.number} is queued for the next worker", file=self.out, flush=True)


def trial_line(study: optuna.Study, trial: FrozenTrial, target: int) -> str:
    """Optuna's line after each trial, in this project's words: how it ended, in what time, the best
    trial so far (of every worker's) and how far the study is."""
    ended = (f"finished with validation auc {trial.value:.4f}" if trial.state == TrialState.COMPLETE
             else {TrialState.PRUNED: "was pruned", TrialState.FAIL: "failed"}.get(trial.state, trial.state.name))
    took = (f" in {(trial.datetime_complete - trial.datetime_start).total_seconds():.1f} s"
            if trial.datetime_complete and trial.datetime_start else "")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max(completed, key=lambda t: t.value) if completed else None
    so_far = (f"best is trial {best.number} with validation auc {best.value:.4f}" if best
              else "no trial has completed yet")
    return f"trial {trial.number} {ended}{took}; {so_far} [{_finished(study)}/{target} trials finished]"


def _origin_number(study: optuna.Study, number: int) -> int:
    """The trial a retry repeats (its own number otherwise): the two share one run, so a retry resumes."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    with quiet_experimental():
        origin = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return number if origin is None else origin


class EpochToTrial(keras.callbacks.Callback):
    """Reports each epoch's validation AUC to the trial, and ends the run when the pruner
    says so, or at the next batch once the worker is asked to stop."""

    def __init__(self, trial: optuna.Trial, pruner: str, stop: StopRequest) -> None:
        super().__init__()
        self.trial, self.pruner, self.stop = trial, pruner, stop

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.stop.raise_if_requested()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        auc = (logs or {}).get("val_auc")
        if auc is None:
            return
        self.trial.report(float(auc), step=epoch + 1)
        if self.trial.should_prune():
            raise RunAbandonedError(f"validation auc {auc:.4f} after epoch {epoch + 1}, "
                                    f"stopped by the {self.pruner} pruner")


def keep_best_package(study: optuna.Study, finished: int) -> None:
    """Only the best trial's package is kept. After each trial its worker deletes
    its package if it is not the best, or, if it is, every other one it can reach."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    mine = next((t for t in completed if t.number == finished), None)
    if mine is None:  # pruned or failed: it wrote no package
        return
    best = max(completed, key=lambda t: t.value)
    beaten = [mine] if mine.number != best.number else [t for t in completed if t.number != best.number]
    for trial in beaten:
        package = trial.user_attrs.get("package")
        if package and _reachable(package) and storage.exists(package):
            storage.delete(package)


def _reachable(uri: str) -> bool:
    """Packages on this worker's disk or in the cloud; other hosts' local files are theirs to delete."""
    return bool(storage.scheme_of(uri)) or Path(uri).exists()

