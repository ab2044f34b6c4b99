"""keras-hub models: SE backbones and tasks keep their class, config, pyramid and presets.

Small random-init models built from constructor arguments (64x64 inputs, one block per
stage); presets are folders written here with `save_to_preset`; nothing downloads. The
absence of keras-hub is simulated in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_se
from keras_se import hub
from keras_se.hub.classes import all_layers
from keras_se.hub.rewrite import _copy_layer

SIZE = 64
RESNET = dict(
    input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64],
    stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2],
    block_type="bottleneck_block", image_shape=(SIZE, SIZE, 3),
)
MOBILENET = dict(  # MobileNetV3-like: SE in some blocks, none in others
    stackwise_expansion=[[16], [72, 88], [96]], stackwise_num_blocks=[1, 2, 1],
    stackwise_num_filters=[[16], [24, 24], [40]], stackwise_kernel_size=[[3], [3, 3], [5]],
    stackwise_num_strides=[[2], [2, 1], [2]], stackwise_se_ratio=[[0.25], [None, None], [0.25]],
    stackwise_activation=[["relu"], ["relu", "relu"], ["hard_swish"]],
    stackwise_padding=[[1], [1, 1], [2]], output_num_filters=64, depthwise_filters=16,
    depthwise_stride=2, depthwise_residual=False, last_layer_filter=64, squeeze_and_excite=0.5,
    image_shape=(SIZE, SIZE, 3),
)
HGNETV2 = dict(  # keras-hub's own test config
    embedding_size=32, stem_channels=[3, 16, 32], hidden_act="relu",
    use_learnable_affine_block=False, image_shape=(SIZE, SIZE, 3), depths=[1, 1],
    hidden_sizes=[64, 128], stackwise_stage_filters=[[32, 16, 64, 1, 1, 3], [64, 32, 128, 1, 1, 3]],
    apply_downsample=[False, True], use_lightweight_conv_block=[False, False],
)


def se_params(channels, ratio=16):
    units = max(1, channels // ratio)
    return 2 * channels * units + units + channels


def randomize_se(model, seed=1):
    """Non-trivial SE weights, so that a round trip that loses them shows."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, keras_se.SqueezeExcite):
            for w in layer.weights:
                w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))


def run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def kh():
    return pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def resnet(kh):
    keras.utils.set_random_seed(0)
    return kh.models.ResNetBackbone(**RESNET)


@pytest.fixture(scope="module")
def se_resnet(resnet):
    return keras_se.add_se_blocks(resnet, "residual", return_report=True)


# ----------------------------------------------------------------------------- backbones
def test_backbone_keeps_class_config_and_outputs(kh, resnet, se_resnet, images):
    se, report = se_resnet
    assert type(se).__name__ == "SEResNetBackbone"
    assert isinstance(se, kh.models.ResNetBackbone) and isinstance(se, hub.SEBackbone)
    assert keras.saving.get_registered_name(type(se)) == "keras_se>SEResNetBackbone"
    # The base's attributes are there (ImageClassifier reads `data_format`).
    assert se.data_format == resnet.data_format == "channels_last"
    assert list(se.stackwise_num_filters) == [64, 64, 64]
    # One SE-ResNet module per bottleneck block, on its 4x-wide output.
    assert [s.anchor for s in report.sites] == [
        "stack0_block0_3_bn", "stack1_block0_3_bn", "stack2_block0_3_bn"]
    assert report.params_added == 3 * se_params(256)
    assert se.count_params() == resnet.count_params() + 3 * se_params(256)
    assert np.abs(run(se, images) - run(resnet, images)).max() == 0.0

    config = se.get_config()
    base = resnet.get_config()
    assert {k: config[k] for k in base if k != "name"} == {k: base[k] for k in base if k != "name"}
    assert config["base_class"] == "keras_hub>ResNetBackbone"
    assert config["se"] == {"placement": "residual", "select": None, "ratio": 16,
                            "init": "identity", "skip_existing": True}
    json.dumps(config)  # a preset's config.json
    rebuilt = type(se).from_config(config)
    assert type(rebuilt) is type(se)
    assert rebuilt.count_params() == se.count_params()
    assert rebuilt.get_config() | {"name": None} == config | {"name": None}
    assert [l.name for l in rebuilt.layers][1:] == [l.name for l in se.layers][1:]  # 0: input


