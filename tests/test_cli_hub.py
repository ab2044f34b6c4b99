"""The command line on keras-hub presets: MODEL is a preset folder written here with
`save_to_preset` (a small random-init ResNet classifier with its image converter), run
through `sites`, `retrofit` (which also writes a preset), `finetune` and `export`, offline.

keras-hub's built-in preset names resolve by a name lookup only (tests/test_hub.py); the
absence of keras-hub (one line, exit 2, the pip hint) is checked in test_hub.py's
subprocess without keras-hub.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from test_cli import ENV, FAST, assert_inprocess_bad, assert_ok, entries, run_inprocess

import keras_se
from keras_se import cli
from keras_se import export as E
from keras_se.models import default_preprocess, preprocess_function, resolve_model

SIZE = 32
RESNET = dict(
    input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64],
    stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2],
    block_type="bottleneck_block", image_shape=(None, None, 3),
)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The converter's rescaling, as `keras_se.json` records it.
SCALING = {"scale": [1 / (255 * s) for s in STD], "offset": [-m / s for m, s in zip(MEAN, STD)]}


def assert_scaling(recorded):
    assert sorted(recorded) == ["offset", "scale"]
    for key in recorded:
        np.testing.assert_allclose(recorded[key], SCALING[key], rtol=1e-6)


@pytest.fixture(scope="module")
def kh():
    return pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def preset(kh, tmp_path_factory):
    """A ResNet classifier preset (6 classes, like the builtin data), random weights."""
    keras.utils.set_random_seed(0)
    converter = kh.layers.ResNetImageConverter(image_size=(SIZE, SIZE), **SCALING)
    task = kh.models.ResNetImageClassifier(
        backbone=kh.models.ResNetBackbone(**RESNET), num_classes=6,
        preprocessor=kh.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    path = tmp_path_factory.mktemp("presets") / "resnet_classifier"
    task.save_to_preset(str(path))
    return str(path)


def test_a_preset_folder_is_a_model(preset):
    spec = resolve_model(preset)
    assert (spec.kind, spec.label, spec.placement, spec.default_size) == (
        "hub_preset", "resnet_classifier", "residual", SIZE)
    assert spec.preset.task_class == "keras_hub>ResNetImageClassifier" and not spec.has_se
    # Preprocessing: the preset's ImageConverter's rescaling, not a keras.applications family.
    assert_scaling(default_preprocess(spec))
    fn = preprocess_function(default_preprocess(spec))
    x = np.array([[[[255.0, 0.0, 127.5]]]], dtype="float32")
    np.testing.assert_allclose(fn(x), keras.applications.imagenet_utils.preprocess_input(
        x.copy(), mode="torch"), rtol=1e-6)


def test_sites_on_a_preset(preset, capsys):
    code, err, out = run_inprocess(capsys, "sites", preset, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == preset and report["placement"] == "residual"
    # One SE-ResNet module per bottleneck block, on its 4x-wide output (256 channels).
    assert [s["anchor"] for s in report["sites"]] == [
        f"stack{i}_block0_3_bn" for i in range(3)]
    assert report["params_added"] == 3 * (2 * 256 * 16 + 16 + 256)


@pytest.fixture(scope="module")
def retrofitted(preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrofit") / "se"
    code = cli.run(["retrofit", preset, "--out", str(out)])
    assert code == 0
    return out


def test_retrofit_a_preset_keeps_the_keras_hub_class_and_writes_a_preset(
        kh, preset, retrofitted):
    out = retrofitted
    assert entries(out) == ["keras_se.json", "model.keras", "preset", "report.json",
                            "saved_model"]
    report = json.load(open(out / "report.json"))
    assert report["num_sites"] == 3 and report["init"] == "identity"
    assert report["max_abs_diff_vs_original"] == 0.0
    assert set(report["reload_max_abs_diff"]) == {"keras", "saved_model", "preset"}
    sidecar = json.load(open(out / "keras_se.json"))
    assert_scaling(sidecar["preprocess"])
    assert sidecar["family"] is None
    # The preset reloads through keras-hub's generic loader as the SE task, with its
    # preprocessor, and computes what model.keras computes.
    loaded = kh.models.ImageClassifier.from_preset(str(out / "preset"))
    assert type(loaded).__name__ == "SEResNetImageClassifier"
    assert type(loaded.backbone).__name__ == "SEResNetBackbone"
    assert loaded.preprocessor.image_converter.image_size == (SIZE, SIZE)
    from_keras = keras.saving.load_model(out / "model.keras")
    assert type(from_keras) is type(loaded)
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    expected = np.asarray(from_keras(x, training=False))
    assert expected.std() > 0
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6)
    # The original preset computes the same (identity init).
    original = kh.models.ImageClassifier.from_preset(preset)
    np.testing.assert_allclose(np.asarray(original(x, training=False)), expected, atol=1e-6)


def test_an_se_preset_in_a_fresh_process(retrofitted):
    # `keras-se` imports keras_se first and keras_hub only when MODEL needs it: the SE
    # classes are registered then (keras_se.hub's import hook), and the SE preset loads.
    proc = subprocess.run([sys.executable, "-m", "keras_se", "sites", str(retrofitted / "preset")],
                          capture_output=True, text=True, env=ENV, timeout=400)
    assert_ok(proc)
    assert "0 SE sites, placement 'residual'" in proc.stdout
    assert "the model already has 3 SE layer(s)" in proc.stdout


def test_finetune_a_preset_then_export(preset, builtin_tfds_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    code, err, stdout = run_inprocess(capsys, "finetune", preset, "--data-dir", builtin_tfds_dir,
                                      "--out", out, *FAST)
    assert code == 0, err
    assert "starting: " + preset in stdout and f"{SIZE}x{SIZE}, freeze=backbone" in stdout
    metrics = json.load(open(out / "metrics.json"))
    # The preset's backbone with SE, and the command line's head for the data's classes.
    assert metrics["se"]["num_sites"] == 3 and metrics["num_classes"] == 6
    assert metrics["params"]["trainable"] == metrics["params"]["se"] + 256 * 6 + 6
    sidecar = json.load(open(out / "keras_se.json"))
    assert_scaling(sidecar["preprocess"])
    # A later command on the run reuses the recorded preprocessing.
    assert default_preprocess(resolve_model(str(out))) == sidecar["preprocess"]
    model = keras.saving.load_model(out / "model.keras")
    assert sum(isinstance(la, keras_se.SqueezeExcite) for la in model.layers) == 3
    # export: the run's model.keras, and the preset itself.
    code, err, _ = run_inprocess(capsys, "export", out, "--format", "tflite",
                                 "--out", tmp_path / "m.tflite")
    assert code == 0, err
    x = E.sample_inputs(model)
    np.testing.assert_allclose(E.run_tflite(open(tmp_path / "m.tflite", "rb").read(), x),
                               np.asarray(model(x)), atol=E.TFLITE_ATOL["none"])
    code, err, stdout = run_inprocess(capsys, "export", preset, "--format", "saved_model",
                                      "--out", tmp_path / "sm")
    assert code == 0, err
    assert "SavedModel (serve signature) matches Keras" in stdout
    assert entries(tmp_path) == ["ft", "m.tflite", "sm"]


def test_bad_preset_inputs(preset, tmp_path, capsys):
    assert_inprocess_bad(capsys, "retrofit", r"`alpha` is a width multiplier of MobileNet models",
                         preset, "--alpha", 0.5, "--out", tmp_path / "r")
    empty = tmp_path / "folder"
    empty.mkdir()
    assert_inprocess_bad(capsys, "sites", r"`model` folder holds neither model\.keras nor a "
                         r"keras-hub preset \(config\.json\)", empty)
    assert_inprocess_bad(capsys, "sites", r"Did you mean: .*resnet_50_imagenet",
                         "resnet_50_imagenett")
    assert entries(tmp_path) == ["folder"]
    assert os.path.isdir(preset)
