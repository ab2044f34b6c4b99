"""The command line with timm's trained SE-ResNets (keras_se.applications.timm_weights):
`--weights timm:ARCH` or a local .safetensors file on a zoo SE-ResNet, and `timm:ARCH` as
MODEL, through `sites`, `retrofit`, `finetune` and `export`, offline.

The checkpoint is a randomised timm `legacy_seresnet50` saved as the Hugging Face Hub holds
it (`model.safetensors`), as in tests/test_timm_weights.py (which checks the conversion in
numbers); offline with no cached file, a timm name is one line and exit code 2.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
import safetensors.numpy
from test_cli import FAST, assert_inprocess_bad, entries, run_inprocess

import keras_se
from keras_se import cli
from keras_se import export as E
from keras_se.models import default_preprocess, resolve_model

# See tests/test_timm_weights.py: with TensorFlow loaded first, triton (imported by
# torchvision through timm) crashes the process; CPU torch does not need it.
sys.modules.setdefault("triton", None)
try:
    import timm
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = timm = None

needs_torch = pytest.mark.skipif(
    torch is None and not os.environ.get("CI"), reason="needs torch and timm (pip install timm)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A legacy_seresnet50 with random weights and BatchNorm statistics, as a .safetensors."""
    if torch is None and not os.environ.get("CI"):
        pytest.skip("needs torch and timm")
    model = timm.create_model("legacy_seresnet50", pretrained=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    timm.models.save_for_hf(model.eval(), str(path.parent), safe_serialization=True)
    return str(path)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty Hugging Face cache; returns the folder for --out."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_a_timm_name_offline_is_one_line_and_exit_2(offline, capsys):
    for command, model, extra in [
        ("finetune", "seresnet50", ("--weights", "timm:legacy_seresnet50.in1k", "--data",
                                    "builtin")),
        ("retrofit", "seresnet50", ("--weights", "timm:legacy_seresnet50.in1k")),
        ("export", "timm:seresnet50.ra2_in1k", ("--format", "saved_model")),
    ]:
        assert_inprocess_bad(
            capsys, command, r"is not in the local Hugging Face cache \(.*hf_cache.*\) and "
            r"offline mode is on \(HF_HUB_OFFLINE\).*Received: weights='timm:",
            model, *extra, "--out", offline / "x")
    assert entries(offline) == []
    assert entries(offline.parent / "hf_cache") == []


def test_timm_weights_that_do_not_fit_are_refused(offline, capsys):
    assert_inprocess_bad(capsys, "finetune", r"is a legacy_seresnet101 checkpoint, which loads "
                         r"into SEResNet101, not SEResNet50", "seresnet50", "--weights",
                         "timm:legacy_seresnet101.in1k", "--out", offline / "x")
    assert_inprocess_bad(capsys, "retrofit", r"a timm SE-ResNet checkpoint: it loads into an "
                         r"SE zoo model .* not into ResNet50", "resnet50", "--weights",
                         "timm:legacy_seresnet50.in1k", "--out", offline / "x")
    assert_inprocess_bad(capsys, "retrofit", r"`--init identity` cannot go with timm weights",
                         "seresnet50", "--weights", "timm:legacy_seresnet50.in1k", "--init",
                         "identity", "--out", offline / "x")
    assert_inprocess_bad(capsys, "sites", r"`model` names a timm checkpoint that keras-se "
                         r"cannot convert \(seresnext50_32x4d: grouped", "timm:seresnext50_32x4d")
    assert entries(offline) == []


def _keras_file_only(model, directory, inputs, **kwargs):
    """`export.save_artifacts` without the SavedModel: tests/test_cli.py checks that part;
    here the one real export of this 28M-parameter model is the `export` command's."""
    model.save(os.path.join(directory, "model.keras"))
    return {"keras": 0.0, "saved_model": 0.0}


@needs_torch
def test_retrofit_finetune_and_export_with_a_timm_file(checkpoint, builtin_tfds_dir, tmp_path,
                                                       capsys, monkeypatch):
    monkeypatch.setattr(E, "save_artifacts", _keras_file_only)
    state = safetensors.numpy.load_file(checkpoint)
    # At 32 px the last stage is 1x1, where no SE block goes: its trained SE weights
    # would be lost.
    assert_inprocess_bad(capsys, "retrofit", r"`input_shape` must be at least 33x33 with a "
                         r"timm checkpoint.*Received: input_shape=\(32, 32, 3\)", "seresnet50",
                         "--weights", checkpoint, "--input-shape", "32,32,3",
                         "--out", tmp_path / "r")
    # retrofit: the zoo model is built with the checkpoint (SE included) and saved as is.
    code, err, out = run_inprocess(capsys, "retrofit", "seresnet50", "--weights", checkpoint,
                                   "--input-shape", "64,64,3", "--out", tmp_path / "r")
    assert code == 0, err
    assert "SEResNet50 from the SE zoo: 16 SE blocks" in out
    report = json.load(open(tmp_path / "r" / "report.json"))
    assert report["init"] == "standard" and report["weights"] == checkpoint
    assert json.load(open(tmp_path / "r" / "keras_se.json"))["preprocess"] == "torch"
    model = keras.saving.load_model(tmp_path / "r" / "model.keras")
    assert model.get_layer("pool1_pad").padding == ((0, 1), (0, 1))  # timm's stem
    np.testing.assert_array_equal(model.get_layer("conv5_block1_3_bn_se").expand_bias.numpy(),
                                  state["layer4.0.se_module.fc2.bias"])
    np.testing.assert_array_equal(model.get_layer("predictions").bias.numpy(),
                                  state["last_linear.bias"])

    # finetune: the trained SE blocks and a new head for the data; torch preprocessing.
    ft = tmp_path / "ft"
    code, err, out = run_inprocess(capsys, "finetune", "seresnet50", "--weights", checkpoint,
                                   "--data-dir", builtin_tfds_dir, "--image-size", 64,
                                   "--out", ft, *FAST)
    assert code == 0, err
    assert "freeze=backbone" in out
    metrics = json.load(open(ft / "metrics.json"))
    assert metrics["settings"]["init"] == "standard"
    assert metrics["params"]["trainable"] == metrics["params"]["se"] + 2048 * 6 + 6
    assert json.load(open(ft / "keras_se.json"))["preprocess"] == "torch"
    assert default_preprocess(resolve_model(str(ft))) == "torch"
    trained = keras.saving.load_model(ft / "model.keras")
    layer = trained.get_layer("conv3_block2_2_conv")  # frozen: still the checkpoint's
    np.testing.assert_array_equal(layer.kernel.numpy(),
                                  state["layer2.1.conv2.weight"].transpose(2, 3, 1, 0))
    assert sum(isinstance(la, keras_se.SqueezeExcite) for la in trained.layers) == 16

    # export: the fine-tuned run as a SavedModel, loaded back and compared with Keras.
    code, err, out = run_inprocess(capsys, "export", ft, "--format", "saved_model",
                                   "--out", tmp_path / "sm")
    assert code == 0, err
    assert "SavedModel (serve signature) matches Keras" in out
    assert entries(tmp_path) == ["ft", "r", "sm"]


def test_a_timm_architecture_as_the_model(capsys):
    # `sites` builds with random weights: nothing is read or downloaded.
    code, err, out = run_inprocess(capsys, "sites", "timm:seresnet50.ra2_in1k", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["existing_se_layers"] == 16 and report["sites"] == []
    spec = resolve_model("timm:seresnet152d")
    assert (spec.kind, spec.default_size, spec.has_se) == ("timm", 256, True)
    assert default_preprocess(spec, "imagenet") == "torch"
    assert cli.parse(["finetune", "timm:seresnet50", "--out", "x"]).init == "auto"
