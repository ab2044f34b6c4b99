"""SE-MobileNetV2: Keras's MobileNetV2 with SE in every inverted residual block."""

from __future__ import annotations

from typing import Any

import keras
from keras_se.applications._builder import (
    Family,
    Ratio,
    Select,
    Weights,
    build_se_model,
    zoo_entry,
)

preprocess_input = keras.applications.mobilenet_v2.preprocess_input
decode_predictions = keras.applications.mobilenet_v2.decode_predictions

FAMILY = Family(
    name="MobileNetV2",
    module=keras.applications.mobilenet_v2,
    placement="post_activation",
    select=r"^(expanded_conv|block_\d+)_depthwise_relu$",
    rationale=(
        "The paper has no MobileNetV2; this follows the paper's post-activation rule "
        "as SE-MobileNet does, restricted to one site per block as MnasNet, "
        "MobileNetV3 and EfficientNet place SE in the same inverted residual block: "
        "after the depthwise convolution's ReLU6, in the expanded space, before the "
        "linear projection. All 17 blocks get one. The 'residual' placement would "
        "instead put SE on the linear bottleneck (16-160 channels, a 1- to "
        "10-unit excitation at r=16) of only the 10 blocks that have a shortcut. "
        "Cost: +571,614 parameters (+16%) at alpha=1."
    ),
)
_REFERENCE = "[Sandler et al., 2018, MobileNetV2](https://arxiv.org/abs/1801.04381)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults) plus the SE options.
def SEMobileNetV2(
    input_shape: tuple[int | None, ...] | None = None,
    alpha: float = 1.0,
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.MobileNetV2, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEMobileNetV2, "MobileNetV2", se_blocks=17, reference=_REFERENCE),
]
