"""Stopping: SIGTERM ends a command as Ctrl-C does, and how long a stopped process gets.

`docker stop`, `fab tune_workers --stop` and a CI server's abort send SIGTERM,
whose default action would kill Python where it stands: no `finally`, no
cleanup. Under `sigterm_as_interrupt` it raises KeyboardInterrupt instead, so
`fab train` stops its container and a tuning worker queues its trial again,
as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

# How a stopped command ends, `fab` and `python -m trainer` alike: this line on stderr, no traceback,
# and the shell's status for Ctrl-C (128 + SIGINT). A stopped run keeps its last epoch's backup.
STOPPED_LINE = "stopped"
EXIT_INTERRUPTED = 130

# What `docker stop` gives a container between SIGTERM and SIGKILL. Two budgets, because a
# training run needs none: SIGTERM ends it at once and a new start resumes from its last
# epoch's backup. A tuning worker finishes the TensorFlow call it is in and writes its
# trial back to the study's database, so that another worker takes it over at once.
TRAINING_STOP_TIMEOUT_S = 10
WORKER_STOP_TIMEOUT_S = 30


class StopRequest:
    """Whether SIGTERM asked this process to stop.

    The KeyboardInterrupt the handler raises is lost when it lands in a weakref
    callback or finalizer ("Exception ignored in ..."), so a long-running loop
    remembers the request and raises it again at its next safe point.
    """

    def __init__(self) -> None:
        self.requested = False

    def raise_if_requested(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt(stop: StopRequest | None = None) -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt (and marks `stop` as requested). The previous handler after."""

    def interrupt(signum: int, frame: object) -> None:
        if stop is not None:
            stop.requested = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
