"""The registry of the SE model zoo: `list_models`, `get_model` and `model_info`."""

from __future__ import annotations

from typing import Any

import keras
from keras_se.applications import (
    convnext,
    densenet,
    inception_resnet_v2,
    inception_v3,
    mobilenet,
    mobilenet_v2,
    nasnet,
    resnet,
    resnet_v2,
    vgg16,
    vgg19,
    xception,
)
from keras_se.applications._builder import ModelInfo, canonical_name

_MODELS: list[ModelInfo] = [
    *resnet.MODELS,
    *resnet_v2.MODELS,
    *vgg16.MODELS,
    *vgg19.MODELS,
    *mobilenet.MODELS,
    *mobilenet_v2.MODELS,
    *inception_v3.MODELS,
    *inception_resnet_v2.MODELS,
    *xception.MODELS,
    *densenet.MODELS,
    *nasnet.MODELS,
    *convnext.MODELS,
]

#: keras.applications families that already carry SE blocks: no SE variant.
ALREADY_SE = {
    "MobileNetV3": "hard-sigmoid SE blocks in its inverted residual blocks",
    "EfficientNetV2": "SE blocks in its MBConv blocks",
    "EfficientNet": "SE blocks in every MBConv block",
}


_BY_KEY: dict[str, ModelInfo] = {}
for _m in _MODELS:
    _BY_KEY[canonical_name(_m.name)] = _m
    _BY_KEY["se" + canonical_name(_m.base)] = _m  # "se_resnet50", "se_resnet50_v2", ...
del _m


def list_models() -> list[str]:
    """The names of the SE models, in family order.

    Example:

    >>> from keras_se import applications
    >>> applications.list_models()[:4]
    ['SEResNet50', 'SEResNet101', 'SEResNet152', 'SEResNet50V2']
    """
    return [m.name for m in _MODELS]


def model_info(model_name: str) -> ModelInfo:
    """The registry entry of an SE model; `model_name` is case-insensitive.

    `"SEResNet50"`, `"seresnet50"` and `"se_resnet50"` name the same model.

    Raises:
        ValueError: for a model that already carries SE (MobileNetV3,
            EfficientNet, EfficientNetV2) or an unknown name.

    Example:

    >>> from keras_se import applications
    >>> info = applications.model_info("se_resnet50")
    >>> info.name, info.base, info.family.placement, info.se_blocks
    ('SEResNet50', 'ResNet50', 'residual', 16)
    >>> info.preprocess_input is applications.resnet.preprocess_input
    True
    """
    if not isinstance(model_name, str):
        raise TypeError(
            f"`model_name` must be a string. Received: model_name={model_name!r}")
    key = canonical_name(model_name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    bare = key[2:] if key.startswith("se") else key
    for family, what in ALREADY_SE.items():
        if bare.startswith(canonical_name(family)):
            raise ValueError(
                f"{family} already carries Squeeze-and-Excitation ({what}), so "
                "keras_se.applications has no SE variant of it: use the "
                f"keras.applications constructor as is (or keras_se.add_se_blocks "
                f"to add more). Received: model_name={model_name!r}"
            )
    hint = ""
    if "se" + key in _BY_KEY:
        hint = f" Did you mean {_BY_KEY['se' + key].name!r}?"
    raise ValueError(
        f"Unknown SE model.{hint} `model_name` must be one of {', '.join(list_models())} "
        f"(case-insensitive). Received: model_name={model_name!r}"
    )


def get_model(model_name: str, /, **kwargs: Any) -> keras.Model:
    """Builds the SE model `model_name` (case-insensitive) with the constructor's `kwargs`.

    `model_name` is positional, so that `kwargs` can hold the model's own `name`.

    Raises:
        ValueError: for a model that already carries SE (MobileNetV3,
            EfficientNet, EfficientNetV2), an unknown name, or a bad argument.

    Example:

    >>> from keras_se import applications
    >>> model = applications.get_model(
    ...     "se_mobilenet", weights=None, input_shape=(64, 64, 3), alpha=0.25)
    >>> model.name
    'se_mobilenet_0.25_64'
    """
    return model_info(model_name).constructor(**kwargs)
