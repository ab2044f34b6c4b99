"""TFLite (LiteRT) export: float32, float16 weights and full-integer int8, each run in the LiteRT interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_se.export._common import (
    INT8_CALIBRATION_SAMPLES,
    QUANTIZATIONS,
    TFLITE_ATOL,
    ParityError,
    _max_diff,
    check_export_support,
    sample_inputs,
)


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
