"""What a timm checkpoint refuses, and why: each check runs before any download or build.

Trained SE weights need timm's SE blocks exactly (ratio 16, average squeeze, sigmoid
gate with `init="standard"`: `init="identity"`'s 2*sigmoid would double every gate),
the ImageNet head's 1000 classes, an input large enough that every stage has an SE
block, and the model the checkpoint was trained as (`legacy_seresnet101` loads into
`SEResNet101` only). Every refusal is a `ValueError` that names the argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from keras_se.applications._timm_maps import SUPPORTED, Loader, TimmArchitecture, WeightMap

import keras_se


def check_se_layers(layers: Mapping[str, Any], spec: str) -> None:
    for layer in layers.values():
        if isinstance(layer, keras_se.SqueezeExcite):
            if layer.init != "standard":
                raise ValueError(
                    "`init` must be 'standard' to load trained SE weights: "
                    f"{layer.name} has init={layer.init!r}, whose gate is "
                    "2*sigmoid (identity at zero), so every trained gate would be "
                    "doubled. Build the model with init='standard' (the default with a "
                    f"timm checkpoint). Received: init={layer.init!r}"
                )
            if layer.squeeze != "avg" or layer.gate != "sigmoid" or not layer.use_bias:
                raise ValueError(
                    "timm's SE blocks are average squeeze, sigmoid gate, with biases; "
                    f"{layer.name} has squeeze={layer.squeeze!r}, gate={layer.gate!r}, "
                    f"use_bias={layer.use_bias!r}. Received: weights={spec!r}"
                )


#: SE options that do not change the architecture (allowed with a timm checkpoint).
HARMLESS_SE_OPTIONS = ("kernel_initializer", "bias_initializer", "kernel_regularizer",
                        "bias_regularizer")


def check_fixed_se_arguments(spec, ratio, squeeze, gate, init, placement, select,
                              se_options) -> None:
    if init == "identity":
        raise ValueError(
            "`init` must be 'standard' (or None) with a timm checkpoint: its SE blocks "
            "were trained with the plain sigmoid gate, and init='identity' uses "
            "2*sigmoid, doubling every gate. Received: init='identity', "
            f"weights={spec!r}"
        )
    if init not in (None, "standard"):
        raise ValueError(
            f"`init` must be None or 'standard' with a timm checkpoint. "
            f"Received: init={init!r}"
        )
    fixed = {"ratio": (ratio, 16), "squeeze": (squeeze, "avg"), "gate": (gate, "sigmoid"),
             "placement": (placement, None), "select": (select, None)}
    for arg, (value, expected) in fixed.items():
        if value != expected and not (arg == "placement" and value == "residual"):
            raise ValueError(
                f"`{arg}` must be {expected!r} with a timm checkpoint: the SE blocks are "
                f"timm's (ratio 16, average squeeze, sigmoid gate, on every residual "
                f"branch). Received: {arg}={value!r}"
            )
    changed = sorted(set(se_options) - set(HARMLESS_SE_OPTIONS))
    if changed:
        raise ValueError(
            f"SE option(s) {changed} would change timm's SE blocks; with a timm "
            f"checkpoint only {', '.join(HARMLESS_SE_OPTIONS)} are allowed. "
            f"Received: {', '.join(f'{k}={se_options[k]!r}' for k in changed)}"
        )


def check_input_size(input_shape) -> None:
    """At 32 pixels or fewer the last stage's maps are 1x1, where add_se_blocks places no
    SE block: the checkpoint's SE weights of that stage would have nowhere to go."""
    if input_shape is None:
        return
    sizes = [d for d in tuple(input_shape)[:2] if d is not None]
    if sizes and min(sizes) < 33:
        raise ValueError(
            "`input_shape` must be at least 33x33 with a timm checkpoint: at 32 pixels or "
            "fewer the last stage's feature maps are 1x1, where add_se_blocks places no SE "
            "block, so that stage's trained SE weights would have nowhere to go. "
            f"Received: input_shape={tuple(input_shape)!r}"
        )


def check_head(include_top, classes) -> None:
    if include_top and classes != 1000:
        raise ValueError(
            "With a timm checkpoint and `include_top=True`, `classes` must be 1000 "
            "(the ImageNet head is loaded); use include_top=False and your own head "
            f"(keras_se.add_classifier_head) for other classes. Received: classes={classes!r}"
        )


def require_tensors(state: Mapping[str, np.ndarray], weight_map: WeightMap, spec: str):
    """Refuses an incomplete checkpoint before the (slow) model build."""
    for key, _ in weight_map.values():
        if key is not None and key not in state:
            Loader(state, spec).get_tensor(key)  # raises its ValueError


def check_arch_fits(arch: str, depth: int, spec: str) -> None:
    a = SUPPORTED[arch]
    if a.layout != "legacy":
        raise ValueError(
            f"`weights` {spec!r} is a {arch} checkpoint (ResNet v1.5"
            f"{'-D' if a.deep_stem else ''}: stride on the 3x3), which does not fit the "
            f"Keras ResNet v1 layout of SEResNet{depth}: build it with "
            f"keras_se.applications.timm_weights.from_timm({spec!r}). "
            f"Received: weights={spec!r}"
        )
    if a.depth != depth:
        raise ValueError(
            f"`weights` {spec!r} is a {arch} checkpoint; it loads into "
            f"SEResNet{a.depth}, not SEResNet{depth}. Received: weights={spec!r}"
        )


def check_zoo_fits(model_name: str, arch: TimmArchitecture, spec: str) -> None:
    from keras_se.applications import registry

    info = registry.model_info(model_name)
    if info.name != arch.zoo_constructor:
        home = arch.zoo_constructor or f"no zoo model: use it as the model itself ({spec})"
        raise ValueError(
            f"`weights` {spec!r} is a {arch.name} checkpoint, which loads into {home}, "
            f"not {info.name}. Received: model={model_name!r}, weights={spec!r}"
        )
