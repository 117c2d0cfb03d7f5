"""The trainer: load -> preprocess -> split -> build network -> fit -> package.

`python -m trainer` is its command line (and the container's entry point);
`trainer.run` holds the pipeline a reader follows stage by stage.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for users;
# set before any module imports TensorFlow. An explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up lines silenced.

    TensorFlow 2.21 writes "oneDNN custom operations are on" and absl's
    "log messages before absl::InitializeLog()" straight to file descriptor 2
    while it loads, before TF_CPP_MIN_LOG_LEVEL applies; a user should see
    one line per epoch, not that. Errors still surface as Python exceptions.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
