"""SqueezeExcite on TensorFlow: the pooled squeeze's graph and gradients, and XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _reference import se_reference

import keras_se.layers
from keras_se import SqueezeExcite

SQUEEZES = ("avg", "max", "avg_max")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _input(rank, data_format, channels=6, batch=2, seed=0):
    spatial = (5, 4, 3)[: rank - 2]
    shape = (batch, *spatial, channels)
    if data_format == "channels_first":
        shape = (batch, channels, *spatial)
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ------------------------------------------------------- squeeze fast path
def _squeeze_op_types(layer, shape, gradient=False, training=None):

    def fn(x):
        if not gradient:
            return layer(x, training=training)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
        return tape.gradient(y, x)

    graph = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, "float32")).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("rank", (3, 4, 5))
def test_pooled_squeeze_equals_mean_path(rank, squeeze):
    # On CPU-only TensorFlow the channels_last average squeeze is a whole-map
    # pooling op with the mean's gradient; it must compute what ops.mean
    # computes, values and gradients (input and every weight) alike.

    keras_se.layers.set_pooled_squeeze(True)  # as on a CPU-only machine, whatever this one has
    x = tf.constant(_input(rank, "channels_last", channels=32, seed=rank))
    layer = SqueezeExcite(ratio=4, squeeze=squeeze, data_format="channels_last")
    layer.build(x.shape)
    layer.expand_bias.assign(np.linspace(-1, 1, 32).astype("float32"))

    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(tf.range(32, dtype="float32")))
        return y, tape.gradient(loss, [x, *layer.trainable_variables])

    pooled, pooled_grads = run()
    ops_pooled = _squeeze_op_types(layer, x.shape)
    grad_ops = _squeeze_op_types(layer, x.shape, gradient=True)
    # The backward pass broadcasts the mean's gradient instead of AvgPoolGrad.
    assert not any("PoolGrad" in t and "Avg" in t for t in grad_ops)
    if "avg" in squeeze:
        assert "BroadcastTo" in grad_ops
    keras_se.layers.set_pooled_squeeze(False)  # as where TensorFlow sees an accelerator
    reduced, reduced_grads = run()
    ops_reduced = _squeeze_op_types(layer, x.shape)

    pool = "AvgPool3D" if rank == 5 else "AvgPool"
    if "avg" in squeeze:
        assert pool in ops_pooled and "Mean" not in ops_pooled
    assert "Mean" not in ops_pooled or squeeze == "max"
    assert "Max" in ops_pooled if "max" in squeeze else "Max" not in ops_pooled
    assert not any("Pool" in t for t in ops_reduced)
    assert ("Mean" in ops_reduced) == ("avg" in squeeze)
    np.testing.assert_allclose(_np(pooled), _np(reduced), rtol=1e-6, atol=1e-6)
    assert len(pooled_grads) == 5  # the input and four weights
    for a, b in zip(pooled_grads, reduced_grads):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


def test_squeeze_falls_back_to_mean_for_unknown_sizes_batch_1_and_channels_first():
    keras_se.layers.set_pooled_squeeze(True)
    layer = SqueezeExcite(ratio=4, data_format="channels_last")
    layer.build((None, None, None, 16))
    types = _squeeze_op_types(layer, (2, None, None, 16))
    assert "Mean" in types and "AvgPool" not in types
    x = _input(4, "channels_last", channels=16)
    np.testing.assert_allclose(_np(layer(x)), se_reference(x, layer)[0], atol=1e-5)

    # A static batch of 1 (single-image serving) keeps the mean; an unknown
    # batch takes the pool in training (tf.data batches) and the mean outside
    # it (the trace every export takes, see tests/test_litert.py).
    assert "Mean" in _squeeze_op_types(layer, (1, 5, 4, 16))
    assert "AvgPool" in _squeeze_op_types(layer, (None, 5, 4, 16), training=True)
    types = _squeeze_op_types(layer, (None, 5, 4, 16))
    assert "Mean" in types and "AvgPool" not in types

    first = SqueezeExcite(ratio=4, data_format="channels_first")
    types = _squeeze_op_types(first, (2, 16, 5, 4))
    assert "Mean" in types and "AvgPool" not in types


@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_squeeze_under_xla_matches_eager(squeeze):

    x = tf.constant(_input(4, "channels_last", channels=32, batch=3))
    layer = SqueezeExcite(ratio=4, squeeze=squeeze, data_format="channels_last")
    eager = _np(layer(x))
    xla = _np(tf.function(layer, jit_compile=True)(x))
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eager, se_reference(_np(x), layer)[0], atol=1e-5)


def test_fit_under_xla_matches_graph_mode():
    # The pooled squeeze's custom gradient must also compile under XLA
    # (`jit_compile=True`, Keras's default on a GPU) and train the same.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 16)).astype("float32")
    y = rng.normal(size=(16, 8, 8, 16)).astype("float32")
    weights = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8, 8, 16)), SqueezeExcite(ratio=4)])
        start = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        weights[jit] = model.get_weights()
        assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(weights[jit], start))
    for a, b in zip(weights[False], weights[True]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
