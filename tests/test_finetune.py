"""keras_se.finetune: freezing, heads, resumable training, records."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_se
from keras_se import finetune as F


def _backbone(size=16):
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    return keras.Model(inp, x, name="backbone")


def _se_classifier(num_classes=3, size=16):
    return F.add_classifier_head(keras_se.add_se_blocks(_backbone(size)), num_classes)


def _data(n=48, size=16, num_classes=3, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.normal(0, 1, (n, size, size, 3)).astype("float32") + y[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


# ------------------------------------------------------------------- freezing
def test_freeze_backbone_trains_only_se_and_head():
    model = F.freeze_backbone(_se_classifier())
    trainable = {la.name for la in model.layers if la.trainable and la.weights}
    assert trainable == {"r1_se", "r2_se", "head"}
    se_and_head = sum(
        la.count_params() for la in model.layers if la.name in {"r1_se", "r2_se", "head"}
    )
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == se_and_head
    assert not model.get_layer("bn1").trainable
    assert F.default_head(model) == ["head_pool", "head_dropout", "head"]


def test_freeze_backbone_reaches_into_nested_models():
    inner = keras_se.add_se_blocks(_backbone())
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), inner, keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(3, name="cls")]
    )
    F.freeze_backbone(model)
    names = {v.path.split("/")[-2] for v in model.trainable_variables}
    assert names == {"r1_se", "r2_se", "cls"}
    F.unfreeze(model)
    assert len(model.trainable_variables) == len(model.variables) - 4  # BN moving stats


def test_freeze_backbone_options_and_errors():
    model = F.freeze_backbone(_se_classifier(), train_batchnorm=True)
    assert model.get_layer("bn1").trainable and not model.get_layer("c1").trainable
    model = F.freeze_backbone(_se_classifier(), head=["head"])
    assert model.get_layer("head").trainable
    with pytest.raises(ValueError, match=r"`head` names layers .*\['nope'\].*Received: head=\['nope'\]"):
        F.freeze_backbone(_se_classifier(), head=["nope"])
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model. Received: model of type int"):
        F.freeze_backbone(3)


def test_frozen_backbone_weights_do_not_move_in_training():
    model = _se_classifier()
    before = {v.path: v.numpy().copy() for v in model.weights}
    F.finetune(model, _data(), epochs=1, learning_rate=0.05, verbose=0, freeze="backbone")
    after = {v.path: v.numpy() for v in model.weights}
    moved = {p for p, w in before.items() if not np.array_equal(w, after[p])}
    assert {p.split("/")[0] for p in moved} == {"r1_se", "r2_se", "head"}


# ---------------------------------------------------------------------- heads
def test_add_classifier_head_single_tensor_input_and_errors():
    model = _se_classifier(4)
    assert isinstance(model.input, keras.KerasTensor)  # not a one-element list
    assert model.output.shape == (None, 4)
    probs = model(np.zeros((2, 16, 16, 3), "float32"))
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"`num_classes` must be an int >= 2. Received: num_classes=1"):
        F.add_classifier_head(_backbone(), 1)
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\). Received: dropout=1.5"):
        F.add_classifier_head(_backbone(), 3, dropout=1.5)


def test_replace_head_keeps_features_and_activation():
    old = _se_classifier(3)
    new = F.replace_head(old, 5)
    assert new.output.shape == (None, 5)
    assert new.get_layer("head").activation.__name__ == "softmax"
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    feats_old = keras.Model(old.input, old.get_layer("head_pool").output)(x)
    feats_new = keras.Model(new.input, new.get_layer("head_pool").output)(x)
    np.testing.assert_allclose(feats_old, feats_new)
    with pytest.raises(ValueError, match=r"no top-level Dense classifier"):
        F.replace_head(_backbone(), 3)


def test_set_batchnorm_momentum():
    model = _se_classifier()
    assert F.set_batchnorm_momentum(model, 0.9) == 2
    assert model.get_layer("bn1").momentum == 0.9
    with pytest.raises(ValueError, match=r"`momentum` must be in \(0, 1\). Received: momentum=1"):
        F.set_batchnorm_momentum(model, 1)


def test_count_params():
    model = F.freeze_backbone(_se_classifier())
    counts = F.count_params(model)
    se = model.get_layer("r1_se").count_params() + model.get_layer("r2_se").count_params()
    assert counts["se"] == se
    assert counts["trainable"] == se + model.get_layer("head").count_params()
    assert counts["total"] == model.count_params()


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


def test_model_built_outside_a_strategy_scope_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match=r"pass a function that builds the model"):
        F.finetune(_se_classifier(), _data(), strategy=strategy, epochs=1)


def test_is_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert F.is_chief()
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not F.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert F.is_chief()


def test_multiworker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match=r"needs TF_CONFIG to be JSON .*Received: TF_CONFIG="):
        F.make_strategy("multiworker")


# -------------------------------------------------------------------- records
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


def test_docstring_examples_are_true():
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(F) if t.examples]
    assert "keras_se.finetune.freeze_backbone" in {t.name for t in tests}
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 4 and results.failed == 0
