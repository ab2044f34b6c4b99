"""keras_se.export.export_onnx: ONNX files checked in ONNX Runtime, and what SE becomes there.

Every big model is built, exported and run once per module (a fixture); the tests
read the result. Tests that share a model share an xdist group, so that under
`pytest -n 2 --dist loadgroup` one worker builds it. The models get informative
weights (`_informative`): with Keras's random initialisation a MobileNet's output
does not depend on its input, and a parity check on it would prove nothing.
"""

from __future__ import annotations

import gc
import os
import re

import keras
import numpy as np
import onnx
import pytest

import keras_se
from keras_se import applications as se_apps
from keras_se import export as E
from keras_se.layers import mean_squeeze

pytestmark = pytest.mark.heavy

DEMO_SELECT = r"^(expanded_conv|block_\d+)_depthwise_relu$"  # the demo's and the zoo's sites
SIZE = 64  # ResNet50's last stage is 2x2 here; at 32 px it is 1x1 and gets no SE

# Sites per placement, each placement alone (README's table; module_output has none).
RESNET50_SITES = {
    "post_activation": 33,
    "residual": 16,
    "residual_pre": 16,
    "residual_post": 16,
    "residual_identity": 16,
}
MOBILENET_V2_SITES = {
    "post_activation": 35,
    "residual": 10,
    "residual_pre": 10,
    "residual_post": 10,
    "residual_identity": 10,
}
# Stacking order in which every placement finds all of its own sites.
STACKED_SITES = {}  # model name -> {placement: anchors}, filled by the builders
STACK_ORDER = ("residual_post", "residual_identity", "residual", "residual_pre", "post_activation")


def _se_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras_se.SqueezeExcite)]


def _informative(model, seed=0, se_scale=None):
    """Gives `model` weights under which its outputs depend on its inputs, stably.

    Every BatchNormalization gets a random scale and offset and, for its moving
    statistics, the statistics of its own input on a calibration batch (one
    forward pass in training mode with momentum 0), so activations stay near
    unit scale through the whole network. Two more touches keep the network
    from amplifying float32 rounding (a randomly initialised deep network with
    BatchNorm does, by orders of magnitude, and any two correct float32
    implementations then differ by more than a tolerance can allow): each
    variance is at least its layer's median (no near-constant channel divides
    by ~0), and a ResNet residual branch's last norm is scaled by 0.3, small
    next to the shortcut as in trained ResNets. SE layers keep their own
    initialisation unless `se_scale` is given (then all their weights are
    redrawn with that standard deviation: an identity-init layer that has
    been trained).
    """
    rng = np.random.default_rng(seed)
    if se_scale is not None:
        for layer in _se_layers(model):
            layer.set_weights([rng.normal(0, se_scale, w.shape) for w in layer.get_weights()])
    norms = [la for la in model._flatten_layers() if isinstance(la, keras.layers.BatchNormalization)]
    momenta = [la.momentum for la in norms]
    for layer in norms:
        gamma, beta, mean, var = layer.get_weights()
        gamma = rng.uniform(0.5, 1.5, gamma.shape)
        if re.search(r"_3_bn$", layer.name):  # the last norm of a ResNet residual branch:
            gamma = gamma * 0.3  # small next to the shortcut, as in trained ResNets
        layer.set_weights([gamma, rng.normal(0, 0.5, beta.shape), mean, var])
        layer.momentum = 0.0
    model(E.sample_inputs(model, batch_size=16, seed=seed + 100), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        # A channel nearly constant on the calibration batch would amplify any
        # other input (and float32 rounding) without bound: floor its variance.
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([gamma, beta, mean, np.maximum(var, np.median(var))])
    return model


class Exported:
    """A model, its ONNX file, the parity `export_onnx` measured, and the graph's nodes.

    Keeps the nodes and the small constants only, not the weights (100 MB for
    ResNet50).
    """

    def __init__(self, name, model, path, diff):
        self.name, self.model, self.path, self.diff = name, model, path, diff
        proto = onnx.load(path)
        self.nodes = list(proto.graph.node)
        self.constants = {
            init.name: onnx.numpy_helper.to_array(init)
            for init in proto.graph.initializer
            if np.prod(init.dims) <= 16
        }


def _export(model, tmp_path_factory, name):
    path = str(tmp_path_factory.mktemp("onnx") / f"{name}.onnx")
    diff = E.export_onnx(model, path)
    return Exported(name, model, path, diff)


def _demo(init):
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, weights=None, classes=6
    )
    return keras_se.add_se_blocks(base, select=DEMO_SELECT, init=init)


