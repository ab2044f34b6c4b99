"""The `keras-se` command line, end to end: every sub-command in a subprocess at tiny sizes,
the resume path (SIGKILL, then the same command), mirrored and multi-worker training, the
exported artifacts checked in numbers, and every bad input (exit code 2, one line on stderr,
nothing left behind)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_se
from keras_se import cli
from keras_se import data as D
from keras_se import export as E

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")

# TensorFlow 2.21 logs a few lines through absl while it is imported, before any
# code of ours runs, and TF_CPP_MIN_LOG_LEVEL does not silence them; the CLI
# filters the native log lines that come later. Our own stderr is what is left.
_TF_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|To enable the following instructions:)"
)


def run_cli(*args, cwd=None, env=None, timeout=400):
    return subprocess.run(
        [sys.executable, "-m", "keras_se", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or ENV,
        timeout=timeout,
    )


def own_stderr(stderr):
    return [ln for ln in stderr.splitlines() if ln.strip() and not _TF_IMPORT_NOISE.match(ln)]


def assert_ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def assert_bad_input(proc, command, pattern):
    lines = own_stderr(proc.stderr)
    assert proc.returncode == 2, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"keras-se {command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr


def run_inprocess(capsys, *args):
    """`cli.run` in this process: exit code and our stderr lines (TF is already imported)."""
    try:
        code = cli.run([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, [ln for ln in captured.err.splitlines() if ln.strip()], captured.out


def assert_inprocess_bad(capsys, command, pattern, *args):
    code, err, _ = run_inprocess(capsys, command, *args)
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"keras-se {command}: error: "), err[0]
    assert re.search(pattern, err[0]), err[0]


def entries(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def _tiny(path, classes=6, size=32):
    """A small CNN without SE: Rescaling inside, so it takes pixels in [0, 255]."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name="tiny")
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 20, bias])  # input-dependent outputs for the parity checks
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("models") / "tiny.keras")


FAST = ("--epochs", 1, "--steps-per-epoch", 2, "--validation-steps", 1, "--batch-size", 8)


# ===================================================================== sites
def test_sites_table_in_a_subprocess():
    proc = run_cli("sites", "mobilenet_v2", "--alpha", 0.35, "--input-shape", "48,48,3")
    assert_ok(proc)
    model = keras.applications.MobileNetV2(input_shape=(48, 48, 3), alpha=0.35, weights=None)
    spec = keras_se.models.resolve_model("mobilenet_v2")
    sites = keras_se.find_se_sites(model, spec.placement, select=spec.select)
    rows = [ln for ln in proc.stdout.splitlines() if re.match(r"^\s*\d+\s+\S+_depthwise_relu\s", ln)]
    assert len(rows) == len(sites) == 17
    assert f"+{sum(s.params for s in sites):,}" in proc.stdout
    assert "block_16_depthwise_relu_se" in proc.stdout and "336" in proc.stdout


def test_sites_names_are_case_insensitive_and_json(capsys):
    outs = []
    for name in ("mobilenet_v2", "MobileNetV2", "MOBILENET-V2"):
        code, err, out = run_inprocess(capsys, "sites", name, "--alpha", 0.35, "--input-shape",
                                       "32,32,3", "--json")
        assert code == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1] == outs[2]
    report = outs[0]
    assert report["model"] == "MobileNetV2"
    assert report["params_added"] == sum(s["params"] for s in report["sites"])
    code, err, out = run_inprocess(capsys, "sites", "resnet50", "--placement", "residual",
                                   "--input-shape", "64,64,3", "--select", "conv5")
    assert code == 0, err
    assert "3 SE sites, placement 'residual'" in out


