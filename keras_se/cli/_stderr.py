"""The command line's stderr: TensorFlow's native log lines filtered out, Python's quieted.

TensorFlow's C++ code logs through absl, which ignores `TF_CPP_MIN_LOG_LEVEL` before
`absl::InitializeLog`, so its start-up lines reach stderr whatever the environment
says. `install()` runs before Keras imports TensorFlow (from `keras_se/__init__.py`,
only when the process is the command line) and forwards every stderr line except
those. `KERAS_SE_NATIVE_LOGS=1` keeps everything.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import warnings

_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ cuda\S*:\d+\] "
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate)"
)

# Python warnings from these packages are theirs, not the user's: hidden unless
# --verbose. keras_se's own warnings always reach the user.
_QUIET_MODULES = (
    r"^(tensorflow|tf_keras|keras|tensorflow_datasets|tensorflow_text|absl|google|h5py"
    r"|jax|jaxlib|torch|tf2onnx|onnx|onnxruntime|keras_hub|ai_edge_litert|matplotlib"
    r"|etils|array_record|promise|dm_tree|tree|optree|urllib3|requests)(\.|$)"
)

_STATE = {"restore": None, "installed": False}


def install() -> None:
    """Starts the native-log filter once; `restore()` undoes it."""
    if _STATE["installed"]:
        return
    _STATE["installed"] = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_SE_NATIVE_LOGS"):
        return
    _STATE["restore"] = _filter_native_stderr()


def restore() -> None:
    """Puts file descriptor 2 back and lets the forwarding thread finish."""
    undo, _STATE["restore"] = _STATE["restore"], None
    if undo is not None:
        undo()


def _filter_native_stderr():
    """Moves Python's stderr to a duplicate of fd 2 and makes fd 2 a filtered pipe."""
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return None
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.stderr = io.TextIOWrapper(
        io.FileIO(real, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True,
    )
    try:
        import faulthandler

        faulthandler.enable(file=sys.stderr)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass

    def pump():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _NATIVE_NOISE.match(line):
                    try:
                        os.write(real, line)
                    except OSError:
                        pass

    thread = threading.Thread(target=pump, name="keras-se-stderr", daemon=True)
    thread.start()

    def undo():
        try:
            os.dup2(real, 2)  # closes our write end of the pipe: the pump sees EOF
        except OSError:
            return
        thread.join(timeout=2)

    return undo


def quiet_python_logs(verbose: bool) -> None:
    """Hides other packages' Python warnings and INFO logs (not keras_se's own)."""
    if verbose:
        return
    warnings.filterwarnings("ignore", module=_QUIET_MODULES)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("absl", "tensorflow", "jax", "torch", "tf2onnx", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "absl.logging" in sys.modules or _importable("absl"):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None
