"""Where a command writes, checked before any work: an --output that cannot be written is one line.

A command finds out only when it writes its first file, after loading the data,
training or scoring every row, and fails with a traceback; `fab tune` would
also have recorded the path in its study by then. Remote URIs (gs://) are not
checked here: their folders are prefixes, which nothing can block.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data import storage
from trainer.errors import ConfigError


def check_output_folder(output: str, option: str = "--output") -> None:
    """Refuse an empty path, and a folder path that is an existing file or lies under one (a missing
    folder is created). An empty --output would put the packages at the file system's root."""
    if not output:
        raise ConfigError(f"{option} '': an empty path; name a folder, e.g. {option} runs/")
    if storage.scheme_of(output):
        return
    if Path(output).is_file():
        raise ConfigError(f"{option} {output}: is a file, and a folder goes here; "
                          "pass a folder (a missing one is created)")
    _check_parents(Path(output), output, option)


def check_output_file(output: str, option: str = "--output", example: str = "out.json") -> None:
    """Refuse a file path that is an existing folder, or lies under a file (missing folders are created)."""
    if storage.scheme_of(output):
        return
    if Path(output).is_dir():
        raise ConfigError(f"{option} {output}: is a folder; name the file that goes in it, "
                          f"e.g. {option} {storage.join(output, example)}")
    _check_parents(Path(output), output, option)


def _check_parents(path: Path, output: str, option: str) -> None:
    """The nearest existing parent of `path` must be a folder: under a file, no folder can be made."""
    for parent in path.absolute().parents:
        if parent.is_dir():
            return
        if parent.exists():
            raise ConfigError(f"{option} {output}: {parent} is a file, not a folder, so nothing can be written "
                              "under it; pass a path under a folder (missing folders are created)")
