"""keras_se.applications: the SE model zoo (applications/).

One table drives the constructor tests (keras's applications_test.py, timm's
test_models.py): every SE constructor is built once, with `weights=None` at a small
input size, and one test asserts its whole contract: the SE count of the default
input size, the family's placement, the model's name, the output shape, finite
outputs, non-zero gradients to the SE blocks, and a `.keras` round trip with
identical outputs. The other tests are cheap: the registry, the signatures, the
exact parameter totals, the weights rules and the error messages.
"""

import inspect
import re

import h5py
import keras
import numpy as np
import pytest
from _backend import forward, gradients
from keras import ops

import keras_se
from keras_se import SqueezeExcite, applications

# Every test here runs on each Keras backend.
pytestmark = pytest.mark.core
heavy = pytest.mark.heavy

# name: (input size, extra arguments, heavy). The sizes are the smallest that keep
# every SE site above 1x1, so the SE count is that of the default input size;
# some models drop the top for a pooled feature vector, to test that path too.
SMALL = {
    "SEResNet50": (64, {}, False),
    "SEResNet101": (64, {"include_top": False, "pooling": "avg"}, True),
    "SEResNet152": (64, {}, True),
    "SEResNet50V2": (64, {}, False),
    "SEResNet101V2": (64, {}, True),
    "SEResNet152V2": (64, {"include_top": False, "pooling": "max"}, True),
    "SEVGG16": (32, {}, False),
    "SEVGG19": (32, {"include_top": False, "pooling": "avg"}, False),
    "SEMobileNet": (64, {"alpha": 0.25}, False),
    "SEMobileNetV2": (64, {"alpha": 0.35}, False),
    "SEInceptionV3": (107, {}, False),
    "SEInceptionResNetV2": (107, {}, True),
    "SEXception": (71, {}, False),
    "SEDenseNet121": (64, {}, False),
    "SEDenseNet169": (64, {"include_top": False, "pooling": "avg"}, True),
    "SEDenseNet201": (64, {}, True),
    "SENASNetMobile": (48, {}, True),
    "SENASNetLarge": (48, {}, True),
    "SEConvNeXtTiny": (64, {}, False),
    "SEConvNeXtSmall": (64, {"include_top": False, "pooling": "avg"}, True),
    "SEConvNeXtBase": (64, {}, True),
    "SEConvNeXtLarge": (64, {"include_top": False, "pooling": "avg"}, True),
    "SEConvNeXtXLarge": (64, {"include_top": False, "pooling": "avg"}, True),
}
CLASSES = 5
# Deeper or wider versions of a family's first model (the same blocks, the same
# code): the contract without the gradient check, which their family's first model
# runs. Every model is still built, checked for its SE blocks, run and reloaded.
SIBLINGS = {"SEResNet101", "SEResNet152", "SEResNet101V2", "SEResNet152V2", "SEVGG19",
            "SEDenseNet169", "SEDenseNet201", "SENASNetLarge", "SEConvNeXtSmall",
            "SEConvNeXtBase", "SEConvNeXtLarge", "SEConvNeXtXLarge"}
# MobileNet and MobileNetV2 name themselves after alpha and the input size.
COMPUTED_NAMES = {"SEMobileNet": "se_mobilenet_0.25_64", "SEMobileNetV2": "se_mobilenetv2_0.35_64"}

ALL = [
    "SEResNet50", "SEResNet101", "SEResNet152", "SEResNet50V2", "SEResNet101V2",
    "SEResNet152V2", "SEVGG16", "SEVGG19", "SEMobileNet", "SEMobileNetV2",
    "SEInceptionV3", "SEInceptionResNetV2", "SEXception", "SEDenseNet121",
    "SEDenseNet169", "SEDenseNet201", "SENASNetMobile", "SENASNetLarge",
    "SEConvNeXtTiny", "SEConvNeXtSmall", "SEConvNeXtBase", "SEConvNeXtLarge",
    "SEConvNeXtXLarge",
]


def se_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


