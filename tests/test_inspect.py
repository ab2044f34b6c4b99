"""keras_se.inspect: the SE gates of a model, their per-class profile, and the plots.

Core: every test here runs on each Keras backend, with NumPy batches (the command
line's `keras-se inspect`, which reads tf.data, is tested in test_cli_inspect.py).
"""

import os

import keras
import numpy as np
import pytest
from keras import layers

from keras_se import SqueezeExcite, add_se_blocks
from keras_se.inspect import (
    Excitation,
    ExcitationProfile,
    excitation_model,
    excitation_profile,
    plot_class_specificity,
    plot_excitation,
)
from keras_se.sites import se_layers

pytestmark = pytest.mark.core


def conv_relu(x, filters, name, stride=1):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def small_cnn(num_classes=3, name="cnn"):
    inputs = keras.Input((16, 16, 3), name="image")
    x = conv_relu(inputs, 8, "b1")
    x = conv_relu(x, 16, "b2", stride=2)
    x = conv_relu(x, 32, "b3", stride=2)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name=name)


def nested_cnn():
    """A top-level conv, then a nested Functional backbone, then a nested Sequential."""
    inner_in = keras.Input((16, 16, 8), name="inner_in")
    y = conv_relu(inner_in, 16, "inner", stride=2)
    backbone = keras.Model(inner_in, y, name="backbone")
    tail = keras.Sequential(
        [keras.Input((8, 8, 16)), layers.Conv2D(24, 3, padding="same", name="tail_conv"),
         layers.ReLU(name="tail_relu")],
        name="tail",
    )
    inputs = keras.Input((16, 16, 3), name="image")
    x = conv_relu(inputs, 8, "stem")
    x = tail(backbone(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x), name="nested")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def assert_close(actual, desired, **kwargs):
    """`np.testing.assert_allclose` on backend tensors (any Keras backend)."""
    np.testing.assert_allclose(_np(actual), _np(desired), **kwargs)


def rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


def dataset(images, labels=None, batch=8):
    """NumPy batches: `(images, labels)` tuples, or images only without labels."""
    starts = range(0, len(images), batch)
    if labels is None:
        return [images[i : i + batch] for i in starts]
    return [(images[i : i + batch], labels[i : i + batch]) for i in starts]


