"""SE-DenseNet: Keras's DenseNet121/169/201 with SE in every dense layer."""

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

preprocess_input = keras.applications.densenet.preprocess_input
decode_predictions = keras.applications.densenet.decode_predictions

FAMILY = Family(
    name="DenseNet",
    module=keras.applications.densenet,
    placement="post_activation",
    select=None,
    rationale=(
        "DenseNet has no additive residual merge, so this uses the paper's rule for "
        "non-residual networks: SE after the non-linearity that follows each "
        "convolution. In a dense layer (BN-ReLU-Conv1x1-BN-ReLU-Conv3x3) only the "
        "1x1 bottleneck convolution is followed by one, so each dense layer gets one "
        "SE block on its 4k = 128-channel bottleneck, plus one after the stem "
        "(DenseNet121: 1 + 58 blocks, +127,252 parameters, +1.6%). The alternative, "
        "SE after every concatenation ('module_output'), would recalibrate the whole "
        "growing feature map 58 times over and cost +2,959,622 parameters (+37%)."
    ),
)
_REFERENCE = "[Huang et al., 2017, Densely Connected Convolutional Networks](https://arxiv.org/abs/1608.06993)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEDenseNet121(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_densenet121",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.DenseNet121, FAMILY, **locals())


def SEDenseNet169(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_densenet169",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.DenseNet169, FAMILY, **locals())


def SEDenseNet201(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_densenet201",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.DenseNet201, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEDenseNet121, "DenseNet121", se_blocks=59, reference=_REFERENCE),
    zoo_entry(SEDenseNet169, "DenseNet169", se_blocks=83, reference=_REFERENCE),
    zoo_entry(SEDenseNet201, "DenseNet201", se_blocks=99, reference=_REFERENCE),
]