def test_backbone_preset_round_trip(kh, se_resnet, images, tmp_path):
    se, _ = se_resnet
    se = type(se).from_config(se.get_config())
    se.set_weights(se_resnet[0].get_weights())
    randomize_se(se)
    expected = run(se, images)
    se.save_to_preset(str(tmp_path))
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["registered_name"] == "keras_se>SEResNetBackbone"
    # The generic loader and the base class's (the SE class's own is the same code path).
    for loader in (kh.models.Backbone, kh.models.ResNetBackbone):
        loaded = loader.from_preset(str(tmp_path))
        assert type(loaded) is type(se), loader
        np.testing.assert_allclose(run(loaded, images), expected, atol=1e-6)
    # keras-hub's own check: a preset of another class is refused.
    with pytest.raises(ValueError, match="not a subclass of calling class"):
        kh.models.VGGBackbone.from_preset(str(tmp_path))


def test_base_weights_load_into_se_backbone(kh, resnet, se_resnet, images, tmp_path):
    se, _ = se_resnet
    fresh = type(se).from_config(se.get_config())  # random base weights, identity SE
    randomize_se(fresh)
    se_before = {w.path: w.numpy() for l in fresh.layers
                 if isinstance(l, keras_se.SqueezeExcite) for w in l.weights}
    path = str(tmp_path / "resnet.weights.h5")
    resnet.save_weights(path)
    fresh.load_weights(path)  # a base file: loads into the base layers
    for layer in [l for l in resnet.layers if l.weights]:
        for a, b in zip(layer.weights, fresh.get_layer(layer.name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    after = {w.path: w.numpy() for l in fresh.layers
             if isinstance(l, keras_se.SqueezeExcite) for w in l.weights}
    assert after.keys() == se_before.keys()
    for k in after:  # the SE layers keep their values
        np.testing.assert_array_equal(after[k], se_before[k])

    # A base preset's model.weights.h5, and the preset itself with keras_se.from_preset.
    preset = str(tmp_path / "base_preset")
    resnet.save_to_preset(preset)
    fresh = type(se).from_config(se.get_config())
    fresh.load_weights(os.path.join(preset, "model.weights.h5"))
    assert np.abs(run(fresh, images) - run(resnet, images)).max() == 0.0
    model, report = keras_se.from_preset(preset, return_report=True)  # "auto": residual
    assert type(model).__name__ == "SEResNetBackbone" and len(report.sites) == 3
    assert np.abs(run(model, images) - run(resnet, images)).max() == 0.0
    with pytest.raises(ValueError, match="The preset has no task.json: pass `task`"):
        keras_se.from_preset(preset, task_kwargs={"num_classes": 3})


def test_pyramid_outputs_by_layer_name(kh, resnet, se_resnet, images):
    se, _ = se_resnet
    assert list(se.pyramid_outputs) == ["P2", "P3", "P4"]
    assert {k: v._keras_history[0].name for k, v in se.pyramid_outputs.items()} == {
        "P2": "stack0_block0_out", "P3": "stack1_block0_out", "P4": "stack2_block0_out"}
    base_fp = keras.Model(resnet.inputs, resnet.pyramid_outputs)
    se_fp = keras.Model(se.inputs, se.pyramid_outputs)
    for k, v in base_fp(images).items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(se_fp(images)[k]),
                                      keras.ops.convert_to_numpy(v))
    # An SE block right after a stage's last layer: the pyramid is its output.
    post = keras_se.add_se_blocks(resnet, "residual_post")
    assert {k: v._keras_history[0].name for k, v in post.pyramid_outputs.items()} == {
        "P2": "stack0_block0_out_se", "P3": "stack1_block0_out_se", "P4": "stack2_block0_out_se"}


def test_retinanet_accepts_the_se_backbone(kh, resnet, se_resnet, images):
    se, _ = se_resnet
    kwargs = dict(min_level=3, max_level=4, use_p5=False, image_shape=(SIZE, SIZE, 3))
    plain = kh.models.RetinaNetBackbone(image_encoder=resnet, **kwargs)
    with_se = kh.models.RetinaNetBackbone(image_encoder=se, **kwargs)
    with_se.feature_pyramid.set_weights(plain.feature_pyramid.get_weights())
    a, b = plain(images), with_se(images)
    assert sorted(b) == ["P3", "P4"]
    for k in a:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b[k]),
                                   keras.ops.convert_to_numpy(a[k]), atol=1e-6)
    revived = kh.models.RetinaNetBackbone.from_config(with_se.get_config())
    assert type(revived.image_encoder).__name__ == "SEResNetBackbone"


