"""TF SavedModel export, checked (in a fresh process where asked), and the retrofit/finetune artifact pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_se.export._common import (
    SAVED_MODEL_ATOL,
    ParityError,
    _max_diff,
    check_export_support,
    export_support,
    sample_inputs,
)


def _serve_outputs(loaded, inputs):
    out = loaded.serve(tf.constant(inputs))
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out)


def check_saved_model(path: str, inputs: np.ndarray, expected: np.ndarray, atol: float = SAVED_MODEL_ATOL) -> float:
    """Loads the SavedModel at `path` with `tf.saved_model.load`, runs `serve`.

    Returns:
        The max absolute difference from `expected`.

    Raises:
        ParityError: when it is above `atol`.
    """
    loaded = tf.saved_model.load(path)
    diff = _max_diff(_serve_outputs(loaded, inputs), expected)
    if not diff <= atol:
        raise ParityError(
            f"SavedModel {path} differs from Keras by {diff:.3g} (tolerance {atol:g})"
        )
    return diff


# Run by `check_saved_model_in_fresh_process` with `python -c`: TensorFlow and NumPy
# only. It prints the serve outputs' max abs difference and whether keras_se (or
# Keras's own model classes) were imported, as one JSON line.
_FRESH_CHECK = """
import json, sys
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[2])
loaded = tf.saved_model.load(sys.argv[1])  # keep a reference: serve needs its variables
out = loaded.serve(tf.constant(data["inputs"]))
if isinstance(out, dict):
    out = next(iter(out.values()))
if isinstance(out, (list, tuple)):
    out = out[0]
diff = float(np.max(np.abs(np.asarray(out, "float64") - data["expected"].astype("float64"))))
print(json.dumps({"max_abs_diff": diff, "keras_se_imported": "keras_se" in sys.modules}))
"""


def check_saved_model_in_fresh_process(
    path: str, inputs: np.ndarray, expected: np.ndarray, atol: float = SAVED_MODEL_ATOL
) -> float:
    """`check_saved_model` in a new Python process that imports only TensorFlow and NumPy.

    Proves that the SavedModel stands alone: no keras_se layer, no custom
    objects, nothing from this process.

    Raises:
        ParityError: when the outputs differ by more than `atol`, when the
            child fails, or if it imported keras_se.
    """
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "check.npz")
        np.savez(npz, inputs=inputs, expected=expected)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH_CHECK, path, npz],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,  # not the repository: `keras_se` must not be importable by accident
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParityError(f"the SavedModel check in a fresh process failed: {tail}")
    result = json.loads(lines[-1])
    if result["keras_se_imported"]:
        raise ParityError("the fresh-process SavedModel check imported keras_se")
    diff = float(result["max_abs_diff"])
    if not diff <= atol:
        raise ParityError(
            f"SavedModel {path} differs from Keras by {diff:.3g} in a fresh process "
            f"(tolerance {atol:g})"
        )
    return diff


def export_saved_model(
    model: keras.Model,
    path: str,
    *,
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float = SAVED_MODEL_ATOL,
) -> float | None:
    """Exports `model` as a TF SavedModel for serving and checks it.

    Args:
        model: a Keras model.
        path: the SavedModel directory to create (it must not exist).
        verify: bool, load it back and compare `serve` with Keras. Defaults
            to `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance. Defaults to `SAVED_MODEL_ATOL`.

    Returns:
        The max absolute difference, or None without `verify`.
    """
    check_export_support("saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    if not verify:
        return None
    if inputs is None:
        inputs = sample_inputs(model)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    return check_saved_model(path, inputs, expected, atol)


def save_artifacts(
    model: keras.Model, directory: str, inputs: np.ndarray, *, fresh_process: bool = False
) -> dict[str, float]:
    """Writes `model.keras` and `saved_model/` into `directory`, each reloaded and checked.

    The pair `keras-se retrofit` and `finetune` leave: the `.keras` file is
    loaded back with `keras.saving.load_model` and compared with `model`
    (tolerance 1e-5); the SavedModel is checked with `check_saved_model` (in a
    fresh process with `fresh_process=True`). On a backend that cannot export a
    SavedModel (`export_support`: PyTorch) only `model.keras` is written.

    Returns:
        `{"keras": max abs diff, "saved_model": max abs diff}`, without
        `"saved_model"` where the backend cannot export one.

    Raises:
        ParityError: when a reloaded artifact differs beyond its tolerance.
    """
    keras_path = os.path.join(directory, "model.keras")
    model.save(keras_path)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    reloaded = keras.saving.load_model(keras_path)
    keras_diff = _max_diff(keras.ops.convert_to_numpy(reloaded(inputs, training=False)), expected)
    if not keras_diff <= SAVED_MODEL_ATOL:
        raise ParityError(
            f"{keras_path} reloads with different outputs (max abs diff {keras_diff:.3g})"
        )
    if export_support("saved_model") is not None:
        return {"keras": keras_diff}
    saved = os.path.join(directory, "saved_model")
    model.export(saved, format="tf_saved_model", verbose=False)
    check = check_saved_model_in_fresh_process if fresh_process else check_saved_model
    return {"keras": keras_diff, "saved_model": check(saved, inputs, expected)}