def _stacked(base):
    """`base` with SE from every placement that has sites on it, stacked.

    Each ResNet50 export takes about 35 s (tf2onnx copies the 100 MB of
    weights for each of its graph passes), so the five placements go into one
    model: `skip_existing=False` and `STACK_ORDER` let each placement find
    every site it finds alone (asserted in the tests).
    """
    counts = {}
    model = base
    for placement in STACK_ORDER:
        model, report = keras_se.add_se_blocks(
            model, placement, init="standard", skip_existing=False, return_report=True
        )
        counts[placement] = [site.anchor for site in report.sites]
    return model, counts


def _build_demo():
    return _informative(_demo("standard"))


def _build_demo_identity():
    return _informative(_demo("identity"), seed=1, se_scale=0.3)


def _build_se_resnet50():
    model = se_apps.SEResNet50(
        weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None,
        init="standard",
    )
    return _informative(model)


def _build_se_mobilenet():
    model = se_apps.SEMobileNet(
        weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.25, classes=10,
        classifier_activation=None, init="standard",
    )
    return _informative(model)


def _build_resnet50_placements():
    base = keras.applications.ResNet50(
        weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None
    )
    model, STACKED_SITES["resnet50_placements"] = _stacked(base)
    return _informative(model)


def _build_mobilenet_v2_placements():
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.35, classes=10,
        classifier_activation=None,
    )
    model, STACKED_SITES["mobilenet_v2_placements"] = _stacked(base)
    return _informative(model)


# name: (builder, xdist group). Two ResNet50 exports take the longest: one group each,
# so that `pytest -n 2 --dist loadgroup` can give them different workers.
MODELS = {
    "demo": (_build_demo, "onnx_mobile"),
    "demo_identity": (_build_demo_identity, "onnx_mobile"),
    "se_mobilenet": (_build_se_mobilenet, "onnx_mobile"),
    "mobilenet_v2_placements": (_build_mobilenet_v2_placements, "onnx_mobile"),
    "se_resnet50": (_build_se_resnet50, "onnx_resnet_zoo"),
    "resnet50_placements": (_build_resnet50_placements, "onnx_resnet_placements"),
}


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory):
    """The model named by the test's parameter, built and exported once per module.

    Parametrized and module-scoped: pytest runs the tests of one model
    together and tears it down before building the next, so that one big
    model at a time is held (two ResNet50s with their traces and the
    converter's copies passed 6 GB).
    """
    name = request.param
    build, _ = MODELS[name]
    keras.utils.set_random_seed(0)
    result = _export(build(), tmp_path_factory, name)
    yield result
    del result.model
    keras.backend.clear_session()
    gc.collect()


def _params(names=tuple(MODELS)):
    return [pytest.param(n, id=n, marks=pytest.mark.xdist_group(MODELS[n][1])) for n in names]