def randomise_se(model, seed=0):
    """Non-zero expansion weights, so that the gates vary with the input."""
    rng = np.random.default_rng(seed)
    for layer in se_layers(model, deep=True):
        layer.set_weights(
            [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        )


# ------------------------------------------------------------------ excitation_model
def test_excitation_model_matches_layer_excitation_by_hand():
    model = add_se_blocks(small_cnn(), init="standard", ratio=4)
    randomise_se(model)
    x = rand((6, 16, 16, 3))
    gates = excitation_model(model)(x, training=False)
    assert list(gates) == ["b1_relu_se", "b2_relu_se", "b3_relu_se"]
    for name, channels in [("b1_relu_se", 8), ("b2_relu_se", 16), ("b3_relu_se", 32)]:
        se = model.get_layer(name)
        se_input = keras.Model(model.input, se.input)(x)
        expected = se.excitation(se_input)
        assert tuple(gates[name].shape) == (6, channels)
        assert_close(gates[name], expected, rtol=1e-6, atol=1e-6)
        # Sigmoid gates in (0, 1) that vary with the image.
        assert 0.0 < _np(gates[name]).min() and _np(gates[name]).max() < 1.0
        assert float(_np(gates[name]).std(axis=0).max()) > 1e-4


def test_excitation_model_reaches_nested_models():
    model = add_se_blocks(nested_cnn(), init="standard", ratio=4)
    randomise_se(model)
    x = rand((5, 16, 16, 3), seed=1)
    emodel = excitation_model(model)
    gates = emodel.predict(x, verbose=0)
    # The model's outputs are in graph order; `predict` on PyTorch returns the dict
    # with its keys sorted (Keras's torch trainer), so only the names are compared.
    assert list(emodel.output) == ["stem_relu_se", "inner_relu_se", "tail_relu_se"]
    assert sorted(gates) == sorted(emodel.output)

    stem_se = model.get_layer("stem_relu_se")
    stem_in = keras.Model(model.input, model.get_layer("stem_relu").output)(x)
    assert_close(gates["stem_relu_se"], stem_se.excitation(stem_in), atol=1e-6)

    backbone, tail = model.get_layer("backbone"), model.get_layer("tail")
    backbone_in = keras.Model(model.input, stem_se.output)(x)
    inner_se = backbone.get_layer("inner_relu_se")
    inner_in = keras.Model(backbone.input, backbone.get_layer("inner_relu").output)(backbone_in)
    assert_close(gates["inner_relu_se"], inner_se.excitation(inner_in), atol=1e-6)

    tail_in = backbone(backbone_in)
    tail_se = tail.get_layer("tail_relu_se")
    tail_relu = tail.get_layer("tail_relu")(tail.get_layer("tail_conv")(tail_in))
    assert_close(gates["tail_relu_se"], tail_se.excitation(tail_relu), atol=1e-6)
    assert float(np.ptp(gates["tail_relu_se"])) > 1e-3  # a real, input-dependent gate


def test_excitation_model_shares_weights_with_the_model():
    model = add_se_blocks(small_cnn(), ratio=4)  # identity init
    emodel = excitation_model(model)
    x = rand((2, 16, 16, 3))
    assert_close(emodel(x)["b2_relu_se"], np.ones((2, 16), "float32"), rtol=0, atol=0)
    randomise_se(model)  # train the model (here: set its weights); the probes follow
    se = model.get_layer("b2_relu_se")
    expected = se.excitation(keras.Model(model.input, se.input)(x))
    assert_close(emodel(x)["b2_relu_se"], expected, atol=1e-6)
    assert emodel.count_params() < model.count_params()  # no head, no new weights


def test_keys_for_duplicate_names_and_shared_layers():
    def branch(name):
        return keras.Sequential(
            [keras.Input((8, 8, 4)), layers.Conv2D(4, 1, name="conv"),
             SqueezeExcite(ratio=2, name="se")], name=name)

    inputs = keras.Input((8, 8, 4))
    shared = SqueezeExcite(ratio=2, name="shared_se")
    a = shared(branch("left")(inputs))
    b = shared(branch("right")(inputs))
    model = keras.Model(inputs, layers.Add()([a, b]))
    gates = excitation_model(model)(rand((3, 8, 8, 4)))
    # Two SE layers named "se" in two nested models: qualified by the model name.
    # One SE layer called twice: "shared_se", then "shared_se#1".
    assert sorted(gates) == ["left/se", "right/se", "shared_se", "shared_se#1"]
    x = rand((3, 8, 8, 4))
    gates = excitation_model(model)(x)
    left_in = model.get_layer("left").get_layer("conv")(x)
    right_in = model.get_layer("right").get_layer("conv")(x)
    left_se = model.get_layer("left").get_layer("se")
    assert_close(gates["left/se"], left_se.excitation(left_in), atol=1e-6)
    assert_close(gates["shared_se"], shared.excitation(left_se(left_in)), atol=1e-6)
    right_se = model.get_layer("right").get_layer("se")
    assert_close(gates["shared_se#1"], shared.excitation(right_se(right_in)), atol=1e-6)


def test_excitation_model_under_mixed_precision_is_float32():
    keras.config.set_dtype_policy("mixed_float16")
    model = add_se_blocks(small_cnn(), init="standard", ratio=4)
    gates = excitation_model(model)(rand((2, 16, 16, 3)))
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in gates.values())
    se = model.get_layer("b1_relu_se")
    assert_close(
        gates["b1_relu_se"],
        se.excitation(keras.Model(model.input, se.input)(rand((2, 16, 16, 3)))),
        atol=1e-6,
    )


