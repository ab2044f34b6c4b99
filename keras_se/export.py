"""Export for serving: TF SavedModel (TF Serving format) and TFLite, each verified.

- `export_saved_model(model, path)`: `model.export(path, format="tf_saved_model")`,
  the format TF Serving and `tf.saved_model.load` read, with a `serve`
  endpoint and a `serving_default` signature. It then loads the SavedModel
  back and checks that `serve` gives Keras's outputs.
- `export_tflite(model, path)`: a SavedModel, then
  `tf.lite.TFLiteConverter.from_saved_model`, builtin ops only (so the plain
  LiteRT runtime runs it). It then runs the flatbuffer in the LiteRT
  interpreter (`ai_edge_litert`, or `tf.lite.Interpreter` where that is not
  installed) and checks the outputs against Keras's.

Backends (`BACKEND_FORMATS`, `export_support`): TensorFlow and JAX export both
formats (JAX through Keras's own `model.export`, which converts the model with
jax2tf; TensorFlow must be installed); PyTorch exports neither here (Keras needs
torch_xla or litert-torch for them), and asking raises a one-line `ValueError`.
The checks are the same on every backend.

Tolerances (max absolute difference of the outputs on the check batch):

| artifact | tolerance | why |
| --- | --- | --- |
| SavedModel | `SAVED_MODEL_ATOL` = 1e-5 | the same TensorFlow kernels; only graph optimisation reorders float sums |
| TFLite float32 | `TFLITE_ATOL["none"]` = 1e-4 | different kernels (XNNPACK) and fused ops, float32 throughout |
| TFLite float16 weights | `TFLITE_ATOL["float16"]` = 2e-2 | weights rounded to 11 significant bits |

Measured on the demo's trained SE-MobileNetV2 (softmax outputs, 4 inputs):
SavedModel 1.8e-7, TFLite float32 1.2e-7, TFLite float16 3.1e-4; on the
tests' random-weight models, at most a few 1e-7 for float32.

`check_saved_model_in_fresh_process` loads a SavedModel in a new Python process
that imports TensorFlow and NumPy only (no keras_se, no Keras model code), to prove
the export stands on its own; `keras-se demo` uses it. `save_artifacts` writes the
`model.keras` and `saved_model/` pair that `keras-se retrofit` and `finetune` leave,
each reloaded and checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16")
SAVED_MODEL_ATOL = 1e-5
TFLITE_ATOL = {"none": 1e-4, "float16": 2e-2}

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
    },
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


def _serve_outputs(loaded, inputs):
    out = loaded.serve(tf.constant(inputs))
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out)


def check_saved_model(path: str, inputs: np.ndarray, expected: np.ndarray, atol: float = SAVED_MODEL_ATOL) -> float:
    """Loads the SavedModel at `path` with `tf.saved_model.load`, runs `serve`.

    Returns:
        The max absolute difference from `expected`.

    Raises:
        ParityError: when it is above `atol`.
    """
    loaded = tf.saved_model.load(path)
    diff = _max_diff(_serve_outputs(loaded, inputs), expected)
    if not diff <= atol:
        raise ParityError(
            f"SavedModel {path} differs from Keras by {diff:.3g} (tolerance {atol:g})"
        )
    return diff


# Run by `check_saved_model_in_fresh_process` with `python -c`: TensorFlow and NumPy
# only. It prints the serve outputs' max abs difference and whether keras_se (or
# Keras's own model classes) were imported, as one JSON line.
_FRESH_CHECK = """
import json, sys
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[2])
loaded = tf.saved_model.load(sys.argv[1])  # keep a reference: serve needs its variables
out = loaded.serve(tf.constant(data["inputs"]))
if isinstance(out, dict):
    out = next(iter(out.values()))
if isinstance(out, (list, tuple)):
    out = out[0]
