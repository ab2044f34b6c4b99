"""SE-InceptionV3: Keras's InceptionV3 with SE on every Inception module's output."""

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

preprocess_input = keras.applications.inception_v3.preprocess_input
decode_predictions = keras.applications.inception_v3.decode_predictions

FAMILY = Family(
    name="InceptionV3",
    module=keras.applications.inception_v3,
    placement="module_output",
    select=r"^mixed\d+$",
    rationale=(
        "The paper's SE-Inception module (Fig. 2): an SE block on each Inception "
        "module's output, the concatenation of its branches (`mixed0` to "
        "`mixed10`). The concatenations nested inside the last two modules "
        "(`mixed9_0`, `mixed9_1`, `concatenate`, `concatenate_1`, which join the 1x3 "
        "and 3x1 halves of a branch) are not module outputs and get none."
    ),
)
_REFERENCE = "[Szegedy et al., 2015, Rethinking the Inception Architecture](https://arxiv.org/abs/1512.00567)"


# The constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEInceptionV3(
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_inception_v3",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.InceptionV3, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SEInceptionV3, "InceptionV3", se_blocks=11, reference=_REFERENCE),
]
