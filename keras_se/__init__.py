"""keras-se: Squeeze-and-Excitation for the Keras models you already have.

The core (this package's import: the layer, site finding, the rewrite; and
`keras_se.applications`, `keras_se.inspect`, `keras_se.models`,
`keras_se.transfer`) needs only Keras and NumPy and runs on every Keras backend.
The edge (`keras_se.data`, `keras_se.finetune`, `keras_se.export`, the command
line) needs TensorFlow and is imported on first use: `keras_se.load_data`,
`keras_se.export_saved_model`, ... load their module when first touched.
"""

import os as _os
import sys as _sys

# The `keras-se` command line (the console script, or `python -m keras_se`) sets
# KERAS_BACKEND from its `--backend` flag and filters TensorFlow's native log lines
# from stderr, both before Keras loads; it loads the core itself once its arguments
# are parsed, so that `--help`, `--version` and usage errors answer without Keras.
_argv = getattr(_sys, "orig_argv", [])
_IS_CLI = _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("keras-se", "keras-se.exe") or any(
    _argv[i : i + 2] == ["-m", "keras_se"] for i in range(len(_argv))
)
del _argv
if _IS_CLI:
    from keras_se.cli._args import backend_from_argv as _backend_from_argv
    from keras_se.cli._stderr import install as _install_stderr_filter

    _backend = _backend_from_argv(_sys.argv[1:])
    if _backend is not None:
        _os.environ["KERAS_BACKEND"] = _backend
    _install_stderr_filter()
else:
    # The core (Keras loads here). The command line imports it when a command runs
    # (`_import_core`), so that its help and usage errors answer without Keras.
    from keras_se._core import *

__version__ = "0.2.0"

# Names loaded on first use: name -> (module, attribute or None for the module).
_LAZY = {
    "applications": ("keras_se.applications", None),
    "inspect": ("keras_se.inspect", None),
    "models": ("keras_se.models", None),
    "transfer": ("keras_se.transfer", None),
    "data": ("keras_se.data", None),
    "finetune": ("keras_se.finetune", None),
    "export": ("keras_se.export", None),
    "load_data": ("keras_se.data", "load_data"),
    "export_saved_model": ("keras_se.export", "export_saved_model"),
    "export_tflite": ("keras_se.export", "export_tflite"),
    "export_onnx": ("keras_se.export", "export_onnx"),
}

__all__ = [
    "PLACEMENTS",
    "NoSitesError",
    "SEReport",
    "Site",
    "Skipped",
    "SqueezeExcite",
    "__version__",
    "add_classifier_head",
    "add_se_blocks",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "find_se_sites",
    "freeze_backbone",
    "from_preset",
    "inspect",
    "load_data",
    "make_divisible",
]


def _import_core():
    """Binds the core's names here (the command line calls it when a command runs)."""
    from keras_se import _core

    globals().update({k: v for k, v in vars(_core).items() if not k.startswith("_")})


def __getattr__(name):
    if name in __all__ and name not in _LAZY and name != "__version__":
        _import_core()  # only in the command line's process, before a command runs
        return globals()[name]
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_se' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(__all__))
