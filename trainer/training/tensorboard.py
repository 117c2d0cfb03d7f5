"""A run's TensorBoard logs: written live while it trains, copied into its package when it is done.

In the run's work folder (`runs/.work/<run>/tensorboard/`, which a killed run's rerun finds again):

    train/  validation/   Keras' TensorBoard callback (callbacks.EpochTensorBoard): each value of the
                          epoch's logs as `epoch_<name>`, at the wall time it was written, step = the epoch
                          from 1 (as the epoch line and metrics.csv number it): loss, auc, logloss, accuracy;
                          in train/ also the seconds, examples_per_second and learning_rate
    .                     the HParams plugin's session: the experiment's config (hparams_config) and the
                          run's values (hparams) as the attempt starts; the packaged weights' metrics
                          (`FINAL_METRICS`) once it is scored

Packaging copies them (`package_logs`) with each (tag, step) once, the last written, wall times kept: a
run killed after TensorBoard logged an epoch but before that epoch's backup trains the epoch again, and
each attempt writes the session again. `fab tensorboard` (trainer.comparison.tensorboard) lays many
packages' logs side by side with the same session writer.

Everything is written with TensorBoard's own protos, record writer and hparams summaries, without
TensorFlow: `fab tensorboard` runs without loading it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2

# tensorboard.plugins.hparams.api re-exports these from summary_v2; the api module also imports its
# Keras callback, and with it TensorFlow.
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

EVENTS_MARK = "tfevents"  # in every event file's name (TensorBoard's own test)
# The packaged weights' metrics, in the session's own run: what the HParams table compares.
FINAL_METRICS = ("validation_auc", "validation_logloss", "test_auc", "test_logloss", "test_accuracy",
                 "best_epoch", "epochs_trained")
HParamValue = str | bool | int | float


@dataclass(frozen=True)
class FinalMetrics:
    """What the run packaged: the weights of `best_epoch`, their validation and test metrics."""

    validation: Mapping[str, float]
    test: Mapping[str, float]
    best_epoch: int
    epochs_trained: int

    def scalars(self) -> dict[str, float]:
        values = {f"validation_{k}": v for k, v in self.validation.items()}
        values.update((f"test_{k}", v) for k, v in self.test.items())
        values.update(best_epoch=self.best_epoch, epochs_trained=self.epochs_trained)
        return {name: float(values[name]) for name in FINAL_METRICS if values.get(name) is not None}


def dataset_label(uri: str, sha256: str) -> str:
    """`sample_2k.json cc337630c29e`: the dataset's last path part and content hash, as fab runs shows it."""
    return f"{uri.rstrip('/').rsplit('/', 1)[-1]} {sha256[:12]}"


def session_hparams(config: Mapping[str, Any], dataset: str) -> dict[str, HParamValue]:
    """A run's HParams: its variant, dataset and every config key, from config.json's form
    ({"variant", "keys": {key: {"value", "source"}}}); a list is its comma-joined text."""
    values: dict[str, HParamValue] = {"variant": config["variant"], "dataset": dataset}
    for key, entry in config["keys"].items():
        value = entry["value"]
        values[key] = ",".join(map(str, value)) if isinstance(value, list) else "" if value is None else value
    return values


def hparam_domains(sessions: Sequence[Mapping[str, HParamValue]]) -> list[hp.HParam]:
    """Each hyperparameter with the domain its sessions' values span (for the experiment's config)."""
    names = sorted({name for values in sessions for name in values})
    return [hp.HParam(name, _domain([values[name] for values in sessions if name in values])) for name in names]


def _domain(values: list[HParamValue]) -> hp.Domain:
    if all(isinstance(v, bool) for v in values):
        return hp.Discrete(sorted(set(values)))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return hp.IntInterval(min(values), max(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return hp.RealInterval(float(min(values)), float(max(values)))
    return hp.Discrete(sorted({str(v) for v in values}))


def experiment_config(sessions: Sequence[Mapping[str, HParamValue]]) -> summary_pb2.Summary:
    """The HParams plugin's experiment: the hyperparameters of `sessions` and the final metrics."""
    return hp.hparams_config_pb(hparams=hparam_domains(sessions), metrics=[hp.Metric(m) for m in FINAL_METRICS])


def write_session_start(logdir: Path, run_id: str, hparams: Mapping[str, HParamValue],
                        experiment: bool = True, started: float | None = None) -> None:
    """The run's HParams session in `logdir` (its root run), with the experiment's config when it is alone."""
    started = time.time() if started is None else started
    summaries = [experiment_config([hparams])] if experiment else []
    summaries.append(hp.hparams_pb(dict(hparams), trial_id=run_id, start_time_secs=started))
    write_events(logdir, [event_pb2.Event(wall_time=started, step=0, summary=s) for s in summaries])


def write_final_metrics(logdir: Path, final: FinalMetrics, wall_time: float | None = None) -> None:
    """The packaged weights' metrics as scalars of the session's run, at step = the packaged epoch."""
    wall_time = time.time() if wall_time is None else wall_time
    write_events(logdir, [event_pb2.Event(wall_time=wall_time, step=final.best_epoch, summary=scalar(name, value))
                          for name, value in final.scalars().items()])


def scalar(tag: str, value: float) -> summary_pb2.Summary:
    """A scalar summary as tf.summary.scalar writes it (float32 tensor, the scalars plugin's metadata)."""
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, metadata=scalar_metadata.create_summary_metadata(display_name=tag, description=""),
        tensor=tensor_util.make_tensor_proto(np.float32(value)))])


def write_events(logdir: Path, events: Iterable[event_pb2.Event]) -> None:
    """One new event file in `logdir` holding `events` as given (their wall times and steps kept)."""
    events = list(events)
    logdir.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()
    # TensorBoard reads a folder's event files in name order: seconds, then this process, then nanoseconds.
    name = f"events.out.tfevents.{now // 10**9:010d}.{socket.gethostname()}.{os.getpid()}.{now % 10**9:09d}"
    # The file's first event dates the run for TensorBoard: the first of its events, not the copy's time.
    started = min((event.wall_time for event in events), default=now / 1e9)
    with (logdir / name).open("wb") as file:
        records = RecordWriter(file)
        records.write(event_pb2.Event(wall_time=started, file_version="brain.Event:2").SerializeToString())
        for event in events:
            records.write(event.SerializeToString())


def package_logs(live: Path, target: Path) -> None:
    """The live logs into `target`, one event file per run folder, each (tag, step) once: the last written."""
    folders = sorted({path.parent for path in live.rglob(f"*{EVENTS_MARK}*")}) if live.is_dir() else []
    for folder in folders:
        write_events(target / folder.relative_to(live), _last_of_each_step(folder))


def _last_of_each_step(folder: Path) -> list[event_pb2.Event]:
    """The folder's summaries, one value per event, the last written of each (tag, step), in time order.
    Last by wall time, not by file: two files of one second need not sort by name in the order written."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    kept: dict[tuple[str, int], event_pb2.Event] = {}
    for path in folder.glob(f"*{EVENTS_MARK}*"):
        for record in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                earlier = kept.get((value.tag, event.step))
                if earlier is None or event.wall_time >= earlier.wall_time:
                    kept[(value.tag, event.step)] = event_pb2.Event(
                        wall_time=event.wall_time, step=event.step, summary=summary_pb2.Summary(value=[value]))
    return sorted(kept.values(), key=lambda event: event.wall_time)
