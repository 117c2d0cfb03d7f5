"""Hyperparameter tuning: Optuna studies whose trials are ordinary training runs.

A study is defined once (`define_study`): the variant and its keys, the
search space, the dataset, where packages go, how many finished trials it
wants, the sampler and the pruner. All of that is stored in the study itself,
so a worker needs only the study's name and storage to join (`run_worker`),
on this machine or any other, and every worker trains the same thing.

A trial (`trainer.tuning.worker`) draws its values from the space and trains
with them as `TRAINER_*` overrides; its value is its model's validation AUC
(the test split is never read to choose).

Reliability comes from Optuna's storage:
- a worker records a heartbeat while it trains; when it dies (SIGKILL, a lost
  host) its trial is marked failed after `GRACE_PERIOD_S`, by whichever worker
  looks next, and queued again with the same values; the retry resumes from
  the dead trial's last finished epoch, because its run has the same identity;
- a worker that is stopped (Ctrl-C, `docker stop`) queues its trial again itself;
- a trial that diverges (NaN loss) is recorded as failed and the study goes on;
- running the same command again continues the study up to its target.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from trainer.config import DEFAULT_VARIANTS_FILE, ENV_PREFIX, PROJECT_ROOT, load_variants, resolve_config
from trainer.data import storage
from trainer.data.dataset import dataset_files
from trainer.errors import ConfigError, TrainerError
from trainer.outputs import check_output_file
from trainer.tuning.search import PRUNERS, SAMPLERS
from trainer.tuning.space import load_space

DEFAULT_SPACE_FILE = PROJECT_ROOT / "configs" / "search_space.json"
DEFAULT_STORAGE_FILE = Path("runs") / "tuning.db"
METRIC = "validation_auc"
# A worker's heartbeat every HEARTBEAT_INTERVAL_S; a trial silent for
# GRACE_PERIOD_S belongs to a dead worker and is retried elsewhere.
HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 20
MAX_RETRIES = 3
# A worker whose trials keep failing stops: the space, not bad luck, is at fault.
MAX_FAILURES_IN_A_ROW = 5
MAX_PORT = 65535
INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"


@dataclass(frozen=True)
class StudySpec:
    """What a study trains; stored in the study, so every worker trains the same thing."""

    variant: str
    variant_keys: dict[str, Any]
    fixed_overrides: dict[str, str]  # TRAINER_* set when the study was defined: key -> text
    space: dict[str, dict[str, list]]
    dataset: str
    output: str
    trials: int
    sampler: str
    pruner: str

    def attrs(self) -> dict[str, Any]:
        return {**asdict(self), "metric": METRIC}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudySpec:
        return cls(**{name: attrs[name] for name in cls.__dataclass_fields__})


def study_spec(variant: str, space_file: Path, dataset: str, output: str, trials: int, sampler: str, pruner: str,
               environ: dict[str, str], variants_file: Path = DEFAULT_VARIANTS_FILE) -> StudySpec:
    """A checked study definition: the variant resolves, the space fits it, the choices exist."""
    if trials < 1:
        raise ConfigError(f"--trials {trials}: a study needs at least one trial")
    SAMPLERS.get(sampler)  # an unknown name: one line now, not a failure in every worker
    PRUNERS.get(pruner)
    fixed = {k[len(ENV_PREFIX):].lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    base = resolve_config(variant, variants_file, {f"{ENV_PREFIX}{k.upper()}": v for k, v in fixed.items()})
    space = load_space(space_file, base.config)
    if both := sorted(set(fixed) & set(space)):
        raise ConfigError(f"{', '.join(ENV_PREFIX + k.upper() for k in both)} fixes a key that {space_file} "
                          "searches; unset it or remove the key from the space")
    dataset_files(dataset)  # a missing dataset is one line now, not a failed first trial
    return StudySpec(variant, load_variants(variants_file)[variant], fixed, space, _absolute(dataset),
                     _absolute(output), trials, sampler, pruner)


def _absolute(uri: str) -> str:
    """Local paths as absolute ones: workers on other hosts and in containers see the same path."""
    return uri if storage.scheme_of(uri) else str(Path(uri).resolve())


# --- storage -----------------------------------------------------------------------------------

def storage_url(url: str) -> str:
    """The study storage: a database URL, or by default a SQLite file under runs/ (made by define_study)."""
    if not url:
        return f"sqlite:///{DEFAULT_STORAGE_FILE.resolve()}"
    if _database_kind(url) not in ("postgresql", "mysql", "sqlite"):
        raise ConfigError(f"--storage {shown(url)}: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                          "(or sqlite:///FILE for one machine)")
    _check_port(url)
    return url


def _check_port(url: str) -> None:
    """A port that is not a number: SQLAlchemy's URL parser raises a bare ValueError, a traceback."""
    host = urlsplit(url).netloc.rpartition("@")[2]
    _, colon, port = host.rpartition("]")[2].partition(":")  # after an IPv6 address's brackets
    if colon and not (port.isdigit() and int(port) <= MAX_PORT):
        raise ConfigError(f"--storage {shown(url)}: the port {port!r} is not a number from 0 to {MAX_PORT}; "
                          "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE (leave out :PORT for 5432)")


def _database_kind(url: str) -> str:
    """postgresql, mysql, sqlite, ...: the URL's scheme without its driver (postgresql+psycopg)."""
    return url.split("://", 1)[0].split("+", 1)[0]


