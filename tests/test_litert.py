"""SqueezeExcite in LiteRT: every conversion path writes the same XNNPACK-friendly SE block.

The block must become MEAN, FULLY_CONNECTED, FULLY_CONNECTED, LOGISTIC, MUL
(no RESHAPE, no AVERAGE_POOL_2D) whether the model is converted with a dynamic
batch (`export_tflite`, `TFLiteConverter.from_keras_model`,
`model.export(format="litert")`) or a static batch of 1, every op taken by
the XNNPACK delegate, and give Keras's values within the float32 tolerance.
Speed is measured in benchmarks/bench_litert.py, never here.
"""

import collections
import contextlib
import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_se
from keras_se import SqueezeExcite
from keras_se import export as E

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # pragma: no cover
    pytest.skip("LiteRT export needs the TensorFlow backend", allow_module_level=True)

SE_BLOCK = ["MEAN", "FULLY_CONNECTED", "FULLY_CONNECTED", "LOGISTIC", "MUL"]


def _model(size=24, seed=0, **se_kwargs):
    """A small classifier with two SE blocks and random, non-degenerate weights."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="logits")(x)
    se_kwargs.setdefault("init", "standard")
    model = keras_se.add_se_blocks(keras.Model(inp, out), "post_activation", ratio=4, **se_kwargs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, SqueezeExcite):
            layer.reduce_bias.assign(rng.normal(0, 0.3, layer.reduce_bias.shape))
            layer.expand_bias.assign(rng.normal(0, 0.3, layer.expand_bias.shape))
            layer.expand_kernel.assign(rng.normal(0, 0.5, layer.expand_kernel.shape))
        if layer.name == "logits":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 30, bias])  # logits of order 1 that differ per image
    return model


def _static_batch(model, batch=1):
    inp = keras.Input(batch_shape=(batch,) + tuple(model.inputs[0].shape[1:]))
    return keras.Model(inp, model(inp))


def _convert(model, path, tmp_path):
    quiet = contextlib.redirect_stdout(io.StringIO())
    file = str(tmp_path / f"{path}.tflite")
    if path == "export_tflite":
        E.export_tflite(model, file, verify=False)
    elif path == "from_keras_model":
        with quiet:
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    elif path == "from_keras_model_b1":
        with quiet:
            return tf.lite.TFLiteConverter.from_keras_model(_static_batch(model)).convert()
    elif path in ("keras_litert", "keras_litert_b1"):
        kwargs = {}
        if path.endswith("_b1"):
            kwargs["input_signature"] = [tf.TensorSpec((1,) + tuple(model.inputs[0].shape[1:]))]
        with quiet:
            model.export(file, format="litert", verbose=False, **kwargs)
    with open(file, "rb") as f:
        return f.read()


def _se_blocks(content):
    """op names per SE layer (by the name scope of each op's output), in order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    blocks = collections.OrderedDict()
    for op in it._get_ops_details():
        for t in op["outputs"]:
            for layer in ("c1_se", "c2_se"):
                if f"/{layer}/" in names[t] or f"/{layer}_1/" in names[t]:
                    blocks.setdefault(layer, []).append(op["op_name"])
    return blocks


def _delegated_everything(content):
    """True when XNNPACK took every op: one DELEGATE node from input to output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    it.allocate_tensors()
    ops = it._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    if len(delegates) != 1:
        return False
    out = {int(d["index"]) for d in it.get_output_details()}
    return out <= {int(t) for t in delegates[0]["outputs"]}


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.mark.parametrize(
    "path",
    ["export_tflite", "from_keras_model", "from_keras_model_b1", "keras_litert", "keras_litert_b1"],
)
def test_every_conversion_path_writes_the_same_se_block(model, path, tmp_path):
    content = _convert(model, path, tmp_path)
    blocks = _se_blocks(content)
    assert list(blocks) == ["c1_se", "c2_se"]
    for ops in blocks.values():
        assert ops == SE_BLOCK
    if path.endswith("_b1"):
        # A static batch: nothing is left for the CPU kernels, the head included.
        assert _delegated_everything(content)
    x = E.sample_inputs(model, batch_size=3, seed=2)
    expected = np.asarray(model(x))
    got = np.concatenate([E.run_tflite(content, x[i : i + 1]) for i in range(3)])
    assert expected.std(axis=0).max() > 0.1  # outputs that depend on the image
    np.testing.assert_allclose(got, expected, atol=E.TFLITE_ATOL["none"], rtol=0)


def test_identity_init_and_hard_sigmoid_blocks(tmp_path):
    # 2 * sigmoid adds one MUL by 2 on the (1, 1, 1, C) gate, no reshape.
    model = _model(init="identity")
    for layer in model.layers:
        if isinstance(layer, SqueezeExcite):
            layer.expand_kernel.assign(np.full(layer.expand_kernel.shape, 0.1, "float32"))
    blocks = _se_blocks(_convert(model, "export_tflite", tmp_path))
    for ops in blocks.values():
        assert ops == ["MEAN", "FULLY_CONNECTED", "FULLY_CONNECTED", "LOGISTIC", "MUL", "MUL"]
    hard = _model(gate="hard_sigmoid")
    content = _convert(hard, "export_tflite", tmp_path)
    for ops in _se_blocks(content).values():
        assert ops[:3] == ["MEAN", "FULLY_CONNECTED", "FULLY_CONNECTED"] and ops[-1] == "MUL"
        assert "RESHAPE" not in ops and "AVERAGE_POOL_2D" not in ops
    x = E.sample_inputs(hard, batch_size=2)
    got = np.concatenate([E.run_tflite(content, x[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(got, np.asarray(hard(x)), atol=E.TFLITE_ATOL["none"], rtol=0)


# ----------------------------------------------------- the traced graph forms
def _graph_ops(layer, shape, training=None):
    fn = tf.function(lambda x: layer(x, training=training))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, "float32")).graph
    return collections.Counter(op.type for op in graph.get_operations())


@pytest.mark.parametrize("init", ("standard", "identity"))
@pytest.mark.parametrize("gate", ("sigmoid", "hard_sigmoid", "tanh"))
@pytest.mark.parametrize("squeeze", ("avg", "max", "avg_max"))
@pytest.mark.parametrize("rank", (3, 4, 5))
def test_unknown_batch_inference_trace_equals_eager(rank, squeeze, gate, init):
    # The export trace (unknown batch, not training) keeps the descriptor's
    # rank; it must compute what the eager layer computes, and what the
    # training trace computes.
    rng = np.random.default_rng(rank)
    shape = (3,) + (5, 4, 3)[: rank - 2] + (16,)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    layer = SqueezeExcite(ratio=4, squeeze=squeeze, gate=gate, init=init)
    layer.build(shape)
    layer.expand_kernel.assign(rng.normal(0, 0.5, layer.expand_kernel.shape))
    layer.expand_bias.assign(rng.normal(0, 0.5, layer.expand_bias.shape))
    eager = layer(x).numpy()
    spec = tf.TensorSpec((None,) + shape[1:], "float32")
    inference = tf.function(lambda t: layer(t, training=False), input_signature=[spec])
    training = tf.function(lambda t: layer(t, training=True), input_signature=[spec])
    np.testing.assert_allclose(inference(x).numpy(), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(training(x).numpy(), eager, rtol=1e-6, atol=1e-6)
    ops = _graph_ops(layer, (None,) + shape[1:], training=False)
    assert "Reshape" not in ops and "AvgPool" not in ops and "AvgPool3D" not in ops
    if "avg" in squeeze:
        assert ops["Mean"] == 1
        # Training with an unknown batch (tf.data) keeps the fast pooled squeeze.
        train_ops = _graph_ops(layer, (None,) + shape[1:], training=True)
        assert train_ops["AvgPool3D" if rank == 5 else "AvgPool"] == 1


def test_channels_first_unknown_batch_keeps_the_reshape():
    layer = SqueezeExcite(ratio=4, data_format="channels_first")
    layer.build((None, 16, 5, 4))
    x = np.random.default_rng(0).normal(size=(2, 16, 5, 4)).astype("float32")
    fn = tf.function(lambda t: layer(t, training=False))
    spec = tf.TensorSpec((None, 16, 5, 4), "float32")
    np.testing.assert_allclose(fn.get_concrete_function(spec)(tf.constant(x)).numpy(),
                               layer(x).numpy(), rtol=1e-6, atol=1e-6)
    assert "Reshape" in _graph_ops(layer, (None, 16, 5, 4))


def test_saved_model_of_the_export_trace_matches_keras(model, tmp_path):
    # The SavedModel (TF Serving) holds the unknown-batch trace.
    diff = E.export_saved_model(model, str(tmp_path / "sm"))
    assert diff <= E.SAVED_MODEL_ATOL


# ------------------------------------------------ ops per block, TF inference
def _block_ops(layer, shape):
    keep = {"Const", "ReadVariableOp", "Identity", "NoOp", "Placeholder"}
    fn = tf.function(lambda x: layer(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, layer.compute_dtype)).graph
    return collections.Counter(op.type for op in graph.get_operations() if op.type not in keep)


@pytest.mark.parametrize(
    "gate, init, extra",
    [
        ("sigmoid", "standard", {}),
        ("sigmoid", "identity", {"Mul": 1}),  # 2 * sigmoid
        ("tanh", "identity", {"Tanh": 1, "AddV2": 1}),  # 1 + tanh
    ],
)
def test_ops_per_block_at_batch_1(gate, init, extra):
    # What one SE block adds to a batch-1 inference graph in float32: the
    # squeeze, two matmuls with their bias adds (oneDNN fuses each with its
    # activation), the gate and the rescale; no Cast, no Reshape.
    layer = SqueezeExcite(ratio=4, gate=gate, init=init)
    layer.build((1, 6, 6, 32))
    expected = collections.Counter({"Mean": 1, "MatMul": 2, "AddV2": 2, "Relu": 1, "Mul": 1})
    if gate == "sigmoid":
        expected["Sigmoid"] = 1
    expected.update(extra)
    assert _block_ops(layer, (1, 6, 6, 32)) == expected
    # An unknown batch (the export trace) differs only in the matmuls' kind.
    dynamic = _block_ops(layer, (None, 6, 6, 32))
    assert dynamic["BatchMatMulV2"] == 2 and "Reshape" not in dynamic and "Cast" not in dynamic
    assert sum(dynamic.values()) == sum(expected.values())


def test_mixed_precision_block_casts_twice():
    keras.config.set_dtype_policy("mixed_float16")
    layer = SqueezeExcite(ratio=4)
    layer.build((1, 6, 6, 32))
    assert _block_ops(layer, (1, 6, 6, 32))["Cast"] == 2  # the input up, the gate down