# ---------------------------------------------------------------- parity
def _check_parity(exported):
    model = exported.model
    # export_onnx's own check (4 images) ...
    assert exported.diff <= E.ONNX_ATOL
    # ... and the file at other batch sizes (the batch is dynamic), other images.
    diffs = [exported.diff]
    for batch, seed in ((1, 11), (3, 12)):
        x = E.sample_inputs(model, batch_size=batch, seed=seed)
        expected = np.asarray(model(x, training=False))
        (got,) = E.run_onnx(exported.path, x)
        assert got.shape == expected.shape == (batch, model.outputs[0].shape[-1])
        np.testing.assert_allclose(got, expected, atol=E.ONNX_ATOL, rtol=0)
        diffs.append(float(np.abs(got - expected).max()))
    print(f"{exported.name}: max abs diff {max(diffs):.2g} (outputs up to {np.abs(expected).max():.2g})")
    # The check means something: outputs depend on the input, and most SE
    # gates vary across channels and images (a gate that is constant, such as
    # identity init's 1 or a dead 1-unit bottleneck's sigmoid(0), proves little).
    y = np.asarray(model(E.sample_inputs(model, batch_size=4), training=False))
    assert y.std(axis=0).max() > 0.01
    se = _se_layers(model)
    feature_model = keras.Model(model.inputs[0], [layer.input for layer in se])
    features = feature_model(E.sample_inputs(model, batch_size=2))
    spread = [float(np.std(layer.excitation(f))) for layer, f in zip(se, features)]
    assert np.mean(np.asarray(spread) > 0.005) >= 0.5, spread


def _check_input_name_and_dynamic_batch(exported):
    io = E.onnx_io(exported.path)
    ((input_name, shape),) = io["inputs"]
    assert input_name == exported.model.inputs[0].name
    assert shape == ["batch", SIZE, SIZE, 3]  # a dynamic batch, named
    ((_, out_shape),) = io["outputs"]
    assert out_shape == ["batch", exported.model.outputs[0].shape[-1]]
    assert io["opset"] == 15  # tf2onnx 1.17's default


def _check_every_placement_is_in_the_graph(exported):
    expected = {"resnet50_placements": RESNET50_SITES, "mobilenet_v2_placements": MOBILENET_V2_SITES}[
        exported.name
    ]
    # Stacked, each placement still found all the sites it finds alone ...
    assert {p: len(s) for p, s in STACKED_SITES[exported.name].items()} == expected
    assert len(_se_layers(exported.model)) == sum(expected.values())
    # ... and every SE block is in the graph: each Sigmoid is a gate over an
    # MLP over a global average.
    gates = [n for n in exported.nodes if n.op_type == "Sigmoid"]
    for gate in gates:
        assert _walk_to_squeeze(exported, gate) in (
            ["Sigmoid", "MatMul", "Relu", "MatMul", "GlobalAveragePool"],
            ["Sigmoid", "MatMul", "Relu", "MatMul", "ReduceMean"],
        ), gate.name
    ops = [n.op_type for n in exported.nodes]
    assert ops.count("Sigmoid") == sum(expected.values())
    assert "AveragePool" not in ops
    # (Fewer squeezes than SE blocks: two stacked blocks that read the same
    # tensor, such as residual_pre's and residual_identity's, share one.)
    # module_output needs multi-branch Concatenates: neither model has one.
    for placement in set(keras_se.PLACEMENTS) - set(expected):
        with pytest.raises(keras_se.NoSitesError):
            keras_se.add_se_blocks(exported.model, placement)


# ---------------------------------------------------------------- graph
def _block_nodes(exported, se_name):
    """The ONNX nodes of one SE layer: tf2onnx names them after its scope."""
    return [n for n in exported.nodes if f"/{se_name}/" in n.name or f"/{se_name}_1/" in n.name]


def _block_ops(exported, se_name):
    return [n.op_type for n in _block_nodes(exported, se_name)]


def _const(exported, name):
    if name in exported.constants:
        return exported.constants[name]
    for node in exported.nodes:
        if node.op_type == "Constant" and node.output[0] == name:
            return onnx.numpy_helper.to_array(node.attribute[0].t)
    return None


def _producer(exported):
    return {out: node for node in exported.nodes for out in node.output}


LAYOUT_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Add")
SQUEEZE_OPS = ("GlobalAveragePool", "ReduceMean", "AveragePool", "GlobalMaxPool", "ReduceMax")


