"""keras_se.applications.timm_weights: timm's trained SE-ResNets in Keras (applications/).

Offline throughout: nothing is downloaded. The parity tests build each timm
architecture with `pretrained=False`, randomise every weight and every BatchNorm
statistic (so no BatchNorm is the identity), save it as the Hugging Face Hub holds
it (`timm.models.save_for_hf`: `model.safetensors` with timm's state-dict names),
convert it and compare logits with timm's at 64 and 65 px (an odd size catches
padding errors). They need torch and timm (and keras-hub for `seresnet50` and
`seresnet152d`): skipped with a reason where those are missing, except in CI
(`CI` set), where a missing package fails them, so that they cannot be skipped
unnoticed. The name map, the parameter count, the name resolution and every
refusal are tested without torch.
"""

import dataclasses
import doctest
import json
import os
import re
import sys

import keras
import numpy as np
import pytest
import safetensors.numpy
from keras_se.applications import timm_weights as tw

import keras_se
from keras_se import applications

IN_CI = bool(os.environ.get("CI"))

# TensorFlow, loaded first here (conftest imports Keras), and triton's native library
# crash the process (a segmentation fault in `triton._C.libtriton`) when triton is
# loaded second, as `import torchvision` (through timm) does with PyPI's torch wheels.
# These tests run torch on CPU and never need triton: hide it, and torch goes on
# without it as on its CPU-only wheels.
sys.modules.setdefault("triton", None)
try:
    import timm
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = timm = None
try:
    import keras_hub
except ImportError:  # pragma: no cover
    keras_hub = None

needs_torch = pytest.mark.skipif(
    torch is None and not IN_CI, reason="needs torch and timm (pip install timm)")
needs_hub = pytest.mark.skipif(
    (torch is None or keras_hub is None) and not IN_CI,
    reason="needs torch, timm and keras-hub (pip install timm keras-hub)")

#: timm's own count for legacy_seresnet50 (and seresnet50): `sum(p.numel() for p in
#: model.parameters())`, no BatchNorm statistics.
TIMM_PARAMS_SERESNET50 = 28_088_024
#: Keras's count of the same network: + BatchNorm moving mean/variance (non-trainable,
#: buffers in torch) + the biases of Keras's ResNet convolutions (timm's have none;
#: the conversion sets them to zero).
BN_STATISTICS_50 = 53_120
CONV_BIASES_50 = 26_560


