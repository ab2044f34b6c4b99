"""Tests of keras_se.layers: the SqueezeExcite layer and make_divisible."""

import inspect
import json
import re

import keras
import numpy as np
import pytest
from _reference import se_reference
from keras import ops

from keras_se import SqueezeExcite, make_divisible

SQUEEZES = ("avg", "max", "avg_max")
GATES = ("sigmoid", "hard_sigmoid", "tanh", "relu")
IDENTITY_GATES = ("sigmoid", "hard_sigmoid", "tanh")
DATA_FORMATS = ("channels_last", "channels_first")

# Every test here runs on each Keras backend; TensorFlow's own graph paths are in
# test_layers_tensorflow.py.
pytestmark = pytest.mark.core


# ------------------------------------------------------------------ helpers
def _np(x):
    return ops.convert_to_numpy(x)


def _input(rank, data_format, channels=6, batch=2, seed=0):
    spatial = (5, 4, 3)[: rank - 2]
    shape = (batch, *spatial, channels)
    if data_format == "channels_first":
        shape = (batch, channels, *spatial)
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _fit(layer, x, steps=2, lr=0.1):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    target = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    model.fit(x, target, batch_size=len(x), epochs=steps, verbose=0, shuffle=False)
    return model


# -------------------------------------------------------- parameter count
def _n_params(channels, units, use_bias=True):
    return 2 * channels * units + (units + channels if use_bias else 0)


def test_default_parameter_count_is_the_papers():
    layer = SqueezeExcite()
    layer.build((None, 8, 8, 64))
    assert layer.count_params() == 580 == _n_params(64, 4)
    assert tuple(layer.reduce_kernel.shape) == (64, 4)
    assert tuple(layer.expand_kernel.shape) == (4, 64)
    assert len(layer.trainable_weights) == 4


@pytest.mark.parametrize(
    "channels, kwargs, width",
    [
        (64, {}, 4),
        (64, {"ratio": 4}, 16),
        (64, {"units": 10}, 10),
        (64, {"units": 10, "ratio": 2, "divisor": 8, "min_units": 32}, 10),  # units wins
        (8, {}, 1),  # 8 // 16 == 0 -> min_units=1
        (8, {"min_units": 4}, 4),
        (64, {"min_units": 8}, 8),
        (64, {"divisor": 8}, 8),  # 4 -> 8
        (32, {"divisor": 8}, 8),  # 2 -> 8 (was 9 before the timm floor fix)
        (96, {"ratio": 4, "divisor": 8}, 24),  # already a multiple
        (80, {"ratio": 4, "divisor": 8}, 24),  # 20 rounds half up to 24
        (76, {"ratio": 4, "divisor": 8}, 24),  # 19 -> 16 is >10% down -> 24
        (64, {"divisor": 8, "min_units": 16}, 16),
    ],
)
@pytest.mark.parametrize("use_bias", [True, False])
def test_parameter_count(channels, kwargs, width, use_bias):
    layer = SqueezeExcite(use_bias=use_bias, **kwargs)
    layer.build((None, 4, 4, channels))
    assert layer.bottleneck_units(channels) == width
    assert tuple(layer.reduce_kernel.shape) == (channels, width)
    assert tuple(layer.expand_kernel.shape) == (width, channels)
    assert layer.count_params() == _n_params(channels, width, use_bias)
    assert len(layer.weights) == (4 if use_bias else 2)


@pytest.mark.parametrize("round_limit", [0.9, 0.0])
@pytest.mark.parametrize("divisor", [2, 4, 8, 16, 32])
def test_make_divisible_is_timms_rule(divisor, round_limit):
    timm_layers = pytest.importorskip("timm.layers")
    values = [v / 4 for v in range(0, 1200)]  # fractions too, as timm's SE passes C / r
    got = [make_divisible(v, divisor, round_limit=round_limit) for v in values]
    want = [timm_layers.make_divisible(v, divisor, round_limit=round_limit) for v in values]
    assert got == want
    assert all(w % divisor == 0 for w in got)
    assert got == sorted(got)  # monotone


