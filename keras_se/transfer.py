"""Transfer-learning helpers: freeze a backbone, give it a new head, tune BatchNorm.

The first phase of fine-tuning after `add_se_blocks`: freeze the pretrained backbone
and train only the new SE blocks and a new classifier (`freeze_backbone`,
`add_classifier_head`), then `unfreeze` everything at a lower learning rate. Keras
only: these run on every Keras backend. The training loop itself is
`keras_se.finetune.finetune`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_se.layers import SqueezeExcite
from keras_se.sites import leaf_layers

__all__ = [
    "add_classifier_head",
    "count_params",
    "default_head",
    "freeze_backbone",
    "leaf_layers",
    "replace_head",
    "set_batchnorm_momentum",
    "unfreeze",
]


def _is_container(layer) -> bool:
    return isinstance(layer, keras.Model)


def default_head(model: keras.Model) -> list[str]:
    """Names of the top-level layers after the last spatial feature map.

    For `add_classifier_head`'s models that is `head_pool`, `head_dropout`
    and `head`; for a `keras.applications` classifier, `avg_pool` and
    `predictions`. These are the layers a new task trains from scratch.
    """
    names = []
    for layer in reversed(model.layers):
        if _is_container(layer) or isinstance(layer, keras.layers.InputLayer):
            break
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            break
        if len(shape) > 2:
            break
        names.append(layer.name)
    return list(reversed(names))


def freeze_backbone(
    model: keras.Model,
    *,
    head: Sequence[str] | None = None,
    train_batchnorm: bool = False,
) -> keras.Model:
    """Makes only the SE layers and the head of `model` trainable, in place.

    Every `keras_se.SqueezeExcite` layer (in nested models too) and every
    head layer stays trainable; every other layer is frozen. Frozen
    `BatchNormalization` layers run in inference mode (Keras's rule for
    `trainable=False`), the standard choice when fine-tuning on a small
    dataset.

    Args:
        model: a Keras model, possibly nesting others.
        head: names of the (top-level) head layers to keep trainable, or None
            for `default_head(model)`: the layers after the last spatial
            feature map. Defaults to `None`.
        train_batchnorm: bool, also keep `BatchNormalization` layers
            trainable. Defaults to `False`.

    Returns:
        `model`, for chaining.

    Example:

    >>> import keras, keras_se
    >>> base = keras.applications.MobileNetV2(
    ...     input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    >>> model = keras_se.add_classifier_head(
    ...     keras_se.add_se_blocks(base, select="depthwise_relu$"), 5)
    >>> model = keras_se.freeze_backbone(model)
    >>> sorted({type(l).__name__ for l in model.layers if l.trainable
    ...         and l.weights})
    ['Dense', 'SqueezeExcite']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model of type {type(model).__name__}")
    if head is None:
        head = default_head(model)
    elif isinstance(head, str):
        head = [head]
    top_names = {layer.name for layer in model.layers}
    unknown = [h for h in head if h not in top_names]
    if unknown:
        raise ValueError(
            f"`head` names layers that are not in the model's top level: {unknown}. "
            f"Received: head={list(head)!r}"
        )
    head = set(head)

    def visit(container):
        container.trainable = True  # sets every sub-layer; leaves are set below
        for layer in container.layers:
            if layer.name in head and container is model:
                layer.trainable = True
            elif _is_container(layer):
                visit(layer)
            elif isinstance(layer, SqueezeExcite):
                layer.trainable = True
            elif train_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
            else:
                layer.trainable = False

    visit(model)
    return model


def unfreeze(model: keras.Model) -> keras.Model:
    """Makes every layer of `model` (nested models too) trainable again, in place; returns it."""

    def visit(container):
        container.trainable = True
        for layer in container.layers:
            if _is_container(layer):
                visit(layer)
            else:
                layer.trainable = True

    visit(model)
    return model


def add_classifier_head(
    backbone: keras.Model,
    num_classes: int,
    *,
    dropout: float = 0.2,
    activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """A classifier: `backbone`, global average pooling, dropout, `Dense`.

    The new layers are named `head_pool`, `head_dropout` and `head`. The
    result is a flat Functional model (the backbone's layers are its own),
    so `freeze_backbone` finds the SE layers directly.

    Args:
        backbone: a Functional model with one input and one output, a
            feature map `(batch, h, w, c)` or a vector `(batch, c)`.
        num_classes: int, at least 2.
        dropout: float in [0, 1), the dropout rate before the classifier; 0
            for none. Defaults to `0.2`.
        activation: the classifier's activation. Defaults to `"softmax"`.
        name: the model's name. Defaults to the backbone's.

    Returns:
        A new `keras.Model` sharing the backbone's layers and weights.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    if len(backbone.outputs) != 1:
        raise ValueError(
            "`backbone` must have exactly one output. "
            f"Received: backbone with {len(backbone.outputs)} outputs"
        )
    x = backbone.outputs[0]
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(
            "`backbone` must output a feature map (batch, h, w, c) or a vector "
            f"(batch, c). Received: output shape {tuple(x.shape)}"
        )
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, activation=activation, name="head")(x)
    # A single input stays a single tensor (not a one-element list), so that
    # the exported `serve` signature takes a tensor.
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    return keras.Model(inputs, x, name=name or backbone.name)


def replace_head(
    model: keras.Model, num_classes: int, *, activation: str | None = None
) -> keras.Model:
    """Replaces the last `Dense` classifier of `model` by a new one.

    Everything up to the classifier's input is kept (with its weights); the
    layers after the last top-level `Dense` (an `Activation`, say) go. The
    new layer is named `head`; its activation defaults to the old one's.

    Args:
        model: a Functional or Sequential classifier whose last weighted
            top-level layer is a `Dense`.
        num_classes: int, at least 2.
        activation: the new classifier's activation, or None for the old
            one's. Defaults to `None`.

    Returns:
        A new `keras.Model`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
        )
    dense = next((la for la in reversed(model.layers) if isinstance(la, keras.layers.Dense)), None)
    if dense is None:
        raise ValueError(
            "`model` has no top-level Dense classifier to replace. "
            f"Received: model={model.name!r}"
        )
    if activation is None:
        activation = keras.activations.serialize(dense.activation)
        if isinstance(activation, dict):
            activation = activation.get("config", {}).get("name", "linear")
    x = dense.input
    out = keras.layers.Dense(num_classes, activation=activation, name="head")(x)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, out, name=model.name)


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Sets the moving-average momentum of every `BatchNormalization` layer.

    `keras.applications` models use 0.999 (MobileNetV2) or 0.99: right for
    long ImageNet schedules, far too slow for the few hundred steps of a
    short from-scratch run, whose moving statistics would then still be
    close to their initial values. 0.9 is the usual choice there.

    Args:
        model: a Keras model, possibly nesting others.
        momentum: float in (0, 1).

    Returns:
        The number of layers changed.
    """
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 < momentum < 1:
        raise ValueError(f"`momentum` must be in (0, 1). Received: momentum={momentum!r}")
    count = 0
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            count += 1
    return count


def count_params(model: keras.Model) -> dict[str, int]:
    """`{"total": ..., "trainable": ..., "se": ...}` parameter counts of `model`."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    se = int(sum(la.count_params() for la in leaf_layers(model) if isinstance(la, SqueezeExcite)))
    return {"total": int(model.count_params()), "trainable": trainable, "se": se}
