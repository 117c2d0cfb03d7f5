"""The trainer: load -> preprocess -> split -> build network -> fit -> package.

`python -m trainer` is its command line (and the container's entry point);
`trainer.run` holds the pipeline a reader follows stage by stage. From Python
(a notebook, a script), `trainer.train(...)` and `trainer.load_package(...)`
are the API (trainer/api.py): `import trainer` itself loads no TensorFlow,
and TensorFlow loads quietly whenever it does.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for users;
# set before any module imports TensorFlow. An explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Python API, imported on first use: `import trainer` stays cheap.
__all__ = ["load_package", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainer import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainer' has no attribute '{name}'")


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


class _QuietLoader(importlib.abc.Loader):
    """The `tensorflow` package's own loader, run with file descriptor 2 silenced."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            with _stderr_silenced():
                self.loader.exec_module(module)
        finally:  # the module keeps TensorFlow's own loader, as if nothing stood between
            module.__loader__ = module.__spec__.loader = self.loader
        _log_tensorflow_warnings_once()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Makes the first import of TensorFlow, by any module, a quiet one.

    TensorFlow 2.21 writes absl's "log messages before absl::InitializeLog()"
    and "oneDNN custom operations are on" straight to file descriptor 2 while
    it loads, before TF_CPP_MIN_LOG_LEVEL applies, and twice: once from its
    core library and once more when `_pywrap_profiler_plugin.so`, which holds
    another copy of the same start-up code, loads later in the same import.
    Python's own stderr and TensorFlow's exceptions are untouched outside the
    import; errors still surface as Python exceptions.
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the finders after this one find the real package
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlowImport())


def import_tensorflow_quietly() -> None:
    """Import TensorFlow now (quietly, as every import of it after `import trainer` is): a command
    pays its start-up before its own first line rather than in the middle of its work."""
    import tensorflow  # noqa: F401


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
