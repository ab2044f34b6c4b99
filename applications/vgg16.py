"""SE-VGG16: Keras's VGG16 with SE after every convolution's ReLU."""

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

preprocess_input = keras.applications.vgg16.preprocess_input
decode_predictions = keras.applications.vgg16.decode_predictions

FAMILY = Family(
    name="VGG",
    module=keras.applications.vgg16,
    placement="post_activation",
    select=None,
    rationale=(
        "The paper's rule for non-residual networks (Section 6.1): an SE block after "
        "the non-linearity that follows each convolution. Keras's VGG fuses the ReLU "
        "into each Conv2D, so the SE block follows the convolution layer itself. The "
        "paper's SE-VGG-16 (Table 2) has BatchNormalization after each convolution; "
        "Keras's VGG has none, and this model adds none."
    ),
)
_REFERENCE = "[Simonyan & Zisserman, 2014, Very Deep Convolutional Networks](https://arxiv.org/abs/1409.1556)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEVGG16(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_vgg16",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.VGG16, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEVGG16, "VGG16", se_blocks=13, reference=_REFERENCE),
]
