"""timm SE-ResNets as data: the architectures, their files, and the name maps to Keras.

The private half of `keras_se.applications.timm_weights` (whose public names
re-export what a user needs from here): which timm architectures convert
(`SUPPORTED`), how a checkpoint file is found in the Hugging Face cache (`fetch`)
and read without torch (`read_state_dict`), which architecture a state dict is
(`detect_architecture`), the name maps from Keras variables to timm tensors
(`legacy_weight_map`, `resnet_se_weight_map`), and the `Loader` that fills a
model from them and proves both sides were covered. keras-hub's own timm ResNet
converter ports the base of the v1.5 / ResNet-D models (`_timm_hub`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

#: timm's BatchNorm epsilon (PyTorch's default); Keras's ResNet uses 1.001e-5.
TIMM_BN_EPSILON = 1e-5
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
FILE_SUFFIXES = (".safetensors",) + _TORCH_SUFFIXES


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


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED))



class WeightsUnavailableError(OSError, ValueError):
    """A timm checkpoint is neither cached nor downloadable (offline mode, no network).

    Both an `OSError` (it is about files and the network) and a `ValueError`
    (the `keras-se` command line reports it as bad input: one line, exit 2), as
    `io.UnsupportedOperation` is.
    """




def unsupported_reason(arch: str) -> str | None:
    for prefix in sorted(UNSUPPORTED, key=len, reverse=True):
        if arch.startswith(prefix):
            return UNSUPPORTED[prefix]
    return None



# ------------------------------------------------------------------ fetching
def env_offline() -> bool:
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


def fetch(spec: str, arch: str, tag: str, cache_dir: str | None, offline: bool) -> str:
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



# ---------------------------------------------------------------------- reading
def read_shapes(path: str) -> dict[str, tuple[int, ...]]:
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
            f"or `layer1.0.conv1` tensors). Supported: {supported_list()}.{received}"
        )
    reason = unsupported_reason(what)
    raise ValueError(
        f"`weights` holds {what}{f' ({reason})' if reason else ''}, which keras-se "
        f"cannot convert. Supported: {supported_list()}.{received}"
    )


# -------------------------------------------------------------------- name maps
#: A weight map: `"layer_name/variable"` -> `(timm tensor name or None, transform)`.
WeightMap = dict[str, tuple[str | None, str]]


def bn_map(m: WeightMap, layer: str, key: str) -> None:
    m[f"{layer}/gamma"] = (f"{key}.weight", "copy")
    m[f"{layer}/beta"] = (f"{key}.bias", "copy")
    m[f"{layer}/moving_mean"] = (f"{key}.running_mean", "copy")
    m[f"{layer}/moving_variance"] = (f"{key}.running_var", "bn_variance")


def se_map(m: WeightMap, layer: str, key: str) -> None:
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
    bn_map(m, "conv1_bn", "layer0.bn1")
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
                bn_map(m, f"{keras_block}_{i}_bn", f"{timm_block}.{bn}")
            se_map(m, f"{keras_block}_3_bn_se", f"{timm_block}.se_module")
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
            se_map(m, f"stack{s}_block{b}_3_bn_se", f"layer{s + 1}.{b}.se")
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
def layers_by_name(model) -> dict[str, keras.layers.Layer]:
    found = {}
    stack = [model]
    while stack:
        container = stack.pop()
        for layer in container.layers:
            found.setdefault(layer.name, layer)
            if isinstance(layer, keras.Model):
                stack.append(layer)
    return found


class Loader:
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


def ignored(head_keys: tuple[str, ...]) -> Callable[[str], bool]:
    def ignore(key: str) -> bool:
        return key.endswith("num_batches_tracked") or key.startswith(head_keys)

    return ignore
