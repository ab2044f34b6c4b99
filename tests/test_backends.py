"""keras-se on JAX and PyTorch, driven from the TensorFlow suite with subprocesses.

A process runs one Keras backend, so everything here that needs JAX or PyTorch runs
in a child with `KERAS_BACKEND` set (the core tests run on each backend by
themselves: `make test-jax`, `make test-torch`). Here: `.keras` files cross every
pair of backends with equal outputs; `keras-se finetune` on JAX (resume after
SIGKILL, data-parallel over two host devices) and on PyTorch; `keras-se export`
from JAX (SavedModel and TFLite, checked as on TensorFlow) and its one-line refusal
on PyTorch.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from test_cli import _epoch_lines, _tiny, entries, kill_after_first_epoch

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
ENV.pop("KERAS_BACKEND", None)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.xdist_group("backends")


def child(code, backend, *args, env=None, timeout=600):
    """Runs `code` with `python -c` on `backend`; returns its last stdout line as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env=dict(env or ENV, KERAS_BACKEND=backend),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(*args, backend=None, env=None, timeout=600):
    argv = [sys.executable, "-m", "keras_se", *map(str, args)]
    if backend:
        argv += ["--backend", backend]
    return subprocess.run(argv, capture_output=True, text=True, env=env or ENV, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def own_error_lines(proc):
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("keras-se ")]


# ------------------------------------------------------------ .keras across backends
# The model every backend saves: an SE-MobileNetV2 (add_se_blocks, init="standard")
# with random SE weights (biases too), and BatchNormalization statistics set from a
# random batch: with Keras's initial statistics (mean 0, variance 1) a random
# MobileNetV2's activations fade to ~1e-14 and every output is the same.
_BUILD = """
import keras, numpy as np
import keras_se


def se_mobilenet(seed):
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                          classes=10)
    model = keras_se.add_se_blocks(base, init="standard")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras_se.SqueezeExcite):
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    calibration = rng.uniform(-1, 1, size=(16, 32, 32, 3)).astype("float32")
    model(calibration, training=True)  # moving statistics := this batch's
    return model
"""

# A child loads the `.keras` files given to it, runs each on the check batch, saves its
# own model (when asked), and prints the outputs as JSON lists.
_LOAD_AND_SAVE = _BUILD + """
import json, sys
x = np.load(sys.argv[1])
result = {"backend": keras.backend.backend(), "outputs": {}}
for path in sys.argv[3:]:
    model = keras.saving.load_model(path)
    result["outputs"][path] = keras.ops.convert_to_numpy(model(x, training=False)).tolist()
if sys.argv[2] != "-":
    model = se_mobilenet(len(keras.backend.backend()))
    model.save(sys.argv[2])
    result["saved"] = keras.ops.convert_to_numpy(model(x, training=False)).tolist()
print(json.dumps(result))
"""


