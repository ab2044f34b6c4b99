"""add_se_blocks on every keras.applications constructor, for every placement.

One table drives the sweep (keras's applications_test.py, timm's test_models.py):
each model is built once per worker (weights=None, small input, include_top=False
with average pooling). For every model and placement: the sites found, exact
parameter counts, or `NoSitesError` where a placement has none. The first model of
each family (ResNet50, EfficientNetB0, ...) then gets the full check: every
placement stacked, identical outputs under identity init after each, non-zero
gradients to every SE block, and a `.keras` round trip with identical outputs. Its
siblings (ResNet101, EfficientNetB1-B7, ...) are the same blocks from the same Keras
code, deeper or wider, and the full check on all of them took half the suite's time:
each gets one rewrite (its first placement with sites) with identical outputs. Tests of one model share an xdist group, so the model is
built once.
"""

import functools
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_se
from keras_se import SqueezeExcite

A = keras.applications

# name: (input size, extra constructor arguments). Sizes are the smallest that
# keep every stage above 1x1 (or the constructor's minimum).
MODELS = {
    "ConvNeXtTiny": (64, {}),
    "ConvNeXtSmall": (64, {}),
    "ConvNeXtBase": (64, {}),
    "ConvNeXtLarge": (64, {}),
    "ConvNeXtXLarge": (64, {}),
    "DenseNet121": (64, {}),
    "DenseNet169": (64, {}),
    "DenseNet201": (64, {}),
    "EfficientNetB0": (64, {}),
    "EfficientNetB1": (64, {}),
    "EfficientNetB2": (64, {}),
    "EfficientNetB3": (64, {}),
    "EfficientNetB4": (64, {}),
    "EfficientNetB5": (64, {}),
    "EfficientNetB6": (64, {}),
    "EfficientNetB7": (64, {}),
    "EfficientNetV2B0": (64, {}),
    "EfficientNetV2B1": (64, {}),
    "EfficientNetV2B2": (64, {}),
    "EfficientNetV2B3": (64, {}),
    "EfficientNetV2S": (64, {}),
    "EfficientNetV2M": (64, {}),
    "EfficientNetV2L": (64, {}),
    "InceptionResNetV2": (96, {}),
    "InceptionV3": (96, {}),
    "MobileNet": (64, {"alpha": 0.25}),
    "MobileNetV2": (64, {"alpha": 0.35}),
    "MobileNetV3Small": (64, {"alpha": 0.75, "include_preprocessing": False}),
    "MobileNetV3Large": (64, {"alpha": 0.75, "include_preprocessing": False}),
    "NASNetMobile": (64, {}),
    "NASNetLarge": (64, {}),
    "ResNet50": (64, {}),
    "ResNet101": (64, {}),
    "ResNet152": (64, {}),
    "ResNet50V2": (64, {}),
    "ResNet101V2": (64, {}),
    "ResNet152V2": (64, {}),
    "VGG16": (64, {}),
    "VGG19": (64, {}),
    "Xception": (71, {}),
}
HEAVY = {"ConvNeXtLarge", "ConvNeXtXLarge", "EfficientNetB7", "EfficientNetV2L",
         "EfficientNetV2M", "NASNetLarge", "ResNet152V2"}
# The first model of each family: the full check (see the module docstring).
FAMILIES = ("ConvNeXt", "DenseNet", "EfficientNetV2", "EfficientNet", "InceptionResNet",
            "InceptionV3", "MobileNetV2", "MobileNetV3", "MobileNet", "NASNet", "ResNet50V2",
            "ResNet101V2", "ResNet152V2", "ResNet", "VGG", "Xception")

# Families whose merges are residual (every residual placement has sites) and
# which have multi-branch concatenations (module_output).
RESIDUAL = ("ConvNeXt", "EfficientNet", "InceptionResNet", "MobileNetV2", "MobileNetV3",
            "NASNet", "ResNet", "Xception")
CONCAT = ("DenseNet", "InceptionResNet", "InceptionV3", "NASNet")
POST_ACTIVATION_NONE = ("ConvNeXt",)  # its pointwise convolutions are Dense layers


def test_table_lists_all_keras_applications():
    public = {n for n in dir(A) if n[0].isupper() and callable(getattr(A, n))}
    assert set(MODELS) == public
    assert len(MODELS) == 40


@functools.lru_cache(maxsize=1)
def build(name):
    size, kwargs = MODELS[name]
    keras.utils.set_random_seed(1)
    model = getattr(A, name)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3), **kwargs
    )
    x = np.random.default_rng(0).uniform(0, 255 if "EfficientNet" in name else 1,
                                         size=(2, size, size, 3)).astype("float32")
    return model, x, np.asarray(model(x, training=False))


def family(name):
    """The family prefix of `name` (ResNet v2 models form their own family)."""
    for prefix in FAMILIES:
        if name.startswith(prefix):
            return "ResNetV2" if prefix.endswith("V2") and prefix.startswith("ResNet") else prefix
    raise KeyError(name)


def first_of_family(name):
    return next(n for n in MODELS if family(n) == family(name)) == name