def _np(x):
    return ops.convert_to_numpy(x)


def rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def table_params():
    return [pytest.param(n, marks=[heavy] if SMALL[n][2] else []) for n in SMALL]


# ----------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", table_params())
def test_constructor_contract(name, tmp_path):
    info = applications.model_info(name)
    size, extra, _ = SMALL[name]
    if name == "SENASNetMobile" and keras.backend.backend() == "torch":
        # Keras's own NASNetMobile refuses PyTorch (keras/src/applications/nasnet.py).
        with pytest.raises(ValueError, match="NASNetMobile is not available with the torch backend"):
            info.constructor(weights=None, input_shape=(size, size, 3), classes=CLASSES)
        return
    model = info.constructor(weights=None, input_shape=(size, size, 3), classes=CLASSES,
                             init="standard", **extra)
    layers = se_layers(model)

    # The family's placement, every site of the default input size.
    assert len(layers) == info.se_blocks
    if info.family.select:
        pattern = re.compile(info.family.select)
        assert all(pattern.search(layer.name[: -len("_se")]) for layer in layers)
    assert all(layer.init == "standard" and layer.ratio == 16 for layer in layers)
    default = inspect.signature(info.constructor).parameters["name"].default
    assert model.name == (default or COMPUTED_NAMES[name])

    # Forward and backward.
    x = rand((2, size, size, 3))
    weights = [v for layer in layers for v in layer.trainable_weights]
    out_dim = model.output_shape[-1]

    def loss(y):
        return ops.sum(y * ops.arange(1, out_dim + 1, dtype="float32") / out_dim)

    include_top = extra.get("include_top", True)
    if name in SIBLINGS:
        # The same blocks as its family's first model, deeper or wider: forward only.
        y = forward(model, x)
    else:
        # Gradients of the SE weights only: none for the (large) base's kernels.
        y, grads = gradients(model, x, weights, loss)
        assert all(g is not None for g in grads)
        # Every SE block gets a gradient (its output bias), and most SE weights do
        # (a 1-unit bottleneck can be dead under ReLU at a random init).
        index = {id(v): i for i, v in enumerate(weights)}
        for layer in layers:
            g = grads[index[id(layer.expand_bias)]]
            assert np.abs(g).max() > 0, layer.name
        nonzero = [np.abs(g).max() > 0 for g in grads]
        assert np.mean(nonzero) >= 0.75
    assert y.shape == ((2, CLASSES) if include_top else (2, out_dim))
    assert np.isfinite(y).all()
    if include_top:
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)

    # .keras round trip, safe mode, no custom_objects.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == model.name
    assert [layer.name for layer in se_layers(loaded)] == [layer.name for layer in layers]
    # atol 1e-5: softmax outputs of two programs (the gradient's and the forward's)
    # differ by float32 rounding (1e-6).
    np.testing.assert_allclose(forward(loaded, x), y, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- exact totals
@pytest.mark.parametrize(
    "name, total, added, blocks",
    [
        # ../shared/REFERENCE.md; MobileNet is the paper's 4.2M -> 4.7M (Table 3).
        ("SEResNet50", 28_167_704, 2_530_992, 16),
        ("SEMobileNet", 4_739_932, 486_068, 13),
        ("SEVGG16", 138_588_336, 230_792, 13),
    ],
)
def test_exact_parameter_totals(name, total, added, blocks):
    model = applications.get_model(name, weights=None)
    layers = se_layers(model)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert len(layers) == blocks
    assert sum(layer.count_params() for layer in layers) == added
    assert model.count_params() == total


# ------------------------------------------------------------------ signatures
@pytest.mark.parametrize("name", ALL)
def test_signature_is_keras_plus_se_options(name):
    info = applications.model_info(name)
    ours = inspect.signature(info.constructor).parameters
    stock = inspect.signature(getattr(keras.applications, info.base)).parameters
    # Keras's arguments, in Keras's order, with Keras's defaults (but the name).
    assert list(ours)[: len(stock)] == list(stock)
    for p in stock.values():
        assert ours[p.name].kind == p.kind
        if p.name != "name":
            assert ours[p.name].default == p.default, p.name
    assert ours["weights"].default == "imagenet"
    se = list(ours)[len(stock):]
    assert se == ["ratio", "squeeze", "gate", "init", "placement", "select", "se_options"]
    # SEResNet50/101/152: None, "standard" with a timm checkpoint (test_timm_weights.py).
    timm = info.module is applications.resnet
    assert ours["init"].default == (None if timm else "identity")
    assert ours["ratio"].default == 16
    assert [ours[p].kind for p in se] == [inspect.Parameter.KEYWORD_ONLY] * 6 + [
        inspect.Parameter.VAR_KEYWORD]
    # The generated docstring documents every argument.
    doc = info.constructor.__doc__
    for p in ours:
        assert f"{'**' if p == 'se_options' else ''}{p}: " in doc, p
    assert f"keras.applications.{info.base}`" in doc and "1709.01507" in doc


# -------------------------------------------------------------------- registry
def test_list_models_is_the_table():
    assert applications.list_models() == ALL
    assert set(ALL) <= set(applications.__all__)
    for name in ALL:
        assert getattr(applications, name) is applications.model_info(name).constructor


@pytest.mark.parametrize(
    "alias, name",
    [
        ("SEResNet50", "SEResNet50"),
        ("seresnet50", "SEResNet50"),
        ("se_resnet50", "SEResNet50"),
        ("SE-ResNet-50", "SEResNet50"),
        ("se_resnet50_v2", "SEResNet50V2"),
        ("SEResNet50V2", "SEResNet50V2"),
        ("se_inception_resnet_v2", "SEInceptionResNetV2"),
        ("se_mobilenet_v2", "SEMobileNetV2"),
        ("se_mobilenet", "SEMobileNet"),
        ("se_nasnet_large", "SENASNetLarge"),
        ("SE_ConvNeXt_XLarge", "SEConvNeXtXLarge"),
    ],
)
def test_names_are_case_insensitive(alias, name):
    assert applications.model_info(alias).name == name


def test_get_model_passes_the_arguments():
    model = applications.get_model("se_mobilenet", weights=None, input_shape=(64, 64, 3),
                                   alpha=0.25, classes=3, ratio=4, name="tiny")
    assert model.name == "tiny"
    assert model.output_shape == (None, 3)
    layers = se_layers(model)
    assert len(layers) == 13 and {layer.ratio for layer in layers} == {4}


@pytest.mark.parametrize(
    "module, names",
    [
        ("resnet", ["SEResNet50", "SEResNet101", "SEResNet152"]),
        ("resnet_v2", ["SEResNet50V2", "SEResNet101V2", "SEResNet152V2"]),
        ("vgg16", ["SEVGG16"]),
        ("vgg19", ["SEVGG19"]),
        ("mobilenet", ["SEMobileNet"]),
        ("mobilenet_v2", ["SEMobileNetV2"]),
        ("inception_v3", ["SEInceptionV3"]),
        ("inception_resnet_v2", ["SEInceptionResNetV2"]),
        ("xception", ["SEXception"]),
        ("densenet", ["SEDenseNet121", "SEDenseNet169", "SEDenseNet201"]),
        ("nasnet", ["SENASNetMobile", "SENASNetLarge"]),
        ("convnext", ["SEConvNeXtTiny", "SEConvNeXtSmall", "SEConvNeXtBase",
                      "SEConvNeXtLarge", "SEConvNeXtXLarge"]),
    ],
)
def test_preprocessing_sits_next_to_each_model(module, names):
    ours = getattr(applications, module)
    stock = getattr(keras.applications, module)
    assert ours.preprocess_input is stock.preprocess_input
    assert ours.decode_predictions is stock.decode_predictions
    for name in names:
        info = applications.model_info(name)
        assert info.module is ours and getattr(ours, name) is info.constructor
        assert info.preprocess_input is stock.preprocess_input
        assert info.decode_predictions is stock.decode_predictions
        assert info.family is ours.FAMILY


def test_preprocess_input_is_the_stock_one():
    x = rand((1, 8, 8, 3))
    np.testing.assert_array_equal(
        applications.resnet.preprocess_input(x.copy()),
        keras.applications.resnet.preprocess_input(x.copy()),
    )
    assert applications.resnet.preprocess_input(x.copy()).mean() < x.mean()  # caffe mode


@pytest.mark.parametrize(
    "name, family",
    [
        ("SEMobileNetV3Small", "MobileNetV3"),
        ("MobileNetV3Large", "MobileNetV3"),
        ("se_mobilenet_v3_large", "MobileNetV3"),
        ("SEEfficientNetB0", "EfficientNet"),
        ("efficientnetb7", "EfficientNet"),
        ("SEEfficientNetV2S", "EfficientNetV2"),
        ("se_efficientnet_v2_b0", "EfficientNetV2"),
    ],
)
def test_models_that_already_carry_se_have_no_variant(name, family):
    match = rf"^{family} already carries Squeeze-and-Excitation .*Received: model_name='{name}'"
    with pytest.raises(ValueError, match=match):
        applications.get_model(name, weights=None)
    with pytest.raises(ValueError, match=match):
        applications.model_info(name)


def test_unknown_model_names():
    with pytest.raises(ValueError, match=r"Did you mean 'SEResNet50'\?.*Received: model_name='resnet50'"):
        applications.get_model("resnet50")
    with pytest.raises(ValueError, match=r"must be one of SEResNet50, .*Received: model_name='se_foo'"):
        applications.get_model("se_foo")
    with pytest.raises(TypeError, match=r"`model_name` must be a string. Received: model_name=3"):
        applications.model_info(3)


# --------------------------------------------------------------------- weights
SMALL_MOBILENET = dict(input_shape=(64, 64, 3), alpha=0.25, classes=CLASSES)


@pytest.fixture(scope="module")
def stock_files(tmp_path_factory):
    """A stock MobileNet and ResNet50 (random weights), saved as Keras saves them."""
    root = tmp_path_factory.mktemp("stock")
    keras.utils.set_random_seed(1)
    mobilenet = keras.applications.MobileNet(weights=None, **SMALL_MOBILENET)
    mobilenet.save_weights(root / "mobilenet.weights.h5")
    mobilenet.save(root / "mobilenet.keras")
    resnet = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                         classes=CLASSES)
    resnet.save_weights(root / "resnet50.weights.h5")
    return {"root": root, "mobilenet": mobilenet, "resnet50": resnet}