def test_bottleneck_width_is_timms_se_width():
    # timm's SE block (timm.layers.SEModule) takes rd_ratio = 1/r and rd_divisor=8 and
    # rounds with round_limit=0: `divisor=8, round_limit=0.0` gives its widths exactly.
    timm_layers = pytest.importorskip("timm.layers")
    from keras_se.widths import bottleneck_width

    checked = 0
    for channels in (16, 24, 40, 64, 76, 96, 100, 112, 160, 256, 320, 480, 512, 1000, 2048):
        for ratio in (4, 8, 16, 32):
            se = timm_layers.SEModule(channels, rd_ratio=1 / ratio, rd_divisor=8)
            assert bottleneck_width(channels, ratio, divisor=8, round_limit=0.0) == (
                se.fc1.out_channels
            ), (channels, ratio)
            checked += 1
    assert checked == 60
    # The example of the issue: C=76, r=4, divisor 8 is 16 in timm, 24 with our default.
    assert bottleneck_width(76, 4, divisor=8, round_limit=0.0) == 16
    assert bottleneck_width(76, 4, divisor=8) == 24
    layer = SqueezeExcite(ratio=4, divisor=8, round_limit=0.0)
    layer.build((None, 4, 4, 76))
    assert tuple(layer.reduce_kernel.shape) == (76, 16)
    assert SqueezeExcite.from_config(layer.get_config()).round_limit == 0.0


def test_round_limit_is_checked():
    with pytest.raises(ValueError, match=r"`round_limit` must be a number in \[0, 1\)\. "
                       r"Received: round_limit=1\.5"):
        SqueezeExcite(round_limit=1.5)


def test_make_divisible_bounds():
    assert [make_divisible(v) for v in range(0, 5)] == [1, 1, 2, 3, 4]
    assert make_divisible(3, 1, min_value=5) == 5
    assert make_divisible(10, 8, min_value=32) == 32
    assert make_divisible(19, 8) == 24


