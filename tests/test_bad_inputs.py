"""Every bad input a user can type ends as one `error:` line, exit status 2, no traceback, nothing written.

One row of CASES per input, run as the user runs it: `fab ...` or `python -m
trainer ...` in the project folder with a clean shell (no TRAINER_* of the
caller's; TRAINER_XLA=false). Most cases run in this process, through the
programs' own entry points (`launch.program.make_program().run(argv)` and
`trainer.__main__.main(argv)`) with the case's environment and working folder
set and everything they print captured (a subprocess per case spent seconds
importing the project, TensorFlow among it). A case in a copy of the project,
and one `end_to_end` case per program, run the real console script in a
subprocess instead, so the exit status the shell sees and the "no traceback"
promise are checked end to end.
Each case checks its exit status, exactly one line starting with `error:` that
names the problem, no traceback, and that nothing under the test's folder
changed (its output folder holds a package from an earlier run, which must
stay as it was).

Adding a case is adding a row. Words of `argv` may hold these placeholders:

    {tmp}      the test's own folder, where `files` are written
    {out}      the output folder (exists, holds earlier-run.zip)
    {sample}   data/sample_2k.json
    {project}  the project folder the command runs in (a copy with project_copy=True)
    {package}  a real package trained on the sample (trains once per session: use it sparingly)

Most cases end before TensorFlow is imported; the rest before it trains.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import psycopg
import pytest
from conftest import PROJECT_ROOT, SAMPLE, clean_env
from psycopg import sql
from service_fixtures import Postgres

from launch.program import make_program
from trainer.__main__ import main as trainer_main
from trainer.package.layout import (
    CURRENT_VERSION,
    FORMAT_VERSION_FIELD,
    MANIFEST_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    REQUIRED_FILES,
    members,
)

FAB = Path(sys.executable).parent / "fab"
TIMEOUT_S = 300
EARLIER_PACKAGE = "earlier-run.zip"
# What a copy of the project needs to run fab and python -m trainer (the venv stays where it is).
PROJECT_PARTS = ("fabfile.py", "fabric.yaml", "launch", "trainer", "configs")
# The user and password of STORAGE_WITH_AT: no piece of either may be printed.
STORAGE_WITH_AT = "postgresql://tuner:se@cret@127.0.0.1:1/studies"
FileMaker = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: the command, what it needs on disk, and what the user must see."""

    name: str
    argv: tuple[str, ...]  # starts with "fab" or "python"
    error: str  # a substring of the one `error:` line
    files: Mapping[str, str | FileMaker] = field(default_factory=dict)  # path under {tmp}: text, or a maker
    env: Mapping[str, str] = field(default_factory=dict)
    status: int = 2
    hidden: tuple[str, ...] = ()  # text that must appear nowhere in the output (secrets, wrong advice)
    # Run in a copy of the project, for cases that break the project's own files. Always a subprocess:
    # a copy must run its own code, and this process has imported the original's `launch` and `trainer`.
    project_copy: bool = False
    end_to_end: bool = False  # run the real console script in a subprocess (one case per program)


def first_sample_rows(count: int, drop: str = "") -> str:
    """The sample's first `count` rows, without column `drop`."""
    lines = SAMPLE.read_text().splitlines()[:count]
    rows = [{k: v for k, v in json.loads(line).items() if k != drop} for line in lines]
    return "".join(json.dumps(row) + "\n" for row in rows)


def sample_rows_with(count: int, **values: object) -> str:
    """The sample's first `count` rows with `values` set in every row (None: JSON null)."""
    rows = [{**json.loads(line), **values} for line in SAMPLE.read_text().splitlines()[:count]]
    return "".join(json.dumps(row) + "\n" for row in rows)


def sample_rows_clicked_once(count: int) -> str:
    """`count` rows with a single click: some split is left with one class."""
    rows = [{**json.loads(line), "is_click": "1" if i == 3 else "0"}
            for i, line in enumerate(SAMPLE.read_text().splitlines()[:count])]
    return "".join(json.dumps(row) + "\n" for row in rows)


