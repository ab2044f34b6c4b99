"""From a name to a model: what the command line's MODEL argument means, as a library.

`resolve_model(text)` tells what `text` names and `build_model(spec, ...)` builds it, so
a notebook or a script gets the same model the command line would:

- a `keras.applications` name (`resnet50`, `MobileNetV2`, `mobilenet-v2`: case, `_`,
  `-` and `.` do not matter);
- an SE zoo name (`seresnet50`, `se_mobilenet`, see `keras_se.applications`);
- a `.keras` file, or a folder holding `model.keras` as `keras-se retrofit` and
  `finetune` write it (its `keras_se.json` sidecar says which preprocessing the model
  expects and the names of its classes);
- a keras-hub preset: a local preset folder (written by `save_to_preset`), a
  keras-hub preset name (`resnet_50_imagenet`) or handle (`hf://...`), loaded with
  keras-hub (`keras_se.hub`; `pip install keras-se[hub]`);
- a timm SE-ResNet checkpoint, `timm:ARCH[.TAG]` (`timm:seresnet50.ra2_in1k`; see
  `keras_se.applications.timm_weights`). A zoo SE-ResNet also takes one as its
  weights (`seresnet50` with `weights="timm:legacy_seresnet50.in1k"` or a local
  `.safetensors`/`.pth` file).

`default_preprocess(spec, weights)` is the input preprocessing such a model expects
(a `keras.applications` family, `"torch"` for timm weights, a preset's
`ImageConverter` scale and offset); `preprocess_function` turns it into a function.

Keras only: it runs on every Keras backend.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable
from typing import Any

import keras

from keras_se._files import read_json
from keras_se.preprocessing import preprocess_function

MODEL_FILE = "model.keras"
SIDECAR = "keras_se.json"

__all__ = [
    "MODEL_FILE",
    "SIDECAR",
    "ModelSpec",
    "application_constructors",
    "build_model",
    "default_preprocess",
    "load_model",
    "model_names",
    "preprocess_function",
    "read_sidecar",
    "resolve_image_size",
    "resolve_model",
    "resolve_weights",
    "uses_timm_weights",
    "weights_argument",
]


@dataclasses.dataclass
class ModelSpec:
    """What a model name or path stands for.

    Attributes:
        kind: `"application"` (a `keras.applications` constructor), `"zoo"` (a
            `keras_se.applications` constructor), `"file"` (a `.keras` file),
            `"hub_preset"` (a keras-hub preset) or `"timm"` (a timm checkpoint
            named as the model).
        name: the constructor's name (`"MobileNetV2"`, `"SEResNet50"`), the
            file's path, the preset (name, handle or folder) or the timm name.
        constructor: the constructor, or None for a file.
        family: the `keras.applications` module name (`"mobilenet_v2"`) whose
            `preprocess_input` the model expects, or None if unknown.
        default_size: the default input size, or None for a file.
        placement: the SE zoo's placement for the family, or None.
        select: the SE zoo's `select` for the family, or None.
        path: the `.keras` file, for `kind="file"`.
        sidecar: the `keras_se.json` beside a file (`{}` if none).
        preset: the `keras_se.hub.HubPreset`, for `kind="hub_preset"`.
    """

    kind: str
    name: str
    constructor: Callable | None = None
    family: str | None = None
    default_size: int | None = None
    placement: str | None = None
    select: str | None = None
    path: str | None = None
    sidecar: dict = dataclasses.field(default_factory=dict)
    preset: Any = None

    @property
    def label(self) -> str:
        """The name to show: the constructor's, or the file's (or preset folder's) base name."""
        if self.kind == "file" or (self.kind == "hub_preset" and os.path.isdir(self.name)):
            return os.path.basename(os.path.normpath(self.name))
        return self.name

    @property
    def has_se(self) -> bool | None:
        """Whether the model is built with SE blocks already (zoo models, timm
        checkpoints, SE presets); None for a file (known once loaded)."""
        if self.kind == "file":
            return None
        if self.kind == "hub_preset":
            return bool(self.preset.has_se)
        return self.kind in ("zoo", "timm")


def _zoo():
    from keras_se import applications

    return applications


def application_constructors() -> dict[str, Callable]:
    """`{"MobileNetV2": keras.applications.MobileNetV2, ...}`, every constructor."""
    return {
        n: getattr(keras.applications, n)
        for n in dir(keras.applications)
        if n[:1].isupper() and callable(getattr(keras.applications, n))
    }


def _family_of(constructor) -> str | None:
    module = constructor.__module__.rsplit(".", 1)[-1]
    family = getattr(keras.applications, module, None)
    return module if hasattr(family, "preprocess_input") else None


def _zoo_family(base_name):
    """(placement, select) of the zoo's SE variant of `base_name`, or (None, None)."""
    try:
        info = _zoo().model_info("SE" + base_name)
    except (ValueError, TypeError):
        return None, None
    return info.family.placement, info.family.select


def model_names() -> list[str]:
    """Every name `resolve_model` accepts besides a path, lower case."""
    names = [n.lower() for n in application_constructors()]
    names += [n.lower() for n in _zoo().list_models()]
    return sorted(set(names))


def read_sidecar(directory: str | os.PathLike) -> dict:
    """The `keras_se.json` that `keras-se` writes beside `model.keras` (`{}` if none)."""
    return read_json(os.path.join(directory, SIDECAR), {}) or {}


def _looks_like_path(text: str) -> bool:
    return text.endswith(".keras") or os.sep in text or "/" in text or os.path.exists(text)


def resolve_model(text: str) -> ModelSpec:
    """What the model name or path `text` stands for.

    Args:
        text: a `keras.applications` name (case-insensitive; `_`, `-`, `.`
            ignored), an SE zoo name, a path to a `.keras` file or to a
            folder holding `model.keras`, a keras-hub preset (folder, name or
            handle), or `"timm:ARCH[.TAG]"`.

    Returns:
        A `ModelSpec`.

    Raises:
        ValueError: for an unknown name (with the nearest names), a missing
            or non-`.keras` file, an unsupported timm checkpoint, or a
            keras-hub preset without keras-hub installed (the message says
            how to install it).
        TypeError: when `text` is not a non-empty string.

    Example:

    >>> from keras_se.models import resolve_model
    >>> spec = resolve_model("mobilenet-v2")
    >>> spec.kind, spec.name, spec.family, spec.default_size
    ('application', 'MobileNetV2', 'mobilenet_v2', 224)
    >>> resolve_model("se_resnet50").placement
    'residual'
    """
    if not isinstance(text, (str, os.PathLike)) or not os.fspath(text):
        raise TypeError(f"`model` must be a non-empty string. Received: model={text!r}")
    text = os.fspath(text)
    if text.startswith("timm:"):
        return _timm_spec(text)
    if text.startswith(_PRESET_SCHEMES):
        return _hub_spec(text)
    if _looks_like_path(text):
        path = os.path.join(text, MODEL_FILE) if os.path.isdir(text) else text
        if os.path.isdir(text) and not os.path.isfile(path):
            spec = _hub_spec(text)  # a keras-hub preset folder (config.json)
            if spec is not None:
                return spec
            raise ValueError(
                f"`model` folder holds neither {MODEL_FILE} nor a keras-hub preset "
                f"(config.json). Received: model={text!r}"
            )
        if not os.path.isfile(path):
            raise ValueError(f"`model` file does not exist: {path}. Received: model={text!r}")
        if not path.endswith(".keras"):
            raise ValueError(
                "`model` must be a keras.applications name, an SE zoo name or a .keras "
                f"file. Received: model={text!r}"
            )
        sidecar = read_sidecar(os.path.dirname(os.path.abspath(path)))
        return ModelSpec(kind="file", name=path, path=path, family=sidecar.get("family"),
                         sidecar=sidecar)
    zoo = _zoo()
    key = zoo.canonical_name(text)
    for name, ctor in application_constructors().items():
        if zoo.canonical_name(name) == key:
            placement, select = _zoo_family(name)
            return ModelSpec(
                kind="application",
                name=name,
                constructor=ctor,
                family=_family_of(ctor),
                default_size=zoo.default_input_size(name),
                placement=placement,
                select=select,
            )
    try:
        info = zoo.model_info(text)
    except ValueError as e:
        # "se_efficientnetb0": the zoo says why there is no SE variant. A bare name
        # ("mobilenet_v3") gets the nearest names below.
        if "already carries" in str(e) and key.startswith("se"):
            raise
        info = None
    if info is not None:
        return ModelSpec(
            kind="zoo",
            name=info.name,
            constructor=info.constructor,
            family=info.module.__name__.rsplit(".", 1)[-1],
            default_size=info.default_size,
            placement=info.family.placement,
            select=info.family.select,
        )
    spec = _hub_spec(text)  # a keras-hub preset name (a lookup: nothing downloads here)
    if spec is not None:
        return spec
    names = model_names()
    by_key = {zoo.canonical_name(n): n for n in names}
    near = [n for k, n in by_key.items() if k.startswith(key) or (len(k) > 3 and key.startswith(k))]
    near = sorted(near, key=len)[:4]
    for k in difflib.get_close_matches(key, list(by_key), n=4, cutoff=0.6):
        if by_key[k] not in near and len(near) < 5:
            near.append(by_key[k])
    for name in difflib.get_close_matches(text, _hub_preset_names(), n=2, cutoff=0.8):
        if len(near) < 6:
            near.append(name)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    from keras_se.hub import hub_hint

    raise ValueError(
        "`model` is not a keras.applications name, an SE zoo name, a .keras file, a "
        f"keras-hub preset or a timm checkpoint (timm:ARCH).{hint}{hub_hint()} "
        f"Received: model={text!r}"
    )


_PRESET_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")


def _hub_spec(text: str) -> ModelSpec | None:
    """The spec of a keras-hub preset (folder, handle or name), or None."""
    from keras_se import hub

    try:
        preset = hub.resolve_hub_model(text)
    except ImportError:
        raise ValueError(
            f"`model` names a keras-hub preset, which needs keras-hub (not installed): "
            f"`{hub.PIP_HINT}` (Python 3.11 or newer). Received: model={text!r}"
        ) from None
    if preset is None:
        return None
    return ModelSpec(
        kind="hub_preset",
        name=text,
        default_size=preset.image_size[0] if preset.image_size else None,
        placement=preset.placement,
        select=preset.select,
        preset=preset,
    )


def _hub_preset_names() -> list[str]:
    from keras_se.hub._access import hub_loaded

    kh = hub_loaded()  # resolve_model imported it if it is installed
    return sorted(kh.models.Backbone.presets) if kh is not None else []


def _timm_spec(text: str) -> ModelSpec:
    from keras_se.applications import timm_weights as tw

    try:
        arch_name, tag = tw.parse_timm_name(text)
    except ValueError as e:
        raise ValueError(
            str(e).replace("`weights`", "`model`").replace("Received: weights=", "Received: model=")
        ) from None
    arch = tw.SUPPORTED[arch_name]
    return ModelSpec(
        kind="timm",
        name=text,
        default_size=(arch.top1.get(tag) or arch.top1[arch.default_tag])[1],
        placement="residual",
    )


def resolve_image_size(
    spec: ModelSpec, requested: tuple[int, int] | None = None, model: keras.Model | None = None
) -> tuple[int, int]:
    """The `(height, width)` to feed the model `spec` names.

    A file's model with a fixed input size takes that size (`requested` must
    match it); other models take `requested`, else their default size.

    Raises:
        ValueError: when `requested` differs from a fixed input size.
    """
    if spec.kind == "file":
        if model is None:
            model = load_model(spec.path)
        shape = tuple(model.inputs[0].shape[1:3])
        fixed = tuple(int(d) for d in shape) if None not in shape else None
        if fixed and requested and tuple(requested) != fixed:
            raise ValueError(
                f"`image_size` does not match the model's input {fixed[0]}x{fixed[1]}. "
                f"Received: image_size={requested[0]}x{requested[1]}"
            )
        return fixed or tuple(requested or (224, 224))
    return tuple(requested or (spec.default_size or 224,) * 2)


def load_model(path: str | os.PathLike) -> keras.Model:
    """`keras.saving.load_model(path)` in safe mode, any failure as a `ValueError`.

    The SE layers need no `custom_objects`: importing keras_se registers them.
    """
    import keras_se  # noqa: F401  (registers SqueezeExcite for deserialisation)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is bad input
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"`model` could not be loaded as a Keras model ({type(e).__name__}: {first}). "
            f"Received: model={os.fspath(path)!r}"
        ) from e


