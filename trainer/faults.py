"""Faults the tests inject, read from environment variables that production never sets.

- `FAB_TEST_KILL_AT=POINT`: `fault_point(POINT)` SIGKILLs the process, so a
  kill lands at a fixed point, not at a time. The points: "epoch:N" after
  epoch N's backup, "backup:N" inside it (its files written, not yet pointed
  to), "encoded:NAME" when an encoded split NAME (train, validation, test) is
  written whole but not yet in place, "packaging" before the package is published,
  "parse:written" when a dataset's parse cache is written but not yet renamed into
  place; fab push's "push:staged" (the
  version's files in staging), "push:half-copied" (gs://: half of them copied
  to the version's prefix) and "push:copied" (the version whole, before its
  history entry).
- `FAB_TEST_LOGICAL_CPUS=N`: the CPU split into N logical devices
  (`trainer.training.fit.split_cpu_for_tests`), so the multi-device path runs
  on a machine without GPUs.

Training and packaging both import this module and nothing else for their
hooks. The prefix is FAB_TEST_, not TRAINER_: that one is for config keys.
"""

from __future__ import annotations

import os
import signal

KILL_AT_VARIABLE = "FAB_TEST_KILL_AT"
LOGICAL_CPUS_VARIABLE = "FAB_TEST_LOGICAL_CPUS"


def fault_point(point: str) -> None:
    """SIGKILL this process if the test hook names `point` (no cleanup runs, as in a real crash)."""
    if os.environ.get(KILL_AT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def logical_cpus() -> int:
    """The logical CPU devices the test hook asks for (0: none asked)."""
    return int(os.environ.get(LOGICAL_CPUS_VARIABLE) or 0)
