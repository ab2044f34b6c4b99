"""timm's legacy SENet (`legacy_seresnet50/101/152`) as `keras_se.applications.SEResNet*`.

Cadene's port of the original Caffe SENet is Keras's ResNet v1 (stride on the
first 1x1) with one difference in the stem: timm pools with `MaxPool2d(3, 2,
ceil_mode=True)`, which pads only the bottom and right. `ceil_mode_stem` makes
that change; `build_legacy_model` builds the SE model on it (timm's SE blocks:
ratio 16, `init="standard"`, on every residual branch), random weights;
`_timm_maps.legacy_weight_map` says which timm tensor fills which variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras_se.applications._builder import build_se_model
from keras_se.applications._timm_maps import TimmArchitecture, layers_by_name


def ceil_mode_stem(model: keras.Model) -> keras.Model:
    """Keras's ResNet with timm's legacy stem pool: `pool1_pad` pads bottom/right only.

    `MaxPool2d(3, stride=2, ceil_mode=True)` with no padding equals
    `ZeroPadding2D(((0, 1), (0, 1)))` then `MaxPooling2D(3, 2)` (the pool reads
    ReLU outputs, so a zero pad never wins a max): the same output size as
    Keras's symmetric pad of 1, windows shifted by one pixel. The other layers
    are reused, not copied.
    """
    def swap(layer):
        if layer.name == "pool1_pad":
            return keras.layers.ZeroPadding2D(
                ((0, 1), (0, 1)), data_format=layer.data_format, name="pool1_pad",
                dtype=layer.dtype_policy)
        return layer

    return keras.models.clone_model(model, input_tensors=model.input, clone_function=swap)


def build_legacy_model(depth: int, *, include_top: bool = True, input_tensor=None,
                       input_shape=None, pooling: str | None = None, classes: int = 1000,
                       classifier_activation: str | None = "softmax", name: str | None = None,
                       se_options: Mapping[str, Any] | None = None) -> keras.Model:
    """`SEResNet{depth}` on timm's stem with timm's SE blocks, random weights."""
    from keras_se.applications import resnet  # resnet imports timm_weights, which imports this

    base_fn = getattr(keras.applications, f"ResNet{depth}")

    def stem_fixed_base(**kwargs):
        return ceil_mode_stem(base_fn(**kwargs))

    return build_se_model(
        stem_fixed_base, resnet.FAMILY, name=name, weights=None, ratio=16,
        squeeze="avg", gate="sigmoid", init="standard", placement=None, select=None,
        se_options=dict(se_options or {}), include_top=include_top, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )


def check_legacy_model(model, arch: TimmArchitecture, spec: str) -> dict[str, Any]:
    layers = layers_by_name(model)
    pad = layers.get("pool1_pad")
    if pad is None or "conv1_conv" not in layers:
        raise ValueError(
            f"`model` is not a keras_se.applications.{arch.zoo_constructor} (no "
            f"`pool1_pad`/`conv1_conv` layer); build it with "
            f"{arch.zoo_constructor}(weights={spec!r}). Received: model={model.name!r}"
        )
    if tuple(map(tuple, pad.padding)) != ((0, 1), (0, 1)):
        raise ValueError(
            "`model` has the stock Keras ResNet stem (`pool1_pad` pads the max pool by "
            f"{tuple(map(tuple, pad.padding))}); timm's legacy SENet pools with "
            "MaxPool2d(3, 2, ceil_mode=True), i.e. padding ((0, 1), (0, 1)): with the "
            "stock stem every logit is off. Build the model with "
            f"{arch.zoo_constructor}(weights={spec!r}), which makes that change. "
            f"Received: model={model.name!r}"
        )
    return layers
