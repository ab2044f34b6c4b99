"""timm's v1.5 and ResNet-D SE-ResNets as keras-hub models, and their base weights.

`seresnet50` (ResNet v1.5: stride on the 3x3) and `seresnet152d` (ResNet-D: deep
stem, average-pool shortcut) are keras-hub's `ResNetBackbone` (`bottleneck_block` /
`bottleneck_block_vd`) with timm's SE blocks added by `keras_se.add_se_blocks`,
which keeps the keras-hub class (`keras_se.hub`: an `SEResNetBackbone`); with the
ImageNet head they are an `SEResNetImageClassifier` (a keras-hub
`ResNetImageClassifier`) whose preprocessor scales as timm does. So they save with
`save_to_preset` and reload with `keras_hub.models.ImageClassifier.from_preset`
(with `keras_se` imported). keras-hub's own timm ResNet converter ports the base
tensors (`port_hub_base`); `_timm_maps.resnet_se_weight_map` the SE blocks and head.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import keras
from keras_se.applications._timm_maps import Loader, TimmArchitecture, WeightMap, bn_map

import keras_se

#: ImageNet mean and standard deviation (RGB), what timm's SE-ResNets were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _keras_hub(arch: TimmArchitecture):
    try:
        import keras_hub
    except ImportError as e:
        raise ValueError(
            f"{arch.name} converts through keras-hub's ResNetBackbone "
            "(pip install keras-se[hub])."
        ) from e
    return keras_hub


def hub_backbone_config(arch: TimmArchitecture) -> dict[str, Any]:
    """keras-hub `ResNetBackbone` arguments of a timm v1.5 / ResNet-D architecture."""
    config = {
        "stackwise_num_filters": [64, 128, 256, 512],
        "stackwise_num_blocks": list(arch.stage_blocks),
        "stackwise_num_strides": [1, 2, 2, 2],
        "use_pre_activation": False,
    }
    if arch.deep_stem:
        config.update(input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
                      block_type="bottleneck_block_vd")
    else:
        config.update(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                      block_type="bottleneck_block")
    return config


def build_hub_model(arch: TimmArchitecture, tag: str | None, *, include_top: bool,
                    input_shape, pooling, classifier_activation, name) -> keras.Model:
    """The keras-hub model of `arch`, random weights, SE blocks with `init="standard"`.

    `include_top`: an `SEResNetImageClassifier` (1000 classes, `predictions`) with
    a preprocessor that resizes to the checkpoint's evaluation size and scales by
    the ImageNet mean and standard deviation. Otherwise the `SEResNetBackbone`
    (named `backbone`), or, with `pooling`, a Functional model that pools its
    output.
    """
    kh = _keras_hub(arch)
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    image_shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    base = kh.models.ResNetBackbone(**hub_backbone_config(arch), image_shape=image_shape,
                                    name="backbone")
    # keras_se.add_se_blocks keeps a keras-hub backbone's class: an SEResNetBackbone.
    backbone = keras_se.add_se_blocks(base, "residual", init="standard")
    if include_top:
        from keras_se.hub import se_task_class

        size = (arch.top1.get(tag) or arch.top1[arch.default_tag])[1]
        converter = kh.layers.ResNetImageConverter(
            image_size=(size, size), scale=[1 / (255 * s) for s in IMAGENET_STD],
            offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
        preprocessor = kh.models.ResNetImageClassifierPreprocessor(image_converter=converter)
        task_cls = se_task_class(kh.models.ResNetImageClassifier)
        return task_cls(backbone=backbone, num_classes=1000, preprocessor=preprocessor,
                        activation=classifier_activation, name=name or arch.name)
    if pooling is None:
        return backbone
    pool = (keras.layers.GlobalAveragePooling2D(name="avg_pool") if pooling == "avg"
            else keras.layers.GlobalMaxPooling2D(name="max_pool"))
    return keras.Model(backbone.inputs[0], pool(backbone.outputs[0]), name=name or arch.name)


class _ConverterView:
    """What keras-hub's timm ResNet converter reads of a backbone.

    The converter (`keras_hub.src.utils.timm.convert_resnet.convert_weights`)
    reads `use_pre_activation`, `block_type`, `stackwise_num_filters`,
    `stackwise_num_blocks` and `get_layer`. Its `bottleneck_block_vd` branch
    ports neither the first shortcut of stage 1 nor the third convolution, so a
    ResNet-D is shown to it as `bottleneck_block`, and the layout differences (deep
    stem, pool before the shortcut convolution) are renamings of the timm keys
    (`_resnet_d_rename`) plus the two extra stem convolutions, ported here.
    """

    use_pre_activation = False
    block_type = "bottleneck_block"
    stackwise_num_filters = [64, 128, 256, 512]

    def __init__(self, layers: Mapping[str, Any], arch: TimmArchitecture):
        self._by_name = layers
        self.stackwise_num_blocks = list(arch.stage_blocks)

    def get_layer(self, name: str):
        return self._by_name[name]


_DOWNSAMPLE = re.compile(r"^(layer\d+\.0\.downsample\.)(\d)(\..*)$")


def _resnet_d_rename(key: str) -> str:
    """keras-hub's plain-ResNet timm names -> the ResNet-D checkpoint's names."""
    if key.startswith("conv1."):
        return "conv1.0." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "conv1.1." + key[len("bn1."):]
    m = _DOWNSAMPLE.match(key)
    if m:  # avg_down: Sequential(AvgPool2d, Conv2d, BatchNorm2d)
        return f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}"
    return key


def port_hub_base(layers: Mapping[str, Any], loader: Loader, arch: TimmArchitecture):
    try:
        from keras_se._keras_compat import keras_hub_timm_resnet_converter

        convert_resnet = keras_hub_timm_resnet_converter()
    except ImportError as e:
        raise ValueError(
            f"`weights` is a {arch.name} checkpoint, which converts through keras-hub "
            f"(pip install keras-se[hub]). Received: weights={loader.spec!r}"
        ) from e
    if arch.deep_stem:
        loader.rename = _resnet_d_rename
    try:
        convert_resnet.convert_weights(_ConverterView(layers, arch), loader,
                                       {"architecture": arch.name})
    finally:
        loader.rename = lambda key: key
    if arch.deep_stem:
        stem: WeightMap = {"conv2_conv/kernel": ("conv1.3.weight", "conv"),
                           "conv3_conv/kernel": ("conv1.6.weight", "conv")}
        bn_map(stem, "conv2_bn", "conv1.4")
        bn_map(stem, "conv3_bn", "bn1")
        loader.apply(layers, stem)
