"""Command line of the trainer (the container's entry point).

    python -m trainer train --variant deep_v1 [--dataset URI] [--output URI] [--gpu]
    python -m trainer score --package URI --input URI [--output FILE]
    python -m trainer sanity [--output URI]   every variant, 3 epochs on the sample (fab test_sanity)
    python -m trainer tune --study NAME [--storage URL] [--gpu]   a worker of a study made by fab tune
    python -m trainer compare A B [C ...] [--output PNG]   packages side by side (fab compare)
    python -m trainer keys        every config key, its type, default and meaning
    python -m trainer variants    the variants in configs/variant_config.json

Errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainer import import_tensorflow_quietly
from trainer.config import KEYS, key_type
from trainer.errors import USER_ERROR_STATUS, TrainerError
from trainer.interrupts import EXIT_INTERRUPTED, STOPPED_LINE
from trainer.outputs import check_output_folder
from trainer.typed_values import type_words

EXIT_SANITY_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args) or 0
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt:
        print(STOPPED_LINE, file=sys.stderr)
        return EXIT_INTERRUPTED


def _train(args: argparse.Namespace) -> None:
    check_output_folder(args.output)
    import_tensorflow_quietly()
    from trainer.run import TrainRequest, train

    train(TrainRequest(variant=args.variant, dataset=args.dataset, output=args.output,
                       variants_file=args.variants, require_gpu=args.gpu))


def _score(args: argparse.Namespace) -> None:
    import_tensorflow_quietly()
    from trainer.score import score

    rows = score(args.package, args.input, args.output)
    if args.output:
        print(f"scored {rows:,} rows into {args.output}", file=sys.stderr)


def _sanity(args: argparse.Namespace) -> int:
    check_output_folder(args.output)
    import_tensorflow_quietly()
    from trainer.sanity import run_sanity

    failures = run_sanity(args.output, variants_file=args.variants)
    if failures:
        print(f"error: sanity training failed for {', '.join(failures)}", file=sys.stderr)
        return EXIT_SANITY_FAILED
    return 0


def _tune(args: argparse.Namespace) -> None:
    import_tensorflow_quietly()
    from trainer.tuning.study import storage_url
    from trainer.tuning.worker import run_worker

    run_worker(args.study, storage_url(args.storage), require_gpu=args.gpu)


def _compare(args: argparse.Namespace) -> None:
    from trainer.comparison.compare import compare_packages

    compare_packages(args.packages, args.output)


def _keys(args: argparse.Namespace) -> None:
    from trainer.config import load_variants

    # The keys are listed to write variants with: a variant file that does not
    # load is the first thing to fix, and a listing that ends 0 would hide it.
    load_variants(args.variants)
    print(describe_keys())


DEFAULT_COLUMN_WIDTH = 30  # `keys`: a longer default puts its help on the next line


def describe_keys() -> str:
    """One line per key: name, type, default, what it does (for `python -m trainer keys`).

    The help starts in the same column on every line: a default too long for
    its column (a list of columns) gets a line of its own, its help below it.
    """
    rows = [(key, type_words(key_type(key)), _default_as_json(f.default), f.metadata["help"])
            for key, f in KEYS.items()]
    key_width, type_width = (max(len(row[i]) for row in rows) for i in (0, 1))
    lines = []
    for key, type_name, default, help_text in rows:
        start = f"{key:<{key_width}}  {type_name:<{type_width}}  "
        if len(default) > DEFAULT_COLUMN_WIDTH:
            lines += [start + default, " " * (len(start) + DEFAULT_COLUMN_WIDTH + 2) + help_text]
        else:
            lines.append(f"{start}{default:<{DEFAULT_COLUMN_WIDTH}}  {help_text}")
    return "\n".join(lines)


def _default_as_json(default: object) -> str:
    return json.dumps(list(default) if isinstance(default, tuple) else default)  # a list key's default is a tuple


def _variants(args: argparse.Namespace) -> None:
    from trainer.config import load_variants

    for name, keys in load_variants(args.variants).items():
        print(f"{name:<12} {keys}")


def _parser() -> argparse.ArgumentParser:
    from trainer.config import DEFAULT_DATASET, DEFAULT_OUTPUT, DEFAULT_VARIANTS_FILE

    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a variant and write its package")
    train.add_argument("--variant", required=True, help="a variant of configs/variant_config.json")
    train.add_argument("--dataset", default=DEFAULT_DATASET, help="NDJSON file, or shards with *")
    train.add_argument("--output", default=DEFAULT_OUTPUT, help="where the package goes (default: runs)")
    train.add_argument("--gpu", action="store_true", help="fail unless TensorFlow sees a GPU")
    train.set_defaults(command=_train)

    score = commands.add_parser("score", help="score raw JSON rows with a package")
    score.add_argument("--package", required=True, help="a package zip written by train")
    score.add_argument("--input", required=True, help="NDJSON rows in the training schema (label optional)")
    score.add_argument("--output", help="NDJSON of {id, score} per row (default: stdout); the drift summary "
                                        "goes beside it as <output>.drift.json")
    score.set_defaults(command=_score)

    sanity = commands.add_parser("sanity", help="train every variant briefly on the sample and check each package")
    sanity.add_argument("--output", default=f"{DEFAULT_OUTPUT}/sanity", help="where the packages go")
    sanity.set_defaults(command=_sanity)

    tune = commands.add_parser("tune", help="run trials of a tuning study (made by fab tune) until it is done")
    tune.add_argument("--study", required=True, help="the study's name")
    tune.add_argument("--storage", default="", help="its storage URL (default: runs/tuning.db, this machine only)")
    tune.add_argument("--gpu", action="store_true", help="fail unless TensorFlow sees a GPU")
    tune.set_defaults(command=_tune)

    compare = commands.add_parser("compare", help="compare packages: config, data, metrics, curves, AUC difference")
    compare.add_argument("packages", nargs="+", metavar="PACKAGE", help="package zips; the first is the baseline")
    compare.add_argument("--output", default="", help="the curves' PNG (default: runs/compare-<short ids>.png)")
    compare.set_defaults(command=_compare)

    commands.add_parser("keys", help="list every config key").set_defaults(command=_keys)
    commands.add_parser("variants", help="list the variants").set_defaults(command=_variants)
    for sub in (train, sanity, commands.choices["variants"], commands.choices["keys"]):
        sub.add_argument("--variants", type=Path, default=DEFAULT_VARIANTS_FILE,
                         help="variant file (default: configs/variant_config.json)")
    return parser


if __name__ == "__main__":
    try:
        status = main()
    except KeyboardInterrupt:  # a stop (SIGTERM in a tuning worker) that landed after main's own handler
        print(STOPPED_LINE, file=sys.stderr)
        status = EXIT_INTERRUPTED
    sys.exit(status)