def test_se_on_an_se_backbone_stacks_the_config(se_resnet, images):
    se, _ = se_resnet
    both, report = keras_se.add_se_blocks(se, "post_activation", select=r"_1_relu$",
                                          return_report=True)
    assert type(both) is type(se)
    assert [s.anchor for s in report.sites] == [
        "stack0_block0_1_relu", "stack1_block0_1_relu", "stack2_block0_1_relu"]
    specs = both.get_config()["se"]
    assert [s["placement"] for s in specs] == ["residual", "post_activation"]
    candidates = keras_se.find_se_sites(se, "post_activation")
    assert specs[1]["select"] == {
        "given": "_1_relu$", "recorded": [s.anchor.endswith("_1_relu") for s in candidates]}
    rebuilt = type(both).from_config(both.get_config())
    assert rebuilt.count_params() == both.count_params()
    assert sum(isinstance(l, keras_se.SqueezeExcite) for l in rebuilt.layers) == 6
    assert np.abs(run(both, images) - run(se, images)).max() == 0.0


def test_callable_select_and_ratio_are_recorded(se_resnet, resnet):
    picked = []
    se = keras_se.add_se_blocks(
        resnet, "residual", init="standard", squeeze="avg_max", gate="hard_sigmoid",
        select=lambda site: site.channels == 256 and not picked.append(site.anchor),
        ratio=lambda site: 4 if site.anchor.startswith("stack0") else 8)
    spec = se.get_config()["se"]
    assert spec["select"] == {"given": "<callable>", "recorded": [True, True, True]}
    assert spec["ratio"] == {"recorded": [4, 8, 8]}
    assert (spec["squeeze"], spec["gate"], spec["init"]) == ("avg_max", "hard_sigmoid", "standard")
    rebuilt = type(se).from_config(se.get_config())
    units = [l.bottleneck_units(256) for l in rebuilt.layers
             if isinstance(l, keras_se.SqueezeExcite)]
    assert units == [64, 32, 32]
    assert {l.gate for l in rebuilt.layers if isinstance(l, keras_se.SqueezeExcite)} == {
        "hard_sigmoid"}


def test_se_backbone_class_errors(kh):
    cls = hub.se_backbone_class(kh.models.ResNetBackbone)
    assert hub.se_backbone_class(kh.models.ResNetBackbone) is cls
    assert hub.se_backbone_class(cls) is cls
    with pytest.raises(TypeError, match="`base_cls` must be a keras_hub.models.Backbone"):
        hub.se_backbone_class(keras.Model)
    with pytest.raises(TypeError, match="`se` must be a dict such as"):
        cls(**RESNET)
    with pytest.raises(ValueError, match="`base_class` must be 'keras_hub>ResNetBackbone'"):
        cls(se={"placement": "residual"}, base_class="keras_hub>VGGBackbone", **RESNET)
    with pytest.raises(TypeError, match="is a mixin"):
        hub.SEBackbone(se={"placement": "residual"})
    with pytest.raises(ValueError, match="`placement` must be one of"):
        keras_se.add_se_blocks(kh.models.VGGBackbone(
            stackwise_num_repeats=[1], stackwise_num_filters=[8], image_shape=(8, 8, 3)), "nope")


