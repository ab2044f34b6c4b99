"""keras_se.models: what a model name or path means, as the command line resolves it."""

import json

import keras
import pytest

from keras_se.models import (
    MODEL_FILE,
    SIDECAR,
    build_model,
    default_preprocess,
    load_model,
    model_names,
    preprocess_function,
    resolve_image_size,
    resolve_model,
    resolve_weights,
    uses_timm_weights,
)

pytestmark = pytest.mark.core


@pytest.mark.parametrize("text", ["mobilenet_v2", "MobileNetV2", "mobilenet-v2", "Mobile.Net v2"])
def test_application_names_ignore_case_and_separators(text):
    spec = resolve_model(text)
    assert (spec.kind, spec.name, spec.family, spec.default_size) == (
        "application", "MobileNetV2", "mobilenet_v2", 224)
    assert spec.constructor is keras.applications.MobileNetV2
    assert spec.placement == "post_activation" and "depthwise_relu" in spec.select


def test_zoo_names_and_default_sizes():
    spec = resolve_model("se_inception_v3")
    assert (spec.kind, spec.name, spec.family, spec.default_size, spec.placement) == (
        "zoo", "SEInceptionV3", "inception_v3", 299, "module_output")
    assert resolve_model("Xception").default_size == 299
    assert resolve_model("nasnetlarge").default_size == 331
    assert "seresnet50" in model_names() and "resnet50" in model_names()


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(ValueError, match=r"Did you mean: .*resnet50.*Received: model='resnet5'"):
        resolve_model("resnet5")
    with pytest.raises(ValueError, match=r"already carries Squeeze-and-Excitation"):
        resolve_model("se_efficientnetb0")
    with pytest.raises(TypeError, match=r"`model` must be a non-empty string. Received: model=''"):
        resolve_model("")


def test_files_and_output_folders(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)], name="tiny")
    model.save(tmp_path / MODEL_FILE)
    (tmp_path / SIDECAR).write_text(json.dumps({"family": "resnet", "preprocess": "caffe"}))
    for text in (str(tmp_path), str(tmp_path / MODEL_FILE)):
        spec = resolve_model(text)
        assert spec.kind == "file" and spec.family == "resnet"
        assert spec.sidecar["preprocess"] == "caffe" and spec.label == MODEL_FILE
    assert resolve_image_size(spec) == (8, 8)
    with pytest.raises(ValueError, match=r"`image_size` does not match the model's input 8x8. "
                       r"Received: image_size=9x9"):
        resolve_image_size(spec, (9, 9))
    assert build_model(spec).name == "tiny"
    with pytest.raises(ValueError, match=r"`model` file does not exist"):
        resolve_model(str(tmp_path / "missing.keras"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"must be a keras.applications name, an SE zoo name"):
        resolve_model(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.keras").write_text("not a zip")
    with pytest.raises(ValueError, match=r"could not be loaded as a Keras model"):
        load_model(tmp_path / "broken.keras")


def test_build_model_arguments():
    spec = resolve_model("mobilenet")
    model = build_model(spec, include_top=False, input_shape=(32, 32, 3), alpha=0.25)
    assert model.output.shape == (None, 1, 1, 256)
    assert resolve_image_size(spec, (48, 40)) == (48, 40) and resolve_image_size(spec) == (224, 224)
    with pytest.raises(ValueError, match=r"`alpha` is a width multiplier of MobileNet models; "
                       r"VGG16 has none. Received: alpha=0.5"):
        build_model(resolve_model("vgg16"), alpha=0.5)
    with pytest.raises(ValueError, match=r"`weights` must be 'imagenet', 'none' or an existing "
                       r"weights file .*Received: weights='nope.h5'"):
        build_model(spec, weights="nope.h5")
    with pytest.raises(ValueError, match=r"^MobileNet: "):
        build_model(spec, include_top=False, input_shape=(8, 8, 3))


def test_preprocess_functions():
    assert preprocess_function(None) is None and preprocess_function("none") is None
    assert preprocess_function("resnet") is keras.applications.resnet.preprocess_input
    x = keras.ops.convert_to_numpy(preprocess_function("tf")(keras.ops.ones((1, 2, 2, 3)) * 255))
    assert float(x.max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"`preprocess` must be none, tf, torch, caffe or a "
                       r"keras.applications family .*Received: preprocess='nope'"):
        preprocess_function("nope")
    # A keras-hub ImageConverter's rescaling, as keras_se.json records it.
    fn = preprocess_function({"scale": 2.0, "offset": [-1.0, 0.0, 1.0]})
    x = keras.ops.convert_to_numpy(fn(keras.ops.ones((1, 2, 2, 3)) * 3))
    assert x[0, 0, 0].tolist() == [5.0, 6.0, 7.0]
    assert preprocess_function({"scale": None, "offset": 1.0})(2.0) == 3.0
    with pytest.raises(ValueError, match=r"`preprocess` as a dict must be \{'scale': s, 'offset': "
                       r"o\}.*Received: preprocess=\{'mean': 1\}"):
        preprocess_function({"mean": 1})


def test_timm_checkpoints_as_model_or_weights(tmp_path, monkeypatch):
    spec = resolve_model("timm:seresnet152d")
    assert (spec.kind, spec.default_size, spec.placement, spec.has_se) == ("timm", 256, "residual",
                                                                           True)
    assert uses_timm_weights(spec, "imagenet") and not uses_timm_weights(spec, "none")
    assert default_preprocess(spec, "imagenet") == "torch"
    zoo = resolve_model("seresnet50")
    assert default_preprocess(zoo) == "resnet"
    assert default_preprocess(zoo, "timm:legacy_seresnet50.in1k") == "torch"
    with pytest.raises(ValueError, match=r"`model` names a timm checkpoint that keras-se cannot "
                       r"convert \(ecaresnet50d: ECA.*Received: model='timm:ecaresnet50d'$"):
        resolve_model("timm:ecaresnet50d")
    with pytest.raises(ValueError, match=r"it loads into an SE zoo model .* not into MobileNetV2"):
        resolve_weights(resolve_model("mobilenet_v2"), "timm:legacy_seresnet50.in1k")
    with pytest.raises(ValueError, match=r"`weights` must be 'imagenet' \(the checkpoint's own\) "
                       r"or 'none' when the model is itself a timm checkpoint"):
        resolve_weights(spec, "timm:legacy_seresnet50.in1k")
    # Offline with an empty cache: refused here, before anything is built.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"offline mode is on"):
        resolve_weights(zoo, "timm:legacy_seresnet50.in1k")
    assert resolve_weights(zoo, "none") is None and resolve_weights(spec, "none") is None
