"""fab: the project's one command line (Fabric 3). `fab --list`, `fab --help TASK`.

Tasks are thin: they check their arguments and call `launch` (the host's side) or the
`trainer` package, where the logic lives; heavy imports (TensorFlow, docker-py) wait
inside them. A problem the user can fix ends as one line (@cli.reports_user_errors).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from invoke import Context

from launch import cli
from launch.cli import task  # fabric's @task, with every typed option checked (one line, not a traceback)
from trainer import import_tensorflow_quietly
from trainer.config import DEFAULT_DATASET, DEFAULT_OUTPUT
from trainer.tuning.search import PRUNERS, SAMPLERS

VARIANTS_HELP = "a variant file of your own, e.g. beside your data (default: configs/variant_config.json)"


@task(
    help={
        "gpu": "build the GPU image (CUDA base, TensorFlow's CUDA build) instead of the CPU one",
        "tag": "one more tag for the image, beside trainer:cpu and trainer:cpu-<commit>",
        "base_image": "the image to build on (default: python:3.11-slim, or nvidia/cuda:...-cudnn-runtime for --gpu)",
        "extra_ca": "a PEM file of CA certificates to trust while building (TLS-intercepting proxies)",
    }
)
@cli.reports_user_errors
def build(c: Context, gpu: bool = False, tag: str = "", base_image: str = "", extra_ca: str = "") -> None:
    """Build the trainer's Docker image (CPU, or GPU with --gpu), streaming the build's progress."""
    from launch.engine import connect
    from launch.images import BuildRequest, build_image

    request = BuildRequest(gpu=gpu, tag=tag, base_image=base_image, extra_ca=Path(extra_ca) if extra_ca else None)
    built = build_image(connect(), request, print)
    print(f"built {built.id[:19]} as {', '.join(built.tags)}")


@task(
    help={
        "variant": "a variant of configs/variant_config.json (fab variants lists them)",
        "local": "train in this process instead of the Docker image",
        "gpu": "train on the GPU (the trainer:gpu image); fails clearly if there is none",
        "dataset": "NDJSON dataset: a file or shards with * (default: data/sample_2k.json)",
        "output": "where the package zip goes (default: runs/)",
        "image": "the image to train in (default: trainer:cpu, or trainer:gpu with --gpu)",
        "variants": VARIANTS_HELP,
    }
)
@cli.reports_user_errors
def train(
    c: Context, variant: str = "deep_v1", local: bool = False, gpu: bool = False,
    dataset: str = DEFAULT_DATASET, output: str = DEFAULT_OUTPUT, image: str = "", variants: str = "",
) -> None:
    """Train one variant in the Docker image (or --local) and write its package as one zip.

    TRAINER_<KEY>=value in the environment overrides one config key for this run,
    e.g. TRAINER_EPOCHS=3 fab train --variant deep_v1 (`fab keys` lists every key).
    The container gets these overrides, the local files it needs (mounted) and
    GOOGLE_APPLICATION_CREDENTIALS. Fabric 1's form works too: fab train:variant=deep_v1,gpu=True.
    """
    from trainer.config import resolve_config

    variants_file = cli.variants_file(variants)
    resolve_config(variant, variants_file)  # config errors before TensorFlow's or Docker's start
    cli.output_folder(output)
    if local:
        run = cli.pipeline()
        run.train(run.TrainRequest(variant, dataset, output, variants_file=variants_file, require_gpu=gpu))
        return
    from launch.containers import training_job
    from launch.engine import connect
    from launch.images import image_to_run

    job = training_job(image_to_run(image, gpu), variant, dataset, output, gpu, os.environ, variants_file)
    cli.run_in_container(connect(without_docker="train in this process with --local"), job)


@task(
    help={
        "output": "where the sanity packages go (default: runs/sanity)",
        "local": "train in this process even when Docker is available",
        "image": "the image to train in (default: trainer:cpu)",
        "variants": VARIANTS_HELP,
    }
)
@cli.reports_user_errors
def test_sanity(
    c: Context, output: str = f"{DEFAULT_OUTPUT}/sanity", local: bool = False, image: str = "", variants: str = "",
) -> None:
    """Train every variant (of --variants) for a few epochs on data/sample_2k.json and check each package.

    Runs in the CPU image when a Docker engine answers, in this process otherwise
    (or with --local), and says which. Fails unless every package is complete,
    scores its own rows, and its training loss went down. TRAINER_<KEY>=value
    overrides a config key for every variant (`fab keys` lists them).
    """
    cli.output_folder(output)
    variants_file = cli.variants_file(variants)
    engine = None if local else cli.engine_if_running()
    if engine:
        from launch.containers import sanity_job
        from launch.images import image_to_run

        tag = image_to_run(image, gpu=False)
        print(f"runner: the Docker image {tag}")
        cli.run_in_container(engine, sanity_job(tag, output, os.environ, variants_file))
        return
    print("runner: this process " + ("(--local)" if local else
                                     "(no Docker engine answers; with one, the CPU image is used)"))
    cli.exit_with(cli.trainer_main(["sanity", "--output", output, "--variants", str(variants_file)]))


@task(
    help={
        "package": "a package zip written by fab train",
        "input": "NDJSON rows in the training schema (the label may be absent)",
        "output": "NDJSON file of {id, score} per row (default: print to stdout); the drift summary goes "
                  "beside it as <output>.drift.json",
    }
)
@cli.reports_user_errors
def score(c: Context, package: str, input: str, output: str = "") -> None:
    """Score raw JSON rows with a trained package through its serving export (what TF Serving would answer)."""
    cli.pipeline()  # TensorFlow imported quietly
    from trainer.score import score as score_rows

    rows = score_rows(package, input, output or None)
    if output:
        print(f"scored {rows:,} rows into {output}")


@task(help={"pytest_args": "extra arguments for pytest, e.g. \"-k config -x\""})
def test(c: Context, pytest_args: str = "") -> None:
    """Run the test suite (pytest)."""
    c.run(shlex.join([sys.executable, "-m", "pytest", *shlex.split(pytest_args)]), pty=False)


@task(
    help={
        "gpu": "fail (exit status 2) unless the GPU checks pass too; without it they are shown, not counted",
        "storage": "also check that this study storage answers from here (postgresql://USER:PASSWORD@HOST/DB)",
    }
)
def doctor(c: Context, gpu: bool = False, storage: str = "") -> None:
    """Check this machine before a long run: one ✓ or ✗ line per check, each ✗ with its fix.

    Docker and the trainer images (with their commits), nvidia-smi and the driver's CUDA,
    the NVIDIA container runtime, TensorFlow's CUDA build and a matmul on the GPU (in the
    GPU image when built, else here), the CUDA versions against the driver, Google
    credentials and the --storage database. Exit status 0 when the CPU path works
    (with --gpu: the GPU path too), else 2.
    """
    from launch import doctor as checks

    found = checks.run_checks(storage)
    for check in found:
        print(check.line())
    print(checks.summary(found, gpu))
    cli.exit_with(checks.exit_status(found, gpu))


@task(
    help={
        "rows": "how many impressions to generate",
        "out": "the NDJSON file to write",
        "seed": "random seed (the same seed gives the same file)",
        "items": "distinct item ids in the catalog, e.g. 2000000 for a production-size embedding table",
        "publishers": "distinct publisher ids in the catalog",
        "item_zipf": "Zipf exponent of item popularity, >= 0 (0: uniform; higher: fewer items get most traffic)",
    }
)
@cli.reports_user_errors
def generate_data(
    c: Context, rows: int = 1_000_000, out: str = "data/ctr_1m.json", seed: int = 0,
    items: int = 200_000, publishers: int = 2_000, item_zipf: float = 0.9,
) -> None:
    """Generate a synthetic click-through dataset in BigQuery's NDJSON export format.

    The catalog options' defaults are those of data/sample_2k.json; other values make another world.
    """
    from trainer.data.synthetic.world import Catalog
    from trainer.data.synthetic.writer import generate

    generate(rows, Path(out), seed=seed, catalog=Catalog(items=items, publishers=publishers, item_zipf=item_zipf))
    print(f"wrote {rows:,} rows ({items:,} items, {publishers:,} publishers) to {out}")


@task(help={"variants": VARIANTS_HELP})
def variants(c: Context, variants: str = "") -> None:
    """List the variants (shipped, or of --variants) and what each overrides."""
    # A variant file that does not load: its error line, status 2.
    cli.exit_with(cli.trainer_main(["variants", "--variants", str(cli.variants_file(variants))]))


@task(help={"variants": VARIANTS_HELP})
def keys(c: Context, variants: str = "") -> None:
    """List every config key with its type, default and meaning (after checking the variant file loads)."""
    cli.exit_with(cli.trainer_main(["keys", "--variants", str(cli.variants_file(variants))]))


@task(
    iterable=["param"],
    help={
        "sql": "the SQL file to run in BigQuery (one SELECT; values as @name parameters), e.g. sql/training_table.sql",
        "dest": "where the NDJSON goes: gs://BUCKET/path/name-*.json (BigQuery writes shards) or a local file",
        "param": "a query parameter, NAME=VALUE or NAME:TYPE=VALUE (INT64, FLOAT64, BOOL, DATE, TIMESTAMP, "
                 "NUMERIC, STRING); repeat for each",
        "project": "the Google Cloud project that runs the query (default: GOOGLE_CLOUD_PROJECT)",
        "compression": "gzip: BigQuery gzips each shard (gs:// only; DEST then ends .json.gz, e.g. train-*.json.gz)",
    }
)
@cli.reports_user_errors
def dataset(c: Context, sql: str, dest: str, param: list[str] | None = None, project: str = "",
            compression: str = "") -> None:
    """Run a SQL file in BigQuery and write its rows as NDJSON, with the query's metadata beside them.

    The metadata (query hash, job id, rows, schema, time, parameters) goes to DEST's
    name.metadata.json and into the dataset.json of every package trained on the data.
    """
    from trainer.cloud.bigquery_export import ExportRequest, export_dataset

    request = ExportRequest(Path(sql), dest, tuple(param or ()), project or None, compression)
    export_dataset(request)


@task(help={
    "output": "a folder or gs://BUCKET/prefix holding package zips (default: runs/); its tune/<study>/ too",
    "variant": "only the packages of this variant",
    "sort": "a column to sort by, best first: validation_auc, test_auc, test_logloss, ... (default: written)",
})
@cli.reports_user_errors
def runs(c: Context, output: str = DEFAULT_OUTPUT, variant: str = "", sort: str = "written") -> None:
    """List the packages in a folder or gs:// prefix and its tuning studies' folders (tune/<study>/):
    run, variant, date, epochs, AUCs, dataset (name, rows, sha256), study, overrides."""
    from trainer.package.listing import runs_table

    print(runs_table(cli.output_folder(output), variant, sort))


@task(help={
    "output": "the folder or gs:// prefix of the packages (default: runs/), its tune/<study>/ included",
    "logdir": "the folder to lay the logs out in (default: OUTPUT/tensorboard, made anew on each call)",
    "port": "TensorBoard's port on 127.0.0.1 (0: any free one)",
    "serve": "start TensorBoard; --no-serve only lays out the logs and prints the command",
})
@cli.reports_user_errors
def tensorboard(c: Context, output: str = DEFAULT_OUTPUT, logdir: str = "", port: int = 6006,
                serve: bool = True) -> None:
    """Every package's TensorBoard logs side by side: one run per package, named by its id and overrides,
    with HParams (every config key, the dataset, the packaged weights' metrics); then TensorBoard on them."""
    from trainer.comparison import tensorboard as board

    if serve:
        board.check_port_free(port)
    laid = board.lay_out(cli.output_folder(output), Path(logdir) if logdir else board.default_logdir(output))
    print(laid.summary(output))
    command = shlex.join(board.command(laid.logdir, port))
    if not serve:
        print(command)
        return
    print(f"starting {command} (Ctrl-C stops it)", flush=True)
    cli.exit_with(board.serve(laid.logdir, port))


@task(
    positional=["package"],
    iterable=["package"],
    help={
        "package": "a package zip, local or gs://; list two or more after compare (the first is the baseline), "
                   "or repeat --package",
        "output": "the PNG of the overlaid epoch curves (default: runs/compare-<short ids>.png)",
    },
)
@cli.reports_user_errors
def compare(c: Context, package: list[str] | None = None, output: str = "") -> None:
    """Compare packages: config diff with each key's level, datasets, metrics, overlaid curves, AUC difference.

    fab compare runs/A.zip runs/B.zip [runs/C.zip ...]. Manifests are read with ranged reads; where
    packages share a test split (same dataset sha256 and split), the dataset is loaded and each model
    scores those rows: the AUC difference vs the first package, with a 95% paired bootstrap interval.
    """
    from trainer.comparison.read import check_count

    packages = list(package or [])
    check_count(packages)
    cli.exit_with(cli.trainer_main(["compare", *packages, *(["--output", output] if output else [])]))


@task(
    help={
        "variant": "the variant to tune (fab variants lists them)",
        "trials": "finished trials the study wants (complete or pruned); again with more continues it",
        "sampler": SAMPLERS.described(),
        "pruner": PRUNERS.described(),
        "study": "the study's name (default: the variant's); the same name continues it",
        "storage": "where the study lives: postgresql://USER:PASSWORD@HOST/DB to share it with workers on "
                   "other hosts (default: runs/tuning.db, this machine only)",
        "space": "the search space file (default: configs/search_space.json)",
        "dataset": "NDJSON dataset: a file, shards with *, or gs://... (default: data/sample_2k.json)",
        "output": "where trial packages go (default: runs/tune/<study>); only the best trial's is kept",
        "gpu": "fail unless TensorFlow sees a GPU",
        "define_only": "only define (or extend) the study, for workers started by fab tune_workers",
        "variants": VARIANTS_HELP + "; the study stores the variant's keys, so workers need no copy",
    }
)
@cli.reports_user_errors
def tune(
    c: Context, variant: str = "deep_v1", trials: int = 20, sampler: str = "tpe", pruner: str = "median",
    study: str = "", storage: str = "", space: str = "", dataset: str = DEFAULT_DATASET, output: str = "",
    gpu: bool = False, define_only: bool = False, variants: str = "",
) -> None:
    """Search a variant's hyperparameters with Optuna, training trials in this process.

    Each trial trains with values from the search space as TRAINER_<KEY> overrides
    (TRAINER_* set here are fixed for every trial; `fab keys` lists the keys) and
    reports its validation AUC each epoch, so poor trials are pruned early; the test
    split is never read to choose. Stopping and running the same command again
    continues the study; fab tune_workers adds workers on other hosts.
    """
    from trainer.tuning.study import DEFAULT_SPACE_FILE, define_study, shown, storage_url, study_spec

    name = study or variant
    url = storage_url(storage)
    spec = study_spec(variant, Path(space or DEFAULT_SPACE_FILE), dataset, cli.study_output(output, name), trials,
                      sampler, pruner, dict(os.environ), cli.variants_file(variants))
    define_study(name, spec, url)
    if define_only:
        print(f"study '{name}' is defined: {trials} trials of {variant}; add workers with "
              f"fab -H HOST1,HOST2 tune_workers --study {name} --storage URL")
        return
    import_tensorflow_quietly()
    from trainer.tuning.worker import run_worker

    run_worker(name, url, require_gpu=gpu)
    # The URL as shown: this line lands in CI logs, and the user knows the password.
    print(f"fab tune_report --study {name}" + (f" --storage '{shown(storage)}'" if storage else ""))


@task(
    help={
        "study": "the study to work on (made by fab tune)",
        "storage": "its shared storage: postgresql://USER:PASSWORD@HOST/DB, reachable from every host",
        "gpu": "train on the host's GPUs, as its nvidia-smi lists them: one worker per GPU, each given its own "
               "(trainer:gpu by default)",
        "workers_per_host": "workers to start on each host (default: 0, one per GPU with --gpu, else 1); with "
                            "fewer workers than GPUs each gets several and trains on all of them",
        "image": "the image to run (default: trainer:cpu, or trainer:gpu with --gpu)",
        "workdir": "where hosts without Docker have a checkout with its .venv (default: this checkout's path)",
        "no_docker": "run the worker as a process in --workdir even where Docker answers",
        "stop": "stop the study's workers on the hosts instead; each queues its running trial for the others",
    }
)
@cli.reports_user_errors
def tune_workers(
    c: Context, study: str, storage: str, gpu: bool = False, image: str = "", workdir: str = "",
    no_docker: bool = False, stop: bool = False, workers_per_host: int = 0,
) -> None:
    """Start a detached tuning worker on each host of -H over SSH; it runs trials until the study is done.

    fab -H gpu1,gpu2 tune_workers --study S --storage postgresql://... [--gpu] [--workers-per-host N]
    Workers run in the trainer image where the host's Docker engine answers (build it
    there first), else in a checkout at --workdir. Run it again to add hosts at any time.
    """
    from launch import workers
    from launch.images import image_to_run
    from trainer.config import PROJECT_ROOT
    from trainer.tuning.study import load_study, storage_url

    connection = workers.host_connection(c)
    url = storage_url(storage)
    workers.check_shareable(url)
    if stop:
        print(f"{connection.host}: {workers.stop_workers(connection, study)}")
        return
    _, spec = load_study(study, url)
    request = workers.WorkerRequest(study, url, spec, gpu, image_to_run(image, gpu), workdir or str(PROJECT_ROOT),
                                    workers.passed_environment(os.environ), not no_docker, workers_per_host)
    for line in workers.start_workers(connection, request):
        print(f"{connection.host}: {line}")


@task(
    help={
        "study": "the study's name",
        "storage": "its storage URL (default: runs/tuning.db)",
        "output": "where the leaderboard CSV and PNGs go (default: runs/tune/<study>)",
    }
)
@cli.reports_user_errors
def tune_report(c: Context, study: str, storage: str = "", output: str = "") -> None:
    """Print a study's leaderboard and its best values as a variant to paste; write them as CSV and PNGs.

    The leaderboard (trial, values, validation AUC and the held-out test AUC, epochs,
    duration, worker) goes to leaderboard.csv, validation AUC by trial to history.png,
    parameter importances to importances.png. The best trial's package is the one
    kept; its path is printed.
    """
    from trainer.tuning.report import format_report, write_report
    from trainer.tuning.study import load_study, storage_url

    folder = Path(cli.study_output(output, study))  # a bad --output: one line before the study is opened
    loaded, _ = load_study(study, storage_url(storage))
    report = write_report(loaded, folder)
    print(format_report(report, study))


TO_HELP = "where TF Serving's models live: a folder or gs://BUCKET/prefix (models.config and one folder per model)"
MODEL_HELP = "the model's name under --to (default: the only model there)"


@task(
    positional=["package"],
    help={
        "package": "a package zip written by fab train, local or gs://",
        "to": TO_HELP,
        "model": "the model's name under --to (default: the package's variant)",
        "label": "the label the new version gets, e.g. canary or stable (default: stable for the model's first "
                 "push, else none)",
        "against": "score the gate on every row of this dataset instead of the package's test split",
        "min_auc": "the gate's threshold: the candidate's AUC on the gate's rows must reach it",
        "tolerance": "the gate refuses a candidate whose AUC difference to stable has a 95% interval wholly "
                     "below -tolerance",
        "force": "push even when the gate refuses, or the raw inputs differ from stable's (recorded in history)",
        "serving_base": "where TF Serving sees --to, for models.config's base_path (default: --to for gs://, "
                        "/models for a folder, as the README's docker run mounts it)",
    },
)
@cli.reports_user_errors
def push(c: Context, package: str, to: str, model: str = "", label: str = "", against: str = "",
         min_auc: float = 0.5, tolerance: float = 0.01, force: bool = False, serving_base: str = "") -> None:
    """Push a package's SavedModel as the next version TF Serving loads, if it passes the gate.

    fab push runs/<run>.zip --to /srv/models (or gs://BUCKET/models). The gate scores the package and the
    version labelled stable on the same rows (fab compare's paired bootstrap) and prints one line; a
    refused package exits 2 and nothing is written. The version appears whole, is recorded in the
    model's history and listed in --to's models.config. The same command after a kill finishes the push.
    """
    import_tensorflow_quietly()
    from trainer.deploy.gate import Rule
    from trainer.deploy.push import PushRequest
    from trainer.deploy.push import push as push_package

    push_package(PushRequest(package, to, model, label, against, Rule(min_auc, tolerance), force, serving_base))


@task(positional=["name", "version"], help={"name": "the label: stable, canary or any word",
                                            "version": "the pushed version it names", "to": TO_HELP,
                                            "model": MODEL_HELP})
@cli.reports_user_errors
def label(c: Context, name: str, version: int, to: str, model: str = "") -> None:
    """Point a label (stable, canary, ...) at a pushed version, in models.config and the history."""
    from trainer.deploy.push import move_label

    move_label(to, model, name, version)


@task(help={"to": TO_HELP, "model": MODEL_HELP})
@cli.reports_user_errors
def rollback(c: Context, to: str, model: str = "") -> None:
    """Move stable back to the version that was stable before it (again: the one before that)."""
    from trainer.deploy.push import rollback as roll_back

    roll_back(to, model)


@task(help={"to": TO_HELP, "model": MODEL_HELP})
@cli.reports_user_errors
def history(c: Context, to: str, model: str = "") -> None:
    """Every push, label move and rollback of a model: time, user, version, package, variant, data, gate."""
    from trainer.deploy.push import show_history

    show_history(to, model)