# ------------------------------------------------- shapes and numerics
@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("gate", GATES)
def test_matches_numpy_reference(rank, data_format, squeeze, gate):
    x = _input(rank, data_format)
    layer = SqueezeExcite(
        units=3,
        squeeze=squeeze,
        gate=gate,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    y = _np(layer(x))
    assert y.shape == x.shape
    assert y.dtype == np.float32
    want, gate_values = se_reference(x, layer)
    np.testing.assert_allclose(y, want, atol=1e-5, rtol=0)
    # the numbers are not trivial: the gate is neither all 0 nor all 1
    assert np.ptp(gate_values) > 1e-3


@pytest.mark.parametrize(
    "activation",
    ["relu", "sigmoid", "tanh", "silu", "swish", "hard_silu", "hard_swish", "gelu", "linear",
     None, keras.activations.gelu, keras.activations.hard_silu],
)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_every_bottleneck_activation_matches_numpy(activation, data_format):
    # PyTorch runs the block in torch's own ops (keras_se/_torch_block.py), each named
    # activation mapped to torch's; the others go through Keras.
    x = _input(4, data_format)
    layer = SqueezeExcite(
        units=3, activation=activation, data_format=data_format,
        bias_initializer="random_normal",
    )
    y = _np(layer(x))
    want, gate_values = se_reference(x, layer)
    np.testing.assert_allclose(y, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(_np(layer.excitation(x)), gate_values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_symbolic_output_shape(rank, data_format):
    x = _input(rank, data_format)
    inputs = keras.Input(x.shape[1:])
    layer = SqueezeExcite(ratio=2, data_format=data_format)
    assert tuple(layer(inputs).shape) == (None,) + x.shape[1:]
    assert layer.compute_output_shape((None,) + x.shape[1:]) == (None,) + x.shape[1:]


def test_use_bias_false_matches_reference():
    x = _input(4, "channels_last")
    layer = SqueezeExcite(units=3, use_bias=False)
    np.testing.assert_allclose(_np(layer(x)), se_reference(x, layer)[0], atol=1e-5, rtol=0)
    assert layer.reduce_bias is None and layer.expand_bias is None


def test_data_format_defaults_to_image_data_format():
    old = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        assert SqueezeExcite().data_format == "channels_first"
    finally:
        keras.config.set_image_data_format(old)
    assert SqueezeExcite().data_format == old


# -------------------------------------------------------------- identity
@pytest.mark.parametrize("gate", IDENTITY_GATES)
@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_identity_init_is_identity(gate, squeeze, data_format):
    x = 10.0 * _input(4, data_format, channels=8)
    layer = SqueezeExcite(
        ratio=2, gate=gate, squeeze=squeeze, init="identity", data_format=data_format
    )
    y = _np(layer(x))
    assert np.max(np.abs(y - x)) <= 1e-6
    np.testing.assert_array_equal(_np(layer.excitation(x)), np.ones((2, 8), "float32"))
    # the reduction stays random, so the bottleneck is live
    assert np.abs(_np(layer.reduce_kernel)).max() > 0
    assert np.abs(_np(layer.expand_kernel)).max() == 0


@pytest.mark.parametrize("gate", IDENTITY_GATES)
def test_identity_init_trains_away_from_identity(gate):
    x = np.abs(_input(4, "channels_last", channels=8, batch=4))
    layer = SqueezeExcite(ratio=2, gate=gate, init="identity")
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    before = [_np(w).copy() for w in layer.trainable_weights]
    assert np.max(np.abs(_np(model(x)) - x)) <= 1e-6
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    target = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    model.fit(x, target, batch_size=4, epochs=3, verbose=0, shuffle=False)
    after = [_np(w) for w in layer.trainable_weights]
    for w, b, a in zip(layer.trainable_weights, before, after):
        assert np.abs(a - b).max() > 1e-6, w.path
    assert np.abs(after[1]).max() > 0  # the expansion kernel left zero
    assert np.max(np.abs(_np(model(x)) - x)) > 1e-4


def test_identity_init_with_relu_gate_raises():
    with pytest.raises(
        ValueError, match=r"`init='identity'`.*Received: gate='relu', init='identity'"
    ):
        SqueezeExcite(gate="relu", init="identity")


# -------------------------------------------------------------- training
@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("gate", GATES)
def test_training_step_changes_every_weight(squeeze, gate):
    x = _input(4, "channels_last", channels=8, batch=4)
    layer = SqueezeExcite(
        units=4, squeeze=squeeze, gate=gate, bias_initializer=keras.initializers.Constant(0.1)
    )
    layer.build(x.shape)
    before = [_np(w).copy() for w in layer.trainable_weights]
    assert len(before) == 4
    _fit(layer, x, steps=2)
    for w, b in zip(layer.trainable_weights, before):
        assert np.abs(_np(w) - b).max() > 1e-7, w.path


# --------------------------------------------------------------- config
CONFIG_GRID = [
    {},
    {"ratio": 4},
    {"units": 3},
    {"min_units": 2},
    {"divisor": 8},
    {"ratio": 2, "units": None, "min_units": 3, "divisor": 4},
    {"squeeze": "max"},
    {"squeeze": "avg_max"},
    {"activation": "gelu"},
    {"activation": keras.activations.gelu},
    {"activation": "swish"},
    {"activation": keras.activations.hard_silu},
    {"gate": "hard_sigmoid"},
    {"gate": "tanh"},
    {"gate": "relu"},
    {"init": "identity"},
    {"init": "identity", "gate": "tanh", "squeeze": "avg_max"},
    {"use_bias": False},
    {"data_format": "channels_first"},
    {"data_format": "channels_last"},
    {"kernel_initializer": "he_normal"},
    {"kernel_initializer": keras.initializers.HeNormal(seed=3)},
    {"bias_initializer": "ones"},
    {"bias_initializer": keras.initializers.Constant(0.25)},
    {"kernel_regularizer": "l2"},
    {"kernel_regularizer": keras.regularizers.L1L2(l1=0.01, l2=0.02)},
    {"bias_regularizer": keras.regularizers.L1(0.03)},
    {"name": "my_se", "trainable": False},
    {"dtype": "mixed_float16"},
]
BASE_KEYS = {"name", "trainable", "dtype"}


def _id(kwargs):
    def show(v):
        if isinstance(v, (str, int, float, type(None))):
            return v
        return getattr(v, "__name__", type(v).__name__)

    return "-".join(f"{k}={show(v)}" for k, v in kwargs.items()) or "defaults"


@pytest.mark.parametrize("kwargs", CONFIG_GRID, ids=[_id(k) for k in CONFIG_GRID])
def test_config_round_trip(kwargs):
    layer = SqueezeExcite(**kwargs)
    config = layer.get_config()
    init_args = set(inspect.signature(SqueezeExcite.__init__).parameters) - {"self", "kwargs"}
    assert set(config) == init_args | BASE_KEYS  # exactly the arguments, nothing derived
    json.dumps(config)  # plain data
    for key, value in kwargs.items():
        if key.endswith("_initializer"):
            want = keras.initializers.serialize(keras.initializers.get(value))
            assert config[key] == want, key
        elif key.endswith("_regularizer"):
            want = keras.regularizers.serialize(keras.regularizers.get(value))
            assert config[key] == want, key
        elif isinstance(value, (str, int, bool, type(None))) and key != "dtype":
            assert config[key] == value, key
    if "activation" in kwargs and callable(kwargs["activation"]):
        assert config["activation"] == kwargs["activation"].__name__
    clone = SqueezeExcite.from_config(config)
    assert clone.get_config() == config
    # a second trip through deserialize is stable as well
    again = keras.layers.deserialize(keras.layers.serialize(clone))
    assert isinstance(again, SqueezeExcite)
    assert again.get_config() == config


def test_config_round_trip_keeps_the_computation():
    x = _input(4, "channels_last")
    layer = SqueezeExcite(
        units=3,
        activation=keras.activations.gelu,
        squeeze="avg_max",
        bias_initializer="random_normal",
    )
    y = _np(layer(x))
    clone = SqueezeExcite.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(clone(x)), y)


SAVE_GRID = [
    {},
    {"squeeze": "avg_max", "gate": "hard_sigmoid", "activation": keras.activations.gelu},
    {
        "init": "identity",
        "gate": "tanh",
        "kernel_regularizer": "l2",
        "bias_regularizer": keras.regularizers.L1(0.01),
    },
    {
        "data_format": "channels_first",
        "divisor": 2,
        "use_bias": False,
        "kernel_initializer": keras.initializers.HeNormal(seed=1),
    },
]


@pytest.mark.parametrize("kwargs", SAVE_GRID, ids=[_id(k) for k in SAVE_GRID])
def test_save_and_load_safe_mode(kwargs, tmp_path):
    x = np.abs(_input(4, "channels_last", channels=8))
    inputs = keras.Input(x.shape[1:])
    hidden = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    outputs = SqueezeExcite(ratio=2, name="se", **kwargs)(hidden)
    model = keras.Model(inputs, outputs)
    # move off the identity so the check cannot pass on an all-ones gate
    se = model.get_layer("se")
    se.set_weights([w + 0.1 for w in se.get_weights()])
    want = _np(model(x))
    path = tmp_path / "se.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode, no custom_objects
    np.testing.assert_allclose(_np(loaded(x)), want, atol=0, rtol=0)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded.layers)
    assert isinstance(loaded.get_layer("se"), SqueezeExcite)
    assert loaded.get_layer("se").get_config() == se.get_config()
    for a, b in zip(loaded.get_layer("se").get_weights(), se.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------ mixed precision
MIXED = [("mixed_float16", "float16", 2e-3), ("mixed_bfloat16", "bfloat16", 2e-2)]


@pytest.mark.parametrize("policy, dtype, rtol", MIXED)
@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_mixed_precision(policy, dtype, rtol, squeeze):
    keras.config.set_dtype_policy(policy)
    x32 = np.abs(_input(4, "channels_last", channels=8)) + 0.5
    x = ops.cast(x32, dtype)
    layer = SqueezeExcite(ratio=2, squeeze=squeeze, bias_initializer="random_normal")
    y = layer(x)
    assert layer.compute_dtype == dtype
    assert all(w.dtype == "float32" for w in layer.weights)
    assert len(layer.weights) == 4
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    assert keras.backend.standardize_dtype(layer.excitation(x).dtype) == "float32"
    # reference on the same (rounded) input, in float64
    x_rounded = _np(ops.cast(x, "float32"))
    want, want_gate = se_reference(x_rounded, layer)
    got = _np(ops.cast(y, "float32"))
    # the squeeze, MLP and gate run in float32: no rounding of the descriptor to `dtype`
    np.testing.assert_allclose(_np(layer.excitation(x)), want_gate, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-3)
    # the float32 path of the same layer (float32 inputs are not cast down)
    y32 = layer(x_rounded)
    assert keras.backend.standardize_dtype(y32.dtype) == "float32"
    np.testing.assert_allclose(got, _np(y32), rtol=rtol, atol=1e-3)


@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_float16_squeeze_does_not_overflow(squeeze):
    keras.config.set_dtype_policy("mixed_float16")
    x = np.full((2, 8, 8, 8), 60000.0, "float16")  # the spatial sum is 3.84e6 > 65504
    layer = SqueezeExcite(
        ratio=2,
        squeeze=squeeze,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-5),
        bias_initializer="random_normal",
    )
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    y = _np(ops.cast(y, "float32"))
    assert np.isfinite(y).all()
    gate = _np(layer.excitation(x))
    assert np.isfinite(gate).all()
    want, want_gate = se_reference(x.astype("float32"), layer)
    np.testing.assert_allclose(gate, want_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, want, rtol=2e-3)
    assert y.max() > 1000  # not flushed to zero


def test_mixed_policy_as_layer_dtype():
    layer = SqueezeExcite(ratio=2, dtype="mixed_bfloat16")
    x = ops.cast(np.abs(_input(4, "channels_last", channels=8)), "bfloat16")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert all(w.dtype == "float32" for w in layer.weights)


# ------------------------------------------------------------ excitation
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [3, 4, 5])
def test_excitation_is_the_output_input_ratio(data_format, rank):
    x = _input(rank, data_format, channels=6, batch=3)
    x[..., 0] = 0.0  # some zeros, where the ratio is undefined
    layer = SqueezeExcite(units=3, data_format=data_format, bias_initializer="random_normal")
    gate = layer.excitation(x)
    assert tuple(gate.shape) == (3, 6)
    assert keras.backend.standardize_dtype(gate.dtype) == "float32"
    gate = _np(gate)
    y = _np(layer(x))
    if data_format == "channels_last":
        broadcast = gate.reshape((3,) + (1,) * (rank - 2) + (6,))
    else:
        broadcast = gate.reshape((3, 6) + (1,) * (rank - 2))
    nonzero = x != 0
    assert nonzero.mean() > 0.5
    ratio = y[nonzero] / x[nonzero]
    np.testing.assert_allclose(
        ratio, np.broadcast_to(broadcast, x.shape)[nonzero], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(gate, se_reference(x, layer)[1], atol=1e-5, rtol=0)


def test_excitation_builds_the_layer():
    x = _input(4, "channels_last", channels=16)
    layer = SqueezeExcite(ratio=4)
    gate = _np(layer.excitation(x))
    assert layer.built and layer.count_params() == _n_params(16, 4)
    assert gate.shape == (2, 16)
    assert ((gate > 0) & (gate < 1)).all()


# --------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"ratio": 0}, "ratio=0"),
        ({"ratio": 1.5}, "ratio=1.5"),
        ({"ratio": True}, "ratio=True"),
        ({"ratio": -2}, "ratio=-2"),
        ({"units": 0}, "units=0"),
        ({"units": -3}, "units=-3"),
        ({"units": 2.0}, "units=2.0"),
        ({"min_units": 0}, "min_units=0"),
        ({"divisor": 0}, "divisor=0"),
        ({"squeeze": "mean"}, "squeeze='mean'"),
        ({"gate": "softmax"}, "gate='softmax'"),
        ({"init": "zeros"}, "init='zeros'"),
        ({"data_format": "NHWC"}, "data_format='NHWC'"),
        ({"activation": "nope"}, "activation='nope'"),
    ],
)
def test_bad_arguments_raise(kwargs, received):
    (name,) = kwargs
    pattern = rf"`{name}`.*Received: {re.escape(received)}$"
    with pytest.raises(ValueError, match=pattern):
        SqueezeExcite(**kwargs)