def expected_to_have_sites(name, placement):
    if placement == "post_activation":
        return not name.startswith(POST_ACTIVATION_NONE)
    if placement == "module_output":
        return name.startswith(CONCAT)
    return name.startswith(RESIDUAL)


def cases():
    for name in MODELS:
        marks = [pytest.mark.xdist_group(name)]
        if name in HEAVY:
            marks.append(pytest.mark.heavy)
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(cases()))
def test_rewrite_every_placement(name, tmp_path):
    """Every placement in turn, each applied on top of the previous ones.

    Stacking keeps the sweep inside the suite's budget: each placement is
    rewritten and checked for identity once, and the gradient check and the
    `.keras` round trip (the costly parts) run once on the model that holds the
    SE blocks of every placement. `skip_existing=False` makes each stacked
    rewrite find exactly the sites of the stock model, which is asserted.
    """
    model, x, expected = build(name)
    full = first_of_family(name)
    stacked = model
    added = 0
    for placement in keras_se.PLACEMENTS:
        if not expected_to_have_sites(name, placement):
            with pytest.raises(keras_se.NoSitesError, match=f"placement={placement!r}"):
                keras_se.add_se_blocks(model, placement)
            continue
        stock_sites = keras_se.find_se_sites(model, placement, skip_existing=False)
        assert stock_sites and all(s.params > 0 for s in stock_sites)
        if not full and added:
            continue  # a sibling: one rewrite (below), the sites of every placement
        before = stacked.count_params()
        stacked, report = keras_se.add_se_blocks(
            stacked, placement, skip_existing=False, return_report=True
        )
        assert [s.channels for s in report.sites] == [s.channels for s in stock_sites]
        assert report.params_added == sum(s.params for s in stock_sites) > 0
        assert stacked.count_params() == before + report.params_added
        added += len(report.sites)
        # Identity at initialisation.
        np.testing.assert_allclose(np.asarray(stacked(x, training=False)), expected,
                                   atol=1e-5, rtol=1e-5, err_msg=placement)
    se = [l for l in stacked._flatten_layers() if isinstance(l, SqueezeExcite)]
    assert len(se) == added > 0
    if not full:
        return
    # The gradient of a training loss reaches every SE block (the expansion
    # bias's gradient does not depend on the bottleneck, so it is non-zero for
    # every block). Inference mode: stochastic depth (EfficientNet's
    # per-sample Dropout) could otherwise drop a whole residual branch.
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(stacked(x, training=False)))
    grads = tape.gradient(loss, [l.expand_bias for l in se] + [l.expand_kernel for l in se])
    bias_grads, kernel_grads = grads[: len(se)], grads[len(se):]
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in bias_grads)
    # Kernel gradients need a live bottleneck unit: at tiny widths (C//16 = 1) a
    # ReLU unit can be dead for a given input, so only their sum is asserted.
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in kernel_grads) > 0
    # .keras round trip, plain load_model (safe mode, no custom_objects). Keras
    # rebuilds a Functional graph recursively: the deepest stacked models need a
    # higher recursion limit, as they would for any user.
    path = tmp_path / "model.keras"
    stacked.save(path)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        loaded = keras.saving.load_model(path)
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(stacked(x, training=False)), atol=0)


def test_every_family_has_its_full_check():
    firsts = [n for n in MODELS if first_of_family(n)]
    assert firsts == ["ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0",
                      "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2",
                      "MobileNetV3Small", "NASNetMobile", "ResNet50", "ResNet50V2", "VGG16",
                      "Xception"]


# The paper's models (REFERENCE.md: "The SE block's parameter count").
@pytest.mark.parametrize(
    "name, placement, select, sites, params, total",
    [
        ("ResNet50", "post_activation", None, 33, 322_972, None),
        ("ResNet50", "residual", None, 16, 2_530_992, 28_167_704),
        ("VGG16", "post_activation", None, 13, 230_792, None),
        ("MobileNet", "post_activation", r"^conv_pw_\d+_relu$", 13, 486_068, 4_739_932),
    ],
)
def test_known_counts_at_224(name, placement, select, sites, params, total):
    kwargs = {"alpha": 1.0} if name == "MobileNet" else {}
    model = getattr(A, name)(weights=None, **kwargs)
    found = keras_se.find_se_sites(model, placement, select=select)
    assert len(found) == sites
    assert sum(s.params for s in found) == params
    if total is not None:
        assert model.count_params() + params == total


@pytest.mark.xdist_group("export")
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])
def test_export_saved_model(name, tmp_path):
    size, kwargs = MODELS[name]
    model = getattr(A, name)(weights=None, input_shape=(size, size, 3), classes=10, **kwargs)
    new = keras_se.add_se_blocks(model, "residual" if name == "ResNet50" else "post_activation",
                                 init="standard")
    x = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype("float32")
    path = os.fspath(tmp_path / "saved_model")
    new.export(path, format="tf_saved_model")
    reloaded = tf.saved_model.load(path)
    serve = reloaded.signatures["serve"]
    (out,) = serve(tf.constant(x)).values()
    np.testing.assert_allclose(out.numpy(), np.asarray(new(x, training=False)), atol=1e-5)