# ----------------------------------------------------------------------------- tasks
@pytest.fixture(scope="module")
def classifier(kh, resnet):
    converter = kh.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255.0)
    preprocessor = kh.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    task = kh.models.ResNetImageClassifier(
        backbone=_copy_layer(resnet), num_classes=4, preprocessor=preprocessor, dropout=0.1)
    task.backbone.set_weights(resnet.get_weights())
    head = task.get_layer("predictions")
    head.set_weights([w + 0.01 for w in head.get_weights()])  # not the initial values
    task.compile(optimizer=keras.optimizers.SGD(0.01),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return task


def test_task_keeps_class_preprocessor_and_head(kh, classifier, images):
    raw = images * 255
    se, report = keras_se.add_se_blocks(classifier, "residual", return_report=True)
    assert type(se).__name__ == "SEResNetImageClassifier"
    assert isinstance(se, kh.models.ResNetImageClassifier)
    assert type(se).backbone_cls is type(se.backbone)
    assert type(se.backbone).__name__ == "SEResNetBackbone"
    assert se.preprocessor is not classifier.preprocessor
    assert se.preprocessor.get_config() == classifier.preprocessor.get_config()
    assert (se.num_classes, se.dropout, se.pooling) == (4, 0.1, "avg")
    for a, b in zip(classifier.get_layer("predictions").weights,
                    se.get_layer("predictions").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [s.full_name for s in report.sites] == [
        f"{classifier.backbone.name}/stack{i}_block0_3_bn" for i in range(3)]
    assert report.params_before == classifier.count_params()
    # The summary's columns line up for nested sites (printed as path/name).
    lines = report.summary().splitlines()
    end = lines[1].index("channels") + len("channels")
    for site, row in zip(report.sites, lines[2:5]):
        where = "/".join(site.path + (site.se_name,))
        assert row.startswith(f"  {where} ") and row[:end].endswith(f" {site.channels}")
    np.testing.assert_allclose(se.predict(raw, verbose=0), classifier.predict(raw, verbose=0),
                               atol=1e-6)
    # The compile configuration is kept (a fresh optimizer).
    assert type(se.optimizer).__name__ == "SGD"
    assert float(se.optimizer.learning_rate.numpy()) == pytest.approx(0.01)


def test_task_fits_and_round_trips_as_a_preset(kh, classifier, images, tmp_path):
    raw = images * 255
    se = keras_se.add_se_blocks(classifier, "residual")
    se_layers = [l for l in se.backbone.layers if isinstance(l, keras_se.SqueezeExcite)]
    before = [w.numpy() for l in se_layers for w in l.weights]
    history = se.fit(raw, np.array([0, 3]), epochs=1, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [w.numpy() for l in se_layers for w in l.weights]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))  # SE trained
    expected = se.predict(raw, verbose=0)

    se.save_to_preset(str(tmp_path))
    assert {"config.json", "task.json", "model.weights.h5", "task.weights.h5",
            "preprocessor.json"} <= set(os.listdir(tmp_path))
    # keras-hub's generic loader finds the SE task class by its backbone class
    # (`find_subclass`); the task's own class goes through the same code.
    loaded = kh.models.ImageClassifier.from_preset(str(tmp_path))
    assert type(loaded) is type(se)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), expected, atol=1e-5)
    preprocessor = kh.models.ImageClassifierPreprocessor.from_preset(str(tmp_path))
    assert isinstance(preprocessor, kh.models.ResNetImageClassifierPreprocessor)
    new_head = kh.models.ImageClassifier.from_preset(str(tmp_path), num_classes=3)
    assert type(new_head) is type(se) and new_head.output_shape == (None, 3)
    # keras_se.from_preset on an SE preset: as saved.
    same = keras_se.from_preset(str(tmp_path))
    np.testing.assert_allclose(same.predict(raw, verbose=0), expected, atol=1e-5)


# ------------------------------------------------------------------------ opaque blocks
def test_mobilenet_blocks_are_opaque(kh):
    model = kh.models.MobileNetBackbone(**MOBILENET)
    opaque = hub.find_opaque_layers(model)
    assert [(o.name, o.class_name, o.carries_se) for o in opaque] == [
        ("block_0_0", "DepthwiseConvBlock", True),
        ("block_1_0", "InvertedResidualBlock", True),
        ("block_2_0", "InvertedResidualBlock", False),
        ("block_2_1", "InvertedResidualBlock", False),
        ("block_3_0", "InvertedResidualBlock", True),
        ("block_4_0", "ConvBnActBlock", False),
    ]
    with pytest.raises(keras_se.NoSitesError, match=(
            r"6 of its layers are subclassed blocks holding convolutions, whose graph "
            r"add_se_blocks cannot see: block_2_0 \(InvertedResidualBlock\), block_2_1 "
            r"\(InvertedResidualBlock\), block_4_0 \(ConvBnActBlock\)\. 3 of them already "
            r"carry SE \(SqueezeAndExcite2D\), which skip_existing=True leaves alone\. Outside "
            r"them, 1 site\(s\) were found \(activation\S*\)")) as info:
        keras_se.add_se_blocks(model)
    assert "`stackwise_se_ratio`" in str(info.value)
    assert len(info.value.report.sites) == 1
    assert sum("opaque" in k.reason for k in info.value.report.skipped) == 6
    # An explicit select places SE at the visible site (the stem) only; the
    # choice is recorded, so the auto-named stem activation is found on rebuild.
    stem = info.value.report.sites[0].anchor
    se = keras_se.add_se_blocks(model, select=[stem])
    assert se.get_config()["se"]["select"] == {"given": [stem], "recorded": [True]}
    for _ in range(2):
        keras.layers.Activation("relu")  # the auto-name counter moves on
    rebuilt = type(se).from_config(se.get_config())
    assert sum(isinstance(l, keras_se.SqueezeExcite) for l in rebuilt.layers) == 1


