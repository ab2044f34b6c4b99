"""Saying why a fine-tuning run failed, from its history.

`diagnose_history(history, num_classes)` reads the per-epoch metrics of a
finished run (`FinetuneResult.history`, Keras's `History.history`, or a
run's `history.json`) and returns None when nothing is wrong, or a
`Diagnosis`: one line naming what went wrong, the likely cause and the
command-line flag that addresses it, which the command line prints and
records in `metrics.json`.

What is recognised, in this order:

- `nan_loss`: the training or validation loss is NaN or infinite.
- `validation_constant`: validation accuracy stays at chance and the
  validation loss at ln K (K classes): the model gives the same
  probabilities for every validation image, while training accuracy rises.
  In a short run from scratch this is BatchNorm: its moving statistics
  (what inference uses) are still near their initial values, far from the
  statistics the trained weights produce.
- `validation_at_chance`: validation accuracy at chance while training
  accuracy rises, with a validation loss that moves: the features do not
  transfer to the validation images (stale BatchNorm statistics, or
  training and validation images that differ: preprocessing, classes).
- `not_learning`: training accuracy itself stays at chance.
- `overfitting` (a warning, not a failure): training accuracy near 1,
  validation accuracy far below it.

Keras-only (no TensorFlow); pure Python on numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence

__all__ = [
    "EXIT_FAILED_RUN",
    "FAILURES",
    "Diagnosis",
    "chance_accuracy",
    "diagnose_history",
    "diagnose_run",
    "exit_code",
]

FAILURES = ("nan_loss", "validation_constant", "validation_at_chance", "not_learning")
WARNINGS = ("overfitting", "too_short")
# The command line's exit code for a run that finished, wrote its outputs, and failed
# (1: an error, 2: bad input, 130: interrupted).
EXIT_FAILED_RUN = 3
# A run that trained on fewer images than this per class (all epochs together) is
# too short to call failed: a smoke test, a few steps to check the plumbing. Its
# near-chance accuracies say nothing yet; they are reported as a warning.
MIN_IMAGES_PER_CLASS = 20


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """What went wrong in a run.

    Attributes:
        code: one of `FAILURES` (the run failed) or `WARNINGS`.
        message: one line for the user: what happened, the likely cause, the
            flag that addresses it.
        flag: the command-line flag(s) that address it, e.g.
            `"--recalibrate-bn on"`.
        evidence: the numbers the diagnosis rests on.
    """

    code: str
    message: str
    flag: str
    evidence: dict

    @property
    def failed(self) -> bool:
        """True for a failed run (not a warning)."""
        return self.code in FAILURES

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "failed": self.failed}


def chance_accuracy(num_classes: int, class_counts: Sequence[int] | None = None) -> float:
    """The accuracy of always answering the most common class (1/K when balanced)."""
    if class_counts:
        return max(class_counts) / sum(class_counts)
    return 1.0 / num_classes


def _finite(values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _tolerance(chance, num_validation):
    # Two binomial standard deviations of an accuracy measured on
    # `num_validation` images of a model at chance, at least 0.02.
    if not num_validation:
        return 0.05
    return max(0.02, 2.0 * math.sqrt(chance * (1.0 - chance) / num_validation))


def diagnose_history(
    history: Mapping[str, Sequence[float]],
    num_classes: int,
    *,
    num_validation: int | None = None,
    class_counts: Sequence[int] | None = None,
    final: Mapping[str, float] | None = None,
    train_images_seen: int | None = None,
) -> Diagnosis | None:
    """Returns None for a healthy run, or what went wrong with it.

    Args:
        history: per-epoch metrics: `loss`, `accuracy`, and `val_loss`,
            `val_accuracy` when there was validation data (lists, one value
            per epoch).
        num_classes: int, K.
        num_validation: int or None, the number of validation images (sets
            how close to chance counts as "at chance"). Defaults to `None`
            (a tolerance of 0.05).
        class_counts: validation images per class, or None for balanced
            classes. Defaults to `None`.
        final: the validation metrics of the model as it was saved, if they
            differ from the last epoch's (`{"accuracy": ..., "loss": ...}`
            after recalibrating BatchNorm, say). Defaults to `None`.
        train_images_seen: int or None, training images the run went through
            (all epochs). Below `MIN_IMAGES_PER_CLASS` per class the run is too
            short to judge: what would be a failure (other than a non-finite
            loss) is returned as the warning `too_short`. Defaults to `None`
            (judged whatever its length).

    Returns:
        A `Diagnosis` or None.

    Example:

    >>> from keras_se.diagnose import diagnose_history
    >>> history = {"loss": [1.2, 0.6, 0.3], "accuracy": [0.5, 0.8, 0.9],
    ...            "val_loss": [1.3863, 1.3863, 1.3864], "val_accuracy": [0.25, 0.25, 0.25]}
    >>> d = diagnose_history(history, 4, num_validation=240)
    >>> d.code, d.flag
    ('validation_constant', '--recalibrate-bn on')
    >>> diagnose_history({"loss": [1.0, 0.5], "accuracy": [0.6, 0.8],
    ...                   "val_loss": [1.0, 0.7], "val_accuracy": [0.6, 0.75]}, 4) is None
    True
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}")
    loss = list(history.get("loss") or [])
    acc = list(history.get("accuracy") or [])
    val_loss = list(history.get("val_loss") or [])
    val_acc = list(history.get("val_accuracy") or [])
    if not loss:
        raise ValueError(
            "`history` must hold a `loss` list with one value per epoch. "
            f"Received: history with keys {sorted(history)}"
        )
    chance = chance_accuracy(num_classes, class_counts)
    tol = _tolerance(chance, num_validation)
    uniform_loss = math.log(num_classes)

    for name, values in (("loss", loss), ("val_loss", val_loss)):
        if not _finite(values):
            epoch = next(i for i, v in enumerate(values) if not _finite([v])) + 1
            return Diagnosis(
                "nan_loss",
                f"the {'training' if name == 'loss' else 'validation'} loss became "
                f"{values[epoch - 1]} at epoch {epoch}: the learning rate is too high for this "
                "model and data (or the inputs are not scaled as the model expects); lower "
                "--lr (by 10x) or check --preprocess",
                "--lr",
                {"metric": name, "epoch": epoch},
            )
    diagnosis = _judge(acc, val_acc, val_loss, num_classes, chance, tol, uniform_loss, final)
    short = train_images_seen is not None and train_images_seen < MIN_IMAGES_PER_CLASS * num_classes
    if diagnosis is not None and diagnosis.failed and short:
        return Diagnosis(
            "too_short",
            f"{diagnosis.message.split(':')[0]}, but the run saw only {train_images_seen} "
            f"training images (fewer than {MIN_IMAGES_PER_CLASS} per class), too few to judge "
            "it; train longer (--epochs, --steps-per-epoch) before reading the accuracy",
            "--epochs",
            {"train_images_seen": train_images_seen, "would_be": diagnosis.to_dict()},
        )
    return diagnosis


