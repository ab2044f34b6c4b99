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
- `seresnet50` (ResNet v1.5: stride on the 3x3) and `seresnet152d` (ResNet-D: deep
  stem, average-pool shortcut) build on keras-hub's `ResNetBackbone`
  (`bottleneck_block` / `bottleneck_block_vd`) with `keras_se.add_se_blocks(...,
  "residual", init="standard")`; keras-hub's own timm converter ports the base
  tensors and this module the SE tensors: `from_timm("timm:seresnet50.ra2_in1k")`.

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
import re
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
from keras_se.applications._builder import build_se_model

import keras_se

__all__ = [
    "SUPPORTED",
    "TimmArchitecture",
    "TimmCheckpoint",
    "WeightsUnavailableError",
    "build_legacy_seresnet",
    "build_timm_model",
    "detect_architecture",
    "from_timm",
    "is_timm_weights",
    "legacy_weight_map",
    "load_timm_weights",
    "parse_timm_name",
    "preprocess_input",
    "read_state_dict",
    "resnet_se_weight_map",
    "resolve_timm_weights",
]

#: timm's BatchNorm epsilon (PyTorch's default); Keras's ResNet uses 1.001e-5.
TIMM_BN_EPSILON = 1e-5
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_FILE_SUFFIXES = (".safetensors",) + _TORCH_SUFFIXES


@dataclasses.dataclass(frozen=True)
class TimmArchitecture:
    """A timm SE-ResNet architecture this module converts.

    Attributes:
        name: timm's architecture name, e.g. `"legacy_seresnet50"`.
        layout: `"legacy"` (Keras's ResNet v1, `keras_se.applications.SEResNet*`
            with the ceil-mode stem pool) or `"hub"` (keras-hub's
            `ResNetBackbone` with SE added by `add_se_blocks`).
        stage_blocks: bottleneck blocks per stage.
        deep_stem: ResNet-D: three 3x3 stem convolutions and average-pool
            shortcuts (keras-hub's `bottleneck_block_vd`).
        default_tag: the pretrained tag timm picks when none is given.
        top1: published ImageNet top-1 (timm's results table) per tag, as
            `(accuracy, input size)`.
    """

    name: str
    layout: str
    stage_blocks: tuple[int, int, int, int]
    deep_stem: bool
    default_tag: str
    top1: Mapping[str, tuple[float, int]]

    @property
    def depth(self) -> int:
        return 3 * sum(self.stage_blocks) + 2

    @property
    def zoo_constructor(self) -> str | None:
        """The `keras_se.applications` constructor of a legacy architecture."""
        return f"SEResNet{self.depth}" if self.layout == "legacy" else None


SUPPORTED: dict[str, TimmArchitecture] = {
    a.name: a
    for a in (
        TimmArchitecture("legacy_seresnet50", "legacy", (3, 4, 6, 3), False, "in1k",
                         {"in1k": (77.65, 224)}),
        TimmArchitecture("legacy_seresnet101", "legacy", (3, 4, 23, 3), False, "in1k",
                         {"in1k": (78.37, 224)}),
        TimmArchitecture("legacy_seresnet152", "legacy", (3, 8, 36, 3), False, "in1k",
                         {"in1k": (78.66, 224)}),
        TimmArchitecture("seresnet50", "hub", (3, 4, 6, 3), False, "a1_in1k",
                         {"ra2_in1k": (80.26, 224), "a1_in1k": (80.01, 224)}),
        TimmArchitecture("seresnet152d", "hub", (3, 8, 36, 3), True, "ra2_in1k",
                         {"ra2_in1k": (83.70, 256)}),
    )
}

#: timm SE models that do not convert onto these builders, and why.
UNSUPPORTED = {
    "seresnext": "grouped 3x3 convolutions (ResNeXt): keras.applications and "
    "keras-hub's ResNetBackbone have no grouped bottleneck",
    "legacy_seresnext": "grouped 3x3 convolutions (ResNeXt)",
    "legacy_senet154": "SENet-154: grouped convolutions, a 3x3 stem of 128 channels "
    "and 3x3 downsampling convolutions",
    "legacy_seresnet18": "basic (two 3x3) blocks: keras.applications has no ResNet-18/34",
    "legacy_seresnet34": "basic (two 3x3) blocks: keras.applications has no ResNet-18/34",
    "ecaresnet": "ECA attention (a 1-D convolution across channels), not an MLP SE block",
    "seresnet50t": "a tiered deep stem; no trained timm weights",
    "seresnet33ts": "a ByobNet (SiLU, 3 stages), not a ResNet",
}