def broken_gzip(path: Path) -> None:
    """The first bytes of a gzip stream: a shard whose download or export was cut short."""
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()[:100_000])[:2_000])


def package_with_bad_crc(path: Path) -> None:
    """A zip with every member a package needs, whose model member was damaged after it was written."""
    marker = b"model bytes 0123456789"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in REQUIRED_FILES:
            archive.writestr(name, marker if name == MODEL_FILE else b"{}")
    path.write_bytes(path.read_bytes().replace(marker, marker.upper()))  # same length, so only the CRC fails


def incomplete_package(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MANIFEST_FILE, "{}")


def package_of_a_newer_format(path: Path) -> None:
    """A package written by a trainer newer than this one: its manifest is all this one may read."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MANIFEST_FILE, json.dumps({FORMAT_VERSION_FIELD: CURRENT_VERSION + 1}))


def package_before_the_export(path: Path) -> None:
    """A package of format version 3: every member of its time, no model/serving/1/."""
    documents = {MANIFEST_FILE: {"run_id": "deep_v1-old", "variant": "deep_v1", "best_epoch": 1,
                                 "validation_metrics": {}, "test_metrics": {}},
                 "config.json": {"variant": "deep_v1", "keys": {}, "variants_file": None}, "dataset.json": {}}
    with zipfile.ZipFile(path, "w") as archive:
        for name in members(3):
            archive.writestr(name, json.dumps(documents.get(name, {})) if name.endswith(".json") else "epoch\n1\n")


# issue 24 sweep: tracebacks and misleading lines (the files of its cases)


def sample_rows(count: int) -> list[dict[str, object]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()[:count]]


def pretty_printed_rows(path: Path) -> None:
    """Objects over several lines, as `jq .` (not `jq -c .`) prints them."""
    path.write_text("".join(json.dumps(row, indent=2) + "\n" for row in sample_rows(5)))


def rows_as_a_json_array(path: Path) -> None:
    path.write_text(json.dumps(sample_rows(5), indent=2))


def rows_in_utf16(path: Path) -> None:
    """NDJSON saved as UTF-16 (with its byte order mark), as some Windows editors save text."""
    path.write_text(first_sample_rows(5), encoding="utf-16")


def package_cut_json(path: Path) -> None:
    """Every member a package needs, preprocessing.json cut in half before zipping: its CRC is valid."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in REQUIRED_FILES:
            archive.writestr(name, '{"vocabularies": {"categ' if name == PREPROCESSING_FILE else "{}")


def zip_cut_short(path: Path) -> None:
    """A package's first bytes: a copy or download that stopped early."""
    package_with_bad_crc(path)
    path.write_bytes(path.read_bytes()[:100])


# BASE with deep_v1's version 1 pushed: its models.config and its one history entry.
PUSHED_ONCE = {
    "models/models.config": 'model_config_list { config { name: "deep_v1" base_path: "/models/deep_v1" '
                            'model_platform: "tensorflow" version_labels { key: "stable" value: 1 } } }\n',
    "models/deep_v1/history/000001.json": json.dumps({"action": "push", "version": 1, "label": "stable",
                                                       "time": "2026-12-03T10:00:00+00:00", "user": "me"}),
}
NO_ENGINE = {"DOCKER_HOST": "unix://{tmp}/no-engine.sock"}
TRAIN_LOCAL = ("fab", "train", "--local", "--output", "{out}")
SCORE_SAMPLE = ("fab", "score", "--input", "{sample}", "--package")

# A trailing comma on line 2, the commonest slip in a hand-edited JSON file.
BROKEN_VARIANT_FILE = {"project/configs/variant_config.json": '{\n  "deep_v1": {"network": "deep_v1"},\n}\n'}
NOT_JSON_VARIANT_FILE = "{project}/configs/variant_config.json line 3: not valid JSON"
UNDER_A_FILE = "{option} {path}: {{tmp}}/a-file is a file, not a folder, so nothing can be written under it"