@pytest.mark.parametrize(
    "kwargs, allowed",
    [
        ({"squeeze": "mean"}, "'avg', 'max', 'avg_max'"),
        ({"gate": "softmax"}, "'sigmoid', 'hard_sigmoid', 'tanh', 'relu'"),
        ({"init": "zeros"}, "'standard', 'identity'"),
        ({"data_format": "NHWC"}, "'channels_last', 'channels_first'"),
    ],
)
def test_enum_errors_list_the_allowed_values(kwargs, allowed):
    with pytest.raises(ValueError, match=re.escape(allowed)):
        SqueezeExcite(**kwargs)


def test_rank_2_input_raises():
    with pytest.raises(ValueError, match=r"rank 3, 4 or 5.*Received: input_shape=\(2, 8\)"):
        SqueezeExcite()(np.zeros((2, 8), "float32"))
    with pytest.raises(ValueError, match=r"Received: input_shape=\(None, 8\)"):
        SqueezeExcite()(keras.Input((8,)))


@pytest.mark.parametrize(
    "shape, data_format, received",
    [
        ((8, 8, None), "channels_last", "(None, 8, 8, None)"),
        ((None, 8, 8), "channels_first", "(None, None, 8, 8)"),
    ],
)
def test_unknown_channels_raise(shape, data_format, received):
    with pytest.raises(
        ValueError, match=rf"channel dimension.*Received: input_shape={re.escape(received)}"
    ):
        SqueezeExcite(data_format=data_format)(keras.Input(shape))


def test_wrong_channel_count_after_build_raises():
    layer = SqueezeExcite(ratio=2)
    layer(np.zeros((1, 4, 4, 8), "float32"))
    with pytest.raises(
        ValueError,
        match=r"expected axis 3 of input shape to have value 8.*received input with shape \(1, 4, 4, 6\)",
    ):
        layer(np.zeros((1, 4, 4, 6), "float32"))
