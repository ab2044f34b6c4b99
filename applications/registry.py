"""The registry of the SE model zoo: `list_models`, `get_model` and `model_info`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from types import ModuleType
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
from keras_se.applications._builder import Family


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One SE model of the zoo.

    Attributes:
        name: the constructor's name, e.g. `"SEResNet50"`.
        constructor: the constructor, e.g. `keras_se.applications.SEResNet50`.
        base: the name of the `keras.applications` constructor it wraps.
        module: the `keras_se.applications` module that holds the constructor,
            its `preprocess_input` and `decode_predictions`.
        family: the `Family`, with the default placement and its rationale.
        se_blocks: the number of SE blocks at the default input size.
        default_size: the default (ImageNet) input size of the base model.
    """

    name: str
    constructor: Callable[..., keras.Model]
    base: str
    module: ModuleType
    family: Family
    se_blocks: int
    default_size: int

    @property
    def preprocess_input(self) -> Callable:
        """The base family's `preprocess_input`."""
        return self.module.preprocess_input

    @property
    def decode_predictions(self) -> Callable:
        """The base family's `decode_predictions`."""
        return self.module.decode_predictions


def _info(constructor, base, module, se_blocks, default_size=224):
    return ModelInfo(constructor.__name__, constructor, base, module, module.FAMILY,
                     se_blocks, default_size)


_MODELS = [
    _info(resnet.SEResNet50, "ResNet50", resnet, 16),
    _info(resnet.SEResNet101, "ResNet101", resnet, 33),
    _info(resnet.SEResNet152, "ResNet152", resnet, 50),
    _info(resnet_v2.SEResNet50V2, "ResNet50V2", resnet_v2, 16),
    _info(resnet_v2.SEResNet101V2, "ResNet101V2", resnet_v2, 33),
    _info(resnet_v2.SEResNet152V2, "ResNet152V2", resnet_v2, 50),
    _info(vgg16.SEVGG16, "VGG16", vgg16, 13),
    _info(vgg19.SEVGG19, "VGG19", vgg19, 16),
    _info(mobilenet.SEMobileNet, "MobileNet", mobilenet, 13),
    _info(mobilenet_v2.SEMobileNetV2, "MobileNetV2", mobilenet_v2, 17),
    _info(inception_v3.SEInceptionV3, "InceptionV3", inception_v3, 11, 299),
    _info(inception_resnet_v2.SEInceptionResNetV2, "InceptionResNetV2",
          inception_resnet_v2, 40, 299),
    _info(xception.SEXception, "Xception", xception, 12, 299),
    _info(densenet.SEDenseNet121, "DenseNet121", densenet, 59),
    _info(densenet.SEDenseNet169, "DenseNet169", densenet, 83),
    _info(densenet.SEDenseNet201, "DenseNet201", densenet, 99),
    _info(nasnet.SENASNetMobile, "NASNetMobile", nasnet, 16),
    _info(nasnet.SENASNetLarge, "NASNetLarge", nasnet, 22, 331),
    _info(convnext.SEConvNeXtTiny, "ConvNeXtTiny", convnext, 18),
    _info(convnext.SEConvNeXtSmall, "ConvNeXtSmall", convnext, 36),
    _info(convnext.SEConvNeXtBase, "ConvNeXtBase", convnext, 36),
    _info(convnext.SEConvNeXtLarge, "ConvNeXtLarge", convnext, 36),
    _info(convnext.SEConvNeXtXLarge, "ConvNeXtXLarge", convnext, 36),
]

#: keras.applications families that already carry SE blocks: no SE variant.
ALREADY_SE = {
    "MobileNetV3": "hard-sigmoid SE blocks in its inverted residual blocks",
    "EfficientNetV2": "SE blocks in its MBConv blocks",
    "EfficientNet": "SE blocks in every MBConv block",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


_BY_KEY: dict[str, ModelInfo] = {}
for _m in _MODELS:
    _BY_KEY[_key(_m.name)] = _m
    _BY_KEY["se" + _key(_m.base)] = _m  # "se_resnet50", "se_resnet50_v2", ...
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
    key = _key(model_name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    bare = key[2:] if key.startswith("se") else key
    for family, what in ALREADY_SE.items():
        if bare.startswith(_key(family)):
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
