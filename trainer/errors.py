"""Errors a user can cause and fix: each one ends a command as a single line.

Anything else that escapes is a bug and keeps its traceback.
"""

# The exit status of a command ended by one of these: `python -m trainer`'s, and `fab`'s
# (launch imports it from here, so the container's status and fab's own agree).
USER_ERROR_STATUS = 2


class TrainerError(Exception):
    """A problem with the user's input or environment; the message says what to do."""


class ConfigError(TrainerError):
    """An unknown key, a wrong type or a bad value at some config level."""


class DatasetError(TrainerError):
    """A dataset file that cannot be read as the config describes it."""


class TrainingDivergedError(TrainerError):
    """The loss became NaN; retrying with the same config would diverge again."""


class PackageError(TrainerError):
    """A run package that is missing, incomplete or not a package at all."""


class DeployError(TrainerError):
    """fab push / label / rollback / history: a bad target, a refused candidate, a label naming no version."""


class RunAbandonedError(Exception):
    """Raised by a callback to end a run for good (a pruned tuning trial): its
    work folder is removed and nothing is packaged. Not a user error."""