def _walk_to_squeeze(exported, node):
    """Op types from `node` back to the first squeeze (pooling) op, layout ops dropped.

    Each step follows the first input that a node computes (the others are
    weights and constants): the gate, the MLP, the squeeze.
    """
    producer = _producer(exported)
    walked = []
    for _ in range(30):
        walked.append(node.op_type)
        if node.op_type in SQUEEZE_OPS:
            break
        computed = [producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"]
        if not computed:
            break
        node = computed[0]
    return [op for op in walked if op not in LAYOUT_OPS]


def _se_chain(exported, se_name):
    """The ops of one SE layer, from its gate back to its squeeze.

    Starts at the layer's rescale (its last `Mul`, where the block's input
    meets the reshaped gate) and walks back from its gate input: `["Sigmoid", "MatMul", "Relu", "MatMul", "GlobalAveragePool"]`.
    """
    producer = _producer(exported)
    nodes = _block_nodes(exported, se_name)
    used_inside = {i for n in nodes for i in n.input}
    # The rescale is the block's last Mul: its output leaves the block.
    (rescale,) = [n for n in nodes if n.op_type == "Mul" and n.output[0] not in used_inside]
    gate = next(producer[i] for i in rescale.input if i in producer and producer[i] in nodes)
    return _walk_to_squeeze(exported, gate)


def _check_se_block_op_types_in_se_resnet50(exported):
    se_resnet50 = exported
    # The first SE block: 256 channels on a 16x16 map, after a 1x1 convolution
    # and its BatchNorm (folded into the Conv by tf2onnx).
    assert _se_chain(se_resnet50, "conv2_block1_3_bn_se") == [
        "Sigmoid", "MatMul", "Relu", "MatMul", "GlobalAveragePool",
    ]
    ops = [n.op_type for n in se_resnet50.nodes]
    # One squeeze per SE block plus the classifier's global pooling; no
    # AveragePool with a fixed, whole-map kernel.
    assert ops.count("GlobalAveragePool") + ops.count("ReduceMean") == 16 + 1
    assert "AveragePool" not in ops
    assert ops.count("Sigmoid") == 16


def _check_se_block_op_types_in_the_demo_model(exported):
    demo = exported
    assert _se_chain(demo, "block_5_depthwise_relu_se") == [
        "Sigmoid", "MatMul", "Relu", "MatMul", "GlobalAveragePool",
    ]
    ops = [n.op_type for n in demo.nodes]
    assert "AveragePool" not in ops
    assert ops.count("Sigmoid") == len(_se_layers(demo.model)) == 17
    assert ops.count("GlobalAveragePool") + ops.count("ReduceMean") == 17 + 1


def _check_identity_init_gate_exports_as_two_sigmoid(exported):
    demo_identity = exported
    # 2 * sigmoid(z): a Mul by the constant 2 right after the Sigmoid.
    assert _se_chain(demo_identity, "block_5_depthwise_relu_se") == [
        "Mul", "Sigmoid", "MatMul", "Relu", "MatMul", "GlobalAveragePool",
    ]
    twos = []
    for node in _block_nodes(demo_identity, "block_5_depthwise_relu_se"):
        if node.op_type == "Mul":
            twos += [_const(demo_identity, i) for i in node.input]
    assert any(c is not None and np.allclose(c, 2.0) for c in twos)


# Each model is built and exported once (a fixture), then every check of it runs: one
# test per model, so that the export is never repeated for another test function.
CHECKS = {
    "demo": [_check_se_block_op_types_in_the_demo_model],
    "demo_identity": [_check_identity_init_gate_exports_as_two_sigmoid],
    "se_mobilenet": [],
    "mobilenet_v2_placements": [_check_every_placement_is_in_the_graph],
    "se_resnet50": [_check_se_block_op_types_in_se_resnet50],
    "resnet50_placements": [_check_every_placement_is_in_the_graph],
}


@pytest.mark.parametrize("exported", _params(), indirect=True)
def test_exported_model(exported):
    """ONNX Runtime matches Keras; input name and dynamic batch; the model's own checks."""
    for check in [_check_parity, _check_input_name_and_dynamic_batch, *CHECKS[exported.name]]:
        check(exported)


def _small_se_model(seed=0, **se_kwargs):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3), name="pixels")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    se = keras_se.SqueezeExcite(ratio=4, name="se", **se_kwargs)
    x = se(x)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    se.set_weights([rng.normal(0, 1, w.shape) for w in se.get_weights()])  # spread gates
    return model