# ================================================================== retrofit
def test_retrofit_by_name_in_a_subprocess(tmp_path):
    out = tmp_path / "retro"
    proc = run_cli("retrofit", "mobilenet_v2", "--alpha", 0.35, "--input-shape", "32,32,3",
                   "--weights", "none", "--classes", 4, "--out", out)
    assert_ok(proc)
    assert entries(out) == ["keras_se.json", "model.keras", "report.json", "saved_model"]
    assert entries(tmp_path) == ["retro"]  # no temporary directory left
    report = json.load(open(out / "report.json"))
    model = keras.saving.load_model(out / "model.keras")
    assert report["num_sites"] == sum(isinstance(la, keras_se.SqueezeExcite) for la in model.layers) == 13
    assert report["params_after"] == model.count_params()
    x = E.sample_inputs(model)
    loaded = tf.saved_model.load(str(out / "saved_model"))
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, np.asarray(model(x)), atol=E.SAVED_MODEL_ATOL)
    assert model.output.shape == (None, 4)


def test_retrofit_file_is_identity_at_init_and_refuses_to_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "retro"
    code, err, stdout = run_inprocess(capsys, "retrofit", tiny, "--out", out)
    assert code == 0, err
    original = keras.saving.load_model(tiny)
    retrofitted = keras.saving.load_model(out / "model.keras")
    assert sum(isinstance(la, keras_se.SqueezeExcite) for la in retrofitted.layers) == 2
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.asarray(original(x)).std(axis=0).max() > 0.01
    np.testing.assert_allclose(retrofitted(x), original(x), atol=1e-6)
    assert "max abs diff 0" in stdout
    before = {f: os.path.getmtime(out / f) for f in entries(out) if f != "saved_model"}
    assert_inprocess_bad(capsys, "retrofit", r"already holds a finished result; pass --overwrite",
                         tiny, "--out", out)
    assert {f: os.path.getmtime(out / f) for f in before} == before
    code, err, _ = run_inprocess(capsys, "retrofit", tiny, "--out", out, "--overwrite",
                                 "--init", "standard")
    assert code == 0, err
    assert json.load(open(out / "report.json"))["init"] == "standard"
    assert entries(tmp_path) == ["retro"]


