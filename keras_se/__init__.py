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

# The `keras-se` command line filters TensorFlow's native log lines from stderr, and
# its `--backend` flag sets KERAS_BACKEND: both must happen before Keras loads, that
# is here. Only when this process is the command line (the console script, or
# `python -m keras_se`).
_argv = getattr(_sys, "orig_argv", [])
if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("keras-se", "keras-se.exe") or any(
    _argv[i : i + 2] == ["-m", "keras_se"] for i in range(len(_argv))
):
    from keras_se.cli._args import backend_from_argv as _backend_from_argv
    from keras_se.cli._stderr import install as _install_stderr_filter

    _backend = _backend_from_argv(_sys.argv[1:])
    if _backend is not None:
        _os.environ["KERAS_BACKEND"] = _backend
    _install_stderr_filter()
del _argv

from keras_se.hub import from_preset  # noqa: E402
from keras_se.hub import install_import_hook as _hub_hook  # noqa: E402
from keras_se.layers import SqueezeExcite  # noqa: E402
from keras_se.rewrite import NoSitesError, SEReport, add_se_blocks  # noqa: E402
from keras_se.sites import PLACEMENTS, Site, Skipped, find_se_sites  # noqa: E402
from keras_se.transfer import add_classifier_head, freeze_backbone  # noqa: E402
from keras_se.widths import make_divisible  # noqa: E402

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

# SE classes for keras-hub models, registered once keras_hub is imported (keras-hub
# looks a preset's class up in Keras's registry).
_hub_hook()

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


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_se' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