def test_excitation_layer_config_round_trip():
    se = SqueezeExcite(ratio=4, gate="tanh", init="identity", name="se")
    probe = Excitation(se, name="probe")
    clone = Excitation.from_config(probe.get_config())
    assert clone.name == "probe"
    assert clone.se_layer.get_config() == se.get_config()
    assert tuple(probe.compute_output_shape((None, 5, 5, 12))) == (None, 12)
    first = SqueezeExcite(ratio=2, data_format="channels_first")
    assert tuple(Excitation(first).compute_output_shape((3, 12, 5, 5))) == (3, 12)


def test_errors():
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model. Received: model of type str"):
        excitation_model("resnet")
    with pytest.raises(ValueError, match=r"no keras_se.SqueezeExcite layer.*Received: model='cnn'"):
        excitation_model(small_cnn())

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match=r"subclassed model.*Received: model of type Sub"):
        excitation_model(Sub())
    with pytest.raises(TypeError, match=r"`se_layer` must be a keras_se.SqueezeExcite layer. "
                                        r"Received: se_layer of type Dense"):
        Excitation(layers.Dense(3))

    model = add_se_blocks(small_cnn(), ratio=4)
    images = dataset(rand((4, 16, 16, 3)), batch=2)
    with pytest.raises(ValueError, match=r"`by_class=True` needs a dataset of \(images, labels\)"):
        excitation_profile(model, images)
    with pytest.raises(ValueError, match=r"`steps` must be a positive integer or None. Received: steps=0"):
        excitation_profile(model, images, steps=0)
    with pytest.raises(ValueError, match=r"`dataset` gave no examples"):
        excitation_profile(model, [], by_class=False)
    with pytest.raises(ValueError, match=r"Labels must be integer class ids or one-hot.*0.5"):
        excitation_profile(model, dataset(rand((2, 16, 16, 3)), np.array([0.5, 1.0])))
    with pytest.raises(ValueError, match=r"Each batch needs one label per image. Received: 2 images and 3 labels"):
        excitation_profile(model, [(rand((2, 16, 16, 3)), np.array([0, 1, 2]))])
    data = dataset(rand((4, 16, 16, 3)), np.array([0, 1, 2, 2]))
    with pytest.raises(ValueError, match=r"`class_names` must name every class id.*Received: 2 class_names"):
        excitation_profile(model, data, class_names=["a", "b"])

    one_class = excitation_profile(model, dataset(rand((4, 16, 16, 3)), np.zeros(4, "int64")))
    with pytest.raises(ValueError, match=r"`class_specificity` needs .* at least two classes. Received: a profile with classes=\[0\]"):
        one_class.class_specificity()
    profile = excitation_profile(model, data)
    with pytest.raises(ValueError, match=r"`blocks` must name SE blocks.*Received: blocks=\['nope'\]"):
        plot_excitation(profile, "unused.png", blocks=["nope"])
    with pytest.raises(ValueError, match=r"`classes` must be class ids present.*Received: classes=\[7\]"):
        plot_excitation(profile, "unused.png", classes=[7])
    with pytest.raises(ValueError, match=r"`labels` must have one entry per block \(3\). Received: 1 labels"):
        plot_class_specificity(profile, "unused.png", labels=["x"])


def test_se_inside_a_custom_layer_is_reported():
    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.se = SqueezeExcite(ratio=2, name="hidden_se")

        def call(self, x):
            return self.se(x)

    inputs = keras.Input((8, 8, 4))
    x = SqueezeExcite(ratio=2, name="visible_se")(inputs)
    model = keras.Model(inputs, Block()(x))
    with pytest.warns(UserWarning, match=r"1 SqueezeExcite layer\(s\).*\['hidden_se'\]"):
        emodel = excitation_model(model)
    assert list(emodel.output) == ["visible_se"]


