"""What every export shares: formats, tolerances, backend support, the check batch."""

from __future__ import annotations

import keras
import numpy as np

from keras_se._options import FORMATS, QUANTIZATIONS  # noqa: F401  (re-exported)

SAVED_MODEL_ATOL = 1e-5
TFLITE_ATOL = {"none": 1e-4, "float16": 2e-2, "int8": 0.3}
# Images the int8 calibration reads from `representative_data` (see
# `representative_dataset`).
INT8_CALIBRATION_SAMPLES = 256

#: What each Keras backend can export, by format: None where it can, else why not.
#: TensorFlow runs its own graph; JAX goes through Keras's own `model.export`, which
#: converts the JAX function with jax2tf (TensorFlow installed), and the TFLite
#: converter takes that SavedModel as it takes TensorFlow's. From PyTorch, Keras
#: reaches a SavedModel only through torch_xla and LiteRT only through litert-torch;
#: keras-se installs and tests neither. A `.keras` file loads on every backend, so a
#: model trained on PyTorch exports from the other two.
BACKEND_FORMATS = {
    "saved_model": {
        "tensorflow": None,
        "jax": None,
        "torch": "Keras exports a SavedModel from PyTorch only through torch_xla, which "
        "keras-se neither installs nor tests",
    },
    "tflite": {
        "tensorflow": None,
        "jax": None,
        "torch": "Keras converts PyTorch models to LiteRT only with litert-torch, which "
        "keras-se neither installs nor tests",
    },    # ONNX: tf2onnx on TensorFlow, torch.onnx (TorchScript) on PyTorch, jax2onnx on
    # JAX; a missing converter is named by `onnx_requirements` (one line, exit 2).
    "onnx": {"tensorflow": None, "jax": None, "torch": None},
}


def export_support(format: str, backend: str | None = None) -> str | None:
    """Why `format` cannot be exported from `backend` (the running one), or None if it can."""
    if format not in BACKEND_FORMATS:
        raise ValueError(
            f"`format` must be one of {', '.join(repr(f) for f in BACKEND_FORMATS)}. "
            f"Received: format={format!r}"
        )
    backend = backend or keras.backend.backend()
    return BACKEND_FORMATS[format].get(backend, f"Keras's {backend} backend is not supported")


def check_export_support(format: str, backend: str | None = None) -> None:
    """Raises a one-line `ValueError` when `format` cannot be exported from `backend`."""
    backend = backend or keras.backend.backend()
    why = export_support(format, backend)
    if why is not None:
        able = [b for b, reason in BACKEND_FORMATS[format].items() if reason is None]
        raise ValueError(
            f"A {format} cannot be exported from the {backend} backend: {why}. Export the "
            f".keras file on {' or '.join(able)} (it loads on every backend). "
            f"Received: format={format!r}, backend={backend!r}"
        )


class ParityError(RuntimeError):
    """An exported artifact's outputs differ from Keras's beyond the tolerance."""


def sample_inputs(model: keras.Model, batch_size: int = 4, seed: int = 0) -> np.ndarray:
    """A deterministic check batch for `model`'s (single, image-like) input.

    Values in [-1, 1], the range of most `preprocess_input` outputs: each
    image is a random offset plus a random linear gradient plus noise, so
    that images differ after global pooling (pure noise averages out and
    makes every image look alike to a classifier). Unknown spatial sizes
    become 32.

    Example:

    >>> import keras
    >>> from keras_se.export import sample_inputs
    >>> model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    >>> x = sample_inputs(model, batch_size=2)
    >>> x.shape, bool(x.min() >= -1 and x.max() <= 1)
    ((2, 32, 32, 3), True)
    """
    if len(model.inputs) != 1:
        raise ValueError(
            "Only single-input models can be exported and checked here. "
            f"Received: model with {len(model.inputs)} inputs"
        )
    shape = [batch_size] + [32 if d is None else int(d) for d in model.inputs[0].shape[1:]]
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.3, 0.3, size=shape)
    if len(shape) >= 3:
        n, spatial, channels = shape[0], shape[1:-1], shape[-1]
        grids = np.meshgrid(*[np.linspace(-1, 1, d) for d in spatial], indexing="ij")
        for i in range(n):
            image = rng.uniform(-0.6, 0.6, size=channels)
            for g in grids:
                image = image + g[..., None] * rng.uniform(-0.4, 0.4, size=channels)
            x[i] += image
    return np.clip(x, -1, 1).astype("float32")


def _max_diff(a, b):
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.shape != b.shape:
        raise ParityError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0
