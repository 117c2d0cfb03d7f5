"""Where a run's code came from: the git commit, and the Docker image it ran in.

Kept free of heavy imports: `fab build` tags images with the same commit.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or the image's /app)
# Set by the image (CODE_COMMIT, at build time) and by `fab train` (the image's
# id and tag, at run time): a container has no .git and cannot ask Docker.
COMMIT_VARIABLE = "CODE_COMMIT"
IMAGE_ID_VARIABLE = "CONTAINER_IMAGE_ID"
IMAGE_TAG_VARIABLE = "CONTAINER_IMAGE_TAG"


@cache
def code_commit() -> str:
    """The git commit of the trainer's source, '+dirty' if it has local changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(COMMIT_VARIABLE, "unknown")


def container_image() -> dict[str, str] | None:
    """The image this process runs in, as `fab train` started it; None when not in a container."""
    image_id = os.environ.get(IMAGE_ID_VARIABLE)
    if not image_id:
        return None
    return {"id": image_id, "tag": os.environ.get(IMAGE_TAG_VARIABLE, "")}
