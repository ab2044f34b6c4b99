"""Trained SE-ResNet weights from timm (PyTorch Image Models), converted to Keras.

timm publishes ImageNet-trained SE-ResNets; this module loads them into keras-se
models, with no PyTorch needed for `.safetensors` files (the format of the
Hugging Face Hub, read through the `safetensors` package's NumPy API).

Two layouts, by architecture:

- `legacy_seresnet50/101/152` (the original Caffe SENet, ported by Cadene; ResNet
  v1 with the stride on the first 1x1) load into
  `keras_se.applications.SEResNet50/101/152(weights="timm:legacy_seresnet50.in1k")`,
  built with one change to the stock Keras stem: timm's `MaxPool2d(3, 2,
  ceil_mode=True)` pads the stem pool only on the bottom and right, so `pool1_pad`
  is `ZeroPadding2D(((0, 1), (0, 1)))` in place of Keras's `ZeroPadding2D(1)`.
  (`_timm_legacy`).
- `seresnet50` (ResNet v1.5: stride on the 3x3) and `seresnet152d` (ResNet-D: deep
  stem, average-pool shortcut) build on keras-hub's `ResNetBackbone`
  (`bottleneck_block` / `bottleneck_block_vd`) with `keras_se.add_se_blocks(...,
  "residual", init="standard")`, which keeps the keras-hub class: with the top, a
  keras-hub `ResNetImageClassifier` (`SEResNetImageClassifier`) that saves to a
  preset; keras-hub's own timm converter ports the base tensors and this module
  the SE tensors: `from_timm("timm:seresnet50.ra2_in1k")` (`_timm_hub`).

The architectures, the file reading and the name maps are in `_timm_maps`, the
refusals (each before any download) in `_timm_checks`.

Both expect RGB input scaled by the ImageNet mean and standard deviation:
`preprocess_input` here (Keras's "torch" mode), not the Caffe-style
`keras_se.applications.resnet.preprocess_input`.

`weights` is `"timm:ARCH[.TAG]"` (downloaded once into the Hugging Face cache,
`timm/ARCH.TAG`'s `model.safetensors`, as timm itself does; with
`HF_HUB_OFFLINE=1` and no cached file, `WeightsUnavailableError` at once) or a
local `.safetensors` (timm's `save_for_hf`, the Hub's files) or `.pth` file (a
state dict; reading it needs torch).

Example:

>>> from keras_se.applications import timm_weights
>>> sorted(timm_weights.SUPPORTED)
['legacy_seresnet101', 'legacy_seresnet152', 'legacy_seresnet50', 'seresnet152d', 'seresnet50']
>>> timm_weights.parse_timm_name("timm:seresnet50")
('seresnet50', 'a1_in1k')
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
from keras_se.applications import _timm_checks as checks
from keras_se.applications import _timm_hub, _timm_legacy
from keras_se.applications._timm_legacy import ceil_mode_stem
from keras_se.applications._timm_maps import (
    FILE_SUFFIXES,
    SUPPORTED,
    TIMM_BN_EPSILON,
    UNSUPPORTED,
    Loader,
    TimmArchitecture,
    WeightsUnavailableError,
    detect_architecture,
    env_offline,
    fetch,
    ignored,
    layers_by_name,
    legacy_weight_map,
    read_shapes,
    read_state_dict,
    resnet_se_weight_map,
    supported_list,
    unsupported_reason,
)

__all__ = [
    "SUPPORTED",
    "TIMM_BN_EPSILON",
    "UNSUPPORTED",
    "TimmArchitecture",
    "TimmCheckpoint",
    "WeightsUnavailableError",
    "build_legacy_seresnet",
    "build_timm_architecture",
    "build_timm_model",
    "ceil_mode_stem",
    "detect_architecture",
    "from_timm",
    "is_timm_weights",
    "legacy_weight_map",
    "load_timm_weights",
    "parse_timm_name",
    "preprocess_input",
    "read_state_dict",
    "resnet_se_weight_map",
    "resolve_for_model",
    "resolve_timm_weights",
]


@dataclasses.dataclass(frozen=True)
class TimmCheckpoint:
    """A resolved timm checkpoint: what it is and where its file lies.

    Attributes:
        spec: what the user passed (`"timm:legacy_seresnet50.in1k"` or a path).
        architecture: the `TimmArchitecture`.
        tag: the pretrained tag (`"in1k"`), or None for a local file.
        path: the local `.safetensors` or `.pth` file.
    """

    spec: str
    architecture: TimmArchitecture
    tag: str | None
    path: str

    @property
    def preprocess_input(self) -> Callable:
        """The input preprocessing the checkpoint was trained with."""
        return preprocess_input

    @property
    def top1(self) -> tuple[float, int] | None:
        return self.architecture.top1.get(self.tag) if self.tag else None


# ----------------------------------------------------------------- preprocessing
def preprocess_input(x, data_format: str | None = None):
    """Prepares RGB images in [0, 255] for a model with timm weights.

    `x / 255`, minus the ImageNet mean `(0.485, 0.456, 0.406)`, divided by the
    standard deviation `(0.229, 0.224, 0.225)`, channel by channel: what timm's
    SE-ResNets were trained with (Keras's `preprocess_input` "torch" mode).
    Keras's own ResNet50 weights expect Caffe-style BGR input instead.

    Args:
        x: a float NumPy array or tensor of RGB images, values in [0, 255].
        data_format: `"channels_last"` or `"channels_first"`; None for
            Keras's default. Defaults to `None`.

    Returns:
        The preprocessed array or tensor.
    """
    return keras.applications.imagenet_utils.preprocess_input(
        x, data_format=data_format, mode="torch"
    )


# -------------------------------------------------------------------- resolving
def is_timm_weights(weights: Any) -> bool:
    """True if `weights` names a timm checkpoint: `"timm:..."` or a `.safetensors`/`.pth` path."""
    if isinstance(weights, TimmCheckpoint):
        return True
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        return False
    return weights.startswith("timm:") or weights.lower().endswith(FILE_SUFFIXES)



def parse_timm_name(spec: str) -> tuple[str, str]:
    """Splits `"timm:ARCH[.TAG]"` into `(ARCH, TAG)`; the tag defaults to timm's.

    Raises:
        ValueError: not a `"timm:"` name, or an architecture this module does
            not convert (the message lists those it does).
    """
    if not isinstance(spec, str) or not spec.startswith("timm:"):
        raise ValueError(
            "`weights` must name a timm checkpoint as 'timm:ARCH[.TAG]', e.g. "
            f"'timm:legacy_seresnet50.in1k'. Received: weights={spec!r}"
        )
    arch, _, tag = spec[len("timm:"):].partition(".")
    if arch not in SUPPORTED:
        reason = unsupported_reason(arch)
        why = f" ({arch}: {reason})" if reason else ""
        raise ValueError(
            f"`weights` names a timm checkpoint that keras-se cannot convert{why}. "
            f"Supported architectures: {supported_list()}. Received: weights={spec!r}"
        )
    return arch, tag or SUPPORTED[arch].default_tag



def resolve_timm_weights(
    weights: str | os.PathLike,
    *,
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> TimmCheckpoint:
    """Finds (downloading if needed and allowed) a timm checkpoint; the CLI's entry point.

    Args:
        weights: `"timm:ARCH[.TAG]"` (e.g. `"timm:legacy_seresnet50.in1k"`) or
            the path of a `.safetensors` or `.pth` file holding a timm state
            dict (its architecture is read from its tensor names and shapes).
        cache_dir: the Hugging Face Hub cache to use; None for the default
            (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
            `~/.cache/huggingface/hub`, shared with timm). Defaults to `None`.
        offline: never touch the network; None reads `HF_HUB_OFFLINE`.
            Defaults to `None`.

    Returns:
        A `TimmCheckpoint`.

    Raises:
        ValueError: an unsupported architecture (the message lists the
            supported ones), a missing file, or a file that is not a timm
            SE-ResNet state dict.
        WeightsUnavailableError: a `"timm:"` checkpoint that is not cached
            and cannot be downloaded (offline, no network): one line.
    """
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not is_timm_weights(weights):
        raise ValueError(
            "`weights` must be 'timm:ARCH[.TAG]' or the path of a .safetensors or "
            f".pth file of a timm SE-ResNet ({supported_list()}). "
            f"Received: weights={weights!r}"
        )
    offline = env_offline() if offline is None else bool(offline)
    if weights.startswith("timm:"):
        arch, tag = parse_timm_name(weights)
        path = fetch(weights, arch, tag, cache_dir, offline)
        return TimmCheckpoint(weights, SUPPORTED[arch], tag, path)
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` names a file that does not exist. Received: weights={weights!r}"
        )
    arch = detect_architecture(read_shapes(weights), source=weights)
    return TimmCheckpoint(weights, SUPPORTED[arch], None, weights)



def load_timm_weights(
    model: keras.Model,
    weights: str | os.PathLike | TimmCheckpoint,
    *,
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> keras.Model:
    """Loads a timm SE-ResNet checkpoint into a model of its architecture, in place.

    Every Keras variable gets a timm tensor and every timm tensor (but
    BatchNorm's `num_batches_tracked`, and the classifier when `model` has no
    `predictions` layer) finds a variable, or nothing is claimed: a
    `ValueError` says what did not fit.

    Args:
        model: for `legacy_seresnet*`, a `keras_se.applications.SEResNet*` built
            with the timm stem (as `SEResNet50(weights="timm:...")` builds it)
            and `init="standard"`; for `seresnet50`/`seresnet152d`, what
            `from_timm` builds.
        weights: `"timm:ARCH[.TAG]"`, a `.safetensors`/`.pth` path, or a
            `TimmCheckpoint`.
        cache_dir: see `resolve_timm_weights`.
        offline: see `resolve_timm_weights`.

    Returns:
        `model`.

    Raises:
        ValueError: the stock Keras stem, SE blocks with `init="identity"` (or
            another squeeze/gate), a model of another architecture, an
            unsupported or incomplete checkpoint.
        WeightsUnavailableError: see `resolve_timm_weights`.
    """
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    return _load(model, ckpt, read_state_dict(ckpt.path))


def _load(model, ckpt: TimmCheckpoint, state: Mapping[str, np.ndarray]) -> keras.Model:
    arch = ckpt.architecture
    if arch.layout == "legacy":
        layers = _timm_legacy.check_legacy_model(model, arch, ckpt.spec)
        checks.check_se_layers(layers, ckpt.spec)
    else:
        layers = layers_by_name(model)
        checks.check_se_layers(layers, ckpt.spec)
    include_top = "predictions" in layers
    loader = Loader(state, ckpt.spec)
    if arch.layout == "legacy":
        loader.apply(layers, legacy_weight_map(arch.stage_blocks, include_top=include_top))
        head = ("last_linear.",)
    else:
        _timm_hub.port_hub_base(layers, loader, arch)
        loader.apply(layers, resnet_se_weight_map(arch.stage_blocks, include_top=include_top))
        head = ("fc.",)
    loader.check_complete(model, ignored(() if include_top else head))
    return model


# ------------------------------------------------------------------- legacy
def build_legacy_seresnet(
    depth: int,
    *,
    include_top: bool = True,
    weights: str | os.PathLike | TimmCheckpoint,
    input_tensor=None,
    input_shape=None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    ratio=16,
    squeeze: str = "avg",
    gate: str = "sigmoid",
    init: str | None = None,
    placement: str | None = None,
    select=None,
    se_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> keras.Model:
    """`SEResNet50/101/152` with a timm `legacy_seresnet*` checkpoint loaded.

    What `keras_se.applications.SEResNet50(weights="timm:...")` calls, with the
    constructor's arguments (`se_options`: its `**se_options`). Every argument
    is checked before anything is downloaded or built.
    """
    se_options = dict(se_options or {})
    spec = weights.spec if isinstance(weights, TimmCheckpoint) else os.fspath(weights)
    checks.check_fixed_se_arguments(spec, ratio, squeeze, gate, init, placement, select, se_options)
    checks.check_head(include_top, classes)
    checks.check_input_size(input_shape)
    if isinstance(spec, str) and spec.startswith("timm:"):
        checks.check_arch_fits(parse_timm_name(spec)[0], depth, spec)  # before any download
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    checks.check_arch_fits(ckpt.architecture.name, depth, spec)
    state = read_state_dict(ckpt.path)
    checks.require_tensors(state, legacy_weight_map(ckpt.architecture.stage_blocks,
                                              include_top=include_top), spec)
    model = _timm_legacy.build_legacy_model(
        depth, include_top=include_top, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        name=name, se_options=se_options)
    return _load(model, ckpt, state)


def from_timm(
    weights: str | os.PathLike | TimmCheckpoint,
    *,
    include_top: bool = True,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> keras.Model:
    """A Keras model with a timm SE-ResNet checkpoint loaded, for any supported one.

    `legacy_seresnet50/101/152` give `keras_se.applications.SEResNet50/101/152`
    (Keras's ResNet v1 with timm's stem pool): feed it `preprocess_input` of
    this module. `seresnet50` and `seresnet152d` give keras-hub models, as
    `keras_se.add_se_blocks` makes them (`keras_se.hub`): with the top, an
    `SEResNetImageClassifier` (a keras-hub `ResNetImageClassifier`) around an
    `SEResNetBackbone` named `"backbone"`, with a preprocessor that resizes to
    the checkpoint's evaluation size and scales as timm does, so `predict` and
    `fit` take RGB images in [0, 255] while calling the model directly takes
    `preprocess_input(images)`; it saves with `save_to_preset` and reloads with
    `keras_hub.models.ImageClassifier.from_preset` once `keras_se` is imported.
    Without the top, the `SEResNetBackbone` (or, with `pooling`, a Functional
    model that pools its output).

    Args:
        weights: `"timm:ARCH[.TAG]"`, a `.safetensors`/`.pth` file (see
            `resolve_timm_weights`) or a `TimmCheckpoint`.
        include_top: include the ImageNet classifier. Defaults to `True`.
        input_shape: `(height, width, 3)`; None for the default (224 for the
            legacy models, any size for the keras-hub ones). Defaults to `None`.
        pooling: None, `"avg"` or `"max"`, with `include_top=False`.
            Defaults to `None`.
        classes: must be 1000 with `include_top=True`. Defaults to `1000`.
        classifier_activation: the classifier's activation; None for logits.
            Defaults to `"softmax"`.
        name: the model's name; None for `"se_resnet50"` (legacy) or the
            architecture's (`"seresnet152d"`). Defaults to `None`.
        cache_dir: see `resolve_timm_weights`. Defaults to `None`.
        offline: see `resolve_timm_weights`. Defaults to `None`.

    Returns:
        The `keras.Model`, in inference form (BatchNorm statistics loaded).

    Raises:
        ValueError: an unsupported checkpoint (the message lists the supported
            ones), or `classes != 1000` with `include_top=True`.
        WeightsUnavailableError: the checkpoint is not cached and cannot be
            downloaded.

    Example:

    ```python
    from keras_se.applications import timm_weights
    model = timm_weights.from_timm("timm:seresnet50.ra2_in1k")
    probs = model.predict(images)  # RGB in [0, 255]: the task's preprocessor scales
    model.save_to_preset("seresnet50_preset")
    ```
    """
    checks.check_head(include_top, classes)
    checks.check_input_size(input_shape)
    if isinstance(weights, str) and weights.startswith("timm:"):
        parse_timm_name(weights)  # refuse an unsupported name before any download
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    arch = ckpt.architecture
    if arch.layout == "legacy":
        kwargs = {} if name is None else {"name": name}
        return build_legacy_seresnet(
            arch.depth, weights=ckpt, include_top=include_top, input_shape=input_shape,
            pooling=pooling, classes=classes, classifier_activation=classifier_activation,
            **kwargs)
    state = read_state_dict(ckpt.path)
    checks.require_tensors(state, resnet_se_weight_map(arch.stage_blocks, include_top=include_top),
                     ckpt.spec)
    model = _timm_hub.build_hub_model(
        arch, ckpt.tag, include_top=include_top, input_shape=input_shape, pooling=pooling,
        classifier_activation=classifier_activation, name=name)
    return _load(model, ckpt, state)


def build_timm_architecture(
    architecture: str,
    *,
    include_top: bool = True,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """The model `from_timm` builds for `architecture`, with random weights.

    No checkpoint is read or downloaded: what `keras-se sites timm:...` and
    `--weights none` need (the layout, the SE sites, a from-scratch start).

    Args:
        architecture: a `SUPPORTED` name, or `"timm:ARCH[.TAG]"`.
        include_top, input_shape, pooling, classes, classifier_activation,
            name: as for `from_timm`.

    Raises:
        ValueError: an unsupported architecture.
    """
    if architecture.startswith("timm:"):
        arch_name, tag = parse_timm_name(architecture)
    else:
        arch_name, tag = parse_timm_name(f"timm:{architecture}")
    arch = SUPPORTED[arch_name]
    if arch.layout == "legacy":
        kwargs = {} if name is None else {"name": name}
        return _timm_legacy.build_legacy_model(
            arch.depth, include_top=include_top, input_shape=input_shape, pooling=pooling,
            classes=classes, classifier_activation=classifier_activation, **kwargs)
    checks.check_head(include_top, classes)
    return _timm_hub.build_hub_model(
        arch, tag, include_top=include_top, input_shape=input_shape, pooling=pooling,
        classifier_activation=classifier_activation, name=name)


# ---------------------------------------------------------------- the command line
def build_timm_model(
    model_name: str | None,
    weights: str | os.PathLike | TimmCheckpoint | None = None,
    *,
    include_top: bool = True,
    input_shape: tuple[int | None, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> tuple[keras.Model, TimmCheckpoint]:
    """The command line's door: `MODEL` and `--weights` -> the model and its checkpoint.

    `keras-se finetune seresnet50 --weights timm:legacy_seresnet50.in1k` calls
    `build_timm_model("seresnet50", "timm:legacy_seresnet50.in1k", ...)`;
    `keras-se finetune timm:seresnet50.ra2_in1k` calls
    `build_timm_model("timm:seresnet50.ra2_in1k", None, ...)`. The checkpoint
    must fit the zoo model (`legacy_seresnet50` -> `SEResNet50`, ...); v1.5 and
    ResNet-D checkpoints are named as `MODEL` itself. Every check runs before
    any download; `checkpoint.preprocess_input` is the input preprocessing to
    use (and to record with the run).

    Args:
        model_name: a zoo name (`"seresnet50"`, `"SEResNet101"`, ...), a
            `"timm:ARCH[.TAG]"` name, or None (then `weights` alone).
        weights: `"timm:ARCH[.TAG]"`, a `.safetensors`/`.pth` file or a
            `TimmCheckpoint`; None when `model_name` is a timm name.
        include_top, input_shape, pooling, classes, classifier_activation:
            as for `from_timm`.
        cache_dir, offline: as for `resolve_timm_weights`.

    Returns:
        `(model, checkpoint)`.

    Raises:
        ValueError: a checkpoint that does not fit `model_name`, an
            unsupported checkpoint, a bad argument.
        WeightsUnavailableError: offline (or no network) and not cached; a
            `ValueError` too, so the command line prints one line, exit 2.
    """
    checks.check_head(include_top, classes)
    checks.check_input_size(input_shape)
    ckpt = resolve_for_model(model_name, weights, cache_dir=cache_dir, offline=offline)
    model = from_timm(ckpt, include_top=include_top, input_shape=input_shape,
                      pooling=pooling, classes=classes,
                      classifier_activation=classifier_activation)
    return model, ckpt


def resolve_for_model(
    model_name: str | None,
    weights: str | os.PathLike | TimmCheckpoint | None = None,
    *,
    cache_dir: str | None = None,
    offline: bool | None = None,
) -> TimmCheckpoint:
    """`build_timm_model`'s checks and lookup, without the build.

    Checks that the checkpoint fits `model_name` (by name, before any
    download, then by content), then finds its file (`resolve_timm_weights`).
    The arguments are `build_timm_model`'s.
    """
    if model_name is not None and model_name.startswith("timm:"):
        if weights is not None and weights != model_name:
            raise ValueError(
                "`weights` must be left out when the model is itself a timm checkpoint. "
                f"Received: model={model_name!r}, weights={weights!r}"
            )
        model_name, weights = None, model_name
    if weights is None:
        raise ValueError("`weights` must name a timm checkpoint. Received: weights=None")
    spec = weights.spec if isinstance(weights, TimmCheckpoint) else os.fspath(weights)
    if model_name is not None and spec.startswith("timm:"):
        checks.check_zoo_fits(model_name, SUPPORTED[parse_timm_name(spec)[0]], spec)
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    if model_name is not None:
        checks.check_zoo_fits(model_name, ckpt.architecture, spec)
    return ckpt
