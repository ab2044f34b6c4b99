"""keras_se.finetune: resumable training, before/after metrics, records."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_transfer import _se_classifier  # the same small models

from keras_se import finetune as F


def _data(n=48, size=16, num_classes=3, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.normal(0, 1, (n, size, size, 3)).astype("float32") + y[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


# ------------------------------------------------------------------- training
def test_finetune_learns_and_reports_before_and_after():
    keras.utils.set_random_seed(1)
    result = F.finetune(
        _se_classifier(), _data(), _data(seed=1), epochs=4, learning_rate=0.05,
        freeze="none", verbose=0,
    )
    assert result.history["epoch"] == [1, 2, 3, 4]
    assert len(result.history["val_accuracy"]) == 4
    assert result.after["accuracy"] > result.before["accuracy"]
    assert result.after["accuracy"] >= 0.6
    metrics = result.metrics()
    assert metrics["epochs"] == 4 and not metrics["resumed"]
    assert metrics["backend"] == "tensorflow" and metrics["strategy"] == "DefaultDistributionStrategy"
    json.dumps(metrics)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_finetune_resumes_from_the_last_finished_epoch(tmp_path):
    backup = str(tmp_path / "state")
    keras.utils.set_random_seed(0)
    with pytest.raises(KeyboardInterrupt):
        F.finetune(_se_classifier, _data(), _data(seed=1), epochs=4, backup_dir=backup,
                   verbose=0, freeze="none", callbacks=[_Interrupt()])
    meta = json.load(open(os.path.join(backup, "backup", "training_metadata.json")))
    assert meta["epoch"] == 2
    state = json.load(open(os.path.join(backup, "finetune_state.json")))
    assert sorted(state["epochs"]) == ["1", "2"]
    result = F.finetune(_se_classifier, _data(), _data(seed=1), epochs=4, backup_dir=backup,
                        verbose=0, freeze="none")
    assert result.initial_epoch == 2
    assert result.history["epoch"] == [1, 2, 3, 4]
    # The first two epochs' records are the interrupted run's, not recomputed.
    assert result.history["loss"][:2] == [state["epochs"]["1"]["loss"], state["epochs"]["2"]["loss"]]
    assert result.before == state["before"]


def test_finetune_argument_errors():
    model, data = _se_classifier(), _data()
    with pytest.raises(ValueError, match=r"`epochs` must be a positive int. Received: epochs=0"):
        F.finetune(model, data, epochs=0)
    with pytest.raises(ValueError, match=r"`freeze` must be one of 'backbone', 'none'. Received: freeze='all'"):
        F.finetune(model, data, freeze="all")
    with pytest.raises(ValueError, match=r"`schedule` must be one of .*Received: schedule='step'"):
        F.finetune(model, data, schedule="step")
    with pytest.raises(ValueError, match=r"`learning_rate` must be a positive number. Received: learning_rate=0"):
        F.finetune(model, data, learning_rate=0)
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*Received: strategy='tpu'"):
        F.finetune(model, data, strategy="tpu")
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model or a function"):
        F.finetune(3, data)


def test_write_records(tmp_path):
    result = F.finetune(_se_classifier(), _data(), _data(seed=1), epochs=2, verbose=0)
    paths = F.write_records(result, str(tmp_path), {"model": "tiny"})
    history = json.load(open(paths["history"]))
    assert history["epoch"] == [1, 2]
    assert history["val_loss"] == result.history["val_loss"]
    metrics = json.load(open(paths["metrics"]))
    assert metrics["model"] == "tiny" and metrics["after"] == result.after
    import matplotlib.image

    png = matplotlib.image.imread(paths["curves"])
    assert png.shape[0] == 360 and png.shape[1] == 900  # 9 x 3.6 inches at 100 dpi
    assert png[..., :3].std() > 0.05  # not a blank canvas
