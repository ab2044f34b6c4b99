"""keras_se.export, int8: full-integer post-training quantization, checked in numbers.

A small SE classifier trained on the builtin dataset (24 px, a few epochs)
must keep its validation accuracy within 3 points when quantized to int8
with calibration batches from its training data. Sizes and latencies of real
models are in benchmarks/bench_int8.py, never asserted here.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_se
from keras_se import data as D
from keras_se import export as E

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # pragma: no cover
    pytest.skip("TFLite export needs the TensorFlow backend", allow_module_level=True)

SIZE = 24


def _preprocess(images):
    return images / 127.5 - 1.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    D.tfds_builder("builtin", str(path)).download_and_prepare()
    return D.load_data("builtin", image_size=SIZE, batch_size=32, data_dir=str(path),
                       preprocess=_preprocess, cache=False)


def _small_se_model(gate="sigmoid", init="identity", seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = inp
    for filters, stride in ((16, 2), (32, 2), (32, 1)):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(6, activation="softmax")(x)
    return keras_se.add_se_blocks(
        keras.Model(inp, out), "post_activation", ratio=4, gate=gate, init=init
    )


@pytest.fixture(scope="module")
def trained(data):
    model = _small_se_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train, epochs=4, verbose=0)
    return model


def test_int8_keeps_the_validation_accuracy(trained, data, tmp_path):
    float_path, int8_path = str(tmp_path / "f.tflite"), str(tmp_path / "q.tflite")
    E.export_tflite(trained, float_path)
    diff = E.export_tflite(trained, int8_path, quantize="int8", representative_data=data.train)
    assert diff <= E.TFLITE_ATOL["int8"]
    keras_acc = trained.evaluate(data.validation, verbose=0)[1]
    with open(float_path, "rb") as f:
        float_content = f.read()
    with open(int8_path, "rb") as f:
        int8_content = f.read()
    float_acc = E.tflite_accuracy(float_content, data.validation)
    int8_acc = E.tflite_accuracy(int8_content, data.validation)
    assert keras_acc > 0.6  # well above chance (1/6): the comparison means something
    assert abs(float_acc - keras_acc) < 1e-6 + 1 / 600  # at most one image flips
    assert int8_acc >= float_acc - 0.03
    # int8 weights: a quarter of the float32 bytes, plus the graph's fixed size.
    assert len(int8_content) < 0.6 * len(float_content)
    assert _tensor_types(int8_content, "MUL") == {np.int8}


def _tensor_types(content, op_name):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    types = set()
    for op in it._get_ops_details():
        if op["op_name"] == op_name:
            types |= {np.dtype(t).type for t in op["operand_types"] + op["result_types"]}
    return types


def test_int8_needs_representative_data(trained, tmp_path):
    path = tmp_path / "q.tflite"
    with pytest.raises(ValueError, match=r"`representative_data` is required with "
                       r"quantize='int8'.*Received: representative_data=None"):
        E.export_tflite(trained, str(path), quantize="int8")
    assert not path.exists()


def test_quantize_lists_int8():
    with pytest.raises(ValueError, match=r"'none', 'float16', 'int8'\. Received: quantize='int4'"):
        E.convert_tflite("unused", quantize="int4")


def test_representative_samples_from_batches_tuples_and_datasets():
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(4, 5, 5, 3)) for _ in range(3)]
    samples = E.representative_samples(batches, num_samples=6)
    assert len(samples) == 6 and samples[0].shape == (1, 5, 5, 3)
    assert samples[0].dtype == np.float32
    np.testing.assert_array_equal(samples[5][0], batches[1][1].astype("float32"))
    labelled = [(b, np.zeros(4)) for b in batches]
    assert len(E.representative_samples(labelled)) == 12  # fewer than asked: all of them
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(12))).batch(5)
    from_ds = E.representative_samples(ds, num_samples=7)
    np.testing.assert_array_equal(np.concatenate(from_ds), np.concatenate(batches)[:7].astype("float32"))
    one = E.representative_samples(batches[0])  # a single array is one batch
    assert len(one) == 4


@pytest.mark.parametrize(
    "data, num_samples, match",
    [
        ([], 10, r"gave no sample.*Received: representative_data=list"),
        ([np.zeros((1, 2, 2, 3))], 0, r"`num_samples` must be a positive int\. Received: num_samples=0"),
        ([np.zeros((1, 2, 2, 3))], True, r"Received: num_samples=True"),
    ],
)
def test_representative_samples_errors(data, num_samples, match):
    with pytest.raises(ValueError, match=match):
        E.representative_samples(data, num_samples=num_samples)


def test_tflite_accuracy_counts_the_argmax(tmp_path):
    # A model that predicts the channel with the largest mean: accuracy known exactly.
    inp = keras.Input((4, 4, 3))
    out = keras.layers.GlobalAveragePooling2D()(inp)
    model = keras.Model(inp, out)
    path = str(tmp_path / "m.tflite")
    E.export_tflite(model, path)
    with open(path, "rb") as f:
        content = f.read()
    x = np.zeros((6, 4, 4, 3), "float32")
    for i in range(6):
        x[i, :, :, i % 3] = 1.0
    labels = np.array([0, 1, 2, 0, 0, 0])  # the last two are wrong
    data = [(x[:4], labels[:4]), (x[4:], labels[4:])]  # batch sizes 4 then 2
    assert E.tflite_accuracy(content, data) == pytest.approx(4 / 6)
    one_hot = [(x, np.eye(3)[labels])]
    assert E.tflite_accuracy(content, one_hot) == pytest.approx(4 / 6)
    assert E.tflite_accuracy(content, data, max_batches=1) == 1.0


def _dead_bottleneck_model():
    """An identity-init SE model whose second SE block has every ReLU unit dead."""
    model = _small_se_model(init="identity")
    rng = np.random.default_rng(0)
    se = [layer for layer in model.layers if isinstance(layer, keras_se.SqueezeExcite)]
    for layer in se:
        layer.expand_kernel.assign(rng.normal(0, 0.3, layer.expand_kernel.shape))
    se[1].reduce_bias.assign(np.full(se[1].reduce_bias.shape, -100.0, "float32"))
    return model, se[1].name


def test_dead_se_bottleneck_is_reported_not_a_crash(tmp_path):
    # LiteRT 2.3's XNNPACK delegate aborts the process on this int8 file; the
    # export finds it in a child process and says why.
    model, dead = _dead_bottleneck_model()
    rng = np.random.default_rng(1)
    batches = [rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype("float32") for _ in range(2)]
    path = tmp_path / "q.tflite"
    with pytest.raises(E.ParityError, match=rf"zero range.*{dead}.*XNNPACK delegate aborts"):
        E.export_tflite(model, str(path), quantize="int8", representative_data=batches)
    assert not path.exists()
    with pytest.warns(UserWarning, match="zero range"):
        E.export_tflite(model, str(path), quantize="int8", representative_data=batches,
                        verify=False)
    content = path.read_bytes()
    assert any(dead in n for n in E.degenerate_int8_tensors(content))
    assert not E.tflite._xnnpack_loads(content)
    # The reference kernels run it: the dead block's gate is a constant.
    x = batches[0]
    labels = np.argmax(np.asarray(model(x)), axis=-1)
    assert E.tflite_accuracy(content, [(x, labels)], delegate=False) >= 0.75


def test_untrained_identity_model_exports_to_int8(tmp_path):
    # A freshly retrofitted model (zero expansion: a constant gate of exactly 1)
    # also has zero-range activations, but XNNPACK loads it: no error.
    model = _small_se_model(init="identity")
    rng = np.random.default_rng(1)
    batches = [rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype("float32") for _ in range(2)]
    path = str(tmp_path / "q.tflite")
    diff = E.export_tflite(model, path, quantize="int8", representative_data=batches)
    assert diff <= E.TFLITE_ATOL["int8"]
    with open(path, "rb") as f:
        assert E.degenerate_int8_tensors(f.read())


def test_cli_int8_calibrates_on_the_data_and_reports_the_accuracy(trained, data, tmp_path):
    import json
    import re
    import subprocess
    import sys

    # A run's folder: model.keras with its keras_se.json (the preprocessing "tf" is
    # the _preprocess above), as `keras-se finetune` leaves it.
    run = tmp_path / "run"
    run.mkdir()
    trained.save(run / "model.keras")
    (run / "keras_se.json").write_text(json.dumps({"preprocess": "tf"}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    base = [sys.executable, "-m", "keras_se", "export", str(run), "--format", "tflite"]
    proc = subprocess.run(base + ["--quantize", "int8", "--out", "q.tflite", "--data", "builtin",
                                  "--data-dir", str(tmp_path / "tfds")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    m = re.search(r"Keras float32 (\S+), LiteRT int8 (\S+) \(", line)
    assert m, proc.stdout
    keras_acc, int8_acc = float(m.group(1)), float(m.group(2))
    assert keras_acc > 0.6 and int8_acc >= keras_acc - 0.03
    with open(tmp_path / "q.tflite", "rb") as f:
        assert _tensor_types(f.read(), "MUL") == {np.int8}
    # Bad input: int8 without data, data without int8.
    for extra, message in ((["--quantize", "int8"], "`--quantize int8` needs --data"),
                           (["--data", "builtin"], "`--data` applies to --quantize int8 only")):
        proc = subprocess.run(base + extra + ["--out", "x.tflite"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "x.tflite").exists()