def test_keras_files_cross_every_pair_of_backends(tmp_path):
    """Saved on each backend, loaded on each other one: the same outputs.

    Four processes in all: this one (TensorFlow) saves first and loads last; a JAX
    child loads TensorFlow's file and saves its own; a PyTorch child loads both and
    saves its own; a second JAX child loads PyTorch's.
    """
    x = np.random.default_rng(0).uniform(-1, 1, size=(4, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    files = {b: str(tmp_path / f"{b}.keras") for b in ("tensorflow", "jax", "torch")}

    build = {}
    exec(_BUILD, build)  # the children's builder, here on TensorFlow
    model = build["se_mobilenet"](0)
    model.save(files["tensorflow"])
    saved = {"tensorflow": keras.ops.convert_to_numpy(model(x, training=False))}
    gates = model.get_layer("block_1_expand_relu_se").excitation(
        keras.Model(model.input, model.get_layer("block_1_expand_relu").output)(x))
    assert np.ptp(keras.ops.convert_to_numpy(gates)) > 0.05

    loaded = {}  # (saved on, loaded on) -> outputs
    steps = [("jax", files["jax"], ["tensorflow"]),
             ("torch", files["torch"], ["tensorflow", "jax"]),
             ("jax", "-", ["torch"])]
    for backend, save_to, load in steps:
        result = child(_LOAD_AND_SAVE, backend, tmp_path / "x.npy", save_to,
                       *[files[b] for b in load])
        assert result["backend"] == backend
        if save_to != "-":
            saved[backend] = np.array(result["saved"], "float32")
        for b in load:
            loaded[(b, backend)] = np.array(result["outputs"][files[b]], "float32")
    for b in ("jax", "torch"):
        loaded[(b, "tensorflow")] = keras.ops.convert_to_numpy(
            keras.saving.load_model(files[b])(x, training=False))

    assert sorted(loaded) == sorted((s, t) for s in files for t in files if s != t)
    # "Equal up to float32 rounding", measured: a random deep network amplifies
    # rounding, so the yardstick is how far each model's outputs move here when every
    # input value moves by one float32 ulp (measured: 6.8e-5 for this model, 6.7e-6
    # without SE; the other backends' outputs differ from TensorFlow's by 5e-5 to 1e-4).
    x_ulp = np.nextafter(x, np.float32(np.inf))
    for source in files:
        reloaded = model if source == "tensorflow" else keras.saving.load_model(files[source])
        ulp = np.abs(keras.ops.convert_to_numpy(reloaded(x_ulp, training=False))
                     - keras.ops.convert_to_numpy(reloaded(x, training=False))).max()
        assert 0 < ulp < 1e-3, (source, ulp)
        for target in files:
            if target != source:
                np.testing.assert_allclose(loaded[(source, target)], saved[source], rtol=0,
                                           atol=10 * ulp,
                                           err_msg=f"saved on {source}, loaded on {target}")
    # Not vacuous: the outputs vary with the image, and the three models (different
    # seeds) differ.
    assert all(out.std(axis=0).max() > 1e-3 for out in saved.values())
    assert np.abs(saved["jax"] - saved["torch"]).max() > 1e-3


# ------------------------------------------------------------------- keras-se finetune
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("models") / "tiny.keras")


def test_finetune_on_jax_resumes_after_sigkill(tiny, builtin_tfds_dir, tmp_path):
    # The TensorFlow test (test_cli.py), on JAX through --backend: kill -9 after the
    # first epoch's backup, then the same command finishes the run.
    out = tmp_path / "run"
    args = [sys.executable, "-m", "keras_se", "finetune", tiny, "--data-dir", builtin_tfds_dir,
            "--out", str(out), "--epochs", "3", "--steps-per-epoch", "300",
            "--validation-steps", "2", "--batch-size", "8", "--freeze", "none",
            "--backend", "jax"]
    meta = tmp_path / ".run.partial" / "state" / "backup" / "training_metadata.json"
    kill_after_first_epoch(args, meta, timeout=400)
    assert not out.exists()
    done = json.load(open(meta))["epoch"]
    assert 1 <= done < 3
    state = json.load(open(tmp_path / ".run.partial" / "state" / "finetune_state.json"))
    kept = {int(k): v for k, v in state["epochs"].items() if int(k) <= done}

    again = ok(subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600))
    assert again.stdout.startswith("resuming:") and "backend=jax" in again.stdout
    assert _epoch_lines(again.stdout) == list(range(done + 1, 4))
    history = json.load(open(out / "history.json"))
    metrics = json.load(open(out / "metrics.json"))
    assert history["epoch"] == [1, 2, 3]
    assert metrics["backend"] == "jax" and metrics["initial_epoch"] == done
    for epoch, logs in kept.items():  # nothing finished is lost
        assert history["loss"][epoch - 1] == logs["loss"]
    # JAX exports its SavedModel with jax2tf; the .keras file loads here, on TensorFlow.
    assert entries(out) == ["curves.png", "history.json", "keras_se.json", "metrics.json",
                            "model.keras", "report.json", "saved_model"]
    assert metrics["reload_max_abs_diff"]["saved_model"] <= 1e-5
    keras.saving.load_model(out / "model.keras")
    assert entries(tmp_path) == ["run"]