# ---------------------------------------------------------------------- the profile
def test_identity_initialised_profile_is_exactly_one():
    model = add_se_blocks(nested_cnn(), ratio=4)  # init="identity"
    labels = np.arange(20) % 3
    profile = excitation_profile(model, dataset(rand((20, 16, 16, 3)), labels, batch=6))
    assert profile.blocks == ["stem_relu_se", "inner_relu_se", "tail_relu_se"]
    assert profile.count == 20 and profile.classes == [0, 1, 2]
    assert profile.class_counts == [7, 7, 6]
    for block, channels in zip(profile.blocks, (8, 16, 24)):
        np.testing.assert_allclose(profile.mean[block], np.ones(channels), rtol=0, atol=1e-6)
        np.testing.assert_allclose(profile.class_mean[block], np.ones((3, channels)),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(profile.std[block], 0.0, atol=1e-6)
    assert all(v == 0.0 for v in profile.class_specificity().values())


def test_profile_statistics_match_numpy():
    model = add_se_blocks(small_cnn(), init="standard", ratio=4)
    images = rand((23, 16, 16, 3), seed=3)
    labels = np.random.default_rng(3).integers(0, 4, size=23)
    labels[labels == 2] = 3  # class 2 absent: it gets no row
    one_hot = np.eye(4, dtype="float32")[labels]
    profile = excitation_profile(model, dataset(images, one_hot, batch=5),
                                 class_names=["cat", "dog", "eel", "fox"])
    gates = excitation_model(model).predict(images, verbose=0)
    present = sorted(set(labels.tolist()))
    assert profile.classes == present
    assert profile.class_names == [["cat", "dog", "eel", "fox"][c] for c in present]
    assert profile.class_counts == [int((labels == c).sum()) for c in present]
    for block in profile.blocks:
        g = gates[block].astype("float64")
        np.testing.assert_allclose(profile.mean[block], g.mean(0), atol=1e-6)
        np.testing.assert_allclose(profile.std[block], g.std(0), atol=1e-5)
        for row, c in enumerate(present):
            np.testing.assert_allclose(profile.class_mean[block][row], g[labels == c].mean(0),
                                       atol=1e-6)
            np.testing.assert_allclose(profile.class_std[block][row], g[labels == c].std(0),
                                       atol=1e-5)
        expected = np.std([g[labels == c].mean(0) for c in present], axis=0).mean()
        assert profile.class_specificity()[block] == pytest.approx(expected, abs=1e-6)
    # by_class=False: images only, and `steps`.
    overall = excitation_profile(model, dataset(images, batch=5),
                                 by_class=False, steps=2)
    assert overall.count == 10 and not overall.by_class
    np.testing.assert_allclose(overall.mean["b3_relu_se"],
                               gates["b3_relu_se"][:10].mean(0), atol=1e-6)
    summary = profile.to_dict(channels=False)
    assert [b["name"] for b in summary["blocks"]] == profile.blocks
    assert summary["count"] == 23


def coloured_textures(n, seed):
    """Three classes that differ in colour and texture: red blobs, green stripes, blue checks."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    yy, xx = np.mgrid[0:16, 0:16]
    patterns = [
        np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 20.0),
        (xx // 2) % 2,
        ((yy // 4) + (xx // 4)) % 2,
    ]
    images = 0.3 * rng.uniform(size=(n, 16, 16, 3))
    for i, c in enumerate(labels):
        images[i, :, :, c] += 0.7 * patterns[c] * rng.uniform(0.6, 1.0)
    return images.astype("float32"), labels


def test_trained_gates_differ_between_classes():
    keras.utils.set_random_seed(1)
    model = add_se_blocks(small_cnn(), ratio=4)  # identity init: every gate is 1
    train_x, train_y = coloured_textures(240, seed=0)
    val = dataset(*coloured_textures(90, seed=1), batch=30)
    before = excitation_profile(model, val)
    assert max(before.class_specificity().values()) == 0.0

    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(train_x, train_y, batch_size=16, epochs=4, verbose=0, shuffle=False)
    assert history.history["accuracy"][-1] > 0.9  # the classes are easy to tell apart

    after = excitation_profile(model, val)
    specificity = after.class_specificity()
    # The gates now depend on the class: the per-class means differ by a measurable
    # amount in every block (measured with seeds 0-2: 0.006-0.011 in the first block,
    # 0.03-0.12 in the later ones).
    assert min(specificity.values()) > 2e-3, specificity
    gaps = [np.abs(after.class_mean[b][:, None] - after.class_mean[b][None]).max()
            for b in after.blocks]
    assert max(gaps) > 0.1, gaps
    # In the last block the classes differ by far more than the images of one class
    # (measured: 12x to 21x).
    within = after.within_class_spread()
    assert specificity["b3_relu_se"] > 3 * within["b3_relu_se"], (specificity, within)


# --------------------------------------------------------------------------- plots
def png_pixels(path):
    import matplotlib.image

    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def synthetic_profile(num_blocks=8, num_classes=5):
    rng = np.random.default_rng(0)
    blocks = [f"block{i}_se" for i in range(num_blocks)]
    channels = [16 * (i + 1) for i in range(num_blocks)]
    class_mean = {b: rng.uniform(0.2, 0.8, size=(num_classes, c)) for b, c in zip(blocks, channels)}
    return ExcitationProfile(
        blocks=blocks, count=50,
        mean={b: class_mean[b].mean(0) for b in blocks},
        std={b: np.full(c, 0.1) for b, c in zip(blocks, channels)},
        classes=list(range(num_classes)), class_counts=[10] * num_classes,
        class_mean=class_mean,
        class_std={b: np.full_like(class_mean[b], 0.05) for b in blocks},
        class_names=[f"class {i}" for i in range(num_classes)],
    )


def test_plot_excitation_writes_a_real_png(tmp_path):
    profile = synthetic_profile()
    path = plot_excitation(profile, tmp_path / "curves.png", show_std=True)
    assert path == str(tmp_path / "curves.png")
    pixels = png_pixels(path)
    # 6 blocks by default (spread from first to last): 3 columns x 2 rows of 420x290 px.
    assert pixels.shape == (2 * 290 + 40, 3 * 420, 4)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert not np.all(rgb == rgb[0])
    assert len(np.unique(np.round(rgb, 2), axis=0)) > 20  # several line colours, text, shading
    assert os.path.getsize(path) > 20_000
    assert (rgb.min(axis=1) < 0.5).mean() > 0.005  # drawn pixels, not a blank canvas


def test_plot_class_specificity_writes_a_real_png(tmp_path):
    profile = synthetic_profile()
    pixels = png_pixels(plot_class_specificity(profile, tmp_path / "specificity.png"))
    assert pixels.shape == (420, 500, 4)
    rgb = pixels[..., :3]
    assert not np.all(rgb == rgb[0, 0])
    # The bars are drawn in C0 (#1f77b4): a visible share of the canvas.
    c0 = np.array([0x1F, 0x77, 0xB4]) / 255
    assert (np.abs(rgb - c0).max(axis=-1) < 0.02).mean() > 0.02


def test_plots_from_a_model_profile(tmp_path):
    model = add_se_blocks(small_cnn(), init="standard", ratio=4)
    profile = excitation_profile(model, dataset(*coloured_textures(12, seed=2), batch=6))
    curves = png_pixels(plot_excitation(profile, tmp_path / "c.png", classes=[0, 2],
                                        max_channels=10))
    assert curves.shape == (330, 3 * 420, 4)  # 3 blocks in one row
    bars = png_pixels(plot_class_specificity(profile, tmp_path / "s.png", labels=["1", "2", "3"]))
    assert bars.shape[0] == 420 and np.ptp(bars[..., :3]) > 0.5
