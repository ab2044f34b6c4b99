"""keras_se.diagnose: what went wrong in a run, from its history."""

import json
import math

import pytest

from keras_se.diagnose import (
    FAILURES,
    chance_accuracy,
    diagnose_history,
    diagnose_run,
    exit_code,
)

pytestmark = pytest.mark.core

LN4 = math.log(4)


def _history(train, val, val_loss=None, loss=None):
    n = len(train)
    return {
        "epoch": list(range(1, n + 1)),
        "loss": loss or [1.4 - 0.1 * i for i in range(n)],
        "accuracy": train,
        "val_loss": val_loss or [1.2 - 0.05 * i for i in range(n)],
        "val_accuracy": val,
    }


# A real failing run: `keras-se finetune mobilenet_v2 --weights none --data FOLDER
# --image-size 32 --epochs 10` before issue 14 (BatchNorm momentum 0.999, lr 1e-3, no
# augmentation) on the real-photo tiles of `_real_images` (4 classes, 960 / 240), as its
# history.json recorded it.
ISSUE_14 = {
    "epoch": list(range(1, 11)),
    "loss": [1.3745, 0.7589, 0.5339, 0.3716, 0.2446, 0.1707, 0.1425, 0.1024, 0.1395, 0.1205],
    "accuracy": [0.551, 0.7135, 0.8042, 0.8719, 0.9094, 0.9365, 0.95, 0.9656, 0.9573, 0.9625],
    "val_loss": [1.3864, 1.3863, 1.3864, 1.3864, 1.3864, 1.3864, 1.3866, 1.3865, 1.3864, 1.3864],
    "val_accuracy": [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25],
}


def test_issue_14_run_is_validation_constant_and_names_the_flag():
    d = diagnose_history(ISSUE_14, 4, num_validation=240)
    assert d.code == "validation_constant" and d.failed
    assert d.flag == "--recalibrate-bn on"
    assert "ln 4 = 1.386" in d.message and "BatchNorm" in d.message
    assert "\n" not in d.message
    assert d.evidence["chance"] == 0.25
    assert d.to_dict()["failed"] is True
    assert exit_code(d) == 3 and exit_code(None) == 0


def test_recalibrated_final_metrics_clear_the_failure():
    # The epochs were at chance, but the saved model (after recalibration) is not.
    assert diagnose_history(ISSUE_14, 4, num_validation=240,
                            final={"accuracy": 0.71, "loss": 0.8}) is None
    # ... and a final model still at chance keeps the diagnosis.
    d = diagnose_history(ISSUE_14, 4, num_validation=240, final={"accuracy": 0.26, "loss": 1.39})
    assert d.code == "validation_constant"


def test_validation_at_chance_with_a_moving_loss():
    h = _history([0.4, 0.7, 0.9, 0.95], [0.25, 0.24, 0.26, 0.25], val_loss=[1.5, 2.0, 2.6, 3.1])
    d = diagnose_history(h, 4, num_validation=240)
    assert d.code == "validation_at_chance" and d.failed
    assert "--augment on" in d.message and "--preprocess" in d.message


def test_chance_tolerance_follows_the_validation_size():
    h = _history([0.4, 0.7, 0.9], [0.29, 0.30, 0.30])
    # 240 images: chance 0.25 +- 2 sd = 0.056, so 0.30 is at chance ...
    assert diagnose_history(h, 4, num_validation=240).code == "validation_at_chance"
    # ... 5000 images: the tolerance is 0.02, and 0.30 is above chance.
    assert diagnose_history(h, 4, num_validation=5000) is None


@pytest.mark.parametrize("where", ["loss", "val_loss"])
def test_nan_loss(where):
    h = _history([0.3, 0.5, 0.4], [0.3, 0.4, 0.25])
    h[where] = [1.3, float("nan"), float("nan")]
    d = diagnose_history(h, 4)
    assert d.code == "nan_loss" and d.flag == "--lr" and d.evidence == {"metric": where, "epoch": 2}
    assert "at epoch 2" in d.message and "lower --lr" in d.message


def test_not_learning():
    h = _history([0.25, 0.26, 0.24, 0.27], [0.25, 0.25, 0.25, 0.25])
    d = diagnose_history(h, 4, num_validation=240)
    assert d.code == "not_learning" and d.flag == "--lr"


def test_a_run_too_short_to_judge_is_a_warning():
    h = _history([0.25, 0.26, 0.24, 0.27], [0.25, 0.25, 0.25, 0.25])
    # 4 classes x 20 images = 80: 79 images seen is too few to call the run failed.
    d = diagnose_history(h, 4, num_validation=240, train_images_seen=79)
    assert d.code == "too_short" and not d.failed and exit_code(d) == 0
    assert d.evidence["would_be"]["code"] == "not_learning"
    assert "only 79 training images (fewer than 20 per class)" in d.message
    assert diagnose_history(h, 4, num_validation=240, train_images_seen=80).code == "not_learning"
    # A non-finite loss is a failure however short the run.
    h["loss"][1] = float("inf")
    assert diagnose_history(h, 4, train_images_seen=8).code == "nan_loss"
    # A healthy short run is just healthy.
    assert diagnose_history(_history([0.5, 0.7], [0.45, 0.6]), 4, train_images_seen=8) is None


def test_overfitting_is_a_warning():
    h = _history([0.6, 0.9, 0.99, 1.0], [0.4, 0.5, 0.55, 0.5])
    d = diagnose_history(h, 4, num_validation=240)
    assert d.code == "overfitting" and not d.failed and d.code not in FAILURES
    assert exit_code(d) == 0


def test_healthy_runs_and_runs_without_validation():
    assert diagnose_history(_history([0.5, 0.7, 0.8], [0.45, 0.6, 0.7]), 4) is None
    assert diagnose_history({"loss": [1.0, 0.8], "accuracy": [0.5, 0.7]}, 4) is None


def test_unbalanced_classes_use_the_majority_share():
    assert chance_accuracy(3, [80, 10, 10]) == 0.8
    h = _history([0.8, 0.9, 0.97], [0.8, 0.8, 0.8])
    d = diagnose_history(h, 3, num_validation=100, class_counts=[80, 10, 10])
    assert d.code == "validation_at_chance"


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`num_classes` must be an int >= 2. Received: num_classes=1"):
        diagnose_history(ISSUE_14, 1)
    with pytest.raises(ValueError, match=r"`history` must hold a `loss` list .* Received: history with keys \['accuracy'\]"):
        diagnose_history({"accuracy": [0.5]}, 4)


def test_diagnose_run_reads_a_run_folder(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(ISSUE_14))
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"num_classes": 4, "num_validation": 240, "after": {"accuracy": 0.25, "loss": LN4}}))
    assert diagnose_run(tmp_path).code == "validation_constant"
    with pytest.raises(ValueError, match=r"`out_dir` is not a finished finetune run: cannot read .*history.json"):
        diagnose_run(tmp_path / "missing")