def _judge(acc, val_acc, val_loss, num_classes, chance, tol, uniform_loss, final):
    if not acc:
        return None
    train_last, train_best = acc[-1], max(acc)
    learned = train_best >= chance + min(0.15, 0.5 * (1.0 - chance))
    if not learned:
        return Diagnosis(
            "not_learning",
            f"training accuracy stayed near chance ({train_last:.3f}, chance {chance:.3f}) "
            f"over {len(acc)} epochs: the model is not learning; try another --lr (10x up or "
            "down), more --epochs, or check that the class folders hold what their names say",
            "--lr",
            {"train_accuracy": acc, "chance": chance},
        )
    if not val_acc:
        return None
    final_acc = float(final["accuracy"]) if final and "accuracy" in final else val_acc[-1]
    final_loss = float(final["loss"]) if final and "loss" in final else (val_loss or [None])[-1]
    at_chance = abs(final_acc - chance) <= tol
    if at_chance:
        constant = bool(val_loss) and all(abs(v - uniform_loss) <= 0.01 * uniform_loss for v in val_loss)
        evidence = {
            "val_accuracy": val_acc, "val_loss": val_loss, "train_accuracy": acc,
            "final_val_accuracy": final_acc, "final_val_loss": final_loss,
            "chance": chance, "tolerance": round(tol, 4), "uniform_loss": uniform_loss,
        }
        if constant:
            return Diagnosis(
                "validation_constant",
                f"validation accuracy stayed at chance ({final_acc:.3f}) with the loss at "
                f"ln {num_classes} = {uniform_loss:.3f} while training accuracy rose to "
                f"{train_last:.3f}: the model answers the same for every image, as BatchNorm "
                "does when its moving statistics never caught up with the weights (a short run "
                "from scratch); re-estimate them with --recalibrate-bn on (or set --bn-momentum 0.9)",
                "--recalibrate-bn on",
                evidence,
            )
        return Diagnosis(
            "validation_at_chance",
            f"validation accuracy stayed at chance ({final_acc:.3f}) while training accuracy "
            f"rose to {train_last:.3f}: the trained features do not carry over to the validation "
            "images; if this is a short run from scratch, use --recalibrate-bn on and "
            "--augment on; otherwise check that training and validation images are alike "
            "(--preprocess, the class folders)",
            "--recalibrate-bn on",
            evidence,
        )
    if train_last >= 0.95 and final_acc <= train_last - 0.3:
        return Diagnosis(
            "overfitting",
            f"training accuracy {train_last:.3f} but validation {final_acc:.3f}: the model "
            "memorises the training images; use --augment on, a higher --dropout, fewer "
            "--epochs or more images",
            "--augment on",
            {"train_accuracy": acc, "val_accuracy": val_acc, "final_val_accuracy": final_acc},
        )
    return None


def exit_code(diagnosis: Diagnosis | None) -> int:
    """`EXIT_FAILED_RUN` (3) for a failed run, 0 for a healthy one or a warning."""
    return EXIT_FAILED_RUN if diagnosis is not None and diagnosis.failed else 0


def diagnose_run(out_dir: str | os.PathLike) -> Diagnosis | None:
    """`diagnose_history` for a finished `keras-se finetune` output folder.

    Reads `history.json` and `metrics.json` (`num_classes`, `num_validation`,
    and `after`, the saved model's validation metrics).

    Args:
        out_dir: the run's `--out` folder.

    Returns:
        A `Diagnosis` or None.
    """
    out_dir = os.fspath(out_dir)
    paths = {name: os.path.join(out_dir, f"{name}.json") for name in ("history", "metrics")}
    loaded = {}
    for name, path in paths.items():
        try:
            with open(path, encoding="utf-8") as f:
                loaded[name] = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"`out_dir` is not a finished finetune run: cannot read {path} "
                f"({type(e).__name__}). Received: out_dir={out_dir!r}"
            ) from None
    metrics = loaded["metrics"]
    if "num_classes" not in metrics:
        raise ValueError(
            f"`out_dir` has a metrics.json without `num_classes`. Received: out_dir={out_dir!r}"
        )
    return diagnose_history(
        loaded["history"],
        int(metrics["num_classes"]),
        num_validation=metrics.get("num_validation"),
        final=metrics.get("after"),
    )