# ----------------------------------------------------------- torch-free: the name map
def legacy_timm_shapes(stage_blocks=(3, 4, 6, 3)):
    """timm's legacy_seresnet state dict (names and shapes), worked out by hand."""
    shapes = {}

    def bn(key, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{p}"] = (c,)
        shapes[f"{key}.num_batches_tracked"] = ()

    shapes["layer0.conv1.weight"] = (64, 3, 7, 7)
    bn("layer0.bn1", 64)
    inplanes = 64
    for s, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stage_blocks), start=1):
        out = planes * 4
        for b in range(blocks):
            k = f"layer{s}.{b}"
            shapes[f"{k}.conv1.weight"] = (planes, inplanes if b == 0 else out, 1, 1)
            bn(f"{k}.bn1", planes)
            shapes[f"{k}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{k}.bn2", planes)
            shapes[f"{k}.conv3.weight"] = (out, planes, 1, 1)
            bn(f"{k}.bn3", out)
            shapes[f"{k}.se_module.fc1.weight"] = (out // 16, out, 1, 1)
            shapes[f"{k}.se_module.fc1.bias"] = (out // 16,)
            shapes[f"{k}.se_module.fc2.weight"] = (out, out // 16, 1, 1)
            shapes[f"{k}.se_module.fc2.bias"] = (out,)
            if b == 0:
                shapes[f"{k}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{k}.downsample.1", out)
        inplanes = out
    shapes["last_linear.weight"] = (1000, 2048)
    shapes["last_linear.bias"] = (1000,)
    return shapes


def _is_parameter(key):
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.fixture(scope="module")
def synthetic_legacy50(tmp_path_factory):
    """A legacy_seresnet50 state dict of random arrays, saved with safetensors (no torch)."""
    rng = np.random.default_rng(0)
    state = {}
    for key, shape in legacy_timm_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(7, dtype="int64")
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, shape).astype("float32")
        else:
            state[key] = rng.normal(0, 0.05, shape).astype("float32")
    path = str(tmp_path_factory.mktemp("legacy50") / "model.safetensors")
    safetensors.numpy.save_file(state, path)
    return path, state


def test_hand_worked_shapes_give_timms_parameter_count():
    shapes = legacy_timm_shapes()
    assert len(shapes) == 384  # len(timm.create_model("legacy_seresnet50").state_dict())
    params = sum(int(np.prod(s)) for k, s in shapes.items() if _is_parameter(k))
    assert params == TIMM_PARAMS_SERESNET50


def test_legacy_name_map_covers_timms_state_dict_exactly():
    m = tw.legacy_weight_map((3, 4, 6, 3))
    timm_keys = {k for k, _ in m.values() if k is not None}
    expected = {k for k in legacy_timm_shapes() if not k.endswith("num_batches_tracked")}
    assert timm_keys == expected
    assert len(timm_keys) == 384 - 53  # 53 BatchNorms, each with num_batches_tracked
    # Each timm tensor feeds exactly one Keras variable.
    assert len([k for k, _ in m.values() if k is not None]) == len(timm_keys)
    assert m["conv1_conv/kernel"] == ("layer0.conv1.weight", "conv")
    assert m["conv2_block1_0_conv/kernel"] == ("layer1.0.downsample.0.weight", "conv")
    assert m["conv5_block3_3_bn/moving_variance"] == ("layer4.2.bn3.running_var",
                                                      "bn_variance")
    assert m["conv4_block6_3_bn_se/expand_kernel"] == ("layer3.5.se_module.fc2.weight",
                                                       "conv1x1")
    assert m["predictions/kernel"] == ("last_linear.weight", "linear")
    # The 53 conv biases of Keras's ResNet get zeros.
    assert sum(1 for k, how in m.values() if how == "zeros") == 53
    no_top = tw.legacy_weight_map((3, 4, 6, 3), include_top=False)
    assert set(m) - set(no_top) == {"predictions/kernel", "predictions/bias"}
    assert len(tw.legacy_weight_map((3, 8, 36, 3))) - len(m) == (4 + 30) * (3 * 6 + 4)


def test_hub_se_map_names():
    m = tw.resnet_se_weight_map((3, 8, 36, 3))
    assert len(m) == 50 * 4 + 2
    assert m["stack0_block0_3_bn_se/reduce_kernel"] == ("layer1.0.se.fc1.weight", "conv1x1")
    assert m["stack2_block35_3_bn_se/reduce_bias"] == ("layer3.35.se.fc1.bias", "copy")
    assert m["predictions/bias"] == ("fc.bias", "copy")


def test_synthetic_checkpoint_loads_exactly_without_torch(synthetic_legacy50):
    path, state = synthetic_legacy50
    model = applications.SEResNet50(weights=path, input_shape=(64, 64, 3))
    # Keras's count = timm's + BatchNorm statistics + zeroed conv biases.
    assert model.count_params() == TIMM_PARAMS_SERESNET50 + BN_STATISTICS_50 + CONV_BIASES_50
    assert model.count_params() == 28_167_704  # the same as SEResNet50(weights=None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TIMM_PARAMS_SERESNET50 + CONV_BIASES_50
    assert model.get_layer("pool1_pad").padding == ((0, 1), (0, 1))
    se = [layer for layer in model.layers if isinstance(layer, keras_se.SqueezeExcite)]
    assert len(se) == 16 and {layer.init for layer in se} == {"standard"}
    conv = model.get_layer("conv3_block2_2_conv").kernel.numpy()
    np.testing.assert_array_equal(conv, state["layer2.1.conv2.weight"].transpose(2, 3, 1, 0))
    assert not model.get_layer("conv3_block2_2_conv").bias.numpy().any()
    se_layer = model.get_layer("conv5_block1_3_bn_se")
    np.testing.assert_array_equal(se_layer.reduce_kernel.numpy(),
                                  state["layer4.0.se_module.fc1.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(se_layer.expand_bias.numpy(),
                                  state["layer4.0.se_module.fc2.bias"])
    bn = model.get_layer("conv1_bn")
    # Keras adds epsilon 1.001e-5, timm 1e-5: the stored variance absorbs the gap.
    np.testing.assert_allclose(bn.moving_variance.numpy() + bn.epsilon,
                               state["layer0.bn1.running_var"] + 1e-5, rtol=1e-7)
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(),
                                  state["last_linear.weight"].T)


def test_synthetic_checkpoint_without_top(synthetic_legacy50):
    path, _ = synthetic_legacy50
    model = applications.SEResNet50(weights=path, include_top=False, pooling="avg",
                                    input_shape=(64, 64, 3))
    assert model.output_shape == (None, 2048)


def test_incomplete_checkpoint_is_refused(synthetic_legacy50, tmp_path):
    _, state = synthetic_legacy50
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.2.se_module")}
    path = str(tmp_path / "partial.safetensors")
    safetensors.numpy.save_file(partial, path)
    with pytest.raises(ValueError, match=r"lacks the tensor 'layer4\.2\.se_module\.fc1"
                       r"\.weight'.*Received: weights='.*partial\.safetensors'$"):
        applications.SEResNet50(weights=path, input_shape=(64, 64, 3))


# --------------------------------------------------------- torch-free: refusals
def _tiny(pad, init):
    """The parts of an SE-ResNet that `load_timm_weights` checks first."""
    x = inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1_conv")(x)
    x = keras.layers.ZeroPadding2D(pad, name="pool1_pad")(x)
    x = keras_se.SqueezeExcite(ratio=2, init=init, name="conv2_block1_3_bn_se")(x)
    return keras.Model(inputs, x)


def test_stock_stem_is_refused(synthetic_legacy50):
    path, _ = synthetic_legacy50
    with pytest.raises(ValueError, match=r"stock Keras ResNet stem .*ceil_mode=True.*"
                       r"SEResNet50\(weights=.*\)"):
        tw.load_timm_weights(_tiny(1, "standard"), path)


def test_identity_init_is_refused_at_load(synthetic_legacy50):
    path, _ = synthetic_legacy50
    with pytest.raises(ValueError, match=r"^`init` must be 'standard' to load trained SE "
                       r"weights.*2\*sigmoid.*Received: init='identity'$"):
        tw.load_timm_weights(_tiny(((0, 1), (0, 1)), "identity"), path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(init="identity"), r"^`init` must be 'standard' \(or None\) with a timm checkpoint"
     r".*Received: init='identity', weights='timm:legacy_seresnet50\.in1k'$"),
    (dict(ratio=8), r"^`ratio` must be 16 with a timm checkpoint.*Received: ratio=8$"),
    (dict(gate="hard_sigmoid"), r"^`gate` must be 'sigmoid'.*Received: gate='hard_sigmoid'$"),
    (dict(placement="residual_pre"), r"^`placement` must be None.*"
     r"Received: placement='residual_pre'$"),
    (dict(use_bias=False), r"SE option\(s\) \['use_bias'\] would change timm's SE blocks"),
    (dict(classes=10), r"^With a timm checkpoint and `include_top=True`, `classes` must be "
     r"1000.*Received: classes=10$"),
])
def test_constructor_refuses_what_cannot_work_before_any_download(kwargs, match):
    # Each is refused before the (absent) checkpoint is looked for.
    with pytest.raises(ValueError, match=match):
        applications.SEResNet50(weights="timm:legacy_seresnet50.in1k", **kwargs)