@pytest.mark.parametrize(
    "gate, init, squeeze, gate_ops",
    [
        ("sigmoid", "standard", "avg", {"Sigmoid"}),
        ("sigmoid", "identity", "avg_max", {"Sigmoid"}),
        # Keras's hard sigmoid is relu6(x + 3) / 6: Clip(0, 6) and a Mul by 1/6
        # (the + 3 folds into the bias), or ONNX's HardSigmoid.
        ("hard_sigmoid", "standard", "avg", {"HardSigmoid", "Clip"}),
        ("hard_sigmoid", "identity", "avg", {"HardSigmoid", "Clip"}),
        ("tanh", "identity", "avg", {"Tanh"}),
    ],
)
def test_gates_and_squeezes_export(tmp_path, gate, init, squeeze, gate_ops):
    model = _small_se_model(gate=gate, init=init, squeeze=squeeze)
    path = str(tmp_path / "se.onnx")
    diff = E.export_onnx(model, path)
    assert diff <= E.ONNX_ATOL
    exported = Exported("se", model, path, diff)
    ops = _block_ops(exported, "se")
    assert ops.count("GlobalAveragePool") + ops.count("ReduceMean") == 1
    assert ("ReduceMax" in ops or "GlobalMaxPool" in ops) == (squeeze == "avg_max")
    assert gate_ops & set(ops), ops
    assert "AveragePool" not in ops


def test_the_mean_squeeze_switch_traces_a_mean_and_restores(tmp_path):
    import tensorflow as tf

    model = _small_se_model()
    x = E.sample_inputs(model, batch_size=2)

    def traced_ops():
        # A static batch above 1: where the layer pools (an unknown batch outside
        # training, the trace of every export, is a Mean whatever the switch).
        fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
            tf.TensorSpec((2, 12, 12, 3), tf.float32)
        )
        return {op.type for op in fn.graph.get_operations()}

    import keras_se.layers as L

    L.set_pooled_squeeze(True)  # the CPU fast path this switch turns off
    try:
        default = traced_ops()
        with mean_squeeze():
            inside = traced_ops()
            with mean_squeeze():
                pass
            assert not L.pooled_squeeze_enabled()  # a nested block restores the outer state
        assert L.pooled_squeeze_enabled()
        assert "AvgPool" in default and "AvgPool" not in inside
        assert "Mean" in inside
        pooled = np.asarray(model(x))
        with mean_squeeze():
            np.testing.assert_allclose(np.asarray(model(x)), pooled, atol=1e-5)
    finally:
        L.set_pooled_squeeze(None)


# ---------------------------------------------------------------- errors and files
def _unexportable(nested=False):
    """A model with a layer tf2onnx cannot convert: Lanczos resizing (ScaleAndTranslate)."""
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    resize = keras.layers.Resizing(8, 8, interpolation="lanczos3", name="lanczos_resize")
    if nested:
        inner_in = keras.Input((16, 16, 8))
        block = keras.Model(inner_in, keras_se.SqueezeExcite(ratio=4)(resize(inner_in)), name="head_block")
        x = block(x)
    else:
        x = keras_se.SqueezeExcite(ratio=4)(resize(x))
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x), name="resizer")


