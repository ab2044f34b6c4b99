"""The fused SE-block gradient (keras_se/_fused.py) equals autodiff, in numbers.

Every gate, init, rank, bias setting and dtype policy; values and gradients
with respect to the input and all four weights, eager and in a tf.function;
and the same training curve over several steps. Speed: benchmarks/bench_fused.py.
"""

import os

import keras
import numpy as np
import pytest

import keras_se
import keras_se.layers
from keras_se import SqueezeExcite

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # pragma: no cover
    pytest.skip("the fused gradient is TensorFlow-only", allow_module_level=True)

import tensorflow as tf  # noqa: E402


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def _grads(layer, x, fused, graph, monkeypatch):
    monkeypatch.setattr(keras_se.layers, "_FUSED_GRADIENT", fused)
    channels = x.shape[-1]
    weights = tf.cos(tf.range(channels, dtype="float32"))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * weights + tf.cast(y, "float32") ** 2)
        return y, tape.gradient(loss, [x, *layer.trainable_variables])

    if graph:
        step = tf.function(step)  # a fresh trace for each setting
    return step(x)


def _layer_and_input(rank, gate, init, use_bias, dtype, seed=0):
    rng = np.random.default_rng(seed + rank)
    shape = (3,) + (6, 5, 4)[: rank - 2] + (16,)
    x = tf.cast(tf.constant(rng.normal(size=shape).astype("float32")), dtype)
    layer = SqueezeExcite(ratio=4, gate=gate, init=init, use_bias=use_bias)
    layer.build(shape)
    layer.expand_kernel.assign(rng.normal(0, 0.5, layer.expand_kernel.shape))
    if use_bias:
        layer.reduce_bias.assign(rng.normal(0, 0.5, layer.reduce_bias.shape))
        layer.expand_bias.assign(rng.normal(0, 0.5, layer.expand_bias.shape))
    return layer, x


CASES = [
    (gate, init)
    for gate in ("sigmoid", "hard_sigmoid", "tanh", "relu")
    for init in ("standard", "identity")
    if not (gate == "relu" and init == "identity")
]


@pytest.mark.parametrize("graph", (False, True), ids=("eager", "tf.function"))
@pytest.mark.parametrize("use_bias", (True, False))
@pytest.mark.parametrize("gate, init", CASES)
@pytest.mark.parametrize("rank", (3, 4, 5))
def test_fused_gradient_equals_autodiff(rank, gate, init, use_bias, graph, monkeypatch):
    layer, x = _layer_and_input(rank, gate, init, use_bias, "float32")
    y_f, g_f = _grads(layer, x, True, graph, monkeypatch)
    y_a, g_a = _grads(layer, x, False, graph, monkeypatch)
    np.testing.assert_allclose(_np(y_f), _np(y_a), rtol=1e-6, atol=1e-6)
    assert len(g_f) == (5 if use_bias else 3)  # the input and every weight
    for a, b in zip(g_f, g_a):
        assert np.abs(_np(b)).max() > 1e-3  # a gradient that tests something
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ("mixed_float16", "mixed_bfloat16"))
@pytest.mark.parametrize("rank", (3, 4, 5))
def test_fused_gradient_under_mixed_precision(policy, rank, monkeypatch):
    compute = "float16" if policy == "mixed_float16" else "bfloat16"
    keras.config.set_dtype_policy(policy)
    layer, x = _layer_and_input(rank, "sigmoid", "identity", True, compute)
    y_f, g_f = _grads(layer, x, True, True, monkeypatch)
    y_a, g_a = _grads(layer, x, False, True, monkeypatch)
    assert y_f.dtype == x.dtype and g_f[0].dtype == x.dtype
    assert all(g.dtype == tf.float32 for g in g_f[1:])  # float32 weights
    tol = 1e-2 if compute == "float16" else 4e-2
    np.testing.assert_allclose(_np(y_f), _np(y_a), rtol=tol, atol=tol)
    for a, b in zip(g_f, g_a):
        scale = np.abs(_np(b)).max()
        np.testing.assert_allclose(_np(a) / scale, _np(b) / scale, atol=tol)


@pytest.mark.parametrize("squeeze", ("max", "avg_max"))
def test_max_squeezes_keep_autodiff(squeeze, monkeypatch):
    # Only the average squeeze is fused; the others must be unaffected.
    layer = SqueezeExcite(ratio=4, squeeze=squeeze)
    layer.build((2, 5, 5, 16))
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 5, 16)).astype("float32"))
    fn = tf.function(lambda t: layer(t, training=True))
    ops = {op.type for op in fn.get_concrete_function(x).graph.get_operations()}
    assert "IdentityN" not in ops or squeeze == "avg_max"  # no custom gradient for max
    _, g_f = _grads(layer, x, True, True, monkeypatch)
    _, g_a = _grads(layer, x, False, True, monkeypatch)
    for a, b in zip(g_f, g_a):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6, atol=1e-6)


def _train(fused, monkeypatch, jit_compile=False, steps=6):
    monkeypatch.setattr(keras_se.layers, "_FUSED_GRADIENT", fused)
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="c2")(h)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras_se.add_se_blocks(keras.Model(inp, out), "post_activation", ratio=4,
                                   init="standard")
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8 * steps, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8 * steps,))
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()


@pytest.mark.parametrize("jit_compile", (False, True), ids=("graph", "xla"))
def test_training_curves_are_the_same(jit_compile, monkeypatch):
    loss_f, w_f = _train(True, monkeypatch, jit_compile)
    loss_a, w_a = _train(False, monkeypatch, jit_compile)
    assert loss_a[1] < loss_a[0]  # it trains
    np.testing.assert_allclose(loss_f, loss_a, rtol=1e-5)
    for a, b in zip(w_f, w_a):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_path_is_taken_only_in_training(monkeypatch):
    monkeypatch.setattr(keras_se.layers, "_FUSED_GRADIENT", True)
    layer = SqueezeExcite(ratio=4)
    layer.build((None, 5, 5, 16))
    spec = tf.TensorSpec((None, 5, 5, 16))

    def types(training):
        fn = tf.function(lambda t: layer(t, training=training))
        return {op.type for op in fn.get_concrete_function(spec).graph.get_operations()}

    assert "IdentityN" in types(True)  # tf.custom_gradient's mark
    assert "IdentityN" not in types(False)
