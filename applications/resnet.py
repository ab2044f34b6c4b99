"""SE-ResNet: Keras's ResNet50/101/152 with SE on every bottleneck's residual branch."""

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
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
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
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
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
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ResNet152, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEResNet50, "ResNet50", se_blocks=16, reference=_REFERENCE),
    zoo_entry(SEResNet101, "ResNet101", se_blocks=33, reference=_REFERENCE),
    zoo_entry(SEResNet152, "ResNet152", se_blocks=50, reference=_REFERENCE),
]
