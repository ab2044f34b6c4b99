"""keras_se.distribute: strategies, the chief rule, TF_CONFIG checks (TensorFlow)."""

import json

import pytest
import tensorflow as tf

from keras_se import distribute as D
from keras_se import finetune as F


def _model():
    import keras

    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp))


def test_model_built_outside_a_strategy_scope_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match=r"pass a function that builds the model"):
        F.finetune(_model(), tf.data.Dataset.from_tensors(([[0.0] * 4], [0])), strategy=strategy,
                   epochs=1)


def test_is_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert D.is_chief()
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not D.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert D.is_chief()


def test_multiworker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match=r"needs TF_CONFIG to be JSON .*Received: TF_CONFIG="):
        D.make_strategy("multiworker")


def test_each_backend_offers_its_strategies():
    # What each backend gives (the JAX and PyTorch ones run in test_backends.py).
    assert D.strategy_name(D.make_strategy("default", backend="jax")) == "NoDistribution"
    assert D.strategy_name(D.make_strategy("default", backend="torch")) == "NoDistribution"
    assert not D.is_distributed(D.make_strategy("default", backend="torch"))
    assert D.make_strategy("default").num_replicas_in_sync == 1  # TensorFlow's default
    with pytest.raises(ValueError, match=r"^`strategy='mirrored'` is not available on the torch "
                       r"backend \(Keras has no distribution API for PyTorch\); it offers "
                       r"'default'; .*Received: strategy='mirrored'$"):
        D.make_strategy("mirrored", backend="torch")
    with pytest.raises(ValueError, match=r"^`strategy='multiworker'` is not available on the jax "
                       r"backend .*it offers 'default', 'mirrored'; .*"
                       r"Received: strategy='multiworker'$"):
        D.make_strategy("multiworker", backend="jax")