@pytest.mark.parametrize("nested", [False, True])
def test_unsupported_layer_fails_with_one_line_naming_it_and_leaves_no_file(tmp_path, nested):
    model = _unexportable(nested)
    path = tmp_path / "model.onnx"
    with pytest.raises(
        E.ExportError,
        match=r"^`model` cannot be exported to ONNX: layer 'lanczos_resize' \(Resizing\) computes "
        r"ScaleAndTranslate, which tf2onnx \S+ cannot convert to an ONNX op \(opset 15\)\. "
        r"Remove or replace that layer\. Received: model='resizer'$",
    ) as info:
        E.export_onnx(model, str(path))
    assert isinstance(info.value, ValueError)  # the command line's bad-input path: exit 2
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []  # no file, no partial file
    # An existing file at the path is left as it was.
    path.write_bytes(b"previous")
    with pytest.raises(E.ExportError):
        E.export_onnx(model, str(path), verify=False)
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.onnx"]


def test_parity_failure_raises_and_leaves_no_file(tmp_path):
    model = _small_se_model()
    with pytest.raises(E.ParityError, match=r"ONNX model .* differs from Keras by .* in ONNX Runtime \(tolerance -1\)"):
        E.export_onnx(model, str(tmp_path / "m.onnx"), atol=-1)
    assert os.listdir(tmp_path) == []


def test_export_onnx_argument_errors_and_options(tmp_path):
    model = _small_se_model()
    missing = tmp_path / "no_such_dir" / "m.onnx"
    with pytest.raises(ValueError, match=r"`path`'s directory does not exist: .*Received: path="):
        E.export_onnx(model, str(missing))
    # verify=False writes the file and returns None; opset is passed on.
    path = str(tmp_path / "m.onnx")
    assert E.export_onnx(model, path, verify=False, opset=17) is None
    assert E.onnx_io(path)["opset"] == 17
    x = E.sample_inputs(model, batch_size=2, seed=5)
    assert E.check_onnx(path, x, model(x)) <= E.ONNX_ATOL
    # A model never called exports too (its signature is given explicitly).
    fresh = _small_se_model(seed=1)
    assert E.export_onnx(fresh, str(tmp_path / "fresh.onnx")) <= E.ONNX_ATOL


# ------------------------------------------------------------------ command line
def _run_cli(*args, cwd):
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "keras_se", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def _own_lines(stderr):
    noise = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d|"
                       r"To enable the following instructions)")
    return [ln for ln in stderr.splitlines() if ln.strip() and not noise.match(ln)]


def test_cli_export_onnx_prints_the_parity_and_refuses_an_unexportable_model(tmp_path):
    good, bad = tmp_path / "good.keras", tmp_path / "bad.keras"
    _small_se_model().save(good)
    _unexportable().save(bad)
    proc = _run_cli("export", good, "--format", "onnx", "--out", "good.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"wrote good\.onnx .*ONNX \(input 'pixels' \(batch, 12, 12, 3\), ONNX Runtime\) "
                     r"matches Keras on 4 inputs: max abs diff \S+ \(tolerance 0\.0001\)", line), line
    diff = float(re.search(r"max abs diff (\S+)", line).group(1))
    x = E.sample_inputs(_small_se_model(), batch_size=4)
    model = keras.saving.load_model(good)
    assert diff == pytest.approx(E.check_onnx(str(tmp_path / "good.onnx"), x, model(x)), abs=1e-7)

    proc = _run_cli("export", bad, "--format", "onnx", "--out", "bad.onnx", cwd=tmp_path)
    lines = _own_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert re.match(r"keras-se export: error: `model` cannot be exported to ONNX: layer "
                    r"'lanczos_resize' \(Resizing\)", lines[0]), lines[0]
    assert sorted(os.listdir(tmp_path)) == ["bad.keras", "good.keras", "good.onnx"]

    proc = _run_cli("export", good, "--format", "onnx", "--out", "m.tflite", cwd=tmp_path)
    assert proc.returncode == 2 and "must end with .onnx" in _own_lines(proc.stderr)[0]
