"""fab tensorboard: every package's TensorBoard logs under one folder, one run each, and TensorBoard on it.

    <logdir>/                         the HParams experiment: the runs' hyperparameters and final metrics
        <run name>/                   a package's HParams session: its values, its packaged weights' metrics
            train/  validation/       its epochs, as the package holds them (real wall times)
        tune/<study>/<run name>/      the tuning studies' packages (`<output>/tune/<study>/`) likewise

A run is named by its id (variant, time, hash) and the keys it set beyond its variant
(`deep_v1-20261204-101500-3e734e learning_rate=0.01`), so HParams' table and the scalars' run list
tell runs apart. Each session is written here from the package's config.json and manifest, whatever
version wrote the package (its own session, if it has one, is left in the zip), so one experiment
config covers every run. The folder is fab's own: a marker file names it, and each call makes it
anew from the packages; a folder that holds anything else is refused, never emptied.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tensorboard.compat.proto import event_pb2

from trainer import import_tensorflow_quietly
from trainer.data import storage
from trainer.errors import PackageError, TrainerError
from trainer.package.layout import TENSORBOARD_FOLDER
from trainer.package.listing import TUNE_FOLDER, RunSummary, list_runs
from trainer.training.tensorboard import (
    FinalMetrics,
    dataset_label,
    experiment_config,
    session_hparams,
    write_events,
    write_final_metrics,
    write_session_start,
)

MARKER = ".fab-tensorboard"
HOST = "127.0.0.1"  # this machine only: TensorBoard has no authentication
DEFAULT_PORT = 6006  # TensorBoard's own default
MAX_NAME = 200  # a run's folder name, below the file system's 255 bytes
STOP_TIMEOUT_S = 10  # TensorBoard's own shutdown, after Ctrl-C


@dataclass(frozen=True)
class LaidOut:
    logdir: Path
    runs: list[str]  # folder names under logdir, one per package
    studies: int  # of which, in tuning studies' folders

    def summary(self, output_uri: str) -> str:
        tuning = f" ({self.studies} from tuning studies)" if self.studies else ""
        return f"{len(self.runs)} package(s) of {output_uri}{tuning} laid out in {self.logdir}, one run each"


def default_logdir(output_uri: str) -> Path:
    """`<output>/tensorboard` for a local folder; for gs://, a folder in this machine's cache."""
    if not storage.scheme_of(output_uri):
        return Path(output_uri) / "tensorboard"
    return storage.cache_root() / "tensorboard" / hashlib.sha256(output_uri.encode()).hexdigest()[:12]


def lay_out(output_uri: str, logdir: Path) -> LaidOut:
    """Every package of `output_uri` (and its tuning studies) as one run of a fresh `logdir`."""
    _check_ours(logdir)
    runs = list_runs(output_uri)  # every package read before the folder is touched
    if not runs:
        raise PackageError(f"no packages in {output_uri}: nothing to show; pass the folder that holds them "
                           "(fab runs lists a folder's packages)")
    _make_fresh(logdir)
    names: dict[str, RunSummary] = {}
    for run in runs:
        name = _unique(run_name(run), run, names)
        names[name] = run
        _copy_epochs(run.package_uri, logdir / name)
        _write_session(logdir / name, run)
    experiment = experiment_config([_hparams(run) for run in runs])
    write_events(logdir, [event_pb2.Event(wall_time=time.time(), step=0, summary=experiment)])
    return LaidOut(logdir, list(names), sum(run.study is not None for run in runs))


def run_name(run: RunSummary) -> str:
    """`<run id> key=value ...` (the keys beyond the variant), under tune/<study>/ for a study's package."""
    values = " ".join(f"{key}={_short(value)}" for key, (value, _) in sorted(run.overrides.items()))
    name = " ".join(filter(None, [run.run_id, values])).replace("/", "_")[:MAX_NAME]
    return f"{TUNE_FOLDER}/{run.study}/{name}" if run.study else name


def _short(value: object) -> str:
    """A key's value as the run's name shows it: floats to 4 digits, booleans and lists as JSON writes them."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return json.dumps(value)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _unique(name: str, run: RunSummary, taken: dict[str, RunSummary]) -> str:
    """The same run id twice (a copied package): the second run also says its file."""
    return f"{name} [{run.package_uri.rsplit('/', 1)[-1]}]" if name in taken else name


def _check_ours(logdir: Path) -> None:
    """The folder is made anew: refused unless it is new, empty or made by fab tensorboard."""
    if logdir.is_file() or (logdir.is_dir() and any(logdir.iterdir()) and not (logdir / MARKER).exists()):
        raise TrainerError(f"--logdir {logdir}: holds files fab tensorboard did not write, and it makes its "
                           "folder anew each time; pass a new or empty folder")


def _make_fresh(logdir: Path) -> None:
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    (logdir / MARKER).write_text("made by fab tensorboard from packages; it is made anew on each call\n")


def _copy_epochs(package_uri: str, run_dir: Path) -> None:
    """The package's TensorBoard folders (train/, validation/), not its own session (written anew here)."""
    try:
        with storage.open_for_reading(package_uri) as stream, zipfile.ZipFile(stream) as archive:
            for member in archive.namelist():
                folder, _, rest = member.partition("/")
                if folder == TENSORBOARD_FOLDER and "/" in rest and not member.endswith("/"):
                    target = run_dir / rest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{package_uri}: its TensorBoard logs do not read back ({exc}); copy the package "
                           "again") from None


def _hparams(run: RunSummary) -> dict[str, str | bool | int | float]:
    return session_hparams(run.config, dataset_label(run.dataset.get("source") or "-", run.dataset_sha256))


def _write_session(run_dir: Path, run: RunSummary) -> None:
    written = run.written.timestamp()
    write_session_start(run_dir, run.run_id, _hparams(run), experiment=False, started=written)
    final = FinalMetrics(run.validation_metrics, run.test_metrics, run.best_epoch or run.epochs, run.epochs)
    write_final_metrics(run_dir, final, wall_time=written)


def command(logdir: Path, port: int) -> list[str]:
    """The TensorBoard command line for `logdir`, as a user would type it."""
    return ["tensorboard", "--logdir", str(logdir), "--host", HOST, "--port", str(port)]


def serve(logdir: Path, port: int) -> int:
    """Run TensorBoard on `logdir` until it stops or Ctrl-C; its exit status (0 after Ctrl-C).
    `check_port_free` first: TensorBoard's own refusal of a taken port is no one-line error."""
    # This Python's TensorBoard (whether or not the venv's bin/ is on PATH), through run_tensorboard below.
    process = subprocess.Popen([sys.executable, "-m", __name__, *command(logdir, port)[1:]])
    try:
        return process.wait()
    except KeyboardInterrupt:  # a Ctrl-C in a terminal reached TensorBoard too; a signal to fab alone did not
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 0


def check_port_free(port: int) -> None:
    """A port TensorBoard could not take, as one line before anything is done (0: any free port)."""
    if not port:
        return
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise TrainerError(f"--port {port}: already in use on {HOST} (another TensorBoard?); pass another "
                               "--port, or --port 0 for any free one") from None


def run_tensorboard(argv: list[str]) -> None:
    """TensorBoard's own command line in this process, without the lines TensorFlow prints as it loads
    (TensorBoard imports it when installed): `python -m trainer.comparison.tensorboard --logdir ...`."""
    import_tensorflow_quietly()
    from tensorboard import main as tensorboard_main

    sys.argv = ["tensorboard", *argv]
    tensorboard_main.run_main()


if __name__ == "__main__":
    run_tensorboard(sys.argv[1:])
