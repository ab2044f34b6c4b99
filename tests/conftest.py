"""Shared pytest setup and fixtures.

Every test runs with the float32 policy, seed 0 and the pooled-squeeze choice on
"auto". The suite runs on each Keras backend (`KERAS_BACKEND`); tests marked `core`
need only Keras and NumPy and run on all of them (`make test` runs the TensorFlow
suite, then `-m core` under JAX and PyTorch).

Fixtures:
- `builtin_tfds_dir`: a TFDS data directory holding the prepared `keras_se_builtin`
  dataset (built once per test worker, about 5 s);
- `empty_tfds_dir`: an empty TFDS data directory (nothing may be built in it);
- `image_folder`: `image_folder(root, classes=..., per_class=..., size=..., ext=...)`
  writes a class-per-folder tree of builtin-style drawings and returns `root`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

# Test files of the edge (TensorFlow, tf.data, TFDS, the command line): collected only
# on the TensorFlow backend; the other backends run the `core` tests.
EDGE_TEST_FILES = {
    "test_backends.py",
    "test_benchmarks.py",
    "test_cli.py",
    "test_batchnorm.py",
    "test_cli_hub.py",
    "test_cli_inspect.py",
    "test_cli_timm.py",
    "test_data.py",
    "test_data_offline.py",
    "test_distribute.py",
    "test_export.py",
    "test_export_int8.py",
    "test_export_onnx.py",
    "test_finetune.py",
    "test_finetune_recalibrate.py",
    "test_fused.py",
    "test_hub.py",
    "test_layers_tensorflow.py",
    "test_litert.py",
    "test_notebooks.py",
    "test_pretrained_path.py",
    "test_real_data.py",
    "test_rewrite_keras_applications.py",
    "test_timm_weights.py",
}


def pytest_ignore_collect(collection_path, config):
    if BACKEND != "tensorflow" and collection_path.name in EDGE_TEST_FILES:
        return True
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "core: needs only Keras and NumPy; runs on every Keras backend"
    )


@pytest.fixture(autouse=True)
def _float32_policy_and_seed():
    from keras_se import layers

    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    layers.set_pooled_squeeze(None)


@pytest.fixture(scope="session")
def builtin_tfds_dir(tmp_path_factory):
    from keras_se import data

    path = tmp_path_factory.getbasetemp() / "tfds_builtin"
    data.tfds_builder("builtin", str(path)).download_and_prepare()
    return str(path)


@pytest.fixture
def empty_tfds_dir(tmp_path):
    path = tmp_path / "tensorflow_datasets_empty"
    path.mkdir()
    return str(path)


@pytest.fixture
def image_folder():
    def write(root, classes=("a", "b", "c"), per_class=5, size=20, ext=".png"):
        from PIL import Image

        from keras_se.data import BUILTIN_CLASSES, draw_builtin_example

        for k, name in enumerate(classes):
            os.makedirs(root / name, exist_ok=True)
            for i in range(per_class):
                rng = np.random.default_rng([k, i])
                image = draw_builtin_example(k % len(BUILTIN_CLASSES), rng, size=size)
                Image.fromarray(image).save(root / name / f"img_{i}{ext}")
        return root

    return write