@pytest.mark.parametrize("weights, match", [
    ("timm:legacy_seresnet101.in1k", r"legacy_seresnet101 checkpoint; it loads into "
     r"SEResNet101, not SEResNet50"),
    ("timm:seresnet50.ra2_in1k", r"ResNet v1\.5: stride on the 3x3.*"
     r"from_timm\('timm:seresnet50\.ra2_in1k'\)"),
    ("timm:seresnext50_32x4d.racm_in1k", r"cannot convert \(seresnext50_32x4d: grouped 3x3 "
     r"convolutions.*Supported architectures: legacy_seresnet101, legacy_seresnet152, "
     r"legacy_seresnet50, seresnet152d, seresnet50\. Received: weights='timm:seresnext"),
    ("timm:ecaresnet50d.miil_in1k", r"ecaresnet50d: ECA attention"),
    ("timm:legacy_senet154.in1k", r"legacy_senet154: SENet-154"),
])
def test_wrong_or_unsupported_checkpoints_are_refused_by_name(weights, match):
    with pytest.raises(ValueError, match=match):
        applications.SEResNet50(weights=weights)


def _resnet_timm_shapes(stage_blocks, deep_stem):
    """The keys and shapes of timm's seresnet50 / seresnet152d that detection reads."""
    shapes = {"conv1.0.weight": (32, 3, 3, 3), "conv1.3.weight": (32, 32, 3, 3)} if deep_stem \
        else {"conv1.weight": (64, 3, 7, 7)}
    for s, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stage_blocks), start=1):
        for b in range(blocks):
            shapes[f"layer{s}.{b}.conv1.weight"] = (planes, planes * 4, 1, 1)
            shapes[f"layer{s}.{b}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"layer{s}.{b}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes[f"layer{s}.{b}.se.fc1.weight"] = (planes // 4, planes * 4, 1, 1)
    return shapes


@pytest.mark.parametrize("arch", sorted(tw.SUPPORTED))
def test_supported_state_dicts_are_recognised(arch):
    a = tw.SUPPORTED[arch]
    shapes = (legacy_timm_shapes(a.stage_blocks) if a.layout == "legacy"
              else _resnet_timm_shapes(a.stage_blocks, a.deep_stem))
    assert tw.detect_architecture(shapes) == arch


@pytest.mark.parametrize("shapes, match", [
    ({"layer0.conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (128, 64, 1, 1),
      "layer1.0.conv2.weight": (128, 4, 3, 3), "layer1.0.conv3.weight": (256, 128, 1, 1)},
     r"holds legacy_seresnext \(grouped 3x3 convolutions"),
    ({"layer0.conv1.weight": (64, 3, 3, 3), "layer0.conv2.weight": (64, 64, 3, 3)},
     r"holds legacy_senet154 \(SENet-154"),
    ({"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 1, 1),
      "layer1.0.se.conv.weight": (1, 1, 3)}, r"holds ecaresnet \(ECA attention"),
    ({"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 1, 1),
      "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3)},
     r"holds a ResNet without SE blocks"),
    ({"encoder.weight": (3, 3)}, r"does not hold a timm SE-ResNet state dict"),
])
def test_unsupported_state_dicts_are_recognised(shapes, match):
    with pytest.raises(ValueError, match=match + r".*Supported: legacy_seresnet101"):
        tw.detect_architecture(shapes)


def test_unsupported_file_is_refused(tmp_path):
    path = str(tmp_path / "seresnext.safetensors")
    safetensors.numpy.save_file({
        "conv1.weight": np.zeros((64, 3, 7, 7), "float32"),
        "layer1.0.conv1.weight": np.zeros((128, 64, 1, 1), "float32"),
        "layer1.0.conv2.weight": np.zeros((128, 4, 3, 3), "float32"),
        "layer1.0.conv3.weight": np.zeros((256, 128, 1, 1), "float32"),
        "layer1.0.se.fc1.weight": np.zeros((16, 256, 1, 1), "float32"),
    }, path)
    with pytest.raises(ValueError, match=r"^`weights` holds seresnext \(grouped.*Received: "
                       r"weights='.*seresnext\.safetensors'$"):
        tw.from_timm(path)


# ----------------------------------------------------- torch-free: name resolution
@pytest.mark.parametrize("model, weights, match", [
    ("seresnet50", "timm:legacy_seresnet101.in1k", r"^`weights` 'timm:legacy_seresnet101\.in1k' "
     r"is a legacy_seresnet101 checkpoint, which loads into SEResNet101, not SEResNet50\. "
     r"Received: model='seresnet50', weights='timm:legacy_seresnet101\.in1k'$"),
    ("se_mobilenet", "timm:legacy_seresnet50.in1k", r"loads into SEResNet50, not SEMobileNet"),
    ("seresnet50", "timm:seresnet50.ra2_in1k", r"loads into no zoo model: use it as the model "
     r"itself \(timm:seresnet50\.ra2_in1k\), not SEResNet50"),
    ("timm:seresnet50", "timm:seresnet152d", r"^`weights` must be left out"),
])
def test_command_line_door_refuses_before_any_download(model, weights, match):
    with pytest.raises(ValueError, match=match):
        tw.build_timm_model(model, weights, offline=True)


def test_command_line_door_offline(tmp_path):
    with pytest.raises(tw.WeightsUnavailableError, match=r"^`weights` 'timm:seresnet152d' is not in the "
                       r"local Hugging Face cache \(.*models--timm--seresnet152d\.ra2_in1k\)"):
        tw.build_timm_model("timm:seresnet152d", cache_dir=str(tmp_path), offline=True)


def test_parse_timm_name():
    assert tw.parse_timm_name("timm:legacy_seresnet50") == ("legacy_seresnet50", "in1k")
    assert tw.parse_timm_name("timm:seresnet50.ra2_in1k") == ("seresnet50", "ra2_in1k")
    assert tw.parse_timm_name("timm:seresnet152d") == ("seresnet152d", "ra2_in1k")
    assert tw.is_timm_weights("timm:x") and tw.is_timm_weights("a/b.PTH")
    assert not tw.is_timm_weights("imagenet") and not tw.is_timm_weights(None)
    with pytest.raises(ValueError, match=r"^`weights` must name a timm checkpoint"):
        tw.parse_timm_name("legacy_seresnet50")


def test_offline_without_cache_fails_fast_in_one_line(tmp_path):
    with pytest.raises(tw.WeightsUnavailableError) as info:
        tw.resolve_timm_weights("timm:legacy_seresnet50.in1k", cache_dir=str(tmp_path),
                                offline=True)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"`weights` 'timm:legacy_seresnet50\.in1k' is not in the local Hugging Face cache "
        r"\(.*models--timm--legacy_seresnet50\.in1k\) and offline mode is on "
        r"\(HF_HUB_OFFLINE\): download it once with the network, or pass a local "
        r"\.safetensors/\.pth file\. Received: weights='timm:legacy_seresnet50\.in1k'",
        message)
    # The command line reports ValueErrors as one line with exit code 2.
    assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)


def test_constructor_offline_reads_hf_hub_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(tw.WeightsUnavailableError, match=r"offline mode is on"):
        applications.SEResNet152(weights="timm:legacy_seresnet152.in1k")


def test_cached_checkpoint_is_found_offline(synthetic_legacy50, tmp_path):
    """The Hugging Face cache layout, as huggingface_hub (and timm) leave it."""
    pytest.importorskip("huggingface_hub")
    path, _ = synthetic_legacy50
    repo = tmp_path / "models--timm--legacy_seresnet50.in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(path)
    ckpt = tw.resolve_timm_weights("timm:legacy_seresnet50", cache_dir=str(tmp_path),
                                   offline=True)
    assert ckpt.architecture.name == "legacy_seresnet50" and ckpt.tag == "in1k"
    assert ckpt.top1 == (77.65, 224)
    assert os.path.samefile(ckpt.path, path)
    assert ckpt.preprocess_input is tw.preprocess_input


def test_local_file_is_detected(synthetic_legacy50):
    path, _ = synthetic_legacy50
    ckpt = tw.resolve_timm_weights(path)
    assert (ckpt.architecture.name, ckpt.tag, ckpt.path) == ("legacy_seresnet50", None, path)
    with pytest.raises(ValueError, match=r"^`weights` names a file that does not exist"):
        tw.resolve_timm_weights(path + ".missing.safetensors")


def test_reading_needs_no_torch(synthetic_legacy50, tmp_path):
    """In a process where torch cannot be imported: .safetensors read, .pth refused clearly."""
    import subprocess

    path, _ = synthetic_legacy50
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"not read")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from keras_se.applications import timm_weights as tw\n"
        f"state = tw.read_state_dict({path!r})\n"
        f"print(tw.resolve_timm_weights({path!r}).architecture.name, len(state))\n"
        f"try:\n    tw.read_state_dict({str(pth)!r})\n"
        "except ValueError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr[-2000:]
    assert lines[0] == "legacy_seresnet50 384"
    assert re.fullmatch(r"`weights` is a PyTorch pickle \(\.pth\), which needs torch to read "
                        r"\(pip install torch\); or save it as \.safetensors.*"
                        r"Received: weights='.*model\.pth'", lines[1])


