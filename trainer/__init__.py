"""The trainer: load -> preprocess -> split -> build network -> fit -> package.

`python -m trainer` is its command line (and the container's entry point);
`trainer.run` holds the pipeline a reader follows stage by stage.
"""

import contextlib
import os
from collections.abc import Iterator

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
    with _stderr_silenced():
        import tensorflow  # noqa: F401
    _log_tensorflow_warnings_once()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null: what TensorFlow's C++ side writes there, Python's stderr too."""
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


def _log_tensorflow_warnings_once() -> None:
    """TensorFlow gives its logger a stderr handler of its own when the root logger has none at import.
    absl configures the root logger at the first SavedModel export, and from then on every TensorFlow
    WARNING printed twice, once per handler; now it prints through TensorFlow's handler alone."""
    import logging

    tensorflow_logger = logging.getLogger("tensorflow")
    if tensorflow_logger.handlers:
        tensorflow_logger.propagate = False


_boolean_transpose_notice_spent = False


def spend_onednn_boolean_notice() -> None:
    """Run, with stderr silenced, the op that makes TensorFlow log "E0000 ... oneDNN supports DT_BOOL
    only on platforms with AVX-512. Falling back to the default Eigen-based implementation".

    rnn_v1's GRU gets Keras' boolean padding mask, which Keras transposes to time
    order; oneDNN's graph rewrite leaves boolean transposes to Eigen, as always,
    and says so once per process, at ERROR level, at the first such graph that
    runs without XLA (rnn_v1's serving export, its training with dropout or
    xla=false). Keras has no mask that avoids the transpose, and turning oneDNN
    off slows every matmul: so the once-only line is spent here (about 0.1 s).
    Called where such graphs first run, after TensorFlow's devices are set up
    (running an op starts its runtime, after which they cannot change).
    """
    global _boolean_transpose_notice_spent
    if _boolean_transpose_notice_spent:
        return
    _boolean_transpose_notice_spent = True
    import tensorflow as tf

    with _stderr_silenced():
        # An argument, not a constant, and no dimension of 1: Grappler would fold those transposes away.
        tf.function(tf.transpose)(tf.zeros((2, 3), tf.bool))