@pytest.mark.parametrize("file", ["mobilenet.weights.h5", "mobilenet.keras"])
def test_stock_weights_file_loads_into_the_base_then_se_is_identity(stock_files, file):
    # The path the ImageNet weights take: the stock constructor loads them.
    path = stock_files["root"] / file
    assert not applications.holds_se_weights(str(path))
    model = applications.SEMobileNet(weights=str(path), **SMALL_MOBILENET)
    assert len(se_layers(model)) == 13
    assert all(layer.init == "identity" for layer in se_layers(model))
    x = rand((2, 64, 64, 3))
    # Exactly the stock model's predictions: SE starts as the identity.
    np.testing.assert_allclose(_np(model(x)), _np(stock_files["mobilenet"](x)), rtol=0, atol=1e-6)
    # Every stock weight is in place (in order; auto-generated names may differ).
    ours = [w for layer in model.layers if not isinstance(layer, SqueezeExcite)
            for w in layer.get_weights()]
    theirs = stock_files["mobilenet"].get_weights()
    assert len(ours) == len(theirs)
    for a, b in zip(theirs, ours):
        np.testing.assert_array_equal(a, b)


def test_stock_weights_file_resnet50(stock_files):
    path = stock_files["root"] / "resnet50.weights.h5"
    model = applications.SEResNet50(weights=path, input_shape=(64, 64, 3), classes=CLASSES)
    assert len(se_layers(model)) == 16
    x = rand((2, 64, 64, 3))
    np.testing.assert_allclose(_np(model(x)), _np(stock_files["resnet50"](x)), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def se_files(tmp_path_factory):
    """An SE-MobileNet with non-identity SE weights, saved three ways."""
    root = tmp_path_factory.mktemp("se")
    keras.utils.set_random_seed(2)
    model = applications.SEMobileNet(weights=None, init="standard", **SMALL_MOBILENET)
    for layer in se_layers(model):  # make every SE weight distinctive
        layer.set_weights([w + np.float32(0.01) for w in layer.get_weights()])
    model.save_weights(root / "se.weights.h5")
    model.save(root / "se.keras")
    model.save(root / "se_legacy.h5")  # Keras 2's whole-model HDF5
    return {"root": root, "model": model}


@pytest.mark.parametrize("file", ["se.weights.h5", "se.keras", "se_legacy.h5"])
def test_se_weights_file_loads_whole(se_files, file):
    path = str(se_files["root"] / file)
    assert applications.holds_se_weights(path)
    model = applications.SEMobileNet(weights=path, init="standard", **SMALL_MOBILENET)
    reference = se_files["model"]
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = rand((2, 64, 64, 3))
    np.testing.assert_allclose(_np(model(x)), _np(reference(x)), rtol=0, atol=1e-6)


def test_se_weights_file_with_other_se_options_fails_loudly(se_files):
    path = str(se_files["root"] / "se.weights.h5")
    with pytest.raises(ValueError, match=r"could not be loaded|shape"):
        applications.SEMobileNet(weights=path, init="standard", ratio=4, **SMALL_MOBILENET)


def test_holds_se_weights_on_other_files(tmp_path, stock_files):
    assert not applications.holds_se_weights(str(stock_files["root"] / "mobilenet.weights.h5"))
    legacy = tmp_path / "legacy_weights.h5"  # Keras 2 layout: weight_names attributes
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv1", b"conv1_relu_se"])
        f.create_group("conv1").attrs["weight_names"] = np.array([b"conv1/kernel:0"])
        f.create_group("conv1_relu_se").attrs["weight_names"] = np.array(
            [b"conv1_relu_se/reduce_kernel:0", b"conv1_relu_se/expand_kernel:0"])
    assert applications.holds_se_weights(str(legacy))
    not_h5 = tmp_path / "notes.weights.h5"
    not_h5.write_text("not an HDF5 file")
    assert not applications.holds_se_weights(str(not_h5))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(weights="imagenet", classes=10), ValueError,
         r"If using `weights='imagenet'` with `include_top=True`, `classes` must be 1000\. "
         r"Received: classes=10$"),
        (dict(weights="imagenet_v2"), ValueError,
         r"^`weights` must be None \(random initialization\), 'imagenet'.*"
         r"Received: weights='imagenet_v2'$"),
        (dict(weights="/no/such/file.weights.h5"), ValueError,
         r"^`weights` names a file that does not exist\..*"
         r"Received: weights='/no/such/file.weights.h5'$"),
        (dict(weights="missing.keras"), ValueError,
         r"names a file that does not exist.*Received: weights='missing.keras'$"),
        (dict(weights=3), TypeError,
         r"^`weights` must be None, 'imagenet' or the path to a weights file\. "
         r"Received: weights=3 of type int$"),
        (dict(weights=None, placement="everywhere"), ValueError,
         r"^`placement` must be None \(the family's placement\) or one of 'post_activation',"
         r".*Received: placement='everywhere'$"),
        (dict(weights=None, ratio=0), ValueError, r"Received: ratio=0$"),
        (dict(weights=None, squeeze="min"), ValueError, r"Received: squeeze='min'$"),
        (dict(weights=None, init="zeros"), ValueError, r"Received: init='zeros'$"),
        (dict(weights=None, gate="relu"), ValueError,
         r"Received: gate='relu', init='identity'$"),
        (dict(weights=None, dropout_rate=0.5), TypeError,
         r"^Unknown argument\(s\) \['dropout_rate'\].*Received: dropout_rate=0.5$"),
    ],
)
def test_bad_arguments_raise_before_building(kwargs, error, match, monkeypatch):
    def never(**_):
        raise AssertionError("the base model was built")

    monkeypatch.setattr(keras.applications, "ResNet50", never)
    with pytest.raises(error, match=match):
        applications.SEResNet50(**kwargs)