def test_finetune_data_parallel_on_two_jax_host_devices(tiny, builtin_tfds_dir, tmp_path):
    out = tmp_path / "dp"
    env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = ok(run_cli("finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", out,
                      "--strategy", "mirrored", "--epochs", 2, "--steps-per-epoch", 3,
                      "--validation-steps", 2, "--batch-size", 8, backend="jax", env=env))
    assert "(2 replica(s)), backend=jax" in proc.stdout
    metrics = json.load(open(out / "metrics.json"))
    assert (metrics["backend"], metrics["strategy"], metrics["num_replicas"]) == (
        "jax", "DataParallel", 2)
    history = json.load(open(out / "history.json"))
    assert history["epoch"] == [1, 2] and all(np.isfinite(history["loss"]))


DETERMINISTIC = """
    import json, os
    import keras
    from keras_se.finetune import make_deterministic
    draws = []
    for seed in (3, 3, 4):
        make_deterministic(seed)
        draws.append(keras.ops.convert_to_numpy(keras.random.normal((3,))).tolist())
    state = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "draws": draws}
    if keras.backend.backend() == "torch":
        import torch
        state["torch"] = torch.are_deterministic_algorithms_enabled()
    print(json.dumps(state))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_make_deterministic_on_jax_and_torch(backend):
    state = child(DETERMINISTIC, backend)
    first, again, other = state["draws"]
    assert first == again != other
    if backend == "jax":
        assert state["xla_flags"].count("--xla_gpu_deterministic_ops=true") == 1  # once
    else:
        assert state["torch"] is True


def test_finetune_on_torch(tiny, builtin_tfds_dir, tmp_path):
    # KERAS_BACKEND in the environment (the flag is tested on JAX).
    env = dict(ENV, KERAS_BACKEND="torch")
    out = tmp_path / "pt"
    proc = ok(run_cli("finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", out,
                      "--epochs", 2, "--steps-per-epoch", 3, "--validation-steps", 2,
                      "--batch-size", 8, "--lr", 0.01, env=env))
    assert "backend=torch" in proc.stdout and "no saved_model/" in proc.stdout
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["backend"] == "torch" and metrics["epochs"] == 2
    assert set(metrics["reload_max_abs_diff"]) == {"keras"}
    assert entries(out) == ["curves.png", "history.json", "keras_se.json", "metrics.json",
                            "model.keras", "report.json"]
    # Trained on PyTorch, the SE layers and the head moved; the file loads here.
    trained = keras.saving.load_model(out / "model.keras")
    original = keras.saving.load_model(tiny)
    assert not np.array_equal(original.get_layer("predictions").get_weights()[0],
                              trained.get_layer("predictions").get_weights()[0])
    # A strategy PyTorch cannot have: one line, exit code 2, nothing written.
    bad = run_cli("finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", tmp_path / "x",
                  "--strategy", "mirrored", env=env)
    assert bad.returncode == 2, bad.stderr[-2000:]
    lines = own_error_lines(bad)
    assert len(lines) == 1 and "Traceback" not in bad.stderr
    assert re.search(r"^keras-se finetune: error: `strategy='mirrored'` is not available on the "
                     r"torch backend .*Received: strategy='mirrored'$", lines[0]), lines[0]
    assert entries(tmp_path) == ["pt"]


# --------------------------------------------------------------------- keras-se export
_FRESH_TF_CHECK = """
import json, sys
import numpy as np, tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
x = np.load(sys.argv[1])
loaded = tf.saved_model.load(sys.argv[2])  # keep a reference: serve needs its variables
served = loaded.serve(tf.constant(x)).numpy()
interpreter = Interpreter(model_path=sys.argv[3])
detail = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(detail["index"], list(x.shape))
interpreter.allocate_tensors()
interpreter.set_tensor(detail["index"], x)
interpreter.invoke()
lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
print(json.dumps({"served": served.tolist(), "tflite": lite.tolist(),
                  "keras_se": "keras_se" in sys.modules}))