def shown(url: str) -> str:
    """A storage URL fit to print: everything between :// and the last @ (user and password) masked.

    The last @, because a password may hold an @ of its own: up to the first one
    would print the rest of the password as if it were the host.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme typed: the credentials, if any, start the text
        scheme, rest = "", url
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at else url


def _credentials(url: str) -> str:
    """What `shown` masks: the text between :// and the last @ ("" when there is none)."""
    rest = url.partition("://")[2] or url
    return rest.rpartition("@")[0]


def _masked(text: str, url: str) -> str:
    """`text` (a database driver's message about `url`) without any piece of the URL's user or password.

    A driver that splits the URL at the first @ of a password prints the rest of it
    as the host name ("failed to resolve host 'cret@db'"), so every piece between
    :// and the last @ is masked wherever it stands alone.
    """
    credentials = _credentials(url)
    user, _, password = credentials.partition(":")
    pieces = {credentials, user, password, *credentials.split("@"), *password.split("@")}
    for piece in sorted(pieces - {""}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.-]){re.escape(piece)}(?![\w.-])", "***", text)
    return text


def _url_advice(url: str) -> str:
    """What to check when the storage does not open; an @ in the credentials is the likely culprit."""
    if "@" in _credentials(url):
        return "write an @ inside the user or password as %40 (URL-encoded), then check the URL again"
    return "check the URL and that the database server runs and accepts this user"


def open_storage(url: str) -> RDBStorage:
    """Optuna's database storage with heartbeats: trials of dead workers are failed and queued again."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # fab's own lines say what happens
    with quiet_experimental(), storage_errors(url):
        return RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
        )


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        cause = _first_cause(exc)  # Optuna wraps the database's error as "invalid data in the commit"
        reason = _masked(str(cause).strip().splitlines()[0], url)
        if getattr(cause, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
            raise TrainerError(f"the study storage {shown(url)} refuses this database user ({reason}); "
                               f"{_grant_advice(reason)}") from None
        raise TrainerError(f"cannot open the study storage {shown(url)}: {reason}; {_url_advice(url)}") from None


def _first_cause(error: BaseException) -> BaseException:
    """The error at the bottom of a chain of `raise ... from` (the driver's own, for a database error)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _grant_advice(reason: str) -> str:
    """What the database's owner can do: let the user create Optuna's tables (a new database), or use them."""
    if "schema" in reason:
        return ("the database's owner can let it create the study's tables (GRANT CREATE ON SCHEMA public TO "
                "that user), or make it the database's owner")
    return ("the database's owner can let it use the study's tables (GRANT SELECT, INSERT, UPDATE, DELETE ON ALL "
            "TABLES IN SCHEMA public TO that user; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO that user), "
            "or use the user that created the study")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL; None for other databases (and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    if _database_kind(url) != "sqlite":
        return None
    with storage_errors(url):
        database = make_url(url).database
    return Path(database) if database else None


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def define_study(name: str, spec: StudySpec, url: str) -> optuna.Study:
    """Create the study, or continue it: an existing study must be the same definition
    (its target may grow, so `--trials` can ask for more)."""
    if sqlite_file := _sqlite_file(url):
        check_output_file(str(sqlite_file), "--storage", example="tuning.db")
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    optuna_storage = open_storage(url)
    with storage_errors(url):
        study = optuna.create_study(study_name=name, storage=optuna_storage, direction="maximize",
                                    load_if_exists=True)
        stored = study.user_attrs
        if stored:
            _check_same_definition(name, StudySpec.from_attrs(stored), spec)
        for key, value in spec.attrs().items():
            if stored.get(key) != value:
                study.set_user_attr(key, value)
    return study


def _check_same_definition(name: str, stored: StudySpec, asked: StudySpec) -> None:
    differs = [field for field in StudySpec.__dataclass_fields__
               if field != "trials" and getattr(stored, field) != getattr(asked, field)]
    if differs:
        raise ConfigError(f"study '{name}' exists with another {', '.join(differs)}; continue it with the same "
                          f"arguments (fab tune_report --study {name} shows them) or pass a new --study NAME")


def load_study(name: str, url: str) -> tuple[optuna.Study, StudySpec]:
    """An existing study and its definition, or one line saying how to create it.

    A SQLite file that is not there holds no study: opening it would create it
    empty, so a reader (fab tune_report) would leave a stray database behind.
    """
    sqlite_file = _sqlite_file(url)
    if sqlite_file and not sqlite_file.is_file():
        raise TrainerError(f"no study '{name}': {sqlite_file} does not exist (no study was made there); "
                           f"create it with fab tune --study {name} ..., or pass the --storage it lives in")
    optuna_storage = open_storage(url)
    with storage_errors(url):
        try:
            study = optuna.load_study(study_name=name, storage=optuna_storage)
        except KeyError:
            known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(optuna_storage)) or "none"
            raise TrainerError(f"no study '{name}' in {shown(url)} (studies there: {known}); "
                               f"create it with fab tune --study {name} --storage URL ...") from None
    if "variant" not in study.user_attrs:
        raise TrainerError(f"study '{name}' in {shown(url)} was not made by fab tune (it has no definition)")
    return study, StudySpec.from_attrs(study.user_attrs)