def test_imagenet_without_top_accepts_any_classes(monkeypatch):
    calls = []

    def fake_resnet50(**kwargs):
        calls.append(kwargs)
        return keras.applications.resnet.ResNet50(**{**kwargs, "weights": None})

    # No download: check that "imagenet" reaches the stock constructor, and that
    # the SE blocks then start as the identity.
    monkeypatch.setattr(keras.applications, "ResNet50", fake_resnet50)
    model = applications.SEResNet50(weights="imagenet", include_top=False, classes=10,
                                    input_shape=(64, 64, 3), pooling="avg")
    assert calls[0]["weights"] == "imagenet"
    assert {layer.init for layer in se_layers(model)} == {"identity"}


def test_relu_gate_with_standard_init_is_allowed():
    model = applications.SEMobileNet(weights=None, gate="relu", init="standard",
                                     **SMALL_MOBILENET)
    assert {layer.gate for layer in se_layers(model)} == {"relu"}


# ------------------------------------------------------------ other arguments
def test_placement_and_select_override():
    every = applications.SEMobileNet(weights=None, placement="post_activation",
                                     **SMALL_MOBILENET)
    assert len(se_layers(every)) == 27  # stem + 13 depthwise + 13 pointwise
    chosen = applications.SEMobileNet(weights=None, select=["conv_pw_13_relu"],
                                      **SMALL_MOBILENET)
    assert [layer.name for layer in se_layers(chosen)] == ["conv_pw_13_relu_se"]
    with pytest.raises(keras_se.NoSitesError, match=r"No SE site found"):
        applications.SEMobileNet(weights=None, placement="residual", **SMALL_MOBILENET)