# ================================================================== finetune
def test_finetune_in_a_subprocess(tiny, builtin_tfds_dir, tmp_path):
    out = tmp_path / "ft"
    proc = run_cli("finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", out, "--epochs", 2,
                   "--steps-per-epoch", 4, "--validation-steps", 2, "--batch-size", 8, "--lr", 0.01)
    assert_ok(proc)
    assert entries(out) == ["curves.png", "history.json", "keras_se.json", "metrics.json",
                            "model.keras", "report.json", "saved_model"]
    assert entries(tmp_path) == ["ft"]
    history = json.load(open(out / "history.json"))
    metrics = json.load(open(out / "metrics.json"))
    assert history["epoch"] == [1, 2] and len(history["val_accuracy"]) == 2
    assert metrics["after"]["accuracy"] == history["val_accuracy"][-1]
    assert metrics["freeze"] == "backbone" and metrics["num_classes"] == 6
    # Only the SE layers and the head were trained.
    trained = keras.saving.load_model(out / "model.keras")
    original = keras.saving.load_model(tiny)
    for layer in original.layers:
        if layer.weights and layer.name != "predictions":
            for a, b in zip(layer.get_weights(), trained.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    assert not np.array_equal(original.get_layer("predictions").get_weights()[0],
                              trained.get_layer("predictions").get_weights()[0])
    assert metrics["params"]["trainable"] == metrics["params"]["se"] + 16 * 6 + 6


def test_finetune_deterministic_repeats_to_the_bit(tiny, builtin_tfds_dir, tmp_path):
    # Without --deterministic these two runs differ (tried: the assertions fail).
    args = ("--data-dir", builtin_tfds_dir, "--epochs", 2, "--steps-per-epoch", 4,
            "--validation-steps", 2, "--batch-size", 8, "--freeze", "none", "--augment", "on",
            "--deterministic", "--seed", 5)
    runs = []
    for name in ("a", "b"):
        assert_ok(run_cli("finetune", tiny, "--out", tmp_path / name, *args))
        runs.append((json.load(open(tmp_path / name / "history.json")),
                     keras.saving.load_model(tmp_path / name / "model.keras").get_weights()))
    (history_a, weights_a), (history_b, weights_b) = runs
    assert history_a == history_b and history_a["epoch"] == [1, 2]
    assert len(weights_a) == len(weights_b) > 10
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    before = keras.saving.load_model(tiny).get_layer("predictions").get_weights()[0]
    assert not np.array_equal(before, weights_a[-2])  # it trained


def _epoch_lines(stdout):
    return [int(m.group(1)) for m in re.finditer(r"^Epoch (\d+)/\d+", stdout, re.M)]


def kill_after_first_epoch(args, meta, timeout):
    """Starts `args`; SIGKILLs it once `meta` (the backup's metadata) records epoch 1."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.load(open(meta))["epoch"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_finetune_resumes_after_sigkill(tiny, builtin_tfds_dir, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "keras_se", "finetune", tiny, "--data-dir", builtin_tfds_dir,
            "--out", str(out), "--epochs", "4", "--steps-per-epoch", "300",
            "--validation-steps", "2", "--batch-size", "8", "--freeze", "none"]
    meta = tmp_path / ".run.partial" / "state" / "backup" / "training_metadata.json"
    kill_after_first_epoch(args, meta, timeout=300)
    assert not out.exists()  # nothing half-written in --out
    done = json.load(open(meta))["epoch"]
    assert 1 <= done < 4
    state = json.load(open(tmp_path / ".run.partial" / "state" / "finetune_state.json"))
    kept = {int(k): v for k, v in state["epochs"].items() if int(k) <= done}
    assert sorted(kept) == list(range(1, done + 1))

    again = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=400)
    assert_ok(again)
    assert again.stdout.startswith("resuming:")
    assert _epoch_lines(again.stdout) == list(range(done + 1, 5))
    history = json.load(open(out / "history.json"))
    metrics = json.load(open(out / "metrics.json"))
    assert history["epoch"] == [1, 2, 3, 4]
    assert metrics["initial_epoch"] == done and metrics["resumed"]
    for epoch, logs in kept.items():  # nothing finished is lost
        assert history["loss"][epoch - 1] == logs["loss"]
        assert history["val_accuracy"][epoch - 1] == logs["val_accuracy"]
    assert entries(tmp_path) == ["run"]


def test_an_interrupted_run_with_other_settings_is_not_resumed(tiny, builtin_tfds_dir, tmp_path, capsys):
    out = tmp_path / "o"
    partial = tmp_path / ".o.partial"
    partial.mkdir()
    (partial / ".keras_se_run.json").write_text(json.dumps({"model": "other.keras"}))
    assert_inprocess_bad(capsys, "finetune", r"interrupted run with other settings \(.*model.*\); .*--fresh",
                         tiny, "--data-dir", builtin_tfds_dir, "--out", out, *FAST)
    assert partial.is_dir() and not out.exists()
    code, err, stdout = run_inprocess(capsys, "finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", out,
                                      "--fresh", *FAST)
    assert code == 0, err
    assert stdout.startswith("starting:")
    assert entries(tmp_path) == ["o"]


def test_finetune_mirrored_on_two_logical_cpus(tiny, builtin_tfds_dir, tmp_path):
    out = tmp_path / "mirrored"
    code = textwrap.dedent(
        """
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        from keras_se.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "finetune", tiny, "--data-dir", builtin_tfds_dir, "--out", str(out),
         "--strategy", "mirrored", "--epochs", "2", "--steps-per-epoch", "3",
         "--validation-steps", "2", "--batch-size", "8"],
        capture_output=True, text=True, env=ENV, timeout=400,
    )
    assert_ok(proc)
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["strategy"] == "MirroredStrategy" and metrics["num_replicas"] == 2
    assert json.load(open(out / "history.json"))["epoch"] == [1, 2]
    assert "(2 replica(s))" in proc.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.heavy