def _timm():
    from keras_se.applications import timm_weights

    return timm_weights


def weights_argument(weights):
    """`None`, `"imagenet"`, an existing file or a timm checkpoint, from a `--weights` text.

    A timm name (`"timm:legacy_seresnet50.in1k"`) is checked (supported
    architecture), not looked up; a `TimmCheckpoint` is returned as is.
    """
    tw = _timm()
    if isinstance(weights, tw.TimmCheckpoint):
        return weights
    if weights is None or weights.lower() in ("none", "null", ""):
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if weights.startswith("timm:"):
        tw.parse_timm_name(weights)
        return weights
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` must be 'imagenet', 'none' or an existing weights file (Keras "
            "weights, or a timm .safetensors/.pth), or name a timm checkpoint "
            f"('timm:ARCH[.TAG]'). Received: weights={weights!r}"
        )
    return weights


def uses_timm_weights(spec: ModelSpec, weights=None) -> bool:
    """Whether the model `spec` and `weights` name loads a timm checkpoint (trained SE)."""
    if spec.kind == "timm":
        return weights_argument(weights) is not None
    return weights is not None and _timm().is_timm_weights(weights)


def resolve_weights(spec: ModelSpec, weights):
    """The weights `build_model(spec, weights=...)` will load, checked now.

    `weights_argument`, and for a timm checkpoint (as the weights of a zoo
    SE-ResNet, or the model itself with `"imagenet"`, meaning its own
    weights) the checks that it fits the model and the lookup of its file,
    downloading it if needed and allowed: offline with no cached copy fails
    here, in one line, before any work is done.

    Returns:
        None, `"imagenet"` (for a keras-hub preset: the preset's own weights),
        a weights file, or a `keras_se.applications.timm_weights.TimmCheckpoint`.

    Raises:
        ValueError: weights that do not fit the model, an unsupported
            checkpoint, or a checkpoint that is not available
            (`WeightsUnavailableError`, a `ValueError` too).
    """
    tw = _timm()
    weights = weights_argument(weights)
    if isinstance(weights, tw.TimmCheckpoint) or not uses_timm_weights(spec, weights):
        return weights
    if spec.kind == "timm":
        if weights not in ("imagenet", spec.name):
            raise ValueError(
                "`weights` must be 'imagenet' (the checkpoint's own) or 'none' when the "
                f"model is itself a timm checkpoint. Received: model={spec.name!r}, "
                f"weights={weights!r}"
            )
        return tw.resolve_for_model(spec.name, None)
    if spec.kind != "zoo":
        raise ValueError(
            f"`weights` {weights!r} is a timm SE-ResNet checkpoint: it loads into an SE zoo "
            "model (seresnet50, seresnet101, seresnet152) or is named as the model itself "
            f"(timm:ARCH), not into {spec.name}. Received: model={spec.label!r}, "
            f"weights={weights!r}"
        )
    return tw.resolve_for_model(spec.name, weights)


def build_model(
    spec: ModelSpec,
    *,
    weights: str | None = None,
    include_top: bool = True,
    input_shape: tuple | None = None,
    classes: int | None = None,
    alpha: float | None = None,
    pooling: str | None = None,
) -> keras.Model:
    """Builds (or loads) the model a `ModelSpec` names.

    Args:
        spec: from `resolve_model`.
        weights: `"imagenet"`, None, or a `.weights.h5` file of the model
            (loaded after construction); a timm checkpoint for a zoo
            SE-ResNet (`"timm:legacy_seresnet50.in1k"`, a `.safetensors`/`.pth`
            file or a `TimmCheckpoint`). For a keras-hub preset or a timm
            checkpoint named as the model, `"imagenet"` means its own weights
            and None random ones. Ignored for files.
        include_top: bool. Defaults to `True`.
        input_shape: optional `(height, width, channels)`.
        classes: optional number of classes of the top.
        alpha: the width multiplier of MobileNet models.
        pooling: None, `"avg"` or `"max"` (with `include_top=False`).

    Returns:
        The model.

    Raises:
        ValueError: for arguments the constructor rejects, a weights file that
            does not fit, or `alpha` for a model without one.
        RuntimeError: when the ImageNet weights cannot be downloaded.
    """
    if spec.kind == "file":
        return load_model(spec.path)
    if alpha is not None and spec.kind in ("hub_preset", "timm"):
        raise ValueError(
            f"`alpha` is a width multiplier of MobileNet models; {spec.label} has none. "
            f"Received: alpha={alpha!r}"
        )
    if spec.kind == "hub_preset":
        return _build_hub_model(spec, weights_argument(weights), include_top, input_shape,
                                classes, pooling)
    if uses_timm_weights(spec, weights) or spec.kind == "timm":
        return _build_timm_model(spec, weights, include_top, input_shape, classes, pooling)
    weights = weights_argument(weights)
    kwargs: dict[str, Any] = {
        "include_top": include_top,
        "weights": weights if weights == "imagenet" else None,
    }
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if classes is not None:
        kwargs["classes"] = classes
    if pooling is not None:
        kwargs["pooling"] = pooling
    if alpha is not None:
        if "alpha" not in inspect.signature(spec.constructor).parameters:
            raise ValueError(
                f"`alpha` is a width multiplier of MobileNet models; {spec.name} has none. "
                f"Received: alpha={alpha!r}"
            )
        kwargs["alpha"] = alpha
    try:
        model = spec.constructor(**kwargs)
    except ValueError as e:
        raise ValueError(f"{spec.name}: {' '.join(str(e).split())}") from e
    except Exception as e:  # noqa: BLE001
        if weights == "imagenet":
            raise RuntimeError(
                f"could not get the ImageNet weights of {spec.name} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); they are downloaded on first use and "
                "need the network. Use --weights none or a local weights file."
            ) from e
        raise
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"`weights` file does not fit {spec.name} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}). Received: weights={weights!r}"
            ) from e
    return model


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _build_hub_model(spec, weights, include_top, input_shape, classes, pooling):
    """A keras-hub preset's model: its task (new head with `classes`) or backbone."""
    if pooling is not None:
        raise ValueError(
            "`pooling` applies to keras.applications models; a keras-hub backbone gives "
            f"its feature map. Received: pooling={pooling!r}"
        )
    try:
        model = spec.preset.model(include_top=include_top, classes=classes,
                                  input_shape=input_shape, load_weights=weights is not None)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise ValueError(f"{spec.label}: {_one_line(e)}") from e
    if weights not in (None, "imagenet"):
        _load_weights_file(model, weights, spec)
    return model


def _build_timm_model(spec, weights, include_top, input_shape, classes, pooling):
    """A zoo SE-ResNet with timm weights, or a timm checkpoint named as the model."""
    tw = _timm()
    top = {"include_top": include_top, "input_shape": input_shape, "pooling": pooling,
           "classes": 1000 if classes is None else classes}
    if spec.kind == "timm" and weights_argument(weights) is None:
        return tw.build_timm_architecture(spec.name, **top)  # random weights
    ckpt = resolve_weights(spec, weights)
    model, _ = tw.build_timm_model(None, ckpt, **top)
    return model


def _load_weights_file(model, weights, spec):
    try:
        model.load_weights(weights)
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"`weights` file does not fit {spec.label} ({type(e).__name__}: "
            f"{_one_line(e)[:200]}). Received: weights={weights!r}"
        ) from e


def default_preprocess(spec: ModelSpec, weights=None) -> str | dict:
    """The input preprocessing the model `spec` (with `weights`) expects.

    What `preprocess_function` takes and `keras_se.json` records: a
    `keras.applications` family name (`"mobilenet_v2"`), `"torch"` for timm
    weights (RGB, ImageNet mean and standard deviation), a keras-hub
    preset's `ImageConverter` as `{"scale": ..., "offset": ...}` (`"none"` for
    a preset without one), what a file's sidecar recorded, else `"none"`.
    """
    if spec.kind == "file":
        return spec.sidecar.get("preprocess", "none")
    if spec.kind == "timm" or uses_timm_weights(spec, weights):
        return "torch"
    if spec.kind == "hub_preset":
        return spec.preset.preprocessing()
    return spec.family or "none"