def test_se_options_reach_every_block():
    model = applications.SEMobileNet(weights=None, ratio=8, squeeze="avg_max",
                                     gate="hard_sigmoid", divisor=8, use_bias=False,
                                     **SMALL_MOBILENET)
    for layer in se_layers(model):
        assert (layer.ratio, layer.squeeze, layer.gate, layer.divisor, layer.use_bias) == (
            8, "avg_max", "hard_sigmoid", 8, False)
        assert layer.bottleneck_units(layer.channels) % 8 == 0


def test_input_tensor_is_the_model_input():
    inputs = keras.Input((64, 64, 3), name="image")
    model = applications.SEMobileNet(weights=None, input_tensor=inputs, **SMALL_MOBILENET)
    assert model.inputs[0] is inputs
    assert model.name == "se_mobilenet_0.25_64"
    # The graph continues from the model's output, as with a stock model.
    head = keras.layers.Dense(2, name="head")(model.output)
    bigger = keras.Model(inputs, head)
    assert bigger.output_shape == (None, 2)
    assert len(se_layers(bigger)) == 13


def test_input_tensor_through_a_preprocessing_layer():
    raw = keras.Input((64, 64, 3), name="raw")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(raw)
    model = applications.SEMobileNet(weights=None, input_tensor=scaled, **SMALL_MOBILENET)
    assert model.inputs[0] is raw
    assert model.layers[1].name == "scale"
    x = rand((1, 64, 64, 3))
    assert model(x).shape == (1, CLASSES)


def test_se_names_are_deterministic():
    a = applications.SEResNet50V2(weights=None, input_shape=(64, 64, 3), include_top=False)
    assert [layer.name for layer in se_layers(a)][:2] == [
        "conv2_block1_3_conv_se", "conv2_block2_3_conv_se"]
