"""SE-NASNet: Keras's NASNetMobile and NASNetLarge with SE on every cell's output."""

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

preprocess_input = keras.applications.nasnet.preprocess_input
decode_predictions = keras.applications.nasnet.decode_predictions

FAMILY = Family(
    name="NASNet",
    module=keras.applications.nasnet,
    placement="module_output",
    select=r"^(normal|reduction)_concat",
    rationale=(
        "A NASNet cell is an Inception-like module: parallel branches whose outputs "
        "are concatenated into the cell's output. So this uses the paper's "
        "SE-Inception rule: one SE block on each cell's output (`normal_concat_*`, "
        "`reduction_concat_*`; 16 cells in NASNetMobile, 22 in NASNetLarge). The "
        "two-path concatenations that only adjust a previous cell's shape "
        "(`concatenate_*`) are not cell outputs and get none. The 'residual' "
        "placement does not fit: NASNet's additions join two branches inside a cell, "
        "not a branch and a shortcut."
    ),
)
_REFERENCE = "[Zoph et al., 2018, Learning Transferable Architectures](https://arxiv.org/abs/1707.07012)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SENASNetMobile(
    input_shape: tuple[int | None, ...] | None = None,
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_nasnet_mobile",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.NASNetMobile, FAMILY, **locals())


def SENASNetLarge(
    input_shape: tuple[int | None, ...] | None = None,
    include_top: bool = True,
    weights: Weights = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "se_nasnet_large",
    *,
    ratio: Ratio = 16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str = "identity",
    placement: str | None = None,
    select: Select = None,
    **se_options: Any,
) -> keras.Model:
    return build_se_model(keras.applications.NASNetLarge, FAMILY, **locals())


#: The zoo's entries for this family (read by `registry`), with their docstrings.
MODELS = [
    zoo_entry(SENASNetMobile, "NASNetMobile", se_blocks=16, reference=_REFERENCE),
    zoo_entry(SENASNetLarge, "NASNetLarge", se_blocks=22, reference=_REFERENCE),
]
