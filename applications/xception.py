"""SE-Xception: Keras's Xception with SE on every residual branch."""

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

preprocess_input = keras.applications.xception.preprocess_input
decode_predictions = keras.applications.xception.decode_predictions

FAMILY = Family(
    name="Xception",
    module=keras.applications.xception,
    placement="residual",
    select=None,
    rationale=(
        "Xception is a stack of residual units of separable convolutions, so the "
        "SE-ResNet module applies: SE on the residual branch before the sum with the "
        "shortcut, in all 12 units. In the entry and exit flow (blocks 2-4 and 13) "
        "the branch ends in max pooling, and the SE block follows it; in the middle "
        "flow it follows the third separable convolution's BatchNormalization."
    ),
)
_REFERENCE = "[Chollet, 2017, Xception](https://arxiv.org/abs/1610.02357)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEXception(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_xception",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.Xception, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEXception, "Xception", se_blocks=12, reference=_REFERENCE),
]
