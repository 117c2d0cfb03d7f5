"""`fab`, the project's command line, run the way a user types it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fabric import task
from invoke import Context, Exit, Task

from launch.cli import CheckedTask, reports_user_errors
from trainer.config import DEFAULT_VARIANTS_FILE, KEYS, PROJECT_ROOT, load_variants

Runner = Callable[..., subprocess.CompletedProcess]
Lines = Callable[[subprocess.CompletedProcess], list[str]]
TASKS = ["build", "train", "test_sanity", "score", "test", "generate_data", "variants", "keys", "doctor"]
VARIANTS = sorted(load_variants(DEFAULT_VARIANTS_FILE))
TENSORFLOW_NOISE = ("oneDNN", "absl", "cuda", "TF_ENABLE_ONEDNN_OPTS", "tensorflow/core")


def test_list_shows_every_task(run_fab: Runner) -> None:
    proc = run_fab("--list")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.startswith("  ") and line.split()}
    assert set(TASKS) <= listed


def test_help_train_explains_every_option(run_fab: Runner) -> None:
    proc = run_fab("--help", "train")
    assert proc.returncode == 0, proc.stderr
    for option, words in [("--variant", "variant_config.json"), ("--local", "in this process"), ("--gpu", "GPU"),
                          ("--dataset", "NDJSON"), ("--output", "package")]:
        options = proc.stdout.split("Options:")[-1].splitlines()
        line = next((line for line in options if option in line), "")
        assert words in line, f"{option} is not explained:\n{proc.stdout}"


def test_train_local_prints_one_line_per_epoch_and_writes_a_zip(
    run_fab: Runner, tmp_path: Path, lines_of: Lines
) -> None:
    output = tmp_path / "runs"
    proc = run_fab("train", "--variant", "deep_v1", "--local", "--output", str(output), env={"TRAINER_EPOCHS": "2"})
    assert proc.returncode == 0, proc.stderr
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert len(list(output.glob("deep_v1-*.zip"))) == 1
    noise = [line for line in lines_of(proc) if any(word in line for word in TENSORFLOW_NOISE)]
    assert not noise, "TensorFlow log lines reach the user:\n" + "\n".join(noise)


def test_train_unknown_variant_is_a_single_error_line(run_fab: Runner, lines_of: Lines) -> None:
    proc = run_fab("train", "--variant", "nope", "--local")
    assert proc.returncode == 2
    assert lines_of(proc) == [
        f"error: unknown variant 'nope' in {DEFAULT_VARIANTS_FILE}; known variants: {', '.join(VARIANTS)}"
    ]


def test_tune_workers_without_hosts_is_a_single_error_line(run_fab: Runner, lines_of: Lines) -> None:
    proc = run_fab("tune_workers", "--study", "s", "--storage", "postgresql://user@host/db")
    assert proc.returncode == 2
    assert lines_of(proc) == ["error: name the hosts to start workers on: fab -H host1,host2 tune_workers ..."]


def test_a_task_reporting_user_errors_keeps_its_options_and_docstring() -> None:
    def body(c: Context, variant: str = "deep_v1", gpu: bool = False) -> None:
        """Train one variant."""

    plain, wrapped = task(help={"gpu": "on the GPU"})(body), task(help={"gpu": "on the GPU"})(reports_user_errors(body))
    assert wrapped.__doc__ == plain.__doc__
    assert [vars(arg) for arg in wrapped.get_arguments()] == [vars(arg) for arg in plain.get_arguments()]


def test_a_user_error_in_a_task_becomes_one_error_line_and_status_2() -> None:
    from trainer.errors import ConfigError

    @reports_user_errors
    def body(c: Context) -> None:
        raise ConfigError("unknown key 'epoch'")

    with pytest.raises(Exit) as raised:
        body(Context())
    assert (raised.value.message, raised.value.code) == ("error: unknown key 'epoch'", 2)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_exit_raised_by_a_task_passes_through_unchanged() -> None:
    own_exit = Exit(code=1)

    @reports_user_errors
    def body(c: Context) -> None:
        raise own_exit

    with pytest.raises(Exit) as raised:
        body(Context())
    assert raised.value is own_exit


def test_score_writes_a_score_per_row(run_fab: Runner, trained: Any, sample_path: Path, tmp_path: Path) -> None:
    scores = tmp_path / "scores.json"
    proc = run_fab("score", "--package", str(trained.zip_path), "--input", str(sample_path), "--output", str(scores))
    assert proc.returncode == 0, proc.stderr
    assert f"scored 2,000 rows into {scores}" in proc.stdout
    # Progress, a line per block (the sample is one), on stderr: stdout may be the scores themselves.
    assert re.search(r"^scoring: block 1, 2,000 rows at [\d,]+ rows/s; 2,000 rows so far$", proc.stderr,
                     re.MULTILINE), proc.stderr
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 2000
    assert all(row["impression_id"].startswith("imp-") and 0 <= row["score"] <= 1 for row in rows)


def test_score_into_a_folder_that_does_not_exist_creates_it(
    run_fab: Runner, trained: Any, sample_path: Path, tmp_path: Path
) -> None:
    scores = tmp_path / "new" / "folder" / "scores.json"  # as fab train --output makes its folder
    proc = run_fab("score", "--package", str(trained.zip_path), "--input", str(sample_path), "--output", str(scores))
    assert proc.returncode == 0, proc.stderr
    assert len(scores.read_text().splitlines()) == 2000
    # The scores and their drift summary, and no temporary file left beside them.
    assert sorted(p.name for p in scores.parent.iterdir()) == ["scores.drift.json", "scores.json"]


def test_every_task_checks_its_typed_options() -> None:
    # A task made by fabric's own @task would let `--rows abc` end in invoke's traceback again.
    import fabfile

    tasks = [value for value in vars(fabfile).values() if isinstance(value, Task)]
    assert {t.name for t in tasks} >= set(TASKS)
    assert [t.name for t in tasks if not isinstance(t, CheckedTask)] == []


def test_typed_options_keep_their_type_in_help(run_fab: Runner) -> None:
    proc = run_fab("--help", "tune")
    assert proc.returncode == 0, proc.stderr
    assert "--trials=INT" in proc.stdout


def test_score_with_a_missing_package_is_one_error_line(
    run_fab: Runner, sample_path: Path, tmp_path: Path, lines_of: Lines
) -> None:
    proc = run_fab("score", "--package", str(tmp_path / "absent.zip"), "--input", str(sample_path))
    assert proc.returncode == 2
    [line] = lines_of(proc)
    assert line.startswith(f"error: {tmp_path / 'absent.zip'}: no such package")


def test_variants_lists_every_shipped_variant(run_fab: Runner) -> None:
    proc = run_fab("variants")
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split()[0] for line in proc.stdout.splitlines() if line.strip()) == VARIANTS


def test_keys_lists_every_config_key_with_its_help_in_one_column(run_fab: Runner) -> None:
    proc = run_fab("keys")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == list(KEYS)
    # A long default (categorical_columns' list) must not push its help out of line with the others.
    help_columns = {next(line.index(help_text) for line in lines if line.endswith(help_text))
                    for help_text in (KEYS[key].metadata["help"] for key in KEYS)}
    assert len(help_columns) == 1, help_columns


def test_sanity_without_docker_trains_every_variant_here_and_says_so(run_fab: Runner, tmp_path: Path) -> None:
    output = tmp_path / "sanity"
    proc = run_fab("test_sanity", "--output", str(output), env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("runner: this process (no Docker engine answers")
    # Each variant's training starts with how far the sanity run is: [1/4], [2/4], ...
    started = re.findall(r"^\[(\d+)/(\d+)\] sanity training (\S+)$", proc.stdout, re.MULTILINE)
    count = len(VARIANTS)
    assert [(int(n), int(total)) for n, total, _ in started] == [(n, count) for n in range(1, count + 1)]
    assert sorted(variant for *_, variant in started) == VARIANTS, proc.stdout
    for variant in VARIANTS:
        assert re.search(rf"^{variant}\s+ok\s", proc.stdout, re.MULTILINE), f"no ok line for {variant}:\n{proc.stdout}"
    assert len(list(output.glob("*.zip"))) == len(VARIANTS)
    # The summary's loss is the epoch lines' "train: logloss", first epoch to last, under that one name.
    first_and_last = re.findall(r"^epoch (?:1|3)/3  train: logloss (\d\.\d+)", proc.stdout, re.MULTILINE)
    summaries = re.findall(r"^\w+\s+ok\s+train logloss (\d\.\d+) -> (\d\.\d+)  ", proc.stdout, re.MULTILINE)
    assert [figure for pair in summaries for figure in pair] == first_and_last
    # Four models in one process, rnn_v1's scored through its export: no TensorFlow warning or oneDNN line.
    assert "WARNING" not in proc.stdout + proc.stderr and "E0000" not in proc.stdout + proc.stderr


def test_jenkinsfile_stages_call_only_existing_fab_tasks(run_fab: Runner) -> None:
    jenkinsfile = (PROJECT_ROOT / "Jenkinsfile").read_text()
    # (program, first word) of every `sh` step: "fab build${...}" gives ("fab", "build").
    steps = re.findall(r"""\bsh\s+["']([a-z]+)\s+([a-z_]+)""", jenkinsfile)
    assert [step for step in steps if step[0] != "fab"] == [("make", "setup")], "a stage runs something but fab"
    called = {task for program, task in steps if program == "fab"}
    assert called == {"test", "build", "test_sanity", "train", "tune", "tune_report"}, "the pipeline lost a stage"
    listed = {line.split()[0] for line in run_fab("--list").stdout.splitlines()[1:] if line.strip()}
    assert called <= listed, f"the Jenkinsfile calls tasks fab does not have: {called - listed}"


def test_a_variant_file_beside_the_data_trains_and_is_recorded(run_fab: Runner, tmp_path: Path) -> None:
    team_file = tmp_path / "team-variants.json"
    team_file.write_text(json.dumps({"team_linear": {"network": "linear_v1", "epochs": 1}}))
    listed = run_fab("variants", "--variants", str(team_file))
    assert listed.returncode == 0 and listed.stdout.split()[0] == "team_linear", listed.stdout + listed.stderr
    proc = run_fab("train", "--local", "--variant", "team_linear", "--variants", str(team_file),
                   "--output", str(tmp_path / "out"), env={"TRAINER_BATCH_SIZE": "256"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [package] = (tmp_path / "out").glob("team_linear-*.zip")
    with zipfile.ZipFile(package) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["variants_file"] == {"path": str(team_file),
                                       "sha256": hashlib.sha256(team_file.read_bytes()).hexdigest()}
    assert config["keys"]["epochs"]["source"] == f"variant 'team_linear' in {team_file.name}"
