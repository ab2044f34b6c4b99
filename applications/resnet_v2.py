"""SE-ResNetV2: Keras's ResNet50V2/101V2/152V2 with SE on every residual branch."""

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

preprocess_input = keras.applications.resnet_v2.preprocess_input
decode_predictions = keras.applications.resnet_v2.decode_predictions

FAMILY = Family(
    name="ResNetV2",
    module=keras.applications.resnet_v2,
    placement="residual",
    select=None,
    rationale=(
        "The paper's SE-ResNet module on the pre-activation ResNet: SE recalibrates "
        "each bottleneck's residual branch (after its last 1x1 convolution, which "
        "pre-activation units leave without BatchNormalization) before the sum with "
        "the shortcut."
    ),
)
_REFERENCE = "[He et al., 2016, Identity Mappings in Deep Residual Networks](https://arxiv.org/abs/1603.05027)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEResNet50V2(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet50v2",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ResNet50V2, FAMILY, **locals())


def SEResNet101V2(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet101v2",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ResNet101V2, FAMILY, **locals())


def SEResNet152V2(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_resnet152v2",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ResNet152V2, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEResNet50V2, "ResNet50V2", se_blocks=16, reference=_REFERENCE),
    zoo_entry(SEResNet101V2, "ResNet101V2", se_blocks=33, reference=_REFERENCE),
    zoo_entry(SEResNet152V2, "ResNet152V2", se_blocks=50, reference=_REFERENCE),
]