def _supported_list() -> str:
    return ", ".join(sorted(SUPPORTED))


class WeightsUnavailableError(OSError, ValueError):
    """A timm checkpoint is neither cached nor downloadable (offline mode, no network).

    Both an `OSError` (it is about files and the network) and a `ValueError`
    (the `keras-se` command line reports it as bad input: one line, exit 2), as
    `io.UnsupportedOperation` is.
    """


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
    return weights.startswith("timm:") or weights.lower().endswith(_FILE_SUFFIXES)


def _unsupported_reason(arch: str) -> str | None:
    for prefix in sorted(UNSUPPORTED, key=len, reverse=True):
        if arch.startswith(prefix):
            return UNSUPPORTED[prefix]
    return None


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
        reason = _unsupported_reason(arch)
        why = f" ({arch}: {reason})" if reason else ""
        raise ValueError(
            f"`weights` names a timm checkpoint that keras-se cannot convert{why}. "
            f"Supported architectures: {_supported_list()}. Received: weights={spec!r}"
        )
    return arch, tag or SUPPORTED[arch].default_tag


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return os.path.join(home, "hub")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _fetch(spec: str, arch: str, tag: str, cache_dir: str | None, offline: bool) -> str:
    """The local path of `timm/ARCH.TAG`'s `model.safetensors`, downloading it if allowed.

    The Hugging Face cache first, with no network call (`local_files_only`); then,
    unless `offline`, a download through `huggingface_hub` (or, without that
    package, `keras.utils.get_file` into `~/.keras/models/timm/`).
    """
    repo_id = f"timm/{arch}.{tag}"
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if huggingface_hub is not None:
        cache_dir = cache_dir or _hub_cache_dir()
        where = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
        try:
            return huggingface_hub.hf_hub_download(
                repo_id, "model.safetensors", cache_dir=cache_dir, local_files_only=True
            )
        except (OSError, ValueError):  # LocalEntryNotFoundError is a FileNotFoundError
            pass
        if offline:
            raise WeightsUnavailableError(
                f"`weights` {spec!r} is not in the local Hugging Face cache ({where}) "
                "and offline mode is on (HF_HUB_OFFLINE): download it once with the "
                "network, or pass a local .safetensors/.pth file. "
                f"Received: weights={spec!r}"
            )
        try:
            return huggingface_hub.hf_hub_download(
                repo_id, "model.safetensors", cache_dir=cache_dir, etag_timeout=5
            )
        except Exception as e:  # noqa: BLE001 - any failure here means "not available"
            raise WeightsUnavailableError(
                f"`weights` {spec!r} is not cached ({where}) and could not be "
                f"downloaded from the Hugging Face Hub repository {repo_id} "
                f"({_one_line(e)}). Pass a local .safetensors/.pth file instead. "
                f"Received: weights={spec!r}"
            ) from e
    keras_home = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras")
    fname = f"{arch}.{tag}.safetensors"
    local = os.path.join(keras_home, "models", "timm", fname)
    if os.path.isfile(local):
        return local
    if offline:
        raise WeightsUnavailableError(
            f"`weights` {spec!r} is not in the local cache ({local}) and offline mode "
            "is on (HF_HUB_OFFLINE): download it once with the network, or pass a "
            f"local .safetensors/.pth file. Received: weights={spec!r}"
        )
    try:
        return keras.utils.get_file(
            fname, f"https://huggingface.co/{repo_id}/resolve/main/model.safetensors",
            cache_subdir=os.path.join("models", "timm"), cache_dir=keras_home,
        )
    except Exception as e:  # noqa: BLE001
        raise WeightsUnavailableError(
            f"`weights` {spec!r} is not cached ({local}) and could not be downloaded "
            f"({_one_line(e)}). Pass a local .safetensors/.pth file instead. "
            f"Received: weights={spec!r}"
        ) from e


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
            f".pth file of a timm SE-ResNet ({_supported_list()}). "
            f"Received: weights={weights!r}"
        )
    offline = _env_offline() if offline is None else bool(offline)
    if weights.startswith("timm:"):
        arch, tag = parse_timm_name(weights)
        path = _fetch(weights, arch, tag, cache_dir, offline)
        return TimmCheckpoint(weights, SUPPORTED[arch], tag, path)
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` names a file that does not exist. Received: weights={weights!r}"
        )
    arch = detect_architecture(_read_shapes(weights), source=weights)
    return TimmCheckpoint(weights, SUPPORTED[arch], None, weights)


# ---------------------------------------------------------------------- reading
def _read_shapes(path: str) -> dict[str, tuple[int, ...]]:
    if path.lower().endswith(".safetensors"):
        safetensors = _import_safetensors(path)
        with safetensors.safe_open(path, framework="np") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def _import_safetensors(path):
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        raise ValueError(
            "Reading a .safetensors file needs the `safetensors` package "
            f"(pip install safetensors). Received: weights={path!r}"
        ) from e
    return safetensors


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a timm checkpoint file as NumPy arrays, keyed by timm's names.

    `.safetensors` files are read with the `safetensors` package's NumPy API (no
    torch); `.pth`/`.pt`/`.bin` files with `torch.load(weights_only=True)`, which
    needs torch. A training checkpoint's `"state_dict"` (or `"model"`) entry is
    taken, and a `"module."` prefix (DataParallel) is dropped.

    Raises:
        ValueError: torch is needed and missing, or the file holds no state dict.
    """
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        safetensors = _import_safetensors(path)
        state = safetensors.numpy.load_file(path)
    else:
        try:
            import torch
        except ImportError as e:
            raise ValueError(
                "`weights` is a PyTorch pickle (.pth), which needs torch to read "
                "(pip install torch); or save it as .safetensors "
                "(safetensors.torch.save_file) and pass that. "
                f"Received: weights={path!r}"
            ) from e
        obj = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
            raise ValueError(
                "`weights` does not hold a timm state dict (a mapping of names to "
                f"tensors). Received: weights={path!r}"
            )
        state = {k: v.detach().cpu().numpy() for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _stage_blocks(shapes, fmt: str) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        n = 0
        while fmt.format(stage=stage, block=n) in shapes:
            n += 1
        counts.append(n)
    return tuple(counts)


def detect_architecture(shapes: Mapping[str, tuple[int, ...]], *, source: str = "") -> str:
    """The `SUPPORTED` architecture of a state dict, from its tensor names and shapes.

    Args:
        shapes: tensor name -> shape (a state dict's arrays work too).
        source: the file, for the error message.

    Raises:
        ValueError: not a timm SE-ResNet, or one this module cannot convert.
    """
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in shapes.items()}
    received = f" Received: weights={source!r}" if source else ""
    what = None
    if "layer0.conv1.weight" in shapes:  # timm's senet.py (legacy)
        if "layer0.conv2.weight" in shapes:
            what = "legacy_senet154"
        elif "layer1.0.conv3.weight" not in shapes:
            what = "legacy_seresnet18"
        else:
            conv2 = shapes.get("layer1.0.conv2.weight", (0, 0))
            if conv2[0] != conv2[1]:
                what = "legacy_seresnext"
            else:
                blocks = _stage_blocks(shapes, "layer{stage}.{block}.conv1.weight")
                for a in SUPPORTED.values():
                    if a.layout == "legacy" and a.stage_blocks == blocks:
                        return a.name
                what = f"a legacy SE-ResNet with {blocks} blocks per stage"
    elif "layer1.0.conv1.weight" in shapes:  # timm's resnet.py
        deep = "conv1.0.weight" in shapes
        if "layer1.0.se.conv.weight" in shapes:
            what = "ecaresnet"
        elif "layer1.0.se.fc1.weight" not in shapes:
            what = "a ResNet without SE blocks (use keras-hub's own timm loader)"
        elif "layer1.0.conv3.weight" not in shapes:
            what = "a basic-block SE-ResNet (seresnet18/34)"
        elif shapes["layer1.0.conv2.weight"][0] != shapes["layer1.0.conv2.weight"][1]:
            what = "seresnext"
        elif deep and shapes["conv1.0.weight"][0] != shapes["conv1.3.weight"][0]:
            what = "seresnet50t"
        else:
            blocks = _stage_blocks(shapes, "layer{stage}.{block}.conv1.weight")
            for a in SUPPORTED.values():
                if a.layout == "hub" and a.stage_blocks == blocks and a.deep_stem == deep:
                    return a.name
            what = (f"a timm SE-ResNet{'-D' if deep else ''} with {blocks} blocks per "
                    "stage")
    if what is None:
        raise ValueError(
            "`weights` does not hold a timm SE-ResNet state dict (no `layer0.conv1` "
            f"or `layer1.0.conv1` tensors). Supported: {_supported_list()}.{received}"
        )
    reason = _unsupported_reason(what)
    raise ValueError(
        f"`weights` holds {what}{f' ({reason})' if reason else ''}, which keras-se "
        f"cannot convert. Supported: {_supported_list()}.{received}"
    )


# -------------------------------------------------------------------- name maps
#: A weight map: `"layer_name/variable"` -> `(timm tensor name or None, transform)`.
WeightMap = dict[str, tuple[str | None, str]]


def _bn(m: WeightMap, layer: str, key: str) -> None:
    m[f"{layer}/gamma"] = (f"{key}.weight", "copy")
    m[f"{layer}/beta"] = (f"{key}.bias", "copy")
    m[f"{layer}/moving_mean"] = (f"{key}.running_mean", "copy")
    m[f"{layer}/moving_variance"] = (f"{key}.running_var", "bn_variance")


def _se(m: WeightMap, layer: str, key: str) -> None:
    m[f"{layer}/reduce_kernel"] = (f"{key}.fc1.weight", "conv1x1")
    m[f"{layer}/reduce_bias"] = (f"{key}.fc1.bias", "copy")
    m[f"{layer}/expand_kernel"] = (f"{key}.fc2.weight", "conv1x1")
    m[f"{layer}/expand_bias"] = (f"{key}.fc2.bias", "copy")


def legacy_weight_map(
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3), *, include_top: bool = True
) -> WeightMap:
    """Keras variables of `SEResNet50/101/152` <- timm `legacy_seresnet*` tensors.

    Pure data (no Keras, no torch). Keras's ResNet convolutions carry biases that
    timm's do not: those get zeros (`None` as the timm name).

    Example:

    >>> from keras_se.applications.timm_weights import legacy_weight_map
    >>> m = legacy_weight_map()
    >>> m["conv2_block1_3_bn_se/reduce_kernel"]
    ('layer1.0.se_module.fc1.weight', 'conv1x1')
    >>> m["conv1_conv/bias"]
    (None, 'zeros')
    """
    m: WeightMap = {}
    m["conv1_conv/kernel"] = ("layer0.conv1.weight", "conv")
    m["conv1_conv/bias"] = (None, "zeros")
    _bn(m, "conv1_bn", "layer0.bn1")
    for s, blocks in enumerate(stage_blocks, start=1):
        for b in range(blocks):
            keras_block = f"conv{s + 1}_block{b + 1}"
            timm_block = f"layer{s}.{b}"
            convs = [(1, "conv1", "bn1"), (2, "conv2", "bn2"), (3, "conv3", "bn3")]
            if b == 0:
                convs.insert(0, (0, "downsample.0", "downsample.1"))
            for i, conv, bn in convs:
                m[f"{keras_block}_{i}_conv/kernel"] = (f"{timm_block}.{conv}.weight", "conv")
                m[f"{keras_block}_{i}_conv/bias"] = (None, "zeros")
                _bn(m, f"{keras_block}_{i}_bn", f"{timm_block}.{bn}")
            _se(m, f"{keras_block}_3_bn_se", f"{timm_block}.se_module")
    if include_top:
        m["predictions/kernel"] = ("last_linear.weight", "linear")
        m["predictions/bias"] = ("last_linear.bias", "copy")
    return m


def resnet_se_weight_map(
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3), *, include_top: bool = True
) -> WeightMap:
    """The SE blocks and head of a keras-hub SE-ResNet <- timm `seresnet*` tensors.

    keras-hub's timm converter ports the rest (`keras_hub.src.utils.timm.
    convert_resnet`); SE layers are `add_se_blocks`'s `stack{i}_block{j}_3_bn_se`.

    Example:

    >>> from keras_se.applications.timm_weights import resnet_se_weight_map
    >>> resnet_se_weight_map()["stack3_block2_3_bn_se/expand_bias"]
    ('layer4.2.se.fc2.bias', 'copy')
    """
    m: WeightMap = {}
    for s, blocks in enumerate(stage_blocks):
        for b in range(blocks):
            _se(m, f"stack{s}_block{b}_3_bn_se", f"layer{s + 1}.{b}.se")
    if include_top:
        m["predictions/kernel"] = ("fc.weight", "linear")
        m["predictions/bias"] = ("fc.bias", "copy")
    return m


def _transform(how: str, value: np.ndarray | None, variable, layer) -> np.ndarray:
    if how == "zeros":
        return np.zeros(tuple(variable.shape), dtype="float32")
    value = np.asarray(value, dtype="float32")
    if how == "copy":
        return value
    if how == "conv":  # torch (out, in, kh, kw) -> Keras (kh, kw, in, out)
        return np.transpose(value, (2, 3, 1, 0))
    if how == "conv1x1":  # a 1x1 convolution as a Dense-style kernel: (in, out)
        return np.transpose(value[:, :, 0, 0]) if value.ndim == 4 else np.transpose(value)
    if how == "linear":  # torch (out, in) -> Keras (in, out)
        return np.transpose(value)
    if how == "bn_variance":
        # Keras adds its own epsilon (ResNet: 1.001e-5) to the moving variance;
        # shift the variance so that variance + epsilon is timm's exactly.
        return np.maximum(value + (TIMM_BN_EPSILON - float(layer.epsilon)), 0.0)
    raise ValueError(f"unknown transform {how!r}")


# ---------------------------------------------------------------------- loading
def _layers_by_name(model) -> dict[str, keras.layers.Layer]:
    found = {}
    stack = [model]
    while stack:
        container = stack.pop()
        for layer in container.layers:
            found.setdefault(layer.name, layer)
            if isinstance(layer, keras.Model):
                stack.append(layer)
    return found


class _Loader:
    """A NumPy state dict with keras-hub's loader interface (`port_weight`).

    Records which checkpoint tensors and which Keras variables it used, so that
    the conversion can prove it covered both sides.
    """

    def __init__(self, state: Mapping[str, np.ndarray], spec: str):
        self.state = state
        self.spec = spec
        self.used_keys: set[str] = set()
        self.assigned: dict[int, str] = {}
        self.rename: Callable[[str], str] = lambda key: key

    def get_tensor(self, key: str) -> np.ndarray:
        key = self.rename(key)
        if key not in self.state:
            raise ValueError(
                f"`weights` lacks the tensor {key!r} that this architecture needs: "
                f"not a complete checkpoint of it. Received: weights={self.spec!r}"
            )
        self.used_keys.add(key)
        return self.state[key]

    def assign(self, variable, value, what: str) -> None:
        value = np.asarray(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"`weights` tensor for {what} has shape {tuple(value.shape)} where the "
                f"Keras variable {variable.path} has {tuple(variable.shape)}. "
                f"Received: weights={self.spec!r}"
            )
        variable.assign(value.astype(variable.dtype))
        self.assigned[id(variable)] = what

    # keras-hub's converters call this.
    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        value = self.get_tensor(hf_weight_key)
        if hook_fn:
            value = hook_fn(value, list(keras_variable.shape))
        self.assign(keras_variable, value, self.rename(hf_weight_key))

    def apply(self, layers: Mapping[str, Any], weight_map: WeightMap) -> None:
        for target, (key, how) in weight_map.items():
            layer_name, var_name = target.rsplit("/", 1)
            layer = layers.get(layer_name)
            variable = getattr(layer, var_name, None) if layer is not None else None
            if variable is None:
                raise ValueError(
                    f"`model` has no variable {target}: not a model of this "
                    f"architecture. Received: weights={self.spec!r}"
                )
            value = None if key is None else self.get_tensor(key)
            self.assign(variable, _transform(how, value, variable, layer), key or "zeros")

    def check_complete(self, model, ignore: Callable[[str], bool]) -> None:
        missing = [v.path for v in model.weights if id(v) not in self.assigned]
        if missing:
            raise ValueError(
                f"{len(missing)} Keras variables got no timm tensor (first: "
                f"{missing[:3]}): the model is not this checkpoint's architecture. "
                f"Received: weights={self.spec!r}"
            )
        unused = sorted(k for k in self.state if k not in self.used_keys and not ignore(k))
        if unused:
            raise ValueError(
                f"{len(unused)} tensors of `weights` found no Keras variable (first: "
                f"{unused[:3]}). Received: weights={self.spec!r}"
            )


def _ignored(head_keys: tuple[str, ...]) -> Callable[[str], bool]:
    def ignore(key: str) -> bool:
        return key.endswith("num_batches_tracked") or key.startswith(head_keys)

    return ignore


def _check_legacy_model(model, arch: TimmArchitecture, spec: str) -> dict[str, Any]:
    layers = _layers_by_name(model)
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
    _check_se_layers(layers, spec)
    return layers


def _check_se_layers(layers: Mapping[str, Any], spec: str) -> None:
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
        layers = _check_legacy_model(model, arch, ckpt.spec)
    else:
        layers = _layers_by_name(model)
        _check_se_layers(layers, ckpt.spec)
    include_top = "predictions" in layers
    loader = _Loader(state, ckpt.spec)
    if arch.layout == "legacy":
        loader.apply(layers, legacy_weight_map(arch.stage_blocks, include_top=include_top))
        head = ("last_linear.",)
    else:
        _port_hub_base(layers, loader, arch)
        loader.apply(layers, resnet_se_weight_map(arch.stage_blocks, include_top=include_top))
        head = ("fc.",)
    loader.check_complete(model, _ignored(() if include_top else head))
    return model


# ----------------------------------------------------------- legacy: the zoo model
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


#: SE options that do not change the architecture (allowed with a timm checkpoint).
_HARMLESS_SE_OPTIONS = ("kernel_initializer", "bias_initializer", "kernel_regularizer",
                        "bias_regularizer")


def _check_fixed_se_arguments(spec, ratio, squeeze, gate, init, placement, select,
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
    changed = sorted(set(se_options) - set(_HARMLESS_SE_OPTIONS))
    if changed:
        raise ValueError(
            f"SE option(s) {changed} would change timm's SE blocks; with a timm "
            f"checkpoint only {', '.join(_HARMLESS_SE_OPTIONS)} are allowed. "
            f"Received: {', '.join(f'{k}={se_options[k]!r}' for k in changed)}"
        )


def _check_head(include_top, classes) -> None:
    if include_top and classes != 1000:
        raise ValueError(
            "With a timm checkpoint and `include_top=True`, `classes` must be 1000 "
            "(the ImageNet head is loaded); use include_top=False and your own head "
            f"(keras_se.add_classifier_head) for other classes. Received: classes={classes!r}"
        )


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
    from keras_se.applications import resnet  # resnet imports this module

    spec = weights.spec if isinstance(weights, TimmCheckpoint) else os.fspath(weights)
    _check_fixed_se_arguments(spec, ratio, squeeze, gate, init, placement, select, se_options)
    _check_head(include_top, classes)
    if isinstance(spec, str) and spec.startswith("timm:"):
        _check_arch_fits(parse_timm_name(spec)[0], depth, spec)  # before any download
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    _check_arch_fits(ckpt.architecture.name, depth, spec)
    state = read_state_dict(ckpt.path)
    _require_tensors(state, legacy_weight_map(ckpt.architecture.stage_blocks,
                                              include_top=include_top), spec)
    base_fn = getattr(keras.applications, f"ResNet{depth}")

    def stem_fixed_base(**kwargs):
        return ceil_mode_stem(base_fn(**kwargs))

    model = build_se_model(
        stem_fixed_base, resnet.FAMILY, name=name, weights=None, ratio=16,
        squeeze="avg", gate="sigmoid", init="standard", placement=None, select=None,
        se_options=se_options, include_top=include_top, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )
    return _load(model, ckpt, state)


def _require_tensors(state: Mapping[str, np.ndarray], weight_map: WeightMap, spec: str):
    """Refuses an incomplete checkpoint before the (slow) model build."""
    for key, _ in weight_map.values():
        if key is not None and key not in state:
            _Loader(state, spec).get_tensor(key)  # raises its ValueError


def _check_arch_fits(arch: str, depth: int, spec: str) -> None:
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


# ------------------------------------------------------------ v1.5 and -D: keras-hub
def _hub_backbone_config(arch: TimmArchitecture) -> dict[str, Any]:
    config = dict(
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(arch.stage_blocks),
        stackwise_num_strides=[1, 2, 2, 2],
        use_pre_activation=False,
    )
    if arch.deep_stem:
        config.update(input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
                      block_type="bottleneck_block_vd")
    else:
        config.update(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                      block_type="bottleneck_block")
    return config


def _se_backbone(hub_backbone: keras.Model) -> keras.Model:
    """SE on every residual branch of a keras-hub ResNetBackbone, timm's SE blocks.

    The one place to switch to keras-se's keras-hub `Backbone` wrapper (which
    keeps the keras-hub class and presets) once it lands: today this returns
    what `add_se_blocks` returns, a plain Functional with keras-hub's layer names.
    """
    return keras_se.add_se_blocks(hub_backbone, "residual", init="standard")


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
        self._layers = layers
        self.stackwise_num_blocks = list(arch.stage_blocks)

    def get_layer(self, name: str):
        return self._layers[name]


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


def _port_hub_base(layers: Mapping[str, Any], loader: _Loader, arch: TimmArchitecture):
    try:
        from keras_se._keras_compat import keras_hub_timm_resnet_converter

        convert_resnet = keras_hub_timm_resnet_converter()
    except ImportError as e:
        raise ValueError(
            f"`weights` is a {arch.name} checkpoint, which converts through keras-hub "
            f"(pip install keras-hub). Received: weights={loader.spec!r}"
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
        _bn(stem, "conv2_bn", "conv1.4")
        _bn(stem, "conv3_bn", "bn1")
        loader.apply(layers, stem)


def _build_hub_layout(arch, *, include_top, input_shape, pooling, classifier_activation,
                      name) -> keras.Model:
    try:
        from keras_hub.models import ResNetBackbone
    except ImportError as e:
        raise ValueError(
            f"{arch.name} converts through keras-hub's ResNetBackbone "
            "(pip install keras-hub)."
        ) from e
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    image_shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    hub = ResNetBackbone(**_hub_backbone_config(arch), image_shape=image_shape,
                         name="backbone")
    backbone = _se_backbone(hub)
    inputs = keras.Input(shape=image_shape, name="image")
    x = backbone(inputs)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1000, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name or arch.name)


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
    (Keras's ResNet v1 with timm's stem pool); `seresnet50` and `seresnet152d`
    give keras-hub's `ResNetBackbone` with SE blocks added by `add_se_blocks`
    (nested as the layer `"backbone"`, with keras-hub's layer names), then global average pooling and the
    1000-class `predictions` layer. Feed it `preprocess_input` of this module.

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
    probs = model.predict(timm_weights.preprocess_input(images))
    ```
    """
    _check_head(include_top, classes)
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
    _require_tensors(state, resnet_se_weight_map(arch.stage_blocks, include_top=include_top),
                     ckpt.spec)
    model = _build_hub_layout(arch, include_top=include_top, input_shape=input_shape,
                              pooling=pooling, classifier_activation=classifier_activation,
                              name=name)
    return _load(model, ckpt, state)


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
        _check_zoo_fits(model_name, SUPPORTED[parse_timm_name(spec)[0]], spec)
    _check_head(include_top, classes)
    ckpt = weights if isinstance(weights, TimmCheckpoint) else resolve_timm_weights(
        weights, cache_dir=cache_dir, offline=offline)
    if model_name is not None:
        _check_zoo_fits(model_name, ckpt.architecture, spec)
    model = from_timm(ckpt, include_top=include_top, input_shape=input_shape,
                      pooling=pooling, classes=classes,
                      classifier_activation=classifier_activation)
    return model, ckpt


def _check_zoo_fits(model_name: str, arch: TimmArchitecture, spec: str) -> None:
    from keras_se.applications import registry

    info = registry.model_info(model_name)
    if info.name != arch.zoo_constructor:
        home = arch.zoo_constructor or f"no zoo model: use it as the model itself ({spec})"
        raise ValueError(
            f"`weights` {spec!r} is a {arch.name} checkpoint, which loads into {home}, "
            f"not {info.name}. Received: model={model_name!r}, weights={spec!r}"
        )
