"""Export for serving: TF SavedModel (TF Serving format), TFLite and ONNX, each verified.

- `export_saved_model(model, path)`: `model.export(path, format="tf_saved_model")`,
  the format TF Serving and `tf.saved_model.load` read, with a `serve`
  endpoint and a `serving_default` signature. It then loads the SavedModel
  back and checks that `serve` gives Keras's outputs.
- `export_tflite(model, path)`: a SavedModel, then
  `tf.lite.TFLiteConverter.from_saved_model`, builtin ops only (so the plain
  LiteRT runtime runs it). It then runs the flatbuffer in the LiteRT
  interpreter (`ai_edge_litert`, or `tf.lite.Interpreter` where that is not
  installed) and checks the outputs against Keras's.
- `export_tflite(model, path, quantize="int8", representative_data=batches)`:
  full-integer post-training quantization (int8 weights and activations,
  float32 input and output), calibrated on `INT8_CALIBRATION_SAMPLES` images
  of `representative_data` (see `representative_samples`).
- `export_onnx(model, path)`: `model.export(path, format="onnx")` (tf2onnx on
  TensorFlow, jax2onnx on JAX, `torch.onnx` on torch), with the SE squeeze
  traced as a mean (`keras_se.layers.mean_squeeze`, so that it becomes
  `GlobalAveragePool`/`ReduceMean`), a dynamic batch and the Keras input's
  name (both checked in the file). It then runs the file in ONNX Runtime
  (CPU) and checks the outputs against Keras's. A layer whose op the
  converter lacks raises `ExportError` naming it; no file is left behind.

Backends (`BACKEND_FORMATS`, `export_support`): TensorFlow and JAX write every
format (JAX's SavedModel and TFLite through Keras's own `model.export`, which
converts the model with jax2tf, TensorFlow installed; its ONNX through jax2onnx,
which keras-se does not install). PyTorch writes ONNX (`torch.onnx`) but neither
SavedModel nor TFLite (Keras needs torch_xla or litert-torch for them): asking
raises a one-line `ValueError`. The checks are the same on every backend.

Tolerances (max absolute difference of the outputs on the check batch):

| artifact | tolerance | why |
| --- | --- | --- |
| SavedModel | `SAVED_MODEL_ATOL` = 1e-5 | the same TensorFlow kernels; only graph optimisation reorders float sums |
| TFLite float32 | `TFLITE_ATOL["none"]` = 1e-4 | different kernels (XNNPACK) and fused ops, float32 throughout |
| TFLite float16 weights | `TFLITE_ATOL["float16"]` = 2e-2 | weights rounded to 11 significant bits |
| TFLite int8 (full integer) | `TFLITE_ATOL["int8"]` = 0.3 | weights and activations on 256 levels; a sanity bound, the real check is accuracy on data (`tflite_accuracy`) |
| ONNX (ONNX Runtime, CPU) | `ONNX_ATOL` = 1e-4 | different kernels (MLAS, NCHWc-blocked convolutions, BatchNorm folded into them, fused activations), float32 throughout: the same case as TFLite float32 |

Measured on the demo's trained SE-MobileNetV2 (softmax outputs, 4 inputs):
SavedModel 1.8e-7, TFLite float32 1.2e-7, TFLite float16 3.1e-4, TFLite int8
0.20 (validation accuracy 0.953 float32, 0.958 int8:
`benchmarks/results/int8.md`); on the tests' random-weight models, at most a
few 1e-7 for float32. ONNX, on the
ONNX tests' models (random weights made informative; logits up to 0.4-4.4,
softmax for the demo model): at most 1.6e-5 (ResNet50 `residual_identity`),
typically 1e-6 to 6e-6; the SE layer alone 1e-7 to 1e-6.

`check_saved_model_in_fresh_process` loads a SavedModel in a new Python process
that imports TensorFlow and NumPy only (no keras_se, no Keras model code), to prove
the export stands on its own; `keras-se demo` uses it. `save_artifacts` writes the
`model.keras` and `saved_model/` pair that `keras-se retrofit` and `finetune` leave,
each reloaded and checked.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
import warnings

import keras
import numpy as np
import tensorflow as tf

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
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


def _interpreter(model_content, delegate=True):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - the test extra installs it
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    if delegate:
        return Interpreter(model_content=model_content)
    # The reference kernels, without the default XNNPACK delegate.
    return Interpreter(
        model_content=model_content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )


def run_tflite(model_content: bytes, inputs: np.ndarray) -> np.ndarray:
    """Runs a TFLite flatbuffer on `inputs` (one batch) with the LiteRT interpreter."""
    interpreter = _interpreter(model_content)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs.astype(detail["dtype"]))
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def convert_tflite(
    saved_model_dir: str, quantize: str = "none", representative_data=None
) -> bytes:
    """Converts a SavedModel to a TFLite flatbuffer with TensorFlow's converter.

    With `quantize="int8"`, `representative_data` (see
    `representative_dataset`) is required.
    """
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
    if quantize == "int8":
        _int8_converter(converter, representative_data)
    return converter.convert()


# ------------------------------------------------------------------- int8
def _int8_converter(converter, representative_data):
    """Full-integer post-training quantization: int8 weights and activations.

    Every op must have an int8 kernel (`TFLITE_BUILTINS_INT8`; conversion
    fails otherwise); the model keeps float32 input and output, quantized on
    the way in and dequantized on the way out, so it is a drop-in
    replacement for the float32 file. Weights are quantized per channel,
    activations per tensor with ranges measured on `representative_data`.
    """
    _check_representative(representative_data)
    samples = representative_samples(representative_data)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def _check_representative(representative_data):
    if representative_data is None:
        raise ValueError(
            "`representative_data` is required with quantize='int8': full-integer "
            "quantization measures each activation's range on real inputs (a "
            "tf.data.Dataset or an iterable of batches, as the model takes them). "
            "Received: representative_data=None"
        )


def degenerate_int8_tensors(model_content: bytes) -> list[str]:
    """Names of the activations an int8 flatbuffer quantized with a zero range.

    An activation that is constant on every calibration image gets a scale of
    about 1e-8: the hidden layer of an SE bottleneck whose ReLU units are all
    dead (the gate is then a constant), or the expansion of an identity-init
    SE layer not yet trained (its kernel and bias are zero). LiteRT's
    reference kernels run such files; its XNNPACK delegate (LiteRT 2.3)
    aborts the process in `allocate_tensors` ("double free or corruption") on
    some of them (a dead bottleneck under `init="identity"` does it), which
    `export_tflite` tries in a child process. Read with the reference kernels
    only, so this check itself is safe.
    """
    interpreter = _interpreter(model_content, delegate=False)
    produced = {int(t) for op in interpreter._get_ops_details() for t in op["outputs"]}
    names = []
    for detail in interpreter.get_tensor_details():
        scales = detail["quantization_parameters"]["scales"]
        if (
            detail["index"] in produced
            and np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16)
            and scales.size
            and float(np.min(scales)) < 1e-6
        ):
            names.append(detail["name"])
    return names


def _xnnpack_loads(model_content: bytes) -> bool:
    """Whether LiteRT's XNNPACK delegate accepts the flatbuffer, tried in a child
    process (on some degenerate int8 files it aborts the process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.tflite")
        with open(path, "wb") as f:
            f.write(model_content)
        code = (
            "import sys\n"
            "try:\n"
            "    from ai_edge_litert.interpreter import Interpreter\n"
            "except ImportError:\n"
            "    from tensorflow.lite import Interpreter\n"
            "Interpreter(model_path=sys.argv[1]).allocate_tensors()\n"
            "print('loaded')\n"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-c", code, path], capture_output=True, text=True, env=env, cwd=tmp
        )
    return proc.returncode == 0 and "loaded" in proc.stdout


def tflite_accuracy(
    model_content: bytes, data, max_batches: int | None = None, delegate: bool = True
) -> float:
    """Top-1 accuracy of a TFLite classifier in the LiteRT interpreter.

    Args:
        model_content: the flatbuffer's bytes.
        data: a `tf.data.Dataset` or an iterable of `(images, labels)`
            batches (integer labels, or one-hot), preprocessed as the model
            takes them.
        max_batches: stop after this many batches; None reads them all.
        delegate: bool, run with LiteRT's default XNNPACK delegate (False:
            the reference kernels). Defaults to `True`.

    Returns:
        The fraction of images whose largest output is their label.
    """
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    interpreter = _interpreter(model_content, delegate)
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    shape = None
    correct = total = 0
    for i, (images, labels) in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        images = np.asarray(images, dtype="float32")
        if images.shape != shape:
            interpreter.resize_tensor_input(detail["index"], list(images.shape))
            interpreter.allocate_tensors()
            shape = images.shape
        interpreter.set_tensor(detail["index"], images.astype(detail["dtype"]))
        interpreter.invoke()
        predicted = np.argmax(interpreter.get_tensor(output), axis=-1)
        labels = np.asarray(labels)
        if labels.ndim > 1:
            labels = np.argmax(labels, axis=-1)
        correct += int(np.sum(predicted == labels.reshape(predicted.shape)))
        total += int(predicted.size)
    if total == 0:
        raise ValueError("`data` gave no batch. Received: data with 0 batches")
    return correct / total


def representative_samples(
    data, num_samples: int = INT8_CALIBRATION_SAMPLES
) -> list[np.ndarray]:
    """Up to `num_samples` single inputs, each `(1, ...)` float32, from `data`.

    Args:
        data: a `tf.data.Dataset` or any iterable (a list, a generator) of
            batches; each element is the model's input batch, or a tuple
            `(inputs, labels, ...)` whose first item is (what `keras_se.
            load_data` and `model.fit` take). Batches are preprocessed
            exactly as the model takes them.
        num_samples: how many images to take. Defaults to
            `INT8_CALIBRATION_SAMPLES` (256).

    Returns:
        A list of float32 arrays with a leading batch axis of 1.

    Raises:
        ValueError: if `data` yields no sample.

    Example:

    >>> import numpy as np
    >>> from keras_se.export import representative_samples
    >>> batches = [(np.zeros((4, 8, 8, 3)), np.zeros(4)) for _ in range(3)]
    >>> samples = representative_samples(batches, num_samples=10)
    >>> len(samples), samples[0].shape, samples[0].dtype
    (10, (1, 8, 8, 3), dtype('float32'))
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"`num_samples` must be a positive int. Received: num_samples={num_samples!r}"
        )
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    elif isinstance(data, np.ndarray):
        data = [data]
    samples = []
    for element in data:
        batch = element[0] if isinstance(element, (tuple, list)) else element
        batch = np.asarray(batch, dtype="float32")
        for i in range(batch.shape[0]):
            samples.append(batch[i : i + 1])
            if len(samples) == num_samples:
                return samples
    if not samples:
        raise ValueError(
            "`representative_data` gave no sample: it must yield at least one batch. "
            f"Received: representative_data={type(data).__name__}"
        )
    return samples


def export_tflite(
    model: keras.Model,
    path: str,
    *,
    quantize: str = "none",
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float | None = None,
    representative_data=None,
) -> float | None:
    """Exports `model` to a `.tflite` file and checks it in the LiteRT interpreter.

    Args:
        model: a Keras model.
        path: the file to write.
        quantize: `"none"` (float32), `"float16"` (float16 weights) or
            `"int8"` (full-integer post-training quantization: int8 weights
            and activations, float32 input and output; needs
            `representative_data`). Defaults to `"none"`.
        verify: bool, run the flatbuffer and compare with Keras. Defaults to
            `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance, or None for `TFLITE_ATOL[quantize]`. The int8
            default (0.3) is a sanity bound for probability outputs
            (softmax), which int8 moves by up to 0.2 on the check batch's
            synthetic images; measure accuracy on real data with
            `tflite_accuracy`. Pass one for logits.
        representative_data: with `quantize="int8"`, calibration inputs: a
            `tf.data.Dataset` or an iterable of batches (or of `(inputs,
            labels)` tuples) preprocessed as the model takes them, such as
            `keras_se.load_data(...).train`; the first
            `INT8_CALIBRATION_SAMPLES` images are used (see
            `representative_samples`). Ignored otherwise.

    Returns:
        The max absolute difference, or None without `verify`.

    Raises:
        ParityError: when the difference is above the tolerance; with
            `quantize="int8"` and `verify`, also when quantization left an
            activation with a zero range (`degenerate_int8_tensors`) and
            LiteRT's XNNPACK delegate cannot load the file (without `verify`
            that is a warning and the file is written).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be one of {', '.join(repr(q) for q in QUANTIZATIONS)}. "
            f"Received: quantize={quantize!r}"
        )
    check_export_support("tflite")
    if quantize == "int8":
        _check_representative(representative_data)
    tmp = tempfile.mkdtemp(prefix="keras_se_tflite_")
    try:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        content = convert_tflite(saved, quantize, representative_data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if quantize == "int8":
        degenerate = degenerate_int8_tensors(content)
        if degenerate and not _xnnpack_loads(content):
            message = (
                f"int8 quantization gave {len(degenerate)} activation(s) a zero range: they "
                "were constant on every calibration image (an SE bottleneck whose ReLU "
                "units are all dead does this): "
                + ", ".join(degenerate[:4])
                + (", ..." if len(degenerate) > 4 else "")
                + ". LiteRT's reference kernels run the file, its XNNPACK delegate "
                "aborts on it. Calibrate with more varied `representative_data`, or "
                "export float32/float16."
            )
            if verify:
                raise ParityError(message)
            import warnings

            warnings.warn(message, stacklevel=2)
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


# ==========================================================================
# ONNX
# ==========================================================================
# `export_onnx` is Keras's `model.export(path, format="onnx")` plus the checks
# the other formats get. The converter depends on the Keras backend:
# TensorFlow: tf2onnx on the traced `tf.function` (opset 15 by default);
# JAX: jax2onnx; torch: `torch.onnx.export` (TorchScript with a dynamic batch).
# This section imports no TensorFlow itself.

ONNX_ATOL = 1e-4


class ExportError(ValueError):
    """The model cannot be written in the format: the converter lacks one of its ops.

    A `ValueError`: the model is the bad input, not the library. The message
    is one line naming the layer (where it can be found) and the op; the
    command line prints it and exits with code 2. No file is left behind.
    """


def onnx_requirements() -> list[str]:
    """The packages `export_onnx` needs on this backend that are not installed."""
    import importlib.util

    needed = ["onnx", "onnxruntime"]
    needed.append({"tensorflow": "tf2onnx", "jax": "jax2onnx"}.get(keras.backend.backend(), "onnx"))
    return [n for n in dict.fromkeys(needed) if importlib.util.find_spec(n) is None]


def _onnx_converter() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        try:
            import tf2onnx

            return f"tf2onnx {tf2onnx.__version__}"
        except ImportError:  # pragma: no cover - the test extra installs it
            return "tf2onnx"
    return {"jax": "jax2onnx", "torch": "torch.onnx"}.get(backend, backend)


def _onnx_input_signature(model):
    """One `keras.InputSpec` per input, batch `None`, named as the Keras input.

    Given explicitly so that a Functional model never called can be exported
    (Keras's default signature requires a call) and the ONNX input keeps the
    Keras input's name. None (Keras's own inference) for models without
    symbolic inputs or with several.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1:
        return None
    x = inputs[0]
    return [keras.InputSpec(shape=(None, *x.shape[1:]), dtype=x.dtype, name=x.name)]


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _layer_of_node(model, node_name: str):
    """The Keras layer whose name scope produced ONNX node `node_name`, or None.

    tf2onnx names nodes after the TensorFlow ops, whose name scopes are the
    (nested) model and layer names, sometimes with a `_1` suffix:
    `functional_1/resize_1/resize/ScaleAndTranslate`.
    """
    scope = {layer.name: layer for layer in getattr(model, "layers", [])}
    found = None
    for part in node_name.strip("/").split("/")[:-1]:
        layer = scope.get(part) or scope.get(re.sub(r"_\d+$", "", part))
        if layer is None:
            if found is not None:
                break
            continue
        found = layer
        if not getattr(layer, "layers", None):
            break
        scope = {sub.name: sub for sub in layer.layers}
    return found


def _unsupported_onnx_nodes(proto) -> list:
    """The nodes of `proto` whose op no ONNX schema (at the model's opset) defines.

    tf2onnx does not fail on a TensorFlow op it cannot translate: it logs an
    error and copies the op into the graph unchanged, which no runtime can
    load. Ops of local functions and of ONNX Runtime's `com.microsoft` domain
    count as known.
    """
    import onnx

    opsets = {o.domain or "": o.version for o in proto.opset_import}
    local = {(f.domain, f.name) for f in proto.functions}
    bad = []
    for node in proto.graph.node:
        domain = node.domain or ""
        if domain == "ai.onnx":
            domain = ""
        if (node.domain, node.op_type) in local or domain == "com.microsoft":
            continue
        version = opsets.get(domain)
        if version is None or not onnx.defs.has(node.op_type, version, domain):
            bad.append(node)
    return bad


def onnx_io(path: str) -> dict:
    """Names and shapes of the graph inputs and outputs of the ONNX file at `path`.

    Returns:
        `{"inputs": [(name, shape)], "outputs": [(name, shape)], "opset": int}`;
        a dynamic dimension is its symbol (a str), a fixed one an int.

    Example:

    >>> import os, tempfile, keras
    >>> from keras_se.export import export_onnx, onnx_io
    >>> model = keras.Sequential([keras.Input((8, 8, 3), name="image"), keras.layers.Conv2D(2, 3)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> export_onnx(model, path) <= 1e-4
    True
    >>> name, shape = onnx_io(path)["inputs"][0]
    >>> name, isinstance(shape[0], str), shape[1:]
    ('image', True, [8, 8, 3])
    """
    import onnx

    proto = onnx.load(path, load_external_data=False)
    return _onnx_io(proto)


def _onnx_io(proto) -> dict:
    def dims(value):
        return [d.dim_param if d.HasField("dim_param") or not d.HasField("dim_value") else d.dim_value
                for d in value.type.tensor_type.shape.dim]

    initializers = {i.name for i in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "inputs": [(v.name, dims(v)) for v in proto.graph.input if v.name not in initializers],
        "outputs": [(v.name, dims(v)) for v in proto.graph.output],
        "opset": opset,
    }


def _name_batch_dimension(proto) -> bool:
    """Names the dynamic batch dimension `batch` (converters write `unk__18`, `s0`, ...).

    For a single-input model: the input's symbolic first dimension, and each output's
    (the batch a Keras model keeps), wherever they appear in the graph's signature.
    Returns whether anything was renamed.
    """
    graph = proto.graph

    def first_symbol(value):
        dims = value.type.tensor_type.shape.dim
        return dims[0].dim_param if dims and dims[0].dim_param else None

    if len(graph.input) != 1 or first_symbol(graph.input[0]) is None:
        return False
    symbols = {first_symbol(v) for v in (*graph.input, *graph.output)} - {None, "batch"}
    if not symbols:
        return False
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = "batch"
    return True


def _onnx_session(path: str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(path: str, inputs: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
    """Runs the ONNX file at `path` on `inputs` (one batch) in ONNX Runtime, on CPU.

    Returns:
        The list of outputs, in the graph's order.
    """
    session = _onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return [np.asarray(y) for y in session.run(None, {name: inputs})]


def _flat_outputs(outputs) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(y)) for y in keras.tree.flatten(outputs)]


def check_onnx(path: str, inputs: np.ndarray, expected, atol: float = ONNX_ATOL) -> float:
    """Runs the ONNX file at `path` in ONNX Runtime and compares it with `expected`.

    Args:
        path: the `.onnx` file.
        inputs: the check batch.
        expected: Keras's outputs on `inputs` (an array, or a list of arrays
            for a model with several outputs).
        atol: the tolerance. Defaults to `ONNX_ATOL`.

    Returns:
        The max absolute difference over all outputs.

    Raises:
        ParityError: when it is above `atol`, or the output count differs.
    """
    expected = _flat_outputs(expected)
    got = run_onnx(path, inputs)
    if len(got) != len(expected):
        raise ParityError(
            f"ONNX model {path} has {len(got)} outputs, the Keras model {len(expected)}"
        )
    diff = max(_max_diff(g, e) for g, e in zip(got, expected))
    if not diff <= atol:
        raise ParityError(
            f"ONNX model {path} differs from Keras by {diff:.3g} in ONNX Runtime "
            f"(tolerance {atol:g})"
        )
    return diff


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _tf2onnx_frees_its_copies():
    """Collects garbage before each of tf2onnx's graph copies.

    tf2onnx deep-copies the whole graph, weights included, before each of its
    optimizer passes (`tf2onnx.optimizer.optimize_graph`). The copies it drops
    hold reference cycles, which Python frees only at its rare full
    collections: exporting SE-ResNet50 peaked at 6.0 GiB of RSS and kept
    5.7 GiB afterwards. A collection before each copy, with the objects
    that existed before the export frozen (so that each collection scans only
    the converter's), keeps the peak at 3.0 GiB (1.9 GiB after) for about 1.3x
    the export time. A private patch of tf2onnx, undone on exit; without
    tf2onnx (other backends) it does nothing.
    """
    try:
        import tf2onnx.optimizer as optimizer
    except ImportError:
        yield
        return
    original = optimizer.copy

    def deepcopy(x, memo=None):
        gc.collect()
        return original.deepcopy(x, memo)

    gc.collect()
    gc.freeze()
    optimizer.copy = types.SimpleNamespace(deepcopy=deepcopy)
    try:
        yield
    finally:
        optimizer.copy = original
        gc.unfreeze()
        gc.collect()


def _convert_onnx(model, path, opset):
    """`model.export(path, format="onnx")`, quiet, with the squeeze traced as a mean."""
    from keras_se.layers import mean_squeeze

    logger = logging.getLogger("tf2onnx")
    handler, level, propagate = _Records(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        with mean_squeeze(), _tf2onnx_frees_its_copies(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(
                path,
                format="onnx",
                verbose=False,
                input_signature=_onnx_input_signature(model),
                opset_version=opset,
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return handler.records


def _unsupported_message(model, nodes, opset) -> str:
    where = []
    for node in nodes:
        layer = _layer_of_node(model, node.name)
        what = f"layer {layer.name!r} ({type(layer).__name__})" if layer is not None else (
            f"node {node.name!r}"
        )
        where.append(f"{what} computes {node.op_type}")
    first = where[0]
    more = f" (and {len(where) - 1} more: {'; '.join(where[1:4])}{' ...' if len(where) > 4 else ''})" if len(where) > 1 else ""
    return (
        f"`model` cannot be exported to ONNX: {first}, which {_onnx_converter()} cannot "
        f"convert to an ONNX op (opset {opset}){more}. Remove or replace that layer. "
        f"Received: model={model.name!r}"
    )


def export_onnx(
    model: keras.Model,
    path: str,
    *,
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float = ONNX_ATOL,
    opset: int | None = None,
) -> float | None:
    """Exports `model` to an ONNX file and checks it in ONNX Runtime.

    Built on Keras's `model.export(path, format="onnx")` (tf2onnx on the
    TensorFlow backend, jax2onnx on JAX, `torch.onnx` on torch). The file
    has a dynamic batch dimension and the Keras input's name. `SqueezeExcite`
    layers are traced with `ops.mean` (`keras_se.layers.mean_squeeze`), so
    each SE block's squeeze is a `GlobalAveragePool` or `ReduceMean`. The file
    appears at `path` only once it is written, checked and (with `verify`)
    matched in ONNX Runtime: on any error no file is left.

    Args:
        model: a Keras model with one input.
        path: the `.onnx` file to write (replaced if it exists).
        verify: bool, run the file in ONNX Runtime (CPU) and compare with
            Keras. Defaults to `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance. Defaults to `ONNX_ATOL`.
        opset: the ONNX opset, or None for the converter's default (15 with
            tf2onnx 1.17). Defaults to `None`.

    Returns:
        The max absolute difference, or None without `verify`.

    Raises:
        ExportError: a layer computes an op the converter cannot translate
            (a `ValueError`; the message names the layer).
        ParityError: the outputs differ from Keras's by more than `atol`.
    """
    import onnx

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"`path`'s directory does not exist: {directory}. Received: path={path!r}")
    if verify and inputs is None:
        inputs = sample_inputs(model)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.partial{os.getpid()}")
    try:
        try:
            _convert_onnx(model, tmp, opset)
        except Exception as e:
            if keras.backend.backend() == "tensorflow" or isinstance(e, ExportError):
                raise
            # jax2onnx and torch.onnx raise on an op they lack.
            if isinstance(e, NotImplementedError) or "Unsupported" in type(e).__name__:
                line = " ".join(str(e).split())[:300]
                raise ExportError(
                    f"`model` cannot be exported to ONNX: {_onnx_converter()} failed: "
                    f"{type(e).__name__}: {line}. Received: model={model.name!r}"
                ) from e
            raise
        proto = onnx.load(tmp, load_external_data=False)
        if _name_batch_dimension(proto):
            onnx.save(proto, tmp)
        io = _onnx_io(proto)
        bad = _unsupported_onnx_nodes(proto)
        if bad:
            raise ExportError(_unsupported_message(model, bad, io["opset"]))
        signature = _onnx_input_signature(model)
        if signature is not None:
            (name, shape), = io["inputs"]
            if name != signature[0].name or not isinstance(shape[0], str):
                raise RuntimeError(
                    f"the ONNX input is {name!r} with shape {shape}; expected "
                    f"{signature[0].name!r} with a dynamic batch dimension"
                )
        del proto
        diff = None
        if verify:
            expected = model(inputs, training=False)
            diff = check_onnx(tmp, inputs, expected, atol)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return diff
