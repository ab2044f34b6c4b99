"""keras_se.defaults: the settings of a run, chosen from what the run is."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_se.defaults import (
    AUGMENT_BELOW,
    RULES,
    bn_momentum_for,
    folder_image_size,
    min_useful_image_size,
    plan_defaults,
)

pytestmark = pytest.mark.core


def _scratch(**kw):
    args = dict(pretrained=False, num_train=960, epochs=10, batch_size=32, image_size=32,
                model_momentum=0.999)
    args.update(kw)
    return plan_defaults(**args)


def test_issue_14_run_from_scratch():
    plan = _scratch()
    assert [c.name for c in plan.choices] == [
        "image_size", "bn_momentum", "recalibrate_bn", "augment", "learning_rate"]
    assert plan["learning_rate"] == 1e-2
    assert plan["image_size"] == (64, 64)
    assert plan["bn_momentum"] == 0.9
    assert plan["recalibrate_bn"] is True
    assert plan["augment"] is True
    assert all(c.source == "auto" and c.reason and "\n" not in c.reason for c in plan.choices)
    assert "74% of the initial statistics after 300 steps" in plan.choice("bn_momentum").reason
    assert plan.choice("image_size").reason.startswith("32x32 images upsampled to 64x64")
    assert plan.lines()[1].startswith("bn_momentum = 0.9 (auto): BatchNorm trains")


def test_pretrained_frozen_backbone():
    plan = plan_defaults(pretrained=True, num_train=960, epochs=5, batch_size=32, image_size=32,
                         pretrained_image_size=224, model_momentum=0.999)
    assert plan["image_size"] == (224, 224)
    assert plan["bn_momentum"] is None and plan["recalibrate_bn"] is False
    assert plan["learning_rate"] == 1e-3
    assert "inference mode" in plan.choice("bn_momentum").reason
    # Pretrained but everything trains: BatchNorm rules apply again.
    plan = plan_defaults(pretrained=True, freeze="none", num_train=96_000, epochs=5,
                         batch_size=32, image_size=224, model_momentum=0.999)
    assert plan["bn_momentum"] == 0.999 and plan["recalibrate_bn"] is True
    assert plan["augment"] is False


@pytest.mark.parametrize(
    "steps, model, expected",
    [(1, None, 0.9), (30, 0.999, 0.9), (60, 0.999, 0.95), (300, 0.999, 0.99),
     (10_000, 0.999, 0.999), (10_000, 0.99, 0.99), (10_000, None, 0.999), (100, 0.5, 0.9)],
)
def test_bn_momentum_follows_the_epoch_length(steps, model, expected):
    assert bn_momentum_for(steps, model) == expected


def test_image_size_rules():
    assert _scratch(image_size=(48, 96))["image_size"] == (64, 128)  # aspect kept
    assert _scratch(image_size=128)["image_size"] == (128, 128)
    assert _scratch(image_size=None)["image_size"] == (224, 224)
    assert _scratch(image_size=32, min_image_size=None)["image_size"] == (32, 32)
    assert min_useful_image_size("resnet") == 64 and min_useful_image_size("xception") == 71


def test_augmentation_threshold():
    assert _scratch(num_train=AUGMENT_BELOW - 1)["augment"] is True
    assert _scratch(num_train=AUGMENT_BELOW)["augment"] is False


def test_user_values_win_and_are_recorded():
    plan = _scratch(user={"augment": False, "bn_momentum": 0.99, "image_size": 32})
    assert plan["augment"] is False and plan["bn_momentum"] == 0.99
    assert plan["image_size"] == (32, 32)
    assert plan.choice("augment").source == "user"
    assert plan.choice("augment").reason == "set by --augment"
    record = json.loads(json.dumps(plan.to_dict()))
    assert record["image_size"] == {"value": [32, 32], "reason": "set by --image-size",
                                     "source": "user", "flag": "--image-size"}
    assert record["recalibrate_bn"]["source"] == "auto"
    assert plan.training_kwargs() == {"image_size": (32, 32), "bn_momentum": 0.99,
                                      "recalibrate_bn": True, "augment": False,
                                      "learning_rate": 1e-2}
    assert set(RULES) == set(plan.to_dict())


def test_errors():
    with pytest.raises(ValueError, match=r"`num_train` must be a positive int. Received: num_train=0"):
        _scratch(num_train=0)
    with pytest.raises(ValueError, match=r"`image_size` must be a positive int, a \(height, width\) "
                       r"pair or None. Received: image_size=\(32,\)"):
        _scratch(image_size=(32,))
    with pytest.raises(ValueError, match=r"`freeze` must be 'backbone', 'none' or None. Received: freeze='all'"):
        _scratch(freeze="all")
    with pytest.raises(ValueError, match=r"`user` names unknown settings \['lr'\]"):
        _scratch(user={"lr": 1})
    with pytest.raises(TypeError, match=r"`pretrained` must be a bool. Received: pretrained='no'"):
        _scratch(pretrained="no")


def test_folder_image_size(tmp_path):
    paths = []
    for i in range(20):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.zeros((32, 40, 3), "uint8")).save(path)
        paths.append(path)
    assert folder_image_size(paths) == (32, 40)
    for i in range(5):  # a quarter of another size: no common size
        path = tmp_path / f"odd{i}.png"
        Image.fromarray(np.zeros((50, 50, 3), "uint8")).save(path)
        paths.append(path)
    assert folder_image_size(paths) is None
    assert folder_image_size([]) is None
