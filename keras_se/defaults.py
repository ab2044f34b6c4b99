"""The defaults of a fine-tuning run, chosen from what the run is.

`plan_defaults(...)` takes what is known before training (pretrained
weights or not, what is frozen, how many training images, epochs, batch
size, the images' own size, the model family's sizes, the model's
BatchNorm momentum) and returns a `Plan`: every setting with its value, one
line saying why, and the flag that overrides it. The command line prints
the plan, writes it to `metrics.json` (`Plan.to_dict()`), and `RULES` holds
the text of each rule for `--help`. A value the user gave wins and is
recorded as such.

Why these rules (measured on real photographs, issue 14; see
`benchmarks/results/real_data_ablation.md`):

- BatchNorm. `keras.applications` models keep the moving statistics of a
  long ImageNet schedule: momentum 0.999 (MobileNetV2, EfficientNet) or 0.99.
  A new `BatchNormalization` starts them at mean 0, variance 1, while in a
  MobileNetV2 initialised at random the depthwise convolutions' outputs have
  variances near 1e-3 (glorot's limit divides by 9 x channels). After 300
  steps at 0.999, 74% of the initial variance of 1 is still in the average,
  hundreds of times the real one: in inference mode those layers scale their
  inputs down to nothing, the network answers the same for every image, and
  validation sits at chance with the loss at ln K while training accuracy
  climbs. When BatchNorm trains, the momentum is therefore chosen from the
  run's length, and the statistics are re-estimated from the training images
  after training (`keras_se.batchnorm.recalibrate_batchnorm`), which makes
  them exact for the final weights whatever the momentum.
- Augmentation: on for small training sets (fewer than
  `AUGMENT_BELOW` images), where a from-scratch model memorises them.
- Input size: a from-scratch model trains at the images' own size, raised to
  the family's smallest useful size (the last feature map at least 2x2, e.g.
  64 for a stride-32 network); a pretrained model at the size its weights
  were trained for.

Keras-free, TensorFlow-free: plain Python.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AUGMENT_BELOW",
    "RULES",
    "Choice",
    "Plan",
    "bn_momentum_for",
    "folder_image_size",
    "min_useful_image_size",
    "plan_defaults",
]

# Training sets smaller than this get augmentation by default.
AUGMENT_BELOW = 20_000
# Peak learning rates (Adam): from random weights, and from pretrained ones.
SCRATCH_LEARNING_RATE = 1e-2
PRETRAINED_LEARNING_RATE = 1e-3
# The range `bn_momentum_for` chooses from.
MOMENTUM_FLOOR = 0.9
MOMENTUM_CEILING = 0.999

# One line per setting for `--help` (the rule, not a value).
RULES = {
    "bn_momentum": (
        "BatchNormalization momentum. Default (auto): when BatchNorm trains (--freeze none), "
        "1 - 3/steps_per_epoch, within [0.9, the model's own], so the moving statistics follow "
        "the weights within an epoch; the model's own when the backbone is frozen"
    ),
    "recalibrate_bn": (
        "re-estimate every BatchNorm's moving mean and variance from the training images "
        "after training (one pass, no augmentation). Default (auto): on when BatchNorm trains "
        "(--freeze none), off with a frozen backbone"
    ),
    "augment": (
        "random flips, shifts, brightness and contrast. Default (auto): on for fewer than "
        f"{AUGMENT_BELOW:,} training images"
    ),
    "learning_rate": (
        "peak learning rate (Adam, cosine decay to 0). Default (auto): 1e-2 with --weights "
        "none (a network learning from random weights in a few epochs), 1e-3 with pretrained "
        "weights"
    ),
    "image_size": (
        "input size, HxW or one number. Default: with --weights none, the images' own size "
        "raised to the family's smallest useful size (last feature map at least 2x2: 64 for "
        "MobileNetV2, ResNet, EfficientNet); with pretrained weights, the weights' size"
    ),
}


# The smallest input at which a keras.applications family's last feature map is
# at least 2x2 (twice its total stride of 32), or Keras's own minimum when larger.
_MIN_SIZES = {"inception_v3": 75, "inception_resnet_v2": 75, "xception": 71}


def min_useful_image_size(family: str | None) -> int:
    """The family's smallest useful input: 64 (a 2x2 last map at stride 32), or Keras's minimum.

    Args:
        family: a `keras.applications` module name (`"mobilenet_v2"`, `"resnet"`), or None.

    Example:

    >>> from keras_se.defaults import min_useful_image_size
    >>> min_useful_image_size("mobilenet_v2"), min_useful_image_size("inception_v3")
    (64, 75)
    """
    return _MIN_SIZES.get(family or "", 64)


def folder_image_size(paths, sample: int = 64) -> tuple | None:
    """The common (height, width) of image files, or None when they differ.

    Reads the headers of up to `sample` files spread over `paths` (Pillow
    reads the size without decoding the pixels); returns a size that at
    least 90% of them share.

    Args:
        paths: image file paths.
        sample: int, how many to look at. Defaults to `64`.
    """
    from PIL import Image

    paths = list(paths)
    if not paths:
        return None
    step = max(1, len(paths) // sample)
    counts = {}
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as im:
                size = (im.height, im.width)
        except OSError:
            continue
        counts[size] = counts.get(size, 0) + 1
    if not counts:
        return None
    size, count = max(counts.items(), key=lambda kv: kv[1])
    return size if count >= 0.9 * sum(counts.values()) else None


@dataclasses.dataclass(frozen=True)
class Choice:
    """One setting of a run.

    Attributes:
        name: the setting (`"bn_momentum"`, `"recalibrate_bn"`, `"augment"`,
            `"image_size"`).
        value: its value (None: leave the model's own).
        reason: one line: why this value.
        flag: the command-line flag that sets it.
        source: `"auto"` (chosen here) or `"user"` (given by the user).
    """

    name: str
    value: Any
    reason: str
    flag: str
    source: str = "auto"

    def line(self) -> str:
        value = "the model's own" if self.value is None else _show(self.value)
        return f"{self.name} = {value} ({self.source}): {self.reason}"


def _show(value):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return str(value)


@dataclasses.dataclass
class Plan:
    """The chosen settings, in order; `plan["augment"]` is a value."""

    choices: list

    def __getitem__(self, name: str):
        for choice in self.choices:
            if choice.name == name:
                return choice.value
        raise KeyError(name)

    def choice(self, name: str) -> Choice:
        return next(c for c in self.choices if c.name == name)

    def lines(self) -> list:
        """One line per setting, for printing."""
        return [c.line() for c in self.choices]

    def to_dict(self) -> dict:
        """`{name: {"value", "reason", "source", "flag"}}`, JSON-able (for metrics.json)."""
        return {
            c.name: {
                "value": list(c.value) if isinstance(c.value, tuple) else c.value,
                "reason": c.reason,
                "source": c.source,
                "flag": c.flag,
            }
            for c in self.choices
        }

    def training_kwargs(self) -> dict:
        """The values as keyword arguments: `image_size`, `bn_momentum`,
        `recalibrate_bn`, `augment`, `learning_rate`."""
        return {c.name: c.value for c in self.choices}


def bn_momentum_for(steps_per_epoch: int, model_momentum: float | None = None) -> float:
    """The BatchNorm momentum for a run of `steps_per_epoch` steps per epoch.

    The moving average's window, 1 / (1 - momentum), is a third of an epoch,
    so the statistics reflect the weights of the epoch's end; the result is
    kept within [0.9, the model's own momentum (0.999 if unknown)]: 0.9 up to
    30 steps per epoch, 0.99 at 300, 0.999 from 3,000.

    Example:

    >>> from keras_se.defaults import bn_momentum_for
    >>> bn_momentum_for(30), bn_momentum_for(300), bn_momentum_for(3000)
    (0.9, 0.99, 0.999)
    >>> bn_momentum_for(3000, model_momentum=0.99)
    0.99
    """
    ceiling = MOMENTUM_CEILING if model_momentum is None else max(MOMENTUM_FLOOR, model_momentum)
    momentum = 1.0 - 3.0 / max(1, steps_per_epoch)
    return round(min(ceiling, max(MOMENTUM_FLOOR, momentum)), 4)


def _size_pair(size, name):
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(
            f"`{name}` must be a positive int, a (height, width) pair or None. "
            f"Received: {name}={size!r}"
        )
    return tuple(size)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def plan_defaults(
    *,
    pretrained: bool,
    num_train: int,
    epochs: int,
    batch_size: int,
    image_size: int | tuple | None = None,
    min_image_size: int | None = 64,
    pretrained_image_size: int | None = 224,
    freeze: str | None = None,
    model_momentum: float | None = None,
    user: Mapping[str, Any] | None = None,
) -> Plan:
    """Chooses the BatchNorm momentum, recalibration, augmentation and input size of a run.

    Args:
        pretrained: bool, the backbone starts from trained weights
            (`--weights imagenet` or a file) rather than at random.
        num_train: int, training images.
        epochs: int.
        batch_size: int, the global batch size.
        image_size: the images' own size (int or (h, w)), or None if unknown
            (images of many sizes). Defaults to `None`.
        min_image_size: int or None, the family's smallest useful input (its
            last feature map at least 2x2: twice its total stride, 64 for
            MobileNetV2 and ResNet). Defaults to `64`.
        pretrained_image_size: int or None, the input size the pretrained
            weights were trained at. Defaults to `224`.
        freeze: `"backbone"` (BatchNorm frozen, inference mode), `"none"`
            (everything trains) or None for the command line's rule
            (`"backbone"` when pretrained). Defaults to `None`.
        model_momentum: float or None, the model's own BatchNorm momentum
            (0.999 for MobileNetV2). Defaults to `None`.
        user: values the user set, by setting name (`{"augment": False}`);
            they are kept and recorded as `source="user"`. Defaults to `None`.

    Returns:
        A `Plan` of `image_size`, `bn_momentum`, `recalibrate_bn`, `augment`
        and `learning_rate`, in that order.

    Example:

    >>> from keras_se.defaults import plan_defaults
    >>> plan = plan_defaults(pretrained=False, num_train=960, epochs=10, batch_size=32,
    ...                      image_size=32, model_momentum=0.999)
    >>> plan["image_size"], plan["bn_momentum"], plan["recalibrate_bn"], plan["augment"]
    ((64, 64), 0.9, True, True)
    >>> plan["learning_rate"]
    0.01
    >>> print(plan.choice("bn_momentum").reason)
    BatchNorm trains: 30 steps per epoch, so momentum 1 - 3/30 within [0.9, 0.999] (the model's 0.999 would keep 74% of the initial statistics after 300 steps)
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"`pretrained` must be a bool. Received: pretrained={pretrained!r}")
    for value, name in ((num_train, "num_train"), (epochs, "epochs"), (batch_size, "batch_size")):
        _positive_int(value, name)
    size = _size_pair(image_size, "image_size")
    if freeze is None:
        freeze = "backbone" if pretrained else "none"
    if freeze not in ("backbone", "none"):
        raise ValueError(f"`freeze` must be 'backbone', 'none' or None. Received: freeze={freeze!r}")
    user = dict(user or {})
    unknown = sorted(set(user) - set(RULES))
    if unknown:
        raise ValueError(
            f"`user` names unknown settings {unknown}; known: {', '.join(RULES)}. "
            f"Received: user={user!r}"
        )
    steps_per_epoch = math.ceil(num_train / batch_size)
    steps = steps_per_epoch * epochs
    bn_trains = freeze == "none"
    flags = {
        "image_size": "--image-size",
        "bn_momentum": "--bn-momentum",
        "recalibrate_bn": "--recalibrate-bn",
        "augment": "--augment",
        "learning_rate": "--lr",
    }
    auto = {}

    # Input size.
    if pretrained and pretrained_image_size:
        auto["image_size"] = (
            (pretrained_image_size, pretrained_image_size),
            f"pretrained weights: the size they were trained at ({pretrained_image_size})",
        )
    elif size is None:
        fallback = max(min_image_size or 0, pretrained_image_size or 0) or 224
        auto["image_size"] = (
            (fallback, fallback),
            f"the images have no single size: {fallback}, the family's default",
        )
    elif min_image_size and min(size) < min_image_size:
        scale = min_image_size / min(size)
        new = (int(round(size[0] * scale)), int(round(size[1] * scale)))
        auto["image_size"] = (
            new,
            f"{size[0]}x{size[1]} images upsampled to {new[0]}x{new[1]}: the family's smallest "
            f"useful input ({min_image_size}; smaller leaves a 1x1 last feature map)",
        )
    else:
        auto["image_size"] = (size, f"the images' own size ({size[0]}x{size[1]})")

    # BatchNorm momentum.
    if bn_trains:
        momentum = bn_momentum_for(steps_per_epoch, model_momentum)
        keep = model_momentum if model_momentum is not None else MOMENTUM_CEILING
        left = keep**steps
        auto["bn_momentum"] = (
            momentum,
            f"BatchNorm trains: {steps_per_epoch} steps per epoch, so momentum 1 - "
            f"3/{steps_per_epoch} within [{MOMENTUM_FLOOR}, {keep}]"
            + (
                f" (the model's {keep} would keep {left:.0%} of the initial statistics after "
                f"{steps} steps)"
                if momentum < keep and left >= 0.01
                else ""
            ),
        )
    else:
        auto["bn_momentum"] = (
            None,
            "the backbone is frozen: its BatchNorm runs in inference mode and never updates",
        )

    # Recalibration after training.
    if bn_trains:
        auto["recalibrate_bn"] = (
            True,
            "BatchNorm trains: its moving statistics trail the weights; one pass over the "
            "training images after training makes them exact for the final weights",
        )
    else:
        auto["recalibrate_bn"] = (
            False,
            "the backbone is frozen: its statistics are the pretrained ones the head was "
            "trained with",
        )

    # Learning rate.
    if pretrained:
        auto["learning_rate"] = (
            PRETRAINED_LEARNING_RATE,
            "pretrained weights: a small step keeps what they learned",
        )
    else:
        auto["learning_rate"] = (
            SCRATCH_LEARNING_RATE,
            f"random weights, {epochs} epochs: Adam at {SCRATCH_LEARNING_RATE:g} gets far in a "
            "short run (1e-3 leaves a from-scratch MobileNetV2 well short)",
        )

    # Augmentation.
    if num_train < AUGMENT_BELOW:
        auto["augment"] = (
            True,
            f"{num_train:,} training images (fewer than {AUGMENT_BELOW:,}): augmentation "
            "against memorising them",
        )
    else:
        auto["augment"] = (False, f"{num_train:,} training images: enough without augmentation")

    choices = []
    for name in ("image_size", "bn_momentum", "recalibrate_bn", "augment", "learning_rate"):
        if name in user:
            value = user[name]
            if name == "image_size":
                value = _size_pair(value, "image_size")
            choices.append(Choice(name, value, f"set by {flags[name]}", flags[name], "user"))
        else:
            value, reason = auto[name]
            choices.append(Choice(name, value, reason, flags[name]))
    return Plan(choices)
