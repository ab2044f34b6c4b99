"""keras_se.finetune.finetune(..., recalibrate_bn=True): BatchNorm re-estimated after training."""

import keras
import numpy as np
import tensorflow as tf

from keras_se import finetune as F
from keras_se.batchnorm import batchnorm_layers, recalibrate_batchnorm


def _model(size=16, num_classes=3):
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1", momentum=0.999)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2", momentum=0.999)(x)
    x = keras.layers.ReLU()(x)
    return F.add_classifier_head(keras.Model(inp, x), num_classes)


def _data(n=48, size=16, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.normal(0, 1, (n, size, size, 3)) * 4 + 10 + y[:, None, None, None]).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_recalibration_after_training_sets_the_statistics_of_the_final_weights():
    train, val = _data(), _data(n=24, seed=1)
    keras.utils.set_random_seed(0)
    result = F.finetune(_model(), train, val, epochs=2, freeze="none", verbose=0,
                        recalibrate_bn=True)
    model = result.model
    stats = [(np.array(la.moving_mean), np.array(la.moving_variance))
             for la in batchnorm_layers(model)]
    # The same pass again, on the same data and weights, gives the same numbers.
    recalibrate_batchnorm(model, train)
    for (mean, var), la in zip(stats, batchnorm_layers(model)):
        np.testing.assert_allclose(mean, np.array(la.moving_mean), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, np.array(la.moving_variance), rtol=1e-5)
    assert result.recalibration["layers"] == 2
    assert result.recalibration["batches"] == 6 and result.recalibration["examples"] == 48
    # `after` is the recalibrated model's; `last_epoch` the last epoch's, as before.
    assert result.last_epoch["accuracy"] == result.history["val_accuracy"][-1]
    evaluated = model.evaluate(val, verbose=0, return_dict=True)
    assert abs(result.after["loss"] - evaluated["loss"]) < 1e-5
    # With momentum 0.999 and 12 steps the moving variance had barely left 1:
    # recalibration moved it far.
    assert result.recalibration["max_log_variance_ratio"] > 1.0
    metrics = result.metrics()
    assert metrics["recalibration"] == result.recalibration
    assert metrics["last_epoch"] == result.last_epoch


def test_recalibration_data_and_default_off():
    train, val = _data(), _data(n=24, seed=1)
    keras.utils.set_random_seed(0)
    result = F.finetune(_model(), train, val, epochs=1, freeze="none", verbose=0)
    assert result.recalibration is None and result.after == result.last_epoch
    keras.utils.set_random_seed(0)
    result = F.finetune(_model(), train.repeat(), val, epochs=1, steps_per_epoch=3,
                        freeze="none", verbose=0, recalibrate_bn=True,
                        recalibration_data=train.take(2))
    assert result.recalibration["batches"] == 2
