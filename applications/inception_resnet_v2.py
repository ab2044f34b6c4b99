"""SE-InceptionResNetV2: Keras's InceptionResNetV2 with SE on every residual branch."""

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

preprocess_input = keras.applications.inception_resnet_v2.preprocess_input
decode_predictions = keras.applications.inception_resnet_v2.decode_predictions

FAMILY = Family(
    name="InceptionResNetV2",
    module=keras.applications.inception_resnet_v2,
    placement="residual",
    select=None,
    rationale=(
        "The paper's SE-Inception-ResNet-v2 (Table 2): SE on each Inception-ResNet "
        "block's residual branch, after its 1x1 up-projection and before the scaled "
        "merge `x + scale * branch` (Keras's `CustomScaleLayer`, which "
        "`add_se_blocks` treats as a residual merge): 10 block35, 20 block17 and 10 "
        "block8 units."
    ),
)
_REFERENCE = "[Szegedy et al., 2016, Inception-v4, Inception-ResNet](https://arxiv.org/abs/1602.07261)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEInceptionResNetV2(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_inception_resnet_v2",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.InceptionResNetV2, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEInceptionResNetV2, "InceptionResNetV2", se_blocks=40, reference=_REFERENCE),
]
