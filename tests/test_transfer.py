"""keras_se.transfer: freezing a backbone, new heads, BatchNorm momentum (every backend)."""

import keras
import numpy as np
import pytest

import keras_se
from keras_se import transfer as T

pytestmark = pytest.mark.core


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
    return T.add_classifier_head(keras_se.add_se_blocks(_backbone(size)), num_classes)


def _fit(model, n=48, size=16, num_classes=3, epochs=1):
    rng = np.random.default_rng(0)
    y = np.arange(n) % num_classes
    x = rng.normal(0, 1, (n, size, size, 3)).astype("float32") + y[:, None, None, None]
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)


# ------------------------------------------------------------------- freezing
def test_freeze_backbone_trains_only_se_and_head():
    model = T.freeze_backbone(_se_classifier())
    trainable = {la.name for la in model.layers if la.trainable and la.weights}
    assert trainable == {"r1_se", "r2_se", "head"}
    se_and_head = sum(
        la.count_params() for la in model.layers if la.name in {"r1_se", "r2_se", "head"}
    )
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == se_and_head
    assert not model.get_layer("bn1").trainable
    assert T.default_head(model) == ["head_pool", "head_dropout", "head"]


def test_freeze_backbone_reaches_into_nested_models():
    inner = keras_se.add_se_blocks(_backbone())
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), inner, keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(3, name="cls")]
    )
    T.freeze_backbone(model)
    names = {v.path.split("/")[-2] for v in model.trainable_variables}
    assert names == {"r1_se", "r2_se", "cls"}
    T.unfreeze(model)
    assert len(model.trainable_variables) == len(model.variables) - 4  # BN moving stats


def test_freeze_backbone_options_and_errors():
    model = T.freeze_backbone(_se_classifier(), train_batchnorm=True)
    assert model.get_layer("bn1").trainable and not model.get_layer("c1").trainable
    model = T.freeze_backbone(_se_classifier(), head=["head"])
    assert model.get_layer("head").trainable
    with pytest.raises(ValueError, match=r"`head` names layers .*\['nope'\].*Received: head=\['nope'\]"):
        T.freeze_backbone(_se_classifier(), head=["nope"])
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model. Received: model of type int"):
        T.freeze_backbone(3)


def test_frozen_backbone_weights_do_not_move_in_training():
    model = T.freeze_backbone(_se_classifier())
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}
    _fit(model)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    moved = {p for p, w in before.items() if not np.array_equal(w, after[p])}
    assert {p.split("/")[0] for p in moved} == {"r1_se", "r2_se", "head"}


# ---------------------------------------------------------------------- heads
def test_add_classifier_head_single_tensor_input_and_errors():
    model = _se_classifier(4)
    assert isinstance(model.input, keras.KerasTensor)  # not a one-element list
    assert model.output.shape == (None, 4)
    probs = model(np.zeros((2, 16, 16, 3), "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probs).sum(axis=-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"`num_classes` must be an int >= 2. Received: num_classes=1"):
        T.add_classifier_head(_backbone(), 1)
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\). Received: dropout=1.5"):
        T.add_classifier_head(_backbone(), 3, dropout=1.5)


def test_replace_head_keeps_features_and_activation():
    old = _se_classifier(3)
    new = T.replace_head(old, 5)
    assert new.output.shape == (None, 5)
    assert new.get_layer("head").activation.__name__ == "softmax"
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    feats_old = keras.Model(old.input, old.get_layer("head_pool").output)(x)
    feats_new = keras.Model(new.input, new.get_layer("head_pool").output)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(feats_old),
                               keras.ops.convert_to_numpy(feats_new))
    with pytest.raises(ValueError, match=r"no top-level Dense classifier"):
        T.replace_head(_backbone(), 3)


def test_set_batchnorm_momentum():
    model = _se_classifier()
    assert T.set_batchnorm_momentum(model, 0.9) == 2
    assert model.get_layer("bn1").momentum == 0.9
    with pytest.raises(ValueError, match=r"`momentum` must be in \(0, 1\). Received: momentum=1"):
        T.set_batchnorm_momentum(model, 1)


def test_count_params():
    model = T.freeze_backbone(_se_classifier())
    counts = T.count_params(model)
    se = model.get_layer("r1_se").count_params() + model.get_layer("r2_se").count_params()
    assert counts["se"] == se
    assert counts["trainable"] == se + model.get_layer("head").count_params()
    assert counts["total"] == model.count_params()


def test_a_frozen_backbone_learns_through_se_and_head():
    # A few fit steps on every backend: only SE and head move, and the loss falls.
    model = T.freeze_backbone(_se_classifier())
    history = _fit(model, epochs=3)
    assert history.history["loss"][-1] < history.history["loss"][0]
    expand = keras.ops.convert_to_numpy(model.get_layer("r2_se").expand_kernel)
    assert np.abs(expand).max() > 0  # the identity-initialised expansion moved off zero
