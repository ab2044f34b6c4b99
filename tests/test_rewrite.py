"""add_se_blocks on small hand-built models: the API contract of keras_se/rewrite.py."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_se
from keras_se import SqueezeExcite, add_se_blocks, find_se_sites

pytestmark = pytest.mark.core


def conv_block(x, filters, name, stride=1):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def small_cnn(name="cnn", input_name="image"):
    inputs = keras.Input((16, 16, 3), name=input_name)
    x = conv_block(inputs, 16, "b1")
    x = conv_block(x, 32, "b2", stride=2)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def small_resnet():
    inputs = keras.Input((16, 16, 8), name="image")
    x = conv_block(inputs, 32, "stem")
    shortcut = x
    y = conv_block(x, 32, "r1")
    y = layers.Conv2D(32, 3, padding="same", name="r2_conv")(y)
    y = layers.BatchNormalization(name="r2_bn")(y)
    x = layers.Add(name="add")([shortcut, y])
    x = layers.ReLU(name="out")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x), name="tiny_resnet")


def se_layers(model):
    return [l for l in model._flatten_layers() if isinstance(l, SqueezeExcite)]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def assert_close(actual, desired, **kwargs):
    """`np.testing.assert_allclose` on backend tensors (any Keras backend)."""
    np.testing.assert_allclose(_np(actual), _np(desired), **kwargs)


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ---------------------------------------------------------------------- basics
def test_new_model_identity_and_weights_copied():
    model = small_cnn()
    x = rand((4, 16, 16, 3))
    before = [w.copy() for w in model.get_weights()]
    new, report = add_se_blocks(model, return_report=True)
    assert [s.anchor for s in report.sites] == ["b1_relu", "b2_relu"]
    assert [l.name for l in se_layers(new)] == ["b1_relu_se", "b2_relu_se"]
    assert_close(new(x), model(x), atol=1e-5)
    # Every original weight copied exactly, the original untouched.
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # 2*C*u + u + C with u = C // 16
    assert report.params_added == (2 * 16 * 1 + 1 + 16) + (2 * 32 * 2 + 2 + 32)
    assert new.count_params() == model.count_params() + report.params_added


def test_clones_start_from_zeros_where_safe_and_adapted_state_is_kept(monkeypatch):
    # Convolutions, dense and normalization layers are rebuilt with zeros (their
    # values are copied over), other layers with their initializers. An adapted
    # Normalization derives its mean and variance from its weights: without
    # `finalize_state` after the copy (as with clone_model + set_weights) the new
    # model normalised with mean 0 and variance 1 on TensorFlow and JAX.
    inputs = keras.Input((8, 8, 3), name="image")
    norm = layers.Normalization(name="norm")
    norm.adapt(rand((16, 8, 8, 3), seed=1) * 5 + 2)
    x = conv_block(norm(inputs), 8, "b1")
    outputs = layers.Dense(2, name="logits")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    calls = []
    original_add_weight = keras.layers.Layer.add_weight

    def spy(self, *args, **kwargs):
        calls.append((self.name, kwargs.get("initializer", args[1] if len(args) > 1 else None)))
        return original_add_weight(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "add_weight", spy)
    new = add_se_blocks(model)
    monkeypatch.undo()
    made = {}
    for name, initializer in calls:
        made.setdefault(name, set()).add(initializer if isinstance(initializer, str) else "drawn")
    assert made["b1_conv"] == made["b1_bn"] == made["logits"] == {"zeros"}
    assert made["norm"] == {"zeros", "ones"}  # its own: mean zeros, variance ones
    x = rand((4, 8, 8, 3), seed=2) * 5 + 2
    assert_close(new(x), model(x), atol=1e-5)
    assert not any("add_weight" in vars(layer) for layer in new.layers)


def test_no_shared_variables_and_training_does_not_touch_original():
    model = small_cnn()
    new = add_se_blocks(model)
    assert not {id(v) for v in model.weights} & {id(v) for v in new.weights}
    before = [w.copy() for w in model.get_weights()]
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    new.fit(rand((8, 16, 16, 3)), rand((8, 4)), epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    moved = [l for l in se_layers(new) if np.abs(_np(l.expand_kernel)).max() > 0]
    assert len(moved) == 2


def test_names_flags_and_dtype_policies_preserved():
    model = small_cnn(input_name="pixels")
    model.get_layer("b1_conv").trainable = False
    model.get_layer("logits").dtype_policy = keras.DTypePolicy("float64")
    new = add_se_blocks(model)
    assert [l.name for l in new.layers if not isinstance(l, SqueezeExcite)] == [
        l.name for l in model.layers
    ]
    assert [t.name for t in new.inputs] == ["pixels"]
    assert new.output_names == model.output_names
    assert new.get_layer("b1_conv").trainable is False
    assert new.get_layer("b2_conv").trainable is True
    assert new.get_layer("logits").dtype_policy.name == "float64"


def test_mixed_precision_model_keeps_policies():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = small_cnn()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    new = add_se_blocks(model)
    se = new.get_layer("b1_relu_se")
    assert se.dtype_policy.name == "mixed_float16"
    assert se.variable_dtype == "float32"
    x = rand((2, 16, 16, 3))
    assert_close(new(x), model(x), atol=1e-2)


def test_output_names_kept_when_se_ends_an_output():
    inputs = keras.Input((8, 8, 3), name="img")
    x = layers.Conv2D(16, 3, name="c")(inputs)
    out = layers.ReLU(name="features")(x)
    model = keras.Model(inputs, out)
    new = add_se_blocks(model)
    assert new.layers[-1].name == "features_se"
    assert new.output_names == ["features"]


def test_auto_named_input_keeps_its_layer_name():
    model = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25)
    new = add_se_blocks(model, select="conv_pw_1_relu")
    # Auto-generated names count up per process ("input_layer", "input_layer_3").
    assert model.layers[0].name.startswith("input_layer")
    assert new.layers[0].name == model.layers[0].name


def test_compiled_model_gives_compiled_result():
    model = small_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="mse", metrics=["mae"])
    new = add_se_blocks(model)
    assert new.compiled
    assert new.optimizer is not model.optimizer
    assert new.optimizer.get_config()["learning_rate"] == pytest.approx(3e-4)
    assert new.get_compile_config()["loss"] == model.get_compile_config()["loss"]
    history = new.fit(rand((4, 16, 16, 3)), rand((4, 4)), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "mae"}


def test_uncompiled_model_stays_uncompiled():
    assert not add_se_blocks(small_cnn()).compiled


# ----------------------------------------------------------------- options
def test_ratio_callable_and_se_options():
    model = small_cnn()
    seen = []

    def ratio(site):
        seen.append(site.channels)
        return 4 if site.channels == 16 else 8

    new, report = add_se_blocks(model, ratio=ratio, squeeze="avg_max", gate="hard_sigmoid",
                                return_report=True)
    assert seen == [16, 32]
    se1, se2 = se_layers(new)
    assert (se1.ratio, se2.ratio) == (4, 8)
    assert se1.squeeze == "avg_max" and se2.gate == "hard_sigmoid"
    assert se1.reduce_kernel.shape == (16, 4) and se2.reduce_kernel.shape == (32, 4)
    assert [s.params for s in report.sites] == [se1.count_params(), se2.count_params()]
    x = rand((2, 16, 16, 3))
    assert_close(new(x), model(x), atol=1e-5)


@pytest.mark.parametrize("options", [
    {}, {"divisor": 8}, {"divisor": 8, "round_limit": 0.0}, {"units": 5}, {"min_units": 6},
    {"use_bias": False}, {"divisor": 4, "min_units": 8, "use_bias": False},
])
def test_sites_and_rewrite_share_one_bottleneck_width(options):
    # `keras-se sites` (find_se_sites) and add_se_blocks count parameters from one
    # source: the report, the dry run and the built layers agree for every option.
    model = small_cnn()
    dry = find_se_sites(model, ratio=4, **options)
    new, report = add_se_blocks(model, ratio=4, return_report=True, **options)
    built = [new.get_layer(s.se_name).count_params() for s in report.sites]
    assert [s.params for s in dry] == [s.params for s in report.sites] == built
    assert report.params_added == new.count_params() - model.count_params()


def test_init_standard_changes_outputs():
    model = small_cnn()
    new = add_se_blocks(model, init="standard")
    x = rand((2, 16, 16, 3))
    assert np.abs(_np(new(x)) - _np(model(x))).max() > 1e-3
    assert all(l.init == "standard" for l in se_layers(new))


@pytest.mark.parametrize(
    "select, expected",
    [
        (r"^b2", ["b2_relu"]),
        (["b1_relu"], ["b1_relu"]),
        (lambda site: site.channels == 32, ["b2_relu"]),
        (None, ["b1_relu", "b2_relu"]),
    ],
)
def test_select(select, expected):
    model = small_cnn()
    sites = find_se_sites(model, select=select)
    assert [s.anchor for s in sites] == expected
    new = add_se_blocks(model, select=select)
    assert [l.name for l in se_layers(new)] == [f"{e}_se" for e in expected]


def test_site_record():
    (site, _) = find_se_sites(small_cnn())
    assert site.anchor == "b1_relu"
    assert site.path == ()
    assert site.placement == "post_activation"
    assert site.channels == 16
    assert site.spatial_shape == (16, 16)
    assert site.se_name == "b1_relu_se"
    assert site.params == 2 * 16 * 1 + 1 + 16
    assert site.to_dict()["spatial_shape"] == [16, 16]


def test_report_lists_sites_skips_and_percent():
    model = small_cnn()
    _, report = add_se_blocks(model, select="b1", return_report=True)
    assert report.placement == "post_activation"
    assert report.params_before == model.count_params()
    assert report.percent == pytest.approx(100 * 49 / model.count_params())
    assert [(k.name, k.reason) for k in report.skipped] == [("b2_relu", "not selected")]
    text = report.summary()
    assert "1 sites, +49 parameters" in text
    assert "b2_relu: not selected" in text
    d = report.to_dict()
    assert d["num_sites"] == 1 and d["params_added"] == 49


def test_verbose_prints_report(capsys):
    add_se_blocks(small_cnn(), verbose=True)
    assert "2 sites, +211 parameters" in capsys.readouterr().out


def test_one_by_one_maps_are_skipped():
    inputs = keras.Input((1, 1, 8))
    x = layers.Conv2D(16, 1, activation="relu", name="pointwise")(inputs)
    model = keras.Model(inputs, x)
    with pytest.raises(keras_se.NoSitesError, match="placement='post_activation'") as e:
        add_se_blocks(model)
    assert [k.reason for k in e.value.report.skipped] == [
        "spatial size is 1 (1x1 map): nothing to squeeze"
    ]


def test_fused_activation_and_norm_chain():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, activation="relu", name="fused")(inputs)
    x = layers.Conv2D(16, 3, name="plain")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.Activation("gelu", name="act")(x)
    x = layers.Activation("linear", name="lin")(x)
    x = layers.Dense(4, activation="relu", name="dense")(x)  # not a convolution
    model = keras.Model(inputs, x)
    assert [s.anchor for s in find_se_sites(model)] == ["fused", "act"]


# ------------------------------------------------------------------ errors
def test_subclassed_model_type_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 3, activation="relu")

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="Only Functional and Sequential.*SqueezeExcite"):
        add_se_blocks(net)


def test_not_a_model_type_error():
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        add_se_blocks(layers.Dense(3))


def test_no_site_error_names_placement_and_model():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3)], name="mlp")
    with pytest.raises(ValueError, match=r"model 'mlp' for placement='residual'.*find_se_sites"):
        add_se_blocks(model, "residual")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(placement="everywhere"), ValueError, "`placement` must be one of .*"
         "Received: placement='everywhere'"),
        (dict(ratio=0), ValueError, "`ratio` must be a positive integer.*Received: ratio=0"),
        (dict(init="zeros"), ValueError, "`init` must be one of.*Received: init='zeros'"),
        (dict(select=3), TypeError, "`select` must be None.*Received: select=3"),
        (dict(select="("), ValueError, "`select` is not a valid regular expression"),
        (dict(squeez="avg"), TypeError, "Unknown SE option.*squeez='avg'"),
        (dict(gate="softmax"), ValueError, "`gate` must be one of"),
        (dict(gate="relu"), ValueError, "init='identity'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        add_se_blocks(small_cnn(), **kwargs)


def test_unbuilt_sequential():
    model = keras.Sequential([layers.Conv2D(4, 3, activation="relu")])
    with pytest.raises(ValueError, match="must be built"):
        add_se_blocks(model)


# ------------------------------------------------------------- idempotence
@pytest.mark.parametrize("placement", ["post_activation", "residual", "residual_pre",
                                       "residual_post", "residual_identity"])
def test_second_run_adds_nothing(placement):
    model = small_resnet()
    new = add_se_blocks(model, placement)
    n = len(se_layers(new))
    assert n >= 1
    with pytest.raises(keras_se.NoSitesError, match=f"{n} candidate\\(s\\) already carry SE"):
        add_se_blocks(new, placement)


def test_existing_se_gate_is_not_doubled():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", name="c")(inputs)
    x = layers.ReLU(name="act")(x)
    g = layers.GlobalAveragePooling2D(keepdims=True)(x)
    g = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(g)
    g = layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(g)
    x = layers.Multiply(name="se_mul")([x, g])
    model = keras.Model(inputs, x)
    with pytest.raises(keras_se.NoSitesError) as e:
        add_se_blocks(model)
    reasons = {k.name: k.reason for k in e.value.report.skipped}
    assert reasons["act"] == "already feeds an SE block"
    assert "spatial size is 1" in reasons["se_reduce"]
    new = add_se_blocks(model, skip_existing=False)
    assert [l.name for l in se_layers(new)] == ["act_se"]


# -------------------------------------------------------------- placements
def test_residual_placements_on_a_small_resnet():
    model = small_resnet()
    x = rand((2, 16, 16, 8))
    expected = {
        "residual": ("r2_bn", "after", ()),
        "residual_pre": ("stem_relu", "before", (("r1_conv", 0),)),
        "residual_post": ("out", "after", ()),
        "residual_identity": ("add", "before", (("add", 0),)),
    }
    for placement, (anchor, position, targets) in expected.items():
        (site,) = find_se_sites(model, placement)
        assert (site.anchor, site.position, site.targets) == (anchor, position, targets)
        new = add_se_blocks(model, placement, init="standard")
        se = new.get_layer(site.se_name)
        # Check the wiring: the SE layer's input comes from the right tensor and
        # its output feeds the right layer.
        if placement == "residual":
            assert se._inbound_nodes[0].input_tensors[0]._keras_history[0].name == "r2_bn"
            add_inputs = new.get_layer("add")._inbound_nodes[0].input_tensors
            assert [t._keras_history[0].name for t in add_inputs] == ["stem_relu", "r2_bn_se"]
        if placement == "residual_pre":
            conv_in = new.get_layer("r1_conv")._inbound_nodes[0].input_tensors[0]
            assert conv_in._keras_history[0].name == "stem_relu_se"
        if placement == "residual_identity":
            add_inputs = new.get_layer("add")._inbound_nodes[0].input_tensors
            assert [t._keras_history[0].name for t in add_inputs] == ["add_se", "r2_bn"]
        assert_close(
            add_se_blocks(model, placement)(x), model(x), atol=1e-5
        )



def test_residual_merge_class_names_can_be_extended(monkeypatch):
    # keras_se.sites invites extending RESIDUAL_MERGE_CLASS_NAMES for your own merge
    # layers; the site finder (keras_se.site_finder) reads it there at each call.
    from keras_se import sites

    class Sum(layers.Add):
        pass

    inputs = keras.Input((16, 16, 8))
    x = conv_block(inputs, 32, "stem")
    y = conv_block(x, 32, "r1")
    y = layers.Conv2D(32, 3, padding="same", name="r2_conv")(y)
    model = keras.Model(inputs, Sum(name="sum")([x, y]))
    assert find_se_sites(model, "residual_identity") == []
    monkeypatch.setattr(sites, "RESIDUAL_MERGE_CLASS_NAMES",
                        sites.RESIDUAL_MERGE_CLASS_NAMES + ("Sum",))
    (site,) = find_se_sites(model, "residual_identity")
    assert (site.anchor, site.targets) == ("sum", (("sum", 0),))


def test_module_output_on_concatenate():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, activation="relu", name="a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(inputs)
    x = layers.Concatenate(name="mixed")([a, b])
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    (site,) = find_se_sites(model, "module_output")
    assert (site.anchor, site.channels, site.se_name) == ("mixed", 8, "mixed_se")


# ---------------------------------------------------------- model shapes
def test_sequential_model():
    model = keras.Sequential(
        [keras.Input((16, 16, 3), name="img"), layers.Conv2D(16, 3, name="c1"),
         layers.BatchNormalization(name="bn1"), layers.ReLU(name="r1"),
         layers.GlobalAveragePooling2D(), layers.Dense(2)], name="seq"
    )
    new = add_se_blocks(model)
    assert isinstance(new, keras.Sequential)
    assert [l.name for l in new.layers][:4] == ["c1", "bn1", "r1", "r1_se"]
    x = rand((2, 16, 16, 3))
    assert_close(new(x), model(x), atol=1e-5)


def test_backbone_nested_in_functional_and_sequential_with_new_head():
    backbone = small_cnn(name="backbone")
    backbone = keras.Model(backbone.input, backbone.get_layer("gap").output, name="backbone")
    inputs = keras.Input((16, 16, 3))
    outputs = layers.Dense(5, name="new_head")(backbone(inputs))
    functional = keras.Model(inputs, outputs, name="classifier")
    sequential = keras.Sequential([keras.Input((16, 16, 3)), backbone, layers.Dense(5)])
    x = rand((2, 16, 16, 3))
    for model in (functional, sequential):
        new, report = add_se_blocks(model, return_report=True)
        assert [s.path for s in report.sites] == [("backbone",), ("backbone",)]
        inner = new.get_layer("backbone")
        assert [l.name for l in se_layers(inner)] == ["b1_relu_se", "b2_relu_se"]
        assert_close(new(x), model(x), atol=1e-5)
        assert not {id(v) for v in backbone.weights} & {id(v) for v in new.weights}


def test_frozen_backbone_flag_preserved():
    backbone = small_cnn(name="backbone")
    backbone.trainable = False
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, layers.Dense(2)(backbone(inputs)))
    new = add_se_blocks(model)
    assert new.get_layer("backbone").trainable is False
    # Only the new head trains, as in the original.
    assert len(new.trainable_weights) == len(model.trainable_weights)


def test_deeply_nested_and_unique_names():
    def wrap(inner, name):
        i = keras.Input((16, 16, 3))
        return keras.Model(i, inner(i), name=name)

    level2 = wrap(wrap(small_cnn(name="cnn_a"), "level1"), "level2")
    other = small_cnn(name="cnn_b")
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, [level2(inputs), other(inputs)])
    new, report = add_se_blocks(model, return_report=True)
    assert sorted(s.path for s in report.sites) == [("cnn_b",)] * 2 + [
        ("level2", "level1", "cnn_a")] * 2
    assert len({s.full_name for s in report.sites}) == 4
    x = rand((2, 16, 16, 3))
    for a, b in zip(new(x), model(x)):
        assert_close(a, b, atol=1e-5)


def test_multi_input_multi_output_and_shared_layers():
    shared = layers.Conv2D(8, 3, padding="same", name="shared_conv")
    act = layers.ReLU(name="shared_relu")
    a = keras.Input((8, 8, 3), name="left")
    b = keras.Input((8, 8, 3), name="right")
    ya = act(shared(a))
    yb = act(shared(b))
    out1 = layers.GlobalAveragePooling2D(name="p1")(ya)
    out2 = layers.GlobalMaxPooling2D(name="p2")(yb)
    model = keras.Model([a, b], [out1, out2], name="two_towers")
    new = add_se_blocks(model)
    assert [t.name for t in new.inputs] == ["left", "right"]
    assert new.output_names == ["p1", "p2"]
    # Shared layers stay shared: one conv, one SE, each called twice.
    assert len(new.get_layer("shared_conv")._inbound_nodes) == 2
    assert len(se_layers(new)) == 1
    assert len(new.get_layer("shared_relu_se")._inbound_nodes) == 2
    xa, xb = rand((2, 8, 8, 3), 1), rand((2, 8, 8, 3), 2)
    for u, v in zip(new([xa, xb]), model([xa, xb])):
        assert_close(u, v, atol=1e-5)


def test_keras_round_trip(tmp_path):
    model = small_resnet()
    new = add_se_blocks(model, "residual", init="standard")
    path = tmp_path / "m.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    x = rand((2, 16, 16, 8))
    assert_close(loaded(x), new(x), atol=0)
    assert all(type(l).__name__ != "Lambda" for l in loaded._flatten_layers())
