"""SE-MobileNet: Keras's MobileNet (v1) with SE after every pointwise convolution."""

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

preprocess_input = keras.applications.mobilenet.preprocess_input
decode_predictions = keras.applications.mobilenet.decode_predictions

FAMILY = Family(
    name="MobileNet",
    module=keras.applications.mobilenet,
    placement="post_activation",
    select=r"^conv_pw_\d+_relu$",
    rationale=(
        "The paper's SE-MobileNet (Table 3: 4.2M -> 4.7M parameters): an SE block "
        "after the ReLU of each of the 13 pointwise (1x1) convolutions, none after "
        "the stem or the depthwise convolutions. At alpha=1 and 224x224 it has "
        "exactly 4,739,932 parameters."
    ),
)
_REFERENCE = "[Howard et al., 2017, MobileNets](https://arxiv.org/abs/1704.04861)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults) plus the SE options.
def SEMobileNet(
    input_shape: tuple[int | None, ...] | None = None,
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    dropout: float = 1e-3,
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
    return build_se_model(keras.applications.MobileNet, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEMobileNet, "MobileNet", se_blocks=13, reference=_REFERENCE),
]