def test_hgnetv2_is_refused_naming_its_blocks(kh):
    model = kh.models.HGNetV2Backbone(**HGNETV2)
    for placement in ("post_activation", "residual"):
        with pytest.raises(keras_se.NoSitesError, match=(
                r"2 of its layers are subclassed blocks holding convolutions, whose graph "
                r"add_se_blocks cannot see: embedder \(HGNetV2Embeddings\), encoder "
                r"\(HGNetV2Encoder\)\. No site is visible outside them\.")):
            keras_se.add_se_blocks(model, placement)


# ----------------------------------------------------------------------- presets, CLI
def test_resolve_hub_model(kh, resnet, tmp_path):
    preset = str(tmp_path / "resnet_preset")
    resnet.save_to_preset(preset)
    spec = hub.resolve_hub_model(preset)
    assert (spec.backbone_class, spec.task_class, spec.has_se, spec.placement) == (
        "keras_hub>ResNetBackbone", None, False, "residual")
    model = spec.build()  # placement "auto"
    assert type(model).__name__ == "SEResNetBackbone"
    assert hub.resolve_hub_model(str(tmp_path)) is None  # a folder without config.json
    assert hub.resolve_hub_model("resnet50") is None  # a keras.applications name
    builtin = hub.resolve_hub_model("resnet_50_imagenet")  # a name only: nothing downloads
    assert (builtin.backbone_class, builtin.placement) == ("keras_hub>ResNetBackbone", "residual")
    assert hub.rewrite_hub_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])) \
        is None


def _python(code, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.heavy
def test_presets_load_once_keras_se_is_imported(kh, se_resnet, tmp_path):
    se, _ = se_resnet
    se.save_to_preset(str(tmp_path))
    # keras_hub first: keras-hub alone cannot resolve the class; importing keras_se
    # registers it.
    out = _python(f"""
        import keras_hub
        try:
            keras_hub.models.Backbone.from_preset({str(tmp_path)!r})
        except ValueError as e:
            print("REFUSED", "no class registered with Keras for keras_se>SEResNetBackbone" in str(e))
        import keras_se
        print("LOADED", type(keras_hub.models.ResNetBackbone.from_preset({str(tmp_path)!r})).__name__)
    """)
    assert "REFUSED True" in out.stdout and "LOADED SEResNetBackbone" in out.stdout, out.stderr
    # keras_se first, keras_hub when needed (the classes are registered then): the
    # command line in a fresh process, tests/test_cli_hub.py::test_an_se_preset_in_a_fresh_process.


def test_keras_se_works_without_keras_hub(tmp_path):
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "config.json").write_text(json.dumps(
        {"module": "keras_hub.src.models.resnet.resnet_backbone", "class_name": "ResNetBackbone",
         "config": {}, "registered_name": "keras_hub>ResNetBackbone"}))
    out = _python(f"""
        import sys
        sys.modules["keras_hub"] = None  # as if keras-hub were not installed
        import keras, keras_se
        from keras_se import hub
        base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                 keras.layers.ReLU()])
        print("SITES", len(keras_se.add_se_blocks(base, return_report=True)[1].sites))
        print("RESOLVE", hub.resolve_hub_model("resnet50"))
        for call in (lambda: keras_se.from_preset("resnet_50_imagenet"),
                     lambda: hub.resolve_hub_model({str(preset)!r})):
            try:
                call()
            except ImportError as e:
                print("ERROR", e)
        print("HINT", hub.hub_hint())
        print("HUB_IMPORTED", "keras_hub" in sys.modules and sys.modules["keras_hub"] is not None)
        # The command line: one line on stderr, exit code 2, the pip hint.
        from keras_se.cli import run
        print("CLI", run(["sites", {str(preset)!r}]))
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "SITES 1" in lines and "RESOLVE None" in lines
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 2 and all("`pip install keras-se[hub]`" in e for e in errors)
    assert "keras_se.from_preset needs keras-hub" in errors[0]
    assert [line for line in lines if line.startswith("HINT")] == [
        "HINT  keras-hub presets need keras-hub: `pip install keras-se[hub]`."]
    assert "HUB_IMPORTED False" in lines and "CLI 2" in lines
    errors = [line for line in out.stderr.splitlines() if line.startswith("keras-se")]
    assert errors == [
        "keras-se sites: error: `model` names a keras-hub preset, which needs keras-hub (not "
        "installed): `pip install keras-se[hub]` (Python 3.11 or newer). "
        f"Received: model={str(preset)!r}"], out.stderr[-2000:]
