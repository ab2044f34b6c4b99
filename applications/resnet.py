"""SE-ResNet: Keras's ResNet50/101/152 with SE on every bottleneck's residual branch."""

from __future__ import annotations

from typing import Any

import keras
from keras_se.applications import timm_weights
from keras_se.applications._builder import (
    Family,
    Ratio,
    Select,
    Weights,
    build_se_model,
    zoo_entry,
)

preprocess_input = keras.applications.resnet.preprocess_input
decode_predictions = keras.applications.resnet.decode_predictions

FAMILY = Family(
    name="ResNet",
    module=keras.applications.resnet,
    placement="residual",
    select=None,
    rationale=(
        "The paper's SE-ResNet module (Fig. 3, Table 14 'SE'): SE recalibrates each "
        "bottleneck's residual branch (after its last BatchNormalization) before the "
        "sum with the shortcut."
    ),
)
_REFERENCE = "[He et al., 2015, Deep Residual Learning](https://arxiv.org/abs/1512.03385)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEResNet50(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet50",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str | None = None,
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    if timm_weights.is_timm_weights(weights):
        return timm_weights.build_legacy_seresnet(50, **locals())
    return build_se_model(keras.applications.ResNet50, FAMILY, **locals())


def SEResNet101(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet101",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str | None = None,
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    if timm_weights.is_timm_weights(weights):
        return timm_weights.build_legacy_seresnet(101, **locals())
    return build_se_model(keras.applications.ResNet101, FAMILY, **locals())


def SEResNet152(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet152",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str | None = None,
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    if timm_weights.is_timm_weights(weights):
        return timm_weights.build_legacy_seresnet(152, **locals())
    return build_se_model(keras.applications.ResNet152, FAMILY, **locals())


_TIMM_NOTE = (
    "Trained SE weights: `weights=\"timm:legacy_seresnet{depth}.in1k\"` (timm's port of "
    "the original SENet, ImageNet top-1 {top1:.2f}% at 224) or a local `.safetensors`/"
    "`.pth` file of that architecture builds the model with timm's stem, SE blocks "
    "with `init=\"standard\"` and the 1000-class head, and loads it "
    "(`keras_se.applications.timm_weights`). The stem then differs from stock Keras "
    "ResNet{depth}: timm pools with `MaxPool2d(3, 2, ceil_mode=True)`, so `pool1_pad` "
    "is `ZeroPadding2D(((0, 1), (0, 1)))` (bottom and right) instead of "
    "`ZeroPadding2D(1)`; Keras's ImageNet ResNet weights do not fit that stem. Such a "
    "model expects RGB input scaled by the ImageNet mean and standard deviation: "
    "`keras_se.applications.timm_weights.preprocess_input`, not this module's "
    "Caffe-style `preprocess_input`."
)
_TIMM_ARG_DOCS = {
    "weights": "None (random initialization), `\"imagenet\"` (the stock "
    "model's ImageNet weights, then SE blocks that start as the identity: the "
    "model predicts exactly what the pretrained {base_name} does), a timm "
    "checkpoint (`\"timm:legacy_seresnet{depth}.in1k\"`, downloaded once into the "
    "Hugging Face cache, or a `.safetensors`/`.pth` file: trained SE weights, "
    "timm's stem, see above) or the path to a Keras weights file. A file of the "
    "stock {base_name} loads into the base before SE is added; a file saved from "
    "this SE model (`.weights.h5` or `.keras`) loads whole. Defaults to "
    "`\"imagenet\"`.",
    "init": "`\"identity\"` (SE starts as the identity; its gate is rescaled, "
    "e.g. `2 * sigmoid(z)`) or `\"standard\"` (the paper's block). None: "
    "`\"standard\"` with a timm checkpoint (`\"identity\"` is refused there: "
    "it would double every trained gate), `\"identity\"` otherwise. It selects "
    "the gate's form, so load an SE weights file with the `init` it was saved "
    "with. Defaults to `None`.",
}


def _timm_docs(depth):
    """The constructor's `weights`/`init` texts and the note on timm's checkpoints."""
    top1 = timm_weights.SUPPORTED[f"legacy_seresnet{depth}"].top1["in1k"][0]
    return {
        "arg_docs": {k: v.replace("{depth}", str(depth)) for k, v in _TIMM_ARG_DOCS.items()},
        "note": _TIMM_NOTE.format(depth=depth, top1=top1),
    }


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEResNet50, "ResNet50", se_blocks=16, reference=_REFERENCE, **_timm_docs(50)),
    zoo_entry(SEResNet101, "ResNet101", se_blocks=33, reference=_REFERENCE, **_timm_docs(101)),
    zoo_entry(SEResNet152, "ResNet152", se_blocks=50, reference=_REFERENCE, **_timm_docs(152)),
]
