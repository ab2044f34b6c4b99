"""The pretrained path on real photographs: a stock weights file, frozen phase 1, unfrozen phase 2.

Offline there are no ImageNet weights, so a stock MobileNetV2 (alpha 0.35,
32x32) is first trained briefly on the real-photo tiles of `_real_images`
and its weights are written with `save_weights`, as the file of a
pretrained stock model. Then, as `keras-se finetune --weights FILE` and
notebook 02 do: build the stock model, load the file, add SE blocks
(identity init), add a new head, train with the backbone frozen (phase 1),
unfreeze everything and train on at a lower learning rate (phase 2).
"""

import keras
import numpy as np
import pytest
from _real_images import skimage_data_dir, write_photo_folder

import keras_se
from keras_se import applications
from keras_se.batchnorm import batchnorm_layers, recalibrate_batchnorm
from keras_se.data import load_data
from keras_se.finetune import add_classifier_head, finetune, set_batchnorm_momentum, unfreeze

pytestmark = pytest.mark.skipif(
    skimage_data_dir() is None, reason="needs scikit-image's bundled photographs (test extra)"
)

SIZE = 32


def _stock():
    return keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root, train_per_class=120, val_per_class=40, size=SIZE)
    kwargs = dict(image_size=SIZE, batch_size=32,
                  preprocess=keras.applications.mobilenet_v2.preprocess_input, seed=0)
    return load_data(str(root), **kwargs)


@pytest.fixture(scope="module")
def stock_weights(photos, tmp_path_factory):
    """A 'pretrained' stock MobileNetV2 weights file, written locally."""
    keras.utils.set_random_seed(0)
    stock = _stock()
    clf = add_classifier_head(stock, photos.num_classes)
    set_batchnorm_momentum(clf, 0.9)
    finetune(clf, photos.train, epochs=6, learning_rate=3e-3, freeze="none",
             evaluate_before=False, verbose=0)
    recalibrate_batchnorm(clf, photos.train)
    path = str(tmp_path_factory.mktemp("weights") / "mobilenet_v2_stock.weights.h5")
    stock.save_weights(path)
    return path


def _values(model):
    # Every weight, without the Dropout's random-number state (it moves with each step).
    return {v.path: np.array(v) for v in model.variables if "seed_generator" not in v.path}


@pytest.mark.heavy
def test_frozen_phase_then_unfrozen_phase(photos, stock_weights):
    keras.utils.set_random_seed(1)
    base = _stock()
    base.load_weights(stock_weights)
    family = applications.model_info("se_mobilenet_v2").family
    model = add_classifier_head(
        keras_se.add_se_blocks(base, family.placement, select=family.select), photos.num_classes
    )
    se_layers = {la.name for la in model.layers if isinstance(la, keras_se.SqueezeExcite)}
    head = {"head"}
    assert len(se_layers) >= 5
    before = _values(model)
    moving = {la.name: (np.array(la.moving_mean), np.array(la.moving_variance))
              for la in batchnorm_layers(model)}

    phase1 = finetune(model, photos.train, photos.validation, epochs=2, learning_rate=1e-3,
                      freeze="backbone", verbose=0)

    # Only the SE blocks and the head are trainable, and only they moved.
    owners = {v.path.split("/")[0] for v in model.trainable_variables}
    assert owners == se_layers | head
    after = _values(model)
    changed = {path.split("/")[0] for path in before if not np.array_equal(before[path], after[path])}
    assert changed == se_layers | head
    # BatchNorm in the frozen backbone ran in inference mode: its moving statistics
    # are bit-identical, so the features the head learned on are the pretrained ones.
    for la in batchnorm_layers(model):
        assert not la.trainable
        np.testing.assert_array_equal(np.array(la.moving_mean), moving[la.name][0])
        np.testing.assert_array_equal(np.array(la.moving_variance), moving[la.name][1])
    acc1 = phase1.after["accuracy"]
    assert acc1 >= 0.6, phase1.history  # chance is 0.25

    # Phase 2: everything trains, at a tenth of the learning rate.
    unfreeze(model)
    phase2 = finetune(model, photos.train, photos.validation, epochs=1, learning_rate=1e-4,
                      freeze="none", evaluate_before=True, verbose=0)
    assert phase2.before["accuracy"] == pytest.approx(acc1, abs=1e-6)  # unfreezing alone changes nothing
    assert len(model.trainable_variables) > 2 * len(se_layers) + 2
    assert phase2.after["accuracy"] >= acc1 - 0.05, (acc1, phase2.history)
