"""`keras-se inspect` (TensorFlow: tf.data, TFDS, the command line); the library's
`keras_se.inspect` is tested on every backend in test_inspect.py."""

import os

import keras
import numpy as np
import pytest
from keras import layers
from test_inspect import conv_relu, png_pixels, randomise_se, small_cnn

from keras_se import add_se_blocks
from keras_se.inspect import excitation_profile


# ------------------------------------------------------------------ keras-se inspect
def test_cli_inspect_writes_the_profile_and_plots(tmp_path, empty_tfds_dir, capsys):
    import json

    from keras_se import cli
    from keras_se.data import load_data

    inputs = keras.Input((32, 32, 3))
    x = conv_relu(inputs, 8, "b1")
    x = conv_relu(x, 16, "b2", stride=2)
    outputs = layers.Dense(6, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = add_se_blocks(keras.Model(inputs, outputs), ratio=4, init="standard")
    randomise_se(model)
    path = str(tmp_path / "model.keras")
    model.save(path)

    out = tmp_path / "inspect"
    code = cli.run(["inspect", path, "--data", "builtin", "--data-dir", empty_tfds_dir,
                    "--out", str(out), "--steps", "3", "--batch-size", "16", "--preprocess", "tf"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 SE blocks, 48 images" in printed and "b2_relu_se" in printed

    written = json.loads((out / "profile.json").read_text())
    assert written["count"] == 48 and [b["name"] for b in written["blocks"]] == [
        "b1_relu_se", "b2_relu_se"]
    # The same numbers as the library on the same (unshuffled) validation batches.
    data = load_data("builtin", image_size=32, batch_size=16, data_dir=empty_tfds_dir,
                     preprocess=keras.applications.mobilenet_v2.preprocess_input)  # "tf" mode
    expected = excitation_profile(model, data.validation, steps=3,
                                  class_names=data.class_names)
    assert written["class_names"] == expected.class_names
    for block in written["blocks"]:
        name = block["name"]
        np.testing.assert_allclose(block["mean_per_channel"], expected.mean[name], atol=1e-6)
        np.testing.assert_allclose(block["class_mean_per_channel"], expected.class_mean[name],
                                   atol=1e-6)
        assert block["class_specificity"] == pytest.approx(
            expected.class_specificity()[name], abs=1e-6)
        assert block["class_specificity"] > 1e-3  # random SE weights: real, class-dependent gates
    for png in ("excitation_per_class.png", "class_specificity.png"):
        pixels = png_pixels(out / png)
        assert pixels.shape[0] > 300 and np.ptp(pixels[..., :3]) > 0.5

    # A finished result is kept unless --overwrite.
    assert cli.run(["inspect", path, "--data-dir", empty_tfds_dir, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_inspect_errors_are_one_line(tmp_path, empty_tfds_dir, capsys):
    from keras_se import cli

    assert cli.run(["inspect", "resnet50", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "`model` must be a trained .keras file" in err and "Received: model='resnet50'" in err

    # A model without SE is refused before any data is read: with an empty
    # TFDS directory nothing gets built (and no progress bar reaches stderr).
    plain = str(tmp_path / "plain.keras")
    small_cnn().save(plain)
    empty_tfds = tmp_path / "empty_tfds"
    empty_tfds.mkdir()
    assert cli.run(["inspect", plain, "--data-dir", str(empty_tfds), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no keras_se.SqueezeExcite layer" in err
    assert not (tmp_path / "b").exists()
    assert list(empty_tfds.iterdir()) == []


_CUSTOM_LAYER_MODULE = '''
import keras
from keras_se import SqueezeExcite


@keras.saving.register_keras_serializable(package="inspect_test")
class Wrapped(keras.layers.Layer):
    """A custom layer that calls an SE layer inside its own call()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.se = SqueezeExcite(ratio=4, name="hidden_se")

    def build(self, input_shape):
        self.se.build(input_shape)

    def call(self, x):
        return self.se(x)
'''


def test_cli_inspect_warns_about_se_layers_it_cannot_read(tmp_path, builtin_tfds_dir):
    # The command line hides other packages' warnings, not keras_se's own: the warning
    # that an SE layer inside a custom layer is left out reaches the user's stderr.
    import subprocess
    import sys

    (tmp_path / "inspect_test_layers.py").write_text(_CUSTOM_LAYER_MODULE)
    script = (
        "import sys, inspect_test_layers, keras\n"
        "from keras import layers\n"
        "from keras_se import add_se_blocks\n"
        "from keras_se.cli import main\n"
        "inputs = keras.Input((32, 32, 3))\n"
        "x = layers.Conv2D(8, 3, activation='relu', name='c1')(inputs)\n"
        "x = inspect_test_layers.Wrapped(name='wrapped')(x)\n"
        "x = layers.Dense(6, activation='softmax')(layers.GlobalAveragePooling2D()(x))\n"
        "add_se_blocks(keras.Model(inputs, x), ratio=4).save('m.keras')\n"
        f"sys.exit(main(['inspect', 'm.keras', '--data-dir', {builtin_tfds_dir!r},"
        " '--out', 'out', '--steps', '1', '--batch-size', '8']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 SE blocks" in proc.stdout and "c1_se" in proc.stdout
    warned = [ln for ln in proc.stderr.splitlines() if "are not called in a Functional" in ln]
    assert len(warned) == 1 and "['hidden_se']" in warned[0], proc.stderr


def test_quiet_logs_hide_other_packages_warnings_only():
    import warnings

    from keras_se.cli import _stderr

    shown = []
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        _stderr.quiet_python_logs(verbose=False)
        warnings.showwarning = lambda message, *a, **k: shown.append(str(message))
        warnings.warn_explicit("ours", UserWarning, "inspect.py", 1, module="keras_se.inspect")
        warnings.warn_explicit("theirs", UserWarning, "x.py", 1, module="tensorflow.python.x")
        warnings.warn_explicit("hub", UserWarning, "y.py", 1, module="keras_hub.src.models")
        warnings.warn_explicit("user code", UserWarning, "z.py", 1, module="__main__")
    assert shown == ["ours", "user code"]