CASES = [
    # --- options fab itself parses ---
    Case("tune-trials-not-an-integer", ("fab", "tune", "--trials", "abc"),
         "--trials abc: expected a whole number, e.g. --trials 20"),
    Case("generate-data-rows-not-an-integer", ("fab", "generate_data", "--rows", "abc", "--out", "{out}/rows.json"),
         "--rows abc: expected a whole number"),
    Case("generate-data-seed-not-an-integer", ("fab", "generate_data", "--seed", "1.5", "--out", "{out}/rows.json"),
         "--seed 1.5: expected a whole number"),
    Case("tune-no-trials", ("fab", "tune", "--trials", "0", "--storage", "sqlite:///{out}/tuning.db"),
         "--trials 0: a study needs at least one trial"),
    Case("tune-unknown-sampler", ("fab", "tune", "--sampler", "grid", "--storage", "sqlite:///{out}/tuning.db"),
         "--sampler grid: unknown; use one of tpe, random"),
    # --- --output where a folder (or, for score, a file) goes ---
    Case("train-output-is-a-file", ("fab", "train", "--local", "--output", "{tmp}/a-file"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}),
    Case("train-in-docker-output-is-a-file", ("fab", "train", "--output", "{tmp}/a-file"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}, env=NO_ENGINE),
    Case("python-train-output-is-a-file",  # python -m trainer's end-to-end case: ends before TensorFlow loads
         ("python", "-m", "trainer", "train", "--variant", "deep_v1", "--output", "{tmp}/a-file"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}, end_to_end=True),
    Case("tune-output-is-a-file",
         ("fab", "tune", "--output", "{tmp}/a-file", "--storage", "sqlite:///{out}/tuning.db"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}),
    Case("sanity-output-is-a-file", ("fab", "test_sanity", "--local", "--output", "{tmp}/a-file"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}),
    Case("runs-output-is-a-file", ("fab", "runs", "--output", "{tmp}/a-file"),
         "--output {tmp}/a-file: is a file", files={"a-file": "mine"}),
    Case("runs-output-empty", ("fab", "runs", "--output", ""), "--output '': an empty path; name a folder"),
    Case("train-output-empty", ("fab", "train", "--local", "--output", ""),
         "--output '': an empty path; name a folder"),
    Case("runs-output-missing", ("fab", "runs", "--output", "{tmp}/absent"),
         "--output {tmp}/absent: no such folder; pass the folder that holds the packages", hidden=("no packages",)),
    Case("runs-unknown-sort", ("fab", "runs", "--output", "{out}", "--sort", "auc"),
         "--sort auc: fab runs does not sort by that; use one of written, run, variant, epochs, validation_auc"),
    Case("tensorboard-output-missing", ("fab", "tensorboard", "--output", "{tmp}/absent", "--no-serve"),
         "--output {tmp}/absent: no such folder"),
    Case("tensorboard-logdir-of-other-files",
         ("fab", "tensorboard", "--output", "{out}", "--logdir", "{tmp}/mine", "--no-serve"),
         "--logdir {tmp}/mine: holds files fab tensorboard did not write", files={"mine/notes.txt": "mine"}),
    Case("score-output-is-a-folder", (*SCORE_SAMPLE, "{tmp}/absent.zip", "--output", "{out}"),
         "--output {out}: is a folder; name the file"),
    # --- configuration ---
    Case("unknown-variant", ("fab", "train", "--local", "--variant", "nope", "--output", "{out}"),
         "unknown variant 'nope'"),
    Case("unknown-trainer-key", TRAIN_LOCAL, "unknown key 'epoch' (environment TRAINER_EPOCH); did you mean 'epochs'?",
         env={"TRAINER_EPOCH": "3"}),
    Case("wrong-type-trainer-value", TRAIN_LOCAL, "epochs (environment TRAINER_EPOCHS): expected an integer",
         env={"TRAINER_EPOCHS": "many"}),
    Case("variants-with-a-broken-variant-file", ("fab", "variants"), NOT_JSON_VARIANT_FILE,
         files=BROKEN_VARIANT_FILE, project_copy=True),
    Case("keys-with-a-broken-variant-file", ("fab", "keys"), NOT_JSON_VARIANT_FILE,
         files=BROKEN_VARIANT_FILE, project_copy=True),
    # --- the Docker engine ---
    Case("build-without-an-engine", ("fab", "build"), "point DOCKER_HOST at a running engine",
         env=NO_ENGINE, hidden=("--local",)),  # build has no --local to suggest
    Case("train-without-an-engine", ("fab", "train", "--output", "{out}"),
         "point DOCKER_HOST at a running engine, or train in this process with --local", env=NO_ENGINE),
    # --- datasets ---
    Case("missing-dataset-file", (*TRAIN_LOCAL, "--dataset", "{tmp}/absent.json"), "{tmp}/absent.json: no such file"),
    Case("unknown-dataset-scheme", (*TRAIN_LOCAL, "--dataset", "s3://bucket/rows.json"),
         "unsupported storage scheme 's3://'"),
    Case("malformed-json-line", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json line 3: not valid JSON",
         files={"rows.json": first_sample_rows(2) + "{broken\n"}),
    Case("dataset-missing-a-column", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"), "category",
         files={"rows.json": first_sample_rows(50, drop="category")}),
    Case("gpu-without-a-gpu", (*TRAIN_LOCAL, "--gpu"), "a GPU was asked for (--gpu) but TensorFlow sees none"),
    Case("dataset-folder-without-data", (*TRAIN_LOCAL, "--dataset", "{tmp}/export"),
         "{tmp}/export: a folder without *.json or *.json.gz files", files={"export/notes.txt": "not data"}),
    Case("dataset-broken-gzip", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json.gz"),
         "{tmp}/rows.json.gz: a broken gzip file", files={"rows.json.gz": broken_gzip}),
    Case("label-is-nan", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json line 1: label 'is_click' is 'NaN'; it must be 0 or 1",
         files={"rows.json": sample_rows_with(50, is_click="NaN")}),
    Case("one-label-class", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "all 50 rows have label 0 in 'is_click'", files={"rows.json": sample_rows_with(50, is_click=False)}),
    Case("a-split-with-one-label-class", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "the train split has 73 rows and only label class 0: its AUC cannot be computed; use more data, or "
         "smaller validation_fraction and test_fraction",
         files={"rows.json": sample_rows_clicked_once(100)}),
    Case("fractions-leave-no-training-rows", TRAIN_LOCAL, "plus test_fraction (0.5) must be below 1",
         env={"TRAINER_VALIDATION_FRACTION": "0.5", "TRAINER_TEST_FRACTION": "0.5"}),
    Case("time-split-with-a-null-timestamp", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json line 51: column 'event_time' (split_time_column) is missing",
         files={"rows.json": first_sample_rows(50) + sample_rows_with(1, event_time=None)},
         env={"TRAINER_SPLIT_TIME_COLUMN": "event_time"}),
    # --- packages ---
    Case("missing-package", (*SCORE_SAMPLE, "{tmp}/absent.zip"), "{tmp}/absent.zip: no such package"),
    Case("python-score-missing-package",
         ("python", "-m", "trainer", "score", "--package", "{tmp}/absent.zip", "--input", "{sample}"),
         "{tmp}/absent.zip: no such package"),
    Case("package-not-a-zip", (*SCORE_SAMPLE, "{tmp}/junk.zip"), "not a zip file, so not a package",
         files={"junk.zip": "these are not zip bytes"}),
    Case("package-incomplete", (*SCORE_SAMPLE, "{tmp}/part.zip"), "not a complete package (missing config.json",
         files={"part.zip": incomplete_package}),
    Case("package-of-a-newer-format", (*SCORE_SAMPLE, "{tmp}/newer.zip"),
         f"package format version {CURRENT_VERSION + 1} is newer than this trainer reads (1 to {CURRENT_VERSION}); "
         "upgrade the trainer", files={"newer.zip": package_of_a_newer_format}),
    Case("package-member-with-a-bad-crc", (*SCORE_SAMPLE, "{tmp}/damaged.zip"),
         f"the package is corrupt ({MODEL_FILE} does not read back", files={"damaged.zip": package_with_bad_crc}),
    Case("score-missing-input", ("fab", "score", "--package", "{package}", "--input", "{tmp}/absent.json"),
         "{tmp}/absent.json: no such file"),
    Case("score-input-missing-a-column", ("fab", "score", "--package", "{package}", "--input", "{tmp}/rows.json"),
         "the package's schema needs them", files={"rows.json": first_sample_rows(20, drop="category")},
         hidden=("_columns keys",)),  # the package fixes the schema: no training advice
    # --- fab push, label, rollback, history ---
    Case("push-to-a-file", ("fab", "push", "{package}", "--to", "{tmp}/a-file"), "--to {tmp}/a-file: is a file",
         files={"a-file": "mine"}),
    Case("push-a-package-before-the-export", ("fab", "push", "{tmp}/old.zip", "--to", "{tmp}/models"),
         "package format version 3 has no serving export", files={"old.zip": package_before_the_export}),
    Case("label-naming-no-version", ("fab", "label", "canary", "7", "--to", "{tmp}/models"),
         "no version 7 to label canary (pushed: 1)", files=PUSHED_ONCE),
    Case("rollback-without-an-earlier-stable", ("fab", "rollback", "--to", "{tmp}/models"),
         "no earlier stable version to roll back to", files=PUSHED_ONCE),
    Case("history-of-an-empty-base", ("fab", "history", "--to", "{tmp}/models"),
         "--to {tmp}/models holds no models.config: name the model with --model NAME"),
    # --- tuning studies ---
    Case("storage-url-with-an-unknown-scheme", ("fab", "tune_report", "--study", "s", "--storage", "redis://u:pw1@db/0"),
         "--storage redis://***@db/0: expected postgresql://", hidden=("pw1",)),
    Case("storage-password-with-an-at", ("fab", "tune_report", "--study", "s", "--storage", STORAGE_WITH_AT),
         "cannot open the study storage postgresql://***@127.0.0.1:1/studies", hidden=("tuner", "se@", "cret")),
    Case("tune-report-of-a-missing-study", ("fab", "tune_report", "--study", "absent"),  # fab's end-to-end case
         "no study 'absent': {project}/runs/tuning.db does not exist", project_copy=True, end_to_end=True),
    Case("tune-report-of-a-missing-study-file",
         ("fab", "tune_report", "--study", "absent", "--storage", "sqlite:///{out}/tuning.db"),
         "no study 'absent': {out}/tuning.db does not exist"),
    # issue 24 sweep: tracebacks and misleading lines
    # --- an --output under a file: refused before any work (score's before a row is scored, tune's before the
    # study records it) ---
    Case("train-output-under-a-file", ("fab", "train", "--local", "--output", "{tmp}/a-file/runs"),
         UNDER_A_FILE.format(option="--output", path="{tmp}/a-file/runs"), files={"a-file": "mine"}),
    Case("score-output-under-a-file", (*SCORE_SAMPLE, "{tmp}/absent.zip", "--output", "{tmp}/a-file/s.json"),
         UNDER_A_FILE.format(option="--output", path="{tmp}/a-file/s.json"), files={"a-file": "mine"}),
    Case("generate-data-out-under-a-file", ("fab", "generate_data", "--rows", "10", "--out", "{tmp}/a-file/r.json"),
         UNDER_A_FILE.format(option="--out", path="{tmp}/a-file/r.json"), files={"a-file": "mine"}),
    Case("compare-output-under-a-file",
         ("fab", "compare", "{tmp}/absent-a.zip", "{tmp}/absent-b.zip", "--output", "{tmp}/a-file/c.png"),
         UNDER_A_FILE.format(option="--output", path="{tmp}/a-file/c.png"), files={"a-file": "mine"}),
    Case("tune-output-under-a-file",
         ("fab", "tune", "--output", "{tmp}/a-file/t", "--storage", "sqlite:///{out}/tuning.db"),
         UNDER_A_FILE.format(option="--output", path="{tmp}/a-file/t"), files={"a-file": "mine"}),
    Case("tune-report-output-under-a-file", ("fab", "tune_report", "--study", "absent", "--output", "{tmp}/a-file/r"),
         UNDER_A_FILE.format(option="--output", path="{tmp}/a-file/r"), files={"a-file": "mine"}),
    Case("tune-storage-file-under-a-file", ("fab", "tune", "--storage", "sqlite:///{tmp}/a-file/tuning.db"),
         UNDER_A_FILE.format(option="--storage", path="{tmp}/a-file/tuning.db"), files={"a-file": "mine"}),
    # --- study storage ---
    Case("storage-port-not-a-number",
         ("fab", "tune_report", "--study", "s", "--storage", "postgresql://tuner:pw1@127.0.0.1:abc/studies"),
         "--storage postgresql://***@127.0.0.1:abc/studies: the port 'abc' is not a number", hidden=("pw1",)),
    # --- a dataset in another format, as a whole ---
    Case("dataset-in-csv", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.csv"), "{tmp}/rows.csv: this file is CSV",
         files={"rows.csv": "impression_id,is_click\nimp-1,0\n"}, hidden=("fix or drop that line",)),
    Case("dataset-pretty-printed", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json: this file is pretty-printed JSON", files={"rows.json": pretty_printed_rows},
         hidden=("fix or drop that line",)),
    Case("dataset-a-json-array", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json: this file is one JSON array", files={"rows.json": rows_as_a_json_array}),
    Case("dataset-in-utf-16", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.json"),
         "{tmp}/rows.json: this file is UTF-16 text", files={"rows.json": rows_in_utf16},
         hidden=("fix or drop that line",)),
    Case("score-input-in-csv", ("fab", "score", "--package", "{package}", "--input", "{tmp}/rows.csv"),
         "{tmp}/rows.csv: this file is CSV", files={"rows.csv": "impression_id,is_click\nimp-1,0\n"}),
    # --- a dataset path that names no data file ---
    Case("dataset-folder-with-data-in-a-subfolder", (*TRAIN_LOCAL, "--dataset", "{tmp}/export"),
         "{tmp}/export: no data files directly in this folder, but its subfolder(s) {tmp}/export/shards hold",
         files={"export/shards/train-0.json": first_sample_rows(5)}, hidden=("empty folder",)),
    Case("dataset-empty-folder", (*TRAIN_LOCAL, "--dataset", "{tmp}/export"), "{tmp}/export: an empty folder",
         files={"export/.keep": ""}),
    Case("dataset-empty-path", (*TRAIN_LOCAL, "--dataset", ""), "an empty dataset path ('')"),
    Case("dataset-a-fifo", (*TRAIN_LOCAL, "--dataset", "{tmp}/rows.fifo"), "{tmp}/rows.fifo: not a regular file",
         files={"rows.fifo": os.mkfifo}, hidden=("no such file",)),
    Case("dataset-a-device", (*TRAIN_LOCAL, "--dataset", "/dev/null"), "/dev/null: not a regular file"),
    # --- packages damaged, or unzipped ---
    Case("package-with-truncated-preprocessing", (*SCORE_SAMPLE, "{tmp}/cut.zip"),
         f"the package is corrupt ({PREPROCESSING_FILE} is not valid JSON", files={"cut.zip": package_cut_json}),
    Case("package-zip-cut-short", (*SCORE_SAMPLE, "{tmp}/cut.zip"), "{tmp}/cut.zip: a zip cut short (",
         files={"cut.zip": zip_cut_short}, hidden=("not a zip file",)),
    Case("compare-a-zip-cut-short", ("fab", "compare", "{tmp}/cut.zip", "{tmp}/cut.zip"),
         "{tmp}/cut.zip: a zip cut short (", files={"cut.zip": zip_cut_short}),
    Case("package-unzipped", (*SCORE_SAMPLE, "{tmp}/run"), "{tmp}/run: an unzipped package (a folder)",
         files={f"run/{MANIFEST_FILE}": "{}"}, hidden=("no such package",)),
    # issue 24 sweep: silent findings
    # Scores written over their own input: refused before the package loads (it need not exist), input untouched.
    Case("score-output-is-the-input", ("fab", "score", "--package", "{tmp}/absent.zip", "--input", "{tmp}/rows.json",
                                       "--output", "{tmp}/data/../rows.json"),
         "--output {tmp}/data/../rows.json: the scores would replace the input file {tmp}/rows.json",
         files={"rows.json": first_sample_rows(5), "data/other.json": "{}"}),
    Case("score-output-is-an-input-shard",
         ("python", "-m", "trainer", "score", "--package", "{tmp}/absent.zip", "--input", "{tmp}/part-*.json",
          "--output", "{tmp}/part-2.json"),
         "--output {tmp}/part-2.json: the scores would replace the input file {tmp}/part-2.json",
         files={"part-1.json": first_sample_rows(5), "part-2.json": first_sample_rows(5)}),
    Case("id-column-no-row-has", TRAIN_LOCAL, "column(s) request_id missing: no row has a value",
         env={"TRAINER_ID_COLUMN": "request_id"}),
    Case("score-input-without-the-id-column",
         ("fab", "score", "--package", "{package}", "--input", "{tmp}/rows.json", "--output", "{tmp}/scores.json"),
         "column(s) impression_id missing: the package's schema needs them",
         files={"rows.json": first_sample_rows(20, drop="impression_id")}),
]


def prepare(case: Case, tmp_path: Path) -> dict[str, str]:
    """Write the case's files (and the project copy); return the placeholders' values."""
    project = copy_of_project(tmp_path / "project") if case.project_copy else PROJECT_ROOT
    out = tmp_path / "out"
    out.mkdir()
    (out / EARLIER_PACKAGE).write_bytes(b"a package from an earlier run")
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        else:
            path.write_text(content)
    return {"tmp": str(tmp_path), "out": str(out), "sample": str(SAMPLE), "project": str(project)}


def copy_of_project(project: Path) -> Path:
    """The code and configs of the project under `project`: fab and python -m trainer run there as here."""
    project.mkdir()
    for part in PROJECT_PARTS:
        if (PROJECT_ROOT / part).is_dir():
            shutil.copytree(PROJECT_ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(PROJECT_ROOT / part, project / part)
    return project


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` with its size and modification time: what "nothing new" is checked against."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def command(case: Case, values: dict[str, str]) -> list[str]:
    program = {"fab": [str(FAB)], "python": [sys.executable]}[case.argv[0]]
    return program + [word.format(**values) for word in case.argv[1:]]


def case_env(case: Case, values: dict[str, str]) -> dict[str, str]:
    return {name: value.format(**values) for name, value in case.env.items()}


def run_in_subprocess(case: Case, values: dict[str, str]) -> tuple[int, str]:
    """The command as the user's shell runs it: its exit status, and its stdout then stderr."""
    env = {**case_env(case, values), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(command(case, values), cwd=values["project"], env=clean_env(env), capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def run_in_process(case: Case, values: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                   capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The command through its program's entry point here, in the environment and folder it would have.

    capfd, not capsys: it also sees what is written to file descriptors 1 and 2, as the subprocess's pipes did."""
    use_environment(monkeypatch, clean_env(case_env(case, values)))
    monkeypatch.chdir(values["project"])  # fab finds the fabfile from here, and loads it anew each run
    argv = [word.format(**values) for word in case.argv]
    capfd.readouterr()  # what came before is not the command's (training the {package}, for one)
    try:
        status = ENTRY_POINTS[argv[0]](argv)
    except SystemExit as stop:  # how both programs end with a status; nothing else is caught
        status = exit_status(stop)
    captured = capfd.readouterr()
    return status, captured.out + captured.err


def use_environment(monkeypatch: pytest.MonkeyPatch, environ: Mapping[str, str]) -> None:
    """os.environ as `environ` while the case runs, except TF_CPP_MIN_LOG_LEVEL: clean_env drops it, and
    importing `trainer` sets it again, as it did in this process."""
    for key in set(os.environ) - set(environ) - {"TF_CPP_MIN_LOG_LEVEL"}:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)


def run_fab(argv: list[str]) -> int:
    """`fab` as its console script runs it: on an Exit, invoke prints its message and calls sys.exit(code).

    exit=False would print the message too but drop the code, which the case checks."""
    make_program().run(argv)
    return 0


def run_python_m_trainer(argv: list[str]) -> int:
    return trainer_main(argv[3:])  # the words after "python -m trainer"


ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {"fab": run_fab, "python": run_python_m_trainer}


def exit_status(stop: SystemExit) -> int:
    """The status the shell would see for `stop`: None is 0; a message is printed to stderr and is 1."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_is_one_error_line_and_nothing_written(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    values = prepare(case, tmp_path)
    if any("{package}" in word for word in case.argv):
        values["package"] = str(request.getfixturevalue("trained").zip_path)
    before = snapshot(tmp_path)
    if case.project_copy or case.end_to_end:
        status, output = run_in_subprocess(case, values)
    else:
        status, output = run_in_process(case, values, monkeypatch, capfd)
    assert status == case.status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line:\n{output[-3000:]}"
    assert case.error.format(**values) in errors[0]
    assert not [text for text in case.hidden if text in output], f"printed what it must not:\n{output}"
    assert snapshot(tmp_path) == before, "the command wrote, changed or removed files"


# issue 24 sweep: tracebacks and misleading lines (beyond one command each)


def test_a_tune_refused_for_its_output_leaves_the_study_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The refused --output is not recorded in the study: the same command with a good one defines it."""
    (tmp_path / "a-file").write_text("mine")
    values = {"tmp": str(tmp_path), "project": str(PROJECT_ROOT)}

    def tune(study: str, output: str) -> int:
        argv = ("fab", "tune", "--study", study, "--define-only", "--storage", "sqlite:///{tmp}/tuning.db",
                "--output", output)
        return run_in_process(Case(study, argv, ""), values, monkeypatch, capfd)[0]

    assert tune("earlier", "{tmp}/earlier") == 0  # the database exists when the refused command comes
    assert tune("s", "{tmp}/a-file/trials") == 2
    assert tune("s", "{tmp}/trials") == 0
    stored = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/tuning.db").user_attrs
    assert stored["output"] == str(tmp_path / "trials")


def test_a_database_user_without_rights_on_the_study_is_one_line(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A user with no rights on the study's tables (fab tune_report), or only SELECT (a worker adding a trial):
    one line naming the permission and the GRANT that gives it, not Optuna's "invalid data in the commit"."""
    owner_url = postgres.new_database("rights")
    values = {"tmp": str(tmp_path), "project": str(PROJECT_ROOT)}
    define = ("fab", "tune", "--study", "s", "--define-only", "--storage", owner_url, "--output", "{tmp}/t")
    assert run_in_process(Case("define", define, ""), values, monkeypatch, capfd)[0] == 0
    stranger, reader = (f"{role}_{uuid.uuid4().hex[:8]}" for role in ("stranger", "reader"))  # roles span databases
    with psycopg.connect(owner_url, autocommit=True) as database:
        for role in (stranger, reader):
            database.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        database.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(reader)))
    as_user = {role: owner_url.replace("postgres@", f"{role}@", 1) for role in (stranger, reader)}
    report = ("fab", "tune_report", "--study", "s", "--storage", as_user[stranger], "--output", "{tmp}/report")
    worker = ("python", "-m", "trainer", "tune", "--study", "s", "--storage", as_user[reader])
    for argv, denied in ((report, "table version_info"), (worker, "table studies")):
        status, output = run_in_process(Case("user", argv, ""), values, monkeypatch, capfd)
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert status == 2 and "Traceback" not in output and len(errors) == 1, output[-3000:]
        assert f"refuses this database user (permission denied for {denied}); the database's owner can let it " \
               "use the study's tables (GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES" in errors[0], errors[0]
    assert optuna.load_study(study_name="s", storage=owner_url).trials == []  # nothing added, nothing lost
