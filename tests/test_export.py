"""keras_se.export: SavedModel and TFLite exports, each checked against Keras in numbers."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_se
from keras_se import export as E


def _model(classes=5, size=24, seed=0):
    """A small SE classifier with random, non-degenerate weights."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras_se.add_se_blocks(keras.Model(inp, out), init="standard")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2, v.shape)])
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 50, bias])  # confident, input-dependent outputs
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


def test_check_batch_is_informative(model):
    # The parity checks below would prove nothing on a model whose output
    # does not depend on its input.
    x = E.sample_inputs(model, batch_size=4)
    assert x.shape == (4, 24, 24, 3)
    y = np.asarray(model(x))
    assert y.std(axis=0).max() > 0.02


def test_saved_model_serve_matches_keras_in_a_fresh_process(model, tmp_path):
    path = str(tmp_path / "sm")
    diff = E.export_saved_model(model, path)
    assert diff <= E.SAVED_MODEL_ATOL
    x = E.sample_inputs(model, batch_size=3, seed=7)
    expected = np.asarray(model(x))
    np.savez(tmp_path / "io.npz", x=x)
    # A fresh interpreter that imports TensorFlow only: no keras_se, no Keras model.
    code = textwrap.dedent(
        f"""
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        x = np.load({str(tmp_path / "io.npz")!r})["x"]
        y = loaded.serve(tf.constant(x)).numpy()
        sig = loaded.signatures["serving_default"](tf.constant(x))
        print(json.dumps({{"serve": y.tolist(), "signature": next(iter(sig.values())).numpy().tolist()}}))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["serve"], expected, atol=E.SAVED_MODEL_ATOL)
    np.testing.assert_allclose(got["signature"], expected, atol=E.SAVED_MODEL_ATOL)


def test_check_saved_model_in_fresh_process_reports_the_difference(model, tmp_path):
    path = str(tmp_path / "sm")
    E.export_saved_model(model, path, verify=False)
    x = E.sample_inputs(model)
    expected = np.asarray(model(x))
    assert E.check_saved_model_in_fresh_process(path, x, expected) <= E.SAVED_MODEL_ATOL
    with pytest.raises(E.ParityError, match=r"differs from Keras by 0.5"):
        E.check_saved_model(path, x, expected + 0.5)
    # The child process (TensorFlow and NumPy only, no keras_se) finds the same gap.
    with pytest.raises(E.ParityError, match=r"differs from Keras by 0.5 in a fresh process"):
        E.check_saved_model_in_fresh_process(path, x, expected + 0.5)


def test_tflite_float32_matches_keras_in_litert(model, tmp_path):
    path = str(tmp_path / "m.tflite")
    diff = E.export_tflite(model, path)
    assert diff <= E.TFLITE_ATOL["none"]
    content = open(path, "rb").read()
    assert content[4:8] == b"TFL3"  # the TFLite flatbuffer identifier
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    x = E.sample_inputs(model, batch_size=1, seed=3)
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(y, np.asarray(model(x)), atol=E.TFLITE_ATOL["none"])
    # Batches other than the converted one work too (dynamic batch).
    x4 = E.sample_inputs(model, batch_size=4, seed=4)
    np.testing.assert_allclose(E.run_tflite(content, x4), np.asarray(model(x4)),
                               atol=E.TFLITE_ATOL["none"])


def test_tflite_float16_is_within_its_tolerance_and_smaller(model, tmp_path):
    f32 = str(tmp_path / "m32.tflite")
    f16 = str(tmp_path / "m16.tflite")
    E.export_tflite(model, f32, verify=False)
    diff = E.export_tflite(model, f16, quantize="float16")
    assert diff <= E.TFLITE_ATOL["float16"]
    assert os.path.getsize(f16) < os.path.getsize(f32)


def test_parity_failure_raises(model, tmp_path):
    with pytest.raises(E.ParityError, match=r"TFLite model .* differs from Keras by .* \(tolerance -1\)"):
        E.export_tflite(model, str(tmp_path / "m.tflite"), atol=-1)


def test_export_argument_errors(model, tmp_path):
    with pytest.raises(ValueError, match=r"`quantize` must be one of 'none', 'float16', 'int8'. "
                       r"Received: quantize='int4'"):
        E.export_tflite(model, str(tmp_path / "m.tflite"), quantize="int4")
    a, b = keras.Input((4,)), keras.Input((4,))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"single-input models .*Received: model with 2 inputs"):
        E.sample_inputs(two)


def test_the_backend_format_matrix():
    assert E.export_support("saved_model", "tensorflow") is None
    assert E.export_support("saved_model", "jax") is None
    assert E.export_support("tflite", "jax") is None
    assert "torch_xla" in E.export_support("saved_model", "torch")
    assert "litert-torch" in E.export_support("tflite", "torch")
    assert [E.export_support("onnx", b) for b in ("tensorflow", "jax", "torch")] == [None] * 3
    assert set(E.BACKEND_FORMATS) == set(E.FORMATS)
    with pytest.raises(ValueError, match=r"^A tflite cannot be exported from the torch backend: "
                       r".*litert-torch.*\. Export the \.keras file on tensorflow or jax .*"
                       r"Received: format='tflite', backend='torch'$"):
        E.check_export_support("tflite", "torch")
    E.check_export_support("saved_model")  # this suite's backend: no error
    with pytest.raises(ValueError, match=r"`format` must be one of 'saved_model', 'tflite'"):
        E.export_support("onnx_nope")
