"""SE-ConvNeXt: Keras's ConvNeXt Tiny to XLarge with SE on every block's residual branch."""

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

preprocess_input = keras.applications.convnext.preprocess_input
decode_predictions = keras.applications.convnext.decode_predictions

FAMILY = Family(
    name="ConvNeXt",
    module=keras.applications.convnext,
    placement="residual",
    select=None,
    rationale=(
        "A ConvNeXt block is a residual unit (depthwise 7x7 conv, LayerNorm, "
        "pointwise MLP, layer scale, then `inputs + branch`), so the SE-ResNet "
        "module applies: one SE block on the residual branch, after the layer scale "
        "and before the sum (anchored at the block's `_identity` layer), in every "
        "block (18 in Tiny, 36 in the others). The paper predates ConvNeXt; this is "
        "its standard integration carried over, at +1.4% parameters for Tiny. "
        "ConvNeXt's `include_preprocessing` argument is kept and "
        "`preprocess_input` is Keras's no-op."
    ),
)
_REFERENCE = "[Liu et al., 2022, A ConvNet for the 2020s](https://arxiv.org/abs/2201.03545)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEConvNeXtTiny(
    include_top: bool = True,
    include_preprocessing: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_convnext_tiny",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ConvNeXtTiny, FAMILY, **locals())


def SEConvNeXtSmall(
    include_top: bool = True,
    include_preprocessing: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_convnext_small",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ConvNeXtSmall, FAMILY, **locals())


def SEConvNeXtBase(
    include_top: bool = True,
    include_preprocessing: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_convnext_base",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ConvNeXtBase, FAMILY, **locals())


def SEConvNeXtLarge(
    include_top: bool = True,
    include_preprocessing: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_convnext_large",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ConvNeXtLarge, FAMILY, **locals())


def SEConvNeXtXLarge(
    include_top: bool = True,
    include_preprocessing: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_convnext_xlarge",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.ConvNeXtXLarge, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEConvNeXtTiny, "ConvNeXtTiny", se_blocks=18, reference=_REFERENCE),
    zoo_entry(SEConvNeXtSmall, "ConvNeXtSmall", se_blocks=36, reference=_REFERENCE),
    zoo_entry(SEConvNeXtBase, "ConvNeXtBase", se_blocks=36, reference=_REFERENCE),
    zoo_entry(SEConvNeXtLarge, "ConvNeXtLarge", se_blocks=36, reference=_REFERENCE),
    zoo_entry(SEConvNeXtXLarge, "ConvNeXtXLarge", se_blocks=36, reference=_REFERENCE),
]