def test_finetune_multiworker_with_two_local_workers(tiny, builtin_tfds_dir, tmp_path):
    out = tmp_path / "mw"
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_se", "finetune", tiny, "--data-dir", builtin_tfds_dir,
             "--out", str(out), "--strategy", "multiworker", "--epochs", "2",
             "--steps-per-epoch", "3", "--validation-steps", "2", "--batch-size", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for p in procs:
        try:
            results.append(p.communicate(timeout=400))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stdout[-2000:] + stderr[-2000:]
        assert "(2 replica(s))" in stdout
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["strategy"] == "MultiWorkerMirroredStrategy" and metrics["num_replicas"] == 2
    # Both workers saw the same globally reduced metrics.
    assert _epoch_lines(results[0][0]) == _epoch_lines(results[1][0]) == [1, 2]
    val0 = re.findall(r"val_accuracy: ([\d.]+)", results[0][0])
    val1 = re.findall(r"val_accuracy: ([\d.]+)", results[1][0])
    assert val0 == val1 and len(val0) == 2
    assert entries(tmp_path) == ["mw"]  # the worker's own copy is gone


# ==================================================================== export
def test_export_saved_model_and_tflite_in_subprocesses(tiny, tmp_path, capsys):
    sm, tfl = tmp_path / "sm", tmp_path / "m.tflite"
    proc = run_cli("export", tiny, "--format", "saved_model", "--out", sm)
    assert_ok(proc)
    assert "tolerance 1e-05" in proc.stdout
    proc = run_cli("export", tiny, "--format", "tflite", "--out", tfl)
    assert_ok(proc)
    assert entries(tmp_path) == ["m.tflite", "sm"]
    model = keras.saving.load_model(tiny)
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = np.asarray(model(x))
    assert expected.std(axis=0).max() > 0.01
    loaded = tf.saved_model.load(str(sm))
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, expected, atol=E.SAVED_MODEL_ATOL)
    np.testing.assert_allclose(E.run_tflite(open(tfl, "rb").read(), x), expected,
                               atol=E.TFLITE_ATOL["none"])
    assert_inprocess_bad(capsys, "export", r"already holds a finished result",
                         tiny, "--format", "tflite", "--out", tfl)
    code, err, stdout = run_inprocess(capsys, "export", tiny, "--format", "tflite", "--out", tfl,
                                      "--overwrite", "--quantize", "float16")
    assert code == 0, err
    assert "tolerance 0.02" in stdout
    np.testing.assert_allclose(E.run_tflite(open(tfl, "rb").read(), x), expected,
                               atol=E.TFLITE_ATOL["float16"])
    assert entries(tmp_path) == ["m.tflite", "sm"]