"""


def test_export_from_jax_checked_in_a_fresh_process(tiny, tmp_path):
    sm, tfl = tmp_path / "sm", tmp_path / "m.tflite"
    proc = ok(run_cli("export", tiny, "--format", "saved_model", "--out", sm, backend="jax"))
    assert "tolerance 1e-05" in proc.stdout
    proc = ok(run_cli("export", tiny, "--format", "tflite", "--out", tfl, backend="jax"))
    assert "tolerance 0.0001" in proc.stdout
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = keras.ops.convert_to_numpy(keras.saving.load_model(tiny)(x))
    assert expected.std(axis=0).max() > 0.01
    # A fresh TensorFlow process that imports no keras_se, as for TensorFlow's exports.
    result = child(_FRESH_TF_CHECK, "tensorflow", tmp_path / "x.npy", sm, tfl)
    assert not result["keras_se"]
    np.testing.assert_allclose(result["served"], expected, atol=1e-5)
    np.testing.assert_allclose(result["tflite"], expected, atol=1e-4)


def test_export_from_torch_says_why_not(tiny, tmp_path):
    for fmt, out, why in (("saved_model", "sm", "torch_xla"), ("tflite", "m.tflite", "litert-torch")):
        proc = run_cli("export", tiny, "--format", fmt, "--out", tmp_path / out, backend="torch")
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = own_error_lines(proc)
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert re.search(rf"^keras-se export: error: A {fmt} cannot be exported from the torch "
                         rf"backend: .*{why}.* on tensorflow or jax .*"
                         rf"Received: format='{fmt}', backend='torch'$", lines[0]), lines[0]
    assert entries(tmp_path) == []


_FRESH_ORT_CHECK = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
x = np.load(sys.argv[1])
proto = onnx.load(sys.argv[2])
session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
print(json.dumps({"out": session.run(None, {name: x})[0].tolist(), "input": name,
                  "batch": proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param,
                  "ops": sorted({n.op_type for n in proto.graph.node}),
                  "torch": "torch" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_onnx_from_torch_checked_in_a_fresh_process(tiny, tmp_path):
    # PyTorch's one export: torch.onnx (TorchScript), the batch dynamic, checked in
    # ONNX Runtime by the command and again here, in a process without torch or Keras.
    path = tmp_path / "m.onnx"
    proc = ok(run_cli("export", tiny, "--format", "onnx", "--out", path, backend="torch"))
    assert "tolerance 0.0001" in proc.stdout
    x = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    model = keras.saving.load_model(tiny)
    expected = keras.ops.convert_to_numpy(model(x))
    result = child(_FRESH_ORT_CHECK, "torch", tmp_path / "x.npy", path)
    assert not result["torch"] and not result["keras"]
    assert result["batch"] == "batch" and result["input"] == model.inputs[0].name
    assert "ReduceMean" in result["ops"] or "GlobalAveragePool" in result["ops"]
    np.testing.assert_allclose(result["out"], expected, atol=1e-4)
    assert entries(tmp_path) == ["m.onnx", "x.npy"]


def test_onnx_from_jax_names_its_missing_converter(tiny, tmp_path):
    # Keras's JAX path to ONNX is jax2onnx, which keras-se does not install (it brings
    # flax, equinox, optax, orbax...): one line, exit code 2, nothing written.
    import importlib.util

    if importlib.util.find_spec("jax2onnx") is not None:
        pytest.skip("jax2onnx is installed here: the refusal cannot be seen")
    proc = run_cli("export", tiny, "--format", "onnx", "--out", tmp_path / "m.onnx", backend="jax")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = own_error_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert re.search(r"^keras-se export: error: `--format onnx` needs jax2onnx on the jax "
                     r"backend: pip install jax2onnx\. Received: format='onnx'$", lines[0]), lines[0]
    assert entries(tmp_path) == []


def test_backend_flag_is_in_the_help_and_checked():
    for command in ("finetune", "export", "retrofit"):
        proc = ok(run_cli(command, "--help"))
        assert re.search(r"--backend \{tensorflow,jax,torch\}", proc.stdout), command
    bad = run_cli("sites", "resnet50", "--backend", "theano")
    assert bad.returncode == 2 and "invalid choice: 'theano'" in bad.stderr
