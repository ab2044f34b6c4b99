"""keras_se.batchnorm: recalibrating BatchNormalization statistics from data."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_se.batchnorm import batchnorm_layers, recalibrate_batchnorm


def _conv_bn(size=8, channels=4, name="m"):
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(channels, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inp, x, name=name)


def _images(n=50, size=8, seed=0):
    rng = np.random.default_rng(seed)
    # Channel means far from 0 and variances far from 1: the initial moving
    # statistics (0, 1) are wrong on purpose.
    return (rng.normal(0, 1, (n, size, size, 3)) * [3.0, 0.5, 1.0] + [5.0, -2.0, 0.0]).astype(
        "float32"
    )


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _moving(layer):
    return _np(layer.moving_mean), _np(layer.moving_variance)


def test_conv_bn_statistics_are_the_datasets():
    model = _conv_bn()
    x = _images()
    conv = keras.Model(model.inputs[0], model.get_layer("conv").output)
    feats = _np(conv(x)).astype("float64")
    # 50 examples in batches of 16: the last batch holds 2, and batches are
    # weighted by their size, so the result is the statistics of all 50.
    report = recalibrate_batchnorm(model, tf.data.Dataset.from_tensor_slices(x).batch(16))
    mean, var = _moving(model.get_layer("bn"))
    np.testing.assert_allclose(mean, feats.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, feats.var(axis=(0, 1, 2)), rtol=1e-4)
    assert (report.layers, report.batches, report.examples, report.unused) == (1, 4, 50, [])
    assert report.max_log_variance_ratio > 1.0  # the initial variance of 1 was far off


def test_later_layers_see_batch_normalised_inputs_and_dropout_is_off():
    inp = keras.Input((3,))
    h = keras.layers.Dense(5, name="d1")(inp)
    h = keras.layers.BatchNormalization(name="bn1", epsilon=1e-3)(h)
    h = keras.layers.Dropout(0.5)(h)  # must not act: the statistics below are exact
    h = keras.layers.Dense(4, name="d2")(h)
    out = keras.layers.BatchNormalization(name="bn2")(h)
    model = keras.Model(inp, out)
    model.get_layer("bn1").gamma.assign(np.linspace(0.5, 2.0, 5).astype("float32"))
    model.get_layer("bn1").beta.assign(np.linspace(-1.0, 1.0, 5).astype("float32"))
    x = np.random.default_rng(1).normal(2.0, 3.0, (40, 3)).astype("float32")
    w1, b1 = (_np(v).astype("float64") for v in model.get_layer("d1").weights)
    w2, b2 = (_np(v).astype("float64") for v in model.get_layer("d2").weights)
    gamma, beta = _np(model.get_layer("bn1").gamma), _np(model.get_layer("bn1").beta)
    h1_all, h2_all = [], []
    for i in range(0, 40, 10):  # in numpy: bn1 normalises each batch by its own moments
        h1 = x[i : i + 10] @ w1 + b1
        z = (h1 - h1.mean(0)) / np.sqrt(h1.var(0) + 1e-3) * gamma + beta
        h1_all.append(h1)
        h2_all.append(z @ w2 + b2)
    h1_all, h2_all = np.concatenate(h1_all), np.concatenate(h2_all)

    recalibrate_batchnorm(model, x, batch_size=10)

    m1, v1 = _moving(model.get_layer("bn1"))
    m2, v2 = _moving(model.get_layer("bn2"))
    np.testing.assert_allclose(m1, h1_all.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v1, h1_all.var(0), rtol=1e-4)
    np.testing.assert_allclose(m2, h2_all.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v2, h2_all.var(0), rtol=1e-4)


def test_nested_and_frozen_layers_are_recalibrated_and_nothing_else_changes():
    inner = _conv_bn(name="inner")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            inner,
            keras.layers.BatchNormalization(name="outer_bn", momentum=0.5),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    assert [la.name for la in batchnorm_layers(model)] == ["bn", "outer_bn"]
    inner.get_layer("bn").trainable = False  # frozen: inference mode in fit, recalibrated here
    model.get_layer("outer_bn").trainable = False
    before = [_np(v) for v in model.variables]
    x = _images(n=24)

    recalibrate_batchnorm(model, tf.data.Dataset.from_tensor_slices((x, np.zeros(24))).batch(8))

    changed = {
        "/".join(v.path.split("/")[-2:])
        for v, b in zip(model.variables, before)
        if not np.array_equal(b, _np(v))
    }
    assert changed == {
        "bn/moving_mean", "bn/moving_variance", "outer_bn/moving_mean", "outer_bn/moving_variance"
    }
    conv = keras.Model(inner.inputs[0], inner.get_layer("conv").output)
    feats = _np(conv(x)).astype("float64")
    mean, var = _moving(inner.get_layer("bn"))
    np.testing.assert_allclose(mean, feats.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, feats.var(axis=(0, 1, 2)), rtol=1e-4)
    # Flags, momentum and the layers' own `call` are restored.
    assert not inner.get_layer("bn").trainable and not model.get_layer("outer_bn").trainable
    assert model.get_layer("outer_bn").momentum == 0.5
    assert all("call" not in vars(la) for la in batchnorm_layers(model))
    # In inference mode the model now normalises with the data's statistics.
    out = _np(keras.Model(inner.inputs[0], inner.get_layer("bn").output)(x))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.var(axis=(0, 1, 2)), 1.0, rtol=1e-2)


def test_masked_timesteps_are_left_out():
    inp = keras.Input((6, 2))
    x = keras.layers.Masking(mask_value=0.0)(inp)
    out = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(2)
    x = rng.normal(4.0, 2.0, (12, 6, 2)).astype("float32")
    x[:, 4:] = 0.0  # padded timesteps, masked
    recalibrate_batchnorm(model, x, batch_size=12)
    mean, var = _moving(model.get_layer("bn"))
    kept = x[:, :4].reshape(-1, 2).astype("float64")
    np.testing.assert_allclose(mean, kept.mean(0), rtol=1e-5)
    np.testing.assert_allclose(var, kept.var(0), rtol=1e-4)


def test_steps_limits_the_batches():
    model = _conv_bn()
    x = _images(n=40)
    report = recalibrate_batchnorm(model, tf.data.Dataset.from_tensor_slices(x).batch(10).repeat(),
                                   steps=2)
    conv = keras.Model(model.inputs[0], model.get_layer("conv").output)
    feats = _np(conv(x[:20])).astype("float64")
    np.testing.assert_allclose(_np(model.get_layer("bn").moving_mean),
                               feats.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    assert (report.batches, report.examples) == (2, 20)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 0}, ValueError, r"`steps` must be a positive int or None. Received: steps=0"),
        ({"batch_size": 0}, ValueError, r"`batch_size` must be a positive int. Received: batch_size=0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        recalibrate_batchnorm(_conv_bn(), _images(n=4), **kwargs)


def test_bad_model_data_and_infinite_data():
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model. Received: model of type int"):
        recalibrate_batchnorm(3, _images(n=4))
    with pytest.raises(TypeError, match=r"`data` must be a tf.data.Dataset, an iterable"):
        recalibrate_batchnorm(_conv_bn(), 3.0)
    with pytest.raises(ValueError, match=r"`data` holds no batch"):
        recalibrate_batchnorm(_conv_bn(), [])
    infinite = tf.data.Dataset.from_tensor_slices(_images(n=4)).batch(2).repeat()
    with pytest.raises(ValueError, match=r"infinite dataset .* pass `steps`. Received: steps=None"):
        recalibrate_batchnorm(_conv_bn(), infinite)
    # A failure inside the pass leaves no patched `call` behind.
    model = _conv_bn()
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises for a bad shape
        recalibrate_batchnorm(model, np.zeros((2, 5, 5, 7), "float32"))
    assert "call" not in vars(model.get_layer("bn"))