def test_preprocess_input_is_torch_mode():
    x = np.array([[[[255.0, 0.0, 127.5]]]], dtype="float32")
    y = tw.preprocess_input(x.copy())
    expected = (np.array([1.0, 0.0, 0.5]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-6)


def test_docstring_examples_are_true():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    from keras_se.applications import _timm_maps

    tests = [t for m in (tw, _timm_maps) for t in finder.find(m) if t.examples]
    assert "keras_se.applications._timm_maps.legacy_weight_map" in {t.name for t in tests}
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 6 and results.failed == 0


# ---------------------------------------------------- with torch and timm: parity
def randomise(model, seed=0):
    """Random weights and BatchNorm statistics, scaled so that logits are O(1-10)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    def normal(shape, std):
        return std * torch.randn(shape, generator=g)

    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(normal(m.weight.shape, (2.0 / m.weight[0].numel()) ** 0.5))
                if m.bias is not None:
                    m.bias.copy_(normal(m.bias.shape, 0.1))
            elif isinstance(m, torch.nn.BatchNorm2d):
                # The residual branch's last BN is small, so that 50 blocks do not explode.
                last = name.endswith(("bn3", "downsample.1", "downsample.2"))
                m.weight.copy_(uniform(m.weight.shape, *((0.2, 0.5) if last else (0.5, 1.5))))
                m.bias.copy_(normal(m.bias.shape, 0.1))
                m.running_mean.copy_(normal(m.running_mean.shape, 0.2))
                m.running_var.copy_(uniform(m.running_var.shape, 0.5, 2.0))
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(normal(m.weight.shape, 15.0 / m.in_features ** 0.5))
                m.bias.copy_(normal(m.bias.shape, 0.1))
    return model.eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {size: rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
            for size in (64, 65)}


def _timm_logits(model, x):
    x = np.transpose(tw.preprocess_input(x.copy()), (0, 3, 1, 2)).copy()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _check_parity(arch, keras_model, timm_model, images):
    for size, x in images.items():
        ref = _timm_logits(timm_model, x)
        out = np.asarray(keras_model(tw.preprocess_input(x.copy()), training=False))
        assert out.shape == (2, 1000)
        assert ref.std() > 1.0  # logits large enough for 1e-4 to mean something
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4,
                                   err_msg=f"{arch} at {size}x{size}")


def _saved(arch, tmp_path, seed, **kwargs):
    timm_model = randomise(timm.create_model(arch, pretrained=False, **kwargs), seed)
    timm.models.save_for_hf(timm_model, str(tmp_path), safe_serialization=True)
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == arch
    return timm_model, str(tmp_path / "model.safetensors")


@needs_torch
def test_legacy_logits_match_timm(tmp_path, images):
    # legacy_seresnet101/152 run the same code with more blocks per stage (ResNet101/152
    # from keras.applications, the same layer names): their name maps and detection are
    # checked without torch above (test_legacy_name_map_covers_timms_state_dict_exactly,
    # test_supported_state_dicts_are_recognised); benchmarks/timm_parity.py measures them.
    arch = "legacy_seresnet50"
    timm_model, path = _saved(arch, tmp_path, seed=1)
    depth = tw.SUPPORTED[arch].depth
    # One model for both sizes: a dynamic input through `input_tensor`.
    model = getattr(applications, f"SEResNet{depth}")(
        weights=path, classifier_activation=None, input_tensor=keras.Input((None, None, 3)))
    timm_params = sum(p.numel() for p in timm_model.parameters())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in timm_model.modules())
    n_conv_bias = sum(m.out_channels for m in timm_model.modules()
                      if isinstance(m, torch.nn.Conv2d) and m.bias is None)
    n_bn_stats = 2 * sum(m.num_features for m in timm_model.modules()
                         if isinstance(m, torch.nn.BatchNorm2d))
    assert n_bn > 0 and model.count_params() == timm_params + n_bn_stats + n_conv_bias
    _check_parity(arch, model, timm_model, images)


@needs_torch
def test_pth_file_reads_like_safetensors(tmp_path):
    timm_model, path = _saved("legacy_seresnet50", tmp_path, seed=2)
    pth = tmp_path / "model.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in timm_model.state_dict().items()}},
               pth)
    a, b = tw.read_state_dict(path), tw.read_state_dict(pth)
    assert sorted(a) == sorted(b) and len(a) == 384
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert tw.resolve_timm_weights(str(pth)).architecture.name == "legacy_seresnet50"


@needs_hub
@pytest.mark.parametrize("arch", ["seresnet50", "seresnet152d"])
def test_keras_hub_logits_match_timm(arch, tmp_path, images):
    if arch == "seresnet50":
        timm_model, path = _saved(arch, tmp_path, seed=3)
        ckpt = path
        blocks = tw.SUPPORTED[arch].stage_blocks
    else:
        # ResNet-D with two blocks per stage instead of (3, 8, 36, 3): the same code (deep
        # stem, average-pool shortcuts, keras-hub's converter through the renames, blocks
        # after the first) at a fraction of the cost; the full network's map is checked
        # without torch (test_hub_se_map_names) and measured by benchmarks/timm_parity.py.
        blocks = (2, 2, 2, 2)
        timm_model, path = _saved(arch, tmp_path, seed=3, layers=blocks)
        small = dataclasses.replace(tw.SUPPORTED[arch], stage_blocks=blocks)
        ckpt = tw.TimmCheckpoint(path, small, None, path)
    model = tw.from_timm(ckpt, classifier_activation=None)
    # A keras-hub classifier around an SE keras-hub backbone (keras_se.hub).
    assert type(model).__name__ == "SEResNetImageClassifier"
    assert isinstance(model, keras_hub.models.ResNetImageClassifier)
    assert type(model.backbone).__name__ == "SEResNetBackbone"
    se = [layer for layer in model.backbone.layers if isinstance(layer, keras_se.SqueezeExcite)]
    assert len(se) == sum(blocks)
    assert se[0].name == "stack0_block0_3_bn_se" and {s.init for s in se} == {"standard"}
    n_bn_stats = 2 * sum(m.num_features for m in timm_model.modules()
                         if isinstance(m, torch.nn.BatchNorm2d))
    # keras-hub's convolutions have no biases: only the BN statistics differ.
    assert model.count_params() == sum(p.numel() for p in timm_model.parameters()) + n_bn_stats
    _check_parity(arch, model, timm_model, images)
    if arch == "seresnet50":
        return
    # A keras-hub preset (the small ResNet-D: the same code as any, a smaller file):
    # reloads through keras-hub's generic loader with equal logits, and its
    # preprocessor scales raw pixels as timm does.
    model.save_to_preset(str(tmp_path / "preset"))
    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / "preset"))
    assert type(loaded) is type(model)
    x = tw.preprocess_input(images[64].copy())
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(model(x, training=False)), rtol=0, atol=1e-6)
    pixel = np.array([[[[255.0, 0.0, 127.5]]]], dtype="float32")
    scaled = np.asarray(loaded.preprocessor.image_converter(np.tile(pixel, (1, 8, 8, 1))))
    assert scaled.shape == (1, 256, 256, 3)  # timm's evaluation size for seresnet152d
    np.testing.assert_allclose(scaled[0, 100, 100], tw.preprocess_input(pixel.copy())[0, 0, 0],
                               rtol=1e-5)