diff = float(np.max(np.abs(np.asarray(out, "float64") - data["expected"].astype("float64"))))
print(json.dumps({"max_abs_diff": diff, "keras_se_imported": "keras_se" in sys.modules}))
"""


def check_saved_model_in_fresh_process(
    path: str, inputs: np.ndarray, expected: np.ndarray, atol: float = SAVED_MODEL_ATOL
) -> float:
    """`check_saved_model` in a new Python process that imports only TensorFlow and NumPy.

    Proves that the SavedModel stands alone: no keras_se layer, no custom
    objects, nothing from this process.

    Raises:
        ParityError: when the outputs differ by more than `atol`, when the
            child fails, or if it imported keras_se.
    """
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "check.npz")
        np.savez(npz, inputs=inputs, expected=expected)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH_CHECK, path, npz],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,  # not the repository: `keras_se` must not be importable by accident
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParityError(f"the SavedModel check in a fresh process failed: {tail}")
    result = json.loads(lines[-1])
    if result["keras_se_imported"]:
        raise ParityError("the fresh-process SavedModel check imported keras_se")
    diff = float(result["max_abs_diff"])
    if not diff <= atol:
        raise ParityError(
            f"SavedModel {path} differs from Keras by {diff:.3g} in a fresh process "
            f"(tolerance {atol:g})"
        )
    return diff


def export_saved_model(
    model: keras.Model,
    path: str,
    *,
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float = SAVED_MODEL_ATOL,
) -> float | None:
    """Exports `model` as a TF SavedModel for serving and checks it.

    Args:
        model: a Keras model.
        path: the SavedModel directory to create (it must not exist).
        verify: bool, load it back and compare `serve` with Keras. Defaults
            to `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance. Defaults to `SAVED_MODEL_ATOL`.

    Returns:
        The max absolute difference, or None without `verify`.
    """
    check_export_support("saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    if not verify:
        return None
    if inputs is None:
        inputs = sample_inputs(model)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    return check_saved_model(path, inputs, expected, atol)


def _interpreter(model_content):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the test extra installs it
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=model_content)


def run_tflite(model_content: bytes, inputs: np.ndarray) -> np.ndarray:
    """Runs a TFLite flatbuffer on `inputs` (one batch) with the LiteRT interpreter."""
    interpreter = _interpreter(model_content)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs.astype(detail["dtype"]))
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def convert_tflite(saved_model_dir: str, quantize: str = "none") -> bytes:
    """Converts a SavedModel to a TFLite flatbuffer with TensorFlow's converter."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be one of {', '.join(repr(q) for q in QUANTIZATIONS)}. "
            f"Received: quantize={quantize!r}"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def export_tflite(
    model: keras.Model,
    path: str,
    *,
    quantize: str = "none",
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float | None = None,
) -> float | None:
    """Exports `model` to a `.tflite` file and checks it in the LiteRT interpreter.

    Args:
        model: a Keras model.
        path: the file to write.
        quantize: `"none"` (float32) or `"float16"` (float16 weights).
            Defaults to `"none"`.
        verify: bool, run the flatbuffer and compare with Keras. Defaults to
            `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance, or None for `TFLITE_ATOL[quantize]`.

    Returns:
        The max absolute difference, or None without `verify`.

    Raises:
        ParityError: when the difference is above the tolerance.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be one of {', '.join(repr(q) for q in QUANTIZATIONS)}. "
            f"Received: quantize={quantize!r}"
        )
    check_export_support("tflite")
    tmp = tempfile.mkdtemp(prefix="keras_se_tflite_")
    try:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        content = convert_tflite(saved, quantize)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(path, "wb") as f:
        f.write(content)
    if not verify:
        return None
    if inputs is None:
        inputs = sample_inputs(model)
    atol = TFLITE_ATOL[quantize] if atol is None else atol
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    diff = _max_diff(run_tflite(content, inputs), expected)
    if not diff <= atol:
        raise ParityError(
            f"TFLite model {path} differs from Keras by {diff:.3g} (tolerance {atol:g})"
        )
    return diff


def save_artifacts(
    model: keras.Model, directory: str, inputs: np.ndarray, *, fresh_process: bool = False
) -> dict[str, float]:
    """Writes `model.keras` and `saved_model/` into `directory`, each reloaded and checked.

    The pair `keras-se retrofit` and `finetune` leave: the `.keras` file is
    loaded back with `keras.saving.load_model` and compared with `model`
    (tolerance 1e-5); the SavedModel is checked with `check_saved_model` (in a
    fresh process with `fresh_process=True`). On a backend that cannot export a
    SavedModel (`export_support`: PyTorch) only `model.keras` is written.

    Returns:
        `{"keras": max abs diff, "saved_model": max abs diff}`, without
        `"saved_model"` where the backend cannot export one.

    Raises:
        ParityError: when a reloaded artifact differs beyond its tolerance.
    """
    keras_path = os.path.join(directory, "model.keras")
    model.save(keras_path)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    reloaded = keras.saving.load_model(keras_path)
    keras_diff = _max_diff(keras.ops.convert_to_numpy(reloaded(inputs, training=False)), expected)
    if not keras_diff <= SAVED_MODEL_ATOL:
        raise ParityError(
            f"{keras_path} reloads with different outputs (max abs diff {keras_diff:.3g})"
        )
    if export_support("saved_model") is not None:
        return {"keras": keras_diff}
    saved = os.path.join(directory, "saved_model")
    model.export(saved, format="tf_saved_model", verbose=False)
    check = check_saved_model_in_fresh_process if fresh_process else check_saved_model
    return {"keras": keras_diff, "saved_model": check(saved, inputs, expected)}