# ====================================================================== demo
@pytest.mark.heavy
def test_demo_learns_well_above_chance_and_reports(builtin_tfds_dir, tmp_path):
    # `make demo` as shipped but for 4 epochs instead of 10 (0.76 validation accuracy
    # after 4 when measured, about 65 s on 2 cores; 10 take 2.5 minutes of the suite).
    proc = run_cli("demo", "--data-dir", builtin_tfds_dir, "--epochs", 4, cwd=tmp_path,
                   timeout=900)
    assert_ok(proc)
    out = tmp_path / "runs" / "demo"
    assert entries(out) == ["curves.png", "history.json", "keras_se.json", "metrics.json",
                            "model.keras", "report.json", "saved_model"]
    assert entries(tmp_path / "runs") == ["demo"]
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["before"]["accuracy"] < 0.35  # chance is 1/6
    assert metrics["after"]["accuracy"] > 0.6
    assert metrics["se"]["num_sites"] == 17 and metrics["epochs"] == 4
    assert "keras-se demo report" in proc.stdout
    assert re.search(r"SE sites\s+17 ", proc.stdout)
    assert re.search(r"parameters\s+410,208 -> 483,859 \(\+73,651", proc.stdout)
    after = f"{metrics['after']['accuracy']:.3f} after 4 epochs"
    assert re.search(r"val accuracy\s+0\.\d+ before -> " + re.escape(after), proc.stdout)
    assert "reloaded in a fresh process with tf.saved_model.load" in proc.stdout
    model = keras.saving.load_model(out / "model.keras")
    x = next(iter(D.load_data("builtin", image_size=64, batch_size=16, data_dir=builtin_tfds_dir,
                              preprocess=keras.applications.mobilenet_v2.preprocess_input)
                  .validation))[0].numpy()
    loaded = tf.saved_model.load(str(out / "saved_model"))
    np.testing.assert_allclose(loaded.serve(tf.constant(x)).numpy(), np.asarray(model(x)),
                               atol=E.SAVED_MODEL_ATOL)
    # Run again: the finished result is kept unless --overwrite.
    again = run_cli("demo", "--data-dir", builtin_tfds_dir, cwd=tmp_path)
    assert_bad_input(again, "demo", r"--out` already holds a finished result; pass --overwrite")
    assert json.load(open(out / "metrics.json")) == metrics


