"""keras-se: Squeeze-and-Excitation for the Keras models you already have."""

# First, before TensorFlow is imported: when this process is the `keras-se` command
# line, drop TensorFlow's native start-up log lines from stderr (a no-op otherwise).
from keras_se.cli import early_stderr_filter as _early_stderr_filter

_early_stderr_filter()

from keras_se.layers import SqueezeExcite, make_divisible  # noqa: E402
from keras_se.rewrite import NoSitesError, SEReport, add_se_blocks  # noqa: E402
from keras_se.sites import PLACEMENTS, Site, Skipped, find_se_sites  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "PLACEMENTS",
    "NoSitesError",
    "SEReport",
    "Site",
    "Skipped",
    "SqueezeExcite",
    "__version__",
    "add_se_blocks",
    "find_se_sites",
    "make_divisible",
]

# Fine-tuning, data and export, as the `keras-se` command line uses them. Importing
# keras_se.data registers the `keras_se_builtin` TFDS dataset. (The training loop itself
# is `keras_se.finetune.finetune`: a top-level `finetune` would hide its module.)
from keras_se import inspect  # noqa: E402  (what the SE gates learn)
from keras_se.data import load_data  # noqa: E402
from keras_se.export import export_onnx, export_saved_model, export_tflite  # noqa: E402
from keras_se.finetune import add_classifier_head, freeze_backbone  # noqa: E402

__all__ += [
    "inspect",
    "add_classifier_head",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "freeze_backbone",
    "load_data",
]
