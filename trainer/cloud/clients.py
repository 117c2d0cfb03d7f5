"""Google Cloud clients made by Google's conventions, and their failures as one line.

Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key file), or
the user's `gcloud auth application-default login`. Project: `--project`, else
`GOOGLE_CLOUD_PROJECT`, else the credentials' own project.

Local emulators (tests, laptops): `STORAGE_EMULATOR_HOST=http://HOST:PORT`,
which google-cloud-storage reads itself, and `BIGQUERY_EMULATOR_HOST`, our
name for the same idea (google-cloud-bigquery has no such variable). Either
one switches its client to anonymous credentials.

The clients are imported here, not at the top of trainer.data.storage, so a run on
local files never loads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from trainer.cloud.environment import BIGQUERY_EMULATOR, CREDENTIALS, PROJECT, STORAGE_EMULATOR
from trainer.errors import TrainerError

FIX_CREDENTIALS = (f"set {CREDENTIALS} to a service-account key file "
                   "or run `gcloud auth application-default login`")


def storage_client() -> storage.Client:
    """One client per process and environment (creating one reads the credentials)."""
    return _storage_client(os.environ.get(STORAGE_EMULATOR), os.environ.get(CREDENTIALS))


def bigquery_client(project: str | None) -> bigquery.Client:
    return _bigquery_client(project or os.environ.get(PROJECT), os.environ.get(BIGQUERY_EMULATOR),
                            os.environ.get(CREDENTIALS))


@cache
def _storage_client(emulator: str | None, _credentials_file: str | None) -> storage.Client:
    with cloud_errors("Cloud Storage"):
        if emulator:
            return storage.Client(credentials=AnonymousCredentials(), project=os.environ.get(PROJECT, "emulator"))
        return storage.Client()


@cache
def _bigquery_client(project: str | None, emulator: str | None, _credentials_file: str | None) -> bigquery.Client:
    if emulator:
        if not project:
            raise TrainerError(f"{BIGQUERY_EMULATOR} is set but no project is: pass --project or set {PROJECT}")
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=emulator))
    with cloud_errors("BigQuery"):
        client = bigquery.Client(project=project)
    if not client.project:
        raise TrainerError(f"BigQuery needs a project: pass --project or set {PROJECT}")
    return client


@contextmanager
def cloud_errors(target: str) -> Iterator[None]:
    """Credential and permission failures of any Google call as one TrainerError about `target`.

    Errors that depend on what was asked (a missing object, a bad query) are
    the caller's to word; these are the same whatever was asked.
    """
    try:
        yield
    except auth_exceptions.DefaultCredentialsError as exc:
        raise TrainerError(f"{target}: no usable Google credentials ({first_line(exc)}); {FIX_CREDENTIALS}") from None
    except (auth_exceptions.RefreshError, auth_exceptions.TransportError) as exc:
        raise TrainerError(f"{target}: the credentials were refused ({first_line(exc)}); {FIX_CREDENTIALS}") from None
    except api_exceptions.RetryError as exc:
        # What DEFAULT_RETRY gives up on: the service (or the token endpoint) stayed unreachable.
        raise TrainerError(f"{target}: Google Cloud did not answer ({first_line(exc.cause or exc)}), even after "
                           "retrying; check the network and proxy, or STORAGE_EMULATOR_HOST / "
                           "BIGQUERY_EMULATOR_HOST if you meant an emulator") from None
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as exc:
        raise TrainerError(f"{target}: permission denied ({api_message(exc)}); give the credentials' account "
                           f"access, or {FIX_CREDENTIALS} for another account") from None


def api_message(exc: api_exceptions.GoogleAPICallError) -> str:
    """The service's own words, without the request URL the client puts before them."""
    errors = getattr(exc, "errors", None) or []
    message = errors[0].get("message") if errors and isinstance(errors[0], dict) else None
    return first_line(message or exc.message or exc)


def first_line(error: object) -> str:
    # google-auth puts (message, cause) in args, whose str() is a tuple's repr.
    args = getattr(error, "args", None)
    text = args[0] if args and isinstance(args[0], str) else str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__