# ================================================================ bad input
def test_unknown_model_with_the_console_script(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "keras-se")
    if not os.path.exists(script):  # not installed with pip: the same entry point by hand
        cmd = [sys.executable, "-c", "import sys; from keras_se.cli import main; sys.exit(main())"]
    else:
        cmd = [script]
    proc = subprocess.run(cmd + ["retrofit", "resnet5", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert_bad_input(proc, "retrofit", r"Did you mean: .*resnet50.*Received: model='resnet5'")
    assert entries(tmp_path) == []


def test_missing_data_folder_in_a_subprocess(tiny, tmp_path):
    proc = run_cli("finetune", tiny, "--data", tmp_path / "nope" / "images", "--out", tmp_path / "o")
    assert_bad_input(proc, "finetune", r"`data` folder does not exist")
    assert entries(tmp_path) == []


def test_bad_data_inputs(tiny, tmp_path, capsys, image_folder):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    (tmp_path / "empty").mkdir()
    assert_inprocess_bad(capsys, "finetune", r"`data` folder holds no images",
                         tiny, "--data", tmp_path / "empty", "--out", out)
    broken = image_folder(tmp_path / "broken", per_class=4, size=32)
    (broken / "b" / "x.jpg").write_bytes(b"\x00" * 100)
    assert_inprocess_bad(capsys, "finetune", r"not a readable image: .*x\.jpg",
                         tiny, "--data", broken, "--out", out)
    three = image_folder(tmp_path / "three", per_class=4, size=32)
    assert_inprocess_bad(capsys, "finetune",
                         r"class-count mismatch: the model has 6 outputs, the data 3 classes; pass --head new",
                         tiny, "--data", three, "--out", out, *FAST)
    assert_inprocess_bad(capsys, "finetune", r"class-count mismatch: --classes 5 but the data has 3",
                         tiny, "--data", three, "--out", out, "--classes", 5)
    assert entries(work) == []


def test_class_count_mismatch_is_fixed_by_a_new_head(tiny, tmp_path, capsys, image_folder):
    three = image_folder(tmp_path / "three", per_class=4, size=32)
    code, err, _ = run_inprocess(capsys, "finetune", tiny, "--data", three, "--out",
                                 tmp_path / "o", "--head", "new", *FAST)
    assert code == 0, err
    assert keras.saving.load_model(tmp_path / "o" / "model.keras").output.shape == (None, 3)


def test_bad_image_sizes(tiny, builtin_tfds_dir, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    # Too small for the architecture: Keras refuses while the model is built, after the
    # temporary directory was made; it must be gone.
    assert_inprocess_bad(capsys, "finetune", r"MobileNetV2: .*32",
                         "mobilenet_v2", "--weights", "none", "--alpha", 0.35, "--image-size", 16,
                         "--data-dir", builtin_tfds_dir, "--out", out, *FAST)
    assert_inprocess_bad(capsys, "finetune", r"`image_size` does not match the model's input 32x32",
                         tiny, "--image-size", 48, "--data-dir", builtin_tfds_dir, "--out", out)
    assert_inprocess_bad(capsys, "finetune", r"argument --image-size: expected a positive size",
                         tiny, "--image-size", 0, "--out", out)
    assert_inprocess_bad(capsys, "finetune", r"argument --image-size: expected a positive size",
                         tiny, "--image-size", "big", "--out", out)
    assert entries(work) == []


def test_unwritable_output(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_inprocess_bad(capsys, "retrofit", r"`--out` cannot be created",
                         tiny, "--out", blocker / "sub" / "out")
    assert_inprocess_bad(capsys, "finetune", r"`--out` cannot be created",
                         tiny, "--out", blocker / "out")
    assert_inprocess_bad(capsys, "export", r"`--out` cannot be created",
                         tiny, "--format", "saved_model", "--out", blocker / "sm")
    assert_inprocess_bad(capsys, "retrofit", r"`--out` is a file, expected a directory",
                         tiny, "--out", blocker, "--overwrite")
    assert entries(tmp_path) == ["file"]


def test_other_bad_arguments(tiny, tmp_path, capsys):
    assert_inprocess_bad(capsys, "sites", r"Did you mean: .*mobilenetv3large", "mobilenet_v3")
    assert_inprocess_bad(capsys, "sites", r"`model` file does not exist", tmp_path / "m.keras")
    (tmp_path / "junk.keras").write_bytes(b"junk")
    assert_inprocess_bad(capsys, "sites", r"could not be loaded as a Keras model",
                         tmp_path / "junk.keras")
    assert_inprocess_bad(capsys, "export", r"must end with \.tflite",
                         tiny, "--format", "tflite", "--out", tmp_path / "m.bin")
    assert_inprocess_bad(capsys, "export", r"--quantize` applies to --format tflite only",
                         tiny, "--format", "saved_model", "--quantize", "float16",
                         "--out", tmp_path / "sm")
    assert_inprocess_bad(capsys, "retrofit", r"`weights` must be 'imagenet', 'none' or an existing",
                         "mobilenet_v2", "--weights", tmp_path / "nope.h5", "--out", tmp_path / "r")
    assert_inprocess_bad(capsys, "finetune", r"argument --epochs: expected a positive integer",
                         tiny, "--epochs", 0, "--out", tmp_path / "r")
    assert_inprocess_bad(capsys, "finetune", r"argument --val-split: expected a fraction",
                         tiny, "--val-split", 1, "--out", tmp_path / "r")
    assert_inprocess_bad(capsys, "sites", r"`alpha` is a width multiplier of MobileNet models",
                         "resnet50", "--alpha", 0.5)
    assert_inprocess_bad(capsys, "finetune", r"`data` is neither 'builtin', an existing folder",
                         tiny, "--data", "no_such_dataset_xyz", "--out", tmp_path / "r")
    assert entries(tmp_path) == ["junk.keras"]


def test_a_new_sub_command_is_one_function(capsys):
    def args(p):
        p.add_argument("word")

    @cli.command("echo-test", help="test", arguments=args)
    def echo(ns):
        print(ns.word.upper())
        return 0

    try:
        code, err, out = run_inprocess(capsys, "echo-test", "hi")
        assert (code, out) == (0, "HI\n")
    finally:
        del cli.COMMANDS["echo-test"]


def test_help_lists_every_sub_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\w+) +\S", out, re.M)
    assert listed == ["sites", "retrofit", "finetune", "export", "inspect", "demo"]
    assert listed == list(cli.COMMANDS)
