"""Training as a user runs it: resuming after a kill, divergence, --gpu on a
machine without one, early stopping."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from conftest import NO_XLA

from trainer.config import NetConfig
from trainer.faults import KILL_AT_VARIABLE
from trainer.run import TrainRequest, train
from trainer.training.fit import effective_batch_size

# Early stopping off: the run must go through all four epochs.
RESUME_ENV = {"TRAINER_EPOCHS": "4", "TRAINER_BATCH_SIZE": "64", "TRAINER_EARLY_STOPPING_PATIENCE": "0", **NO_XLA}
Runner = Callable[..., subprocess.CompletedProcess]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\b")


def epochs_printed(stdout: str) -> list[int]:
    return [int(m.group(1)) for line in stdout.splitlines() if (m := EPOCH_LINE.match(line))]


def test_killed_run_resumes_where_its_backup_left_off(tmp_path: Path, sample_path: Path, run_python: Runner) -> None:
    output = tmp_path / "runs"
    args = ["-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(sample_path), "--output", str(output)]
    # The test hook SIGKILLs the trainer in the middle of epoch 3's backup (its files written, not yet made
    # current): a fixed point, not a timed kill. Epoch 2's backup is the last whole one.
    killed = run_python(*args, env={**RESUME_ENV, KILL_AT_VARIABLE: "backup:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert epochs_printed(killed.stdout) == [1, 2, 3]
    assert not list(output.glob("*.zip"))

    again = run_python(*args, env=RESUME_ENV)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^resuming run deep_v1-\S+ after epoch 2/4$", again.stdout, re.MULTILINE), again.stdout
    assert epochs_printed(again.stdout) == [3, 4]  # epochs 1 and 2 are not trained again
    [package] = output.glob("*.zip")
    with zipfile.ZipFile(package) as archive, archive.open("metrics.csv") as csv:
        assert list(pd.read_csv(csv)["epoch"]) == [1, 2, 3, 4]
    assert not list(output.glob(".work/*")), "the finished run's work folder is left behind"


def test_nan_loss_ends_the_run_with_one_clear_line(
    diverged_run: tuple[subprocess.CompletedProcess, Path], lines_of: Callable[[subprocess.CompletedProcess], list[str]]
) -> None:
    proc, _ = diverged_run
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in lines_of(proc) if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: training diverged: loss became nan")
    assert "learning_rate (now 1e+30)" in errors[0]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == errors[0]  # nothing else on stderr


def test_diverged_run_leaves_no_package_and_no_work_folder(
    diverged_run: tuple[subprocess.CompletedProcess, Path],
) -> None:
    _, output = diverged_run
    assert not list(output.glob("*.zip"))
    assert not list(output.glob(".*.partial"))
    assert not list(output.glob(".work/*")), "a diverged run would be resumed into the same NaN"


def test_gpu_flag_without_a_gpu_exits_with_one_line(
    tmp_path: Path, run_python: Runner, lines_of: Callable[[subprocess.CompletedProcess], list[str]]
) -> None:
    output = tmp_path / "runs"
    proc = run_python("-m", "trainer", "train", "--variant", "deep_v1", "--gpu", "--output", str(output))
    assert proc.returncode == 2
    assert lines_of(proc) == [
        "error: a GPU was asked for (--gpu) but TensorFlow sees none: check `nvidia-smi` and that the CUDA build "
        "of TensorFlow is installed, or drop --gpu to train on the CPU"
    ]
    assert not list(output.glob("*.zip"))


def test_early_stopping_ends_before_the_epoch_limit(output_dir: Path, sample_path: Path) -> None:
    # A learning rate of 1e-12 cannot move float32 weights: the validation AUC never
    # improves after epoch 1, so patience 1 stops after epoch 2, every time.
    environ = {"TRAINER_EPOCHS": "8", "TRAINER_BATCH_SIZE": "128", "TRAINER_LEARNING_RATE": "1e-12",
               "TRAINER_EARLY_STOPPING_PATIENCE": "1", **NO_XLA}
    log = io.StringIO()
    result = train(TrainRequest("deep_v1", dataset=str(sample_path), output=str(output_dir), environ=environ), log)
    assert epochs_printed(log.getvalue()) == [1, 2]
    with zipfile.ZipFile(result.package_uri) as archive:
        rows = pd.read_csv(archive.open("metrics.csv"))
        manifest = json.loads(archive.read("manifest.json"))
    assert list(rows["epoch"]) == [1, 2]
    assert manifest["epochs_trained"] == 2
    assert manifest["best_epoch"] == result.best_epoch == 1  # epoch 2 was no better: epoch 1's weights are packaged


def test_a_second_process_training_the_same_run_is_refused(
    tmp_path: Path, sample_path: Path, run_python: Runner, start_python: Callable[..., subprocess.Popen]
) -> None:
    output = tmp_path / "runs"
    args = ["-m", "trainer", "train", "--variant", "deep_v1", "--dataset", str(sample_path), "--output", str(output)]
    # Long enough that the first run is still training when the second one asks.
    env = {"TRAINER_EPOCHS": "300", "TRAINER_BATCH_SIZE": "32", "TRAINER_EARLY_STOPPING_PATIENCE": "0"}
    first = start_python(*args, env=env, stderr=subprocess.DEVNULL)
    try:
        assert first.stdout is not None
        assert any(line.startswith("epoch 1/300") for line in first.stdout), "the first run never trained"
        # Paused mid-training, it still holds the run (its lock), and leaves the CPU to the second run's start.
        first.send_signal(signal.SIGSTOP)
        second = run_python(*args, env=env)
        assert first.poll() is None, "the first run ended too early for this test"
        first.send_signal(signal.SIGCONT)
        assert next(first.stdout).startswith("epoch 2/300"), "the first run did not train on"
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert "error: the same run (same config, same data) is already training in another process" in second.stderr


def test_auto_batch_size_gives_small_data_many_steps_and_large_data_large_batches() -> None:
    auto = NetConfig()  # batch_size = 0
    assert effective_batch_size(auto, 1_400) == 64  # the 2K sample's training split: the smallest batch
    assert effective_batch_size(auto, 70_000) == 1_093  # 100K rows: 65 steps per epoch, not 16
    assert effective_batch_size(auto, 200_000) == 3_125
    assert effective_batch_size(auto, 700_000) == 4_096  # 1M rows: the largest batch
    assert effective_batch_size(auto, 10_000_000) == 4_096
    assert effective_batch_size(NetConfig(batch_size=128), 700_000) == 128  # a set batch size is kept


# What a process sees when tf.saved_model.save (every package's export) has logged through absl.
WARNING_AFTER_AN_EXPORT = """
import absl.logging
from trainer import import_tensorflow_quietly
import_tensorflow_quietly()
import tensorflow as tf
absl.logging.info("an export logs through absl, which configures the root logger")
tf.get_logger().warning("5 out of the last 10 calls triggered tf.function retracing")
"""


def test_a_tensorflow_warning_after_an_export_prints_once(run_python: Runner) -> None:
    proc = run_python("-c", WARNING_AFTER_AN_EXPORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("triggered tf.function retracing") == 1, proc.stderr
