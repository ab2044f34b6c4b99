"""From a name to a model: what the command line's MODEL argument means, as a library.

`resolve_model(text)` tells what `text` names and `build_model(spec, ...)` builds it, so
a notebook or a script gets the same model the command line would:

- a `keras.applications` name (`resnet50`, `MobileNetV2`, `mobilenet-v2`: case, `_`,
  `-` and `.` do not matter);
- an SE zoo name (`seresnet50`, `se_mobilenet`, see `keras_se.applications`);
- a `.keras` file, or a folder holding `model.keras` as `keras-se retrofit` and
  `finetune` write it (its `keras_se.json` sidecar says which preprocessing the model
  expects and the names of its classes).

Keras only: it runs on every Keras backend.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

import keras

from keras_se._files import read_json

MODEL_FILE = "model.keras"
SIDECAR = "keras_se.json"

__all__ = [
    "MODEL_FILE",
    "SIDECAR",
    "ModelSpec",
    "application_constructors",
    "build_model",
    "load_model",
    "model_names",
    "preprocess_function",
    "read_sidecar",
    "resolve_image_size",
    "resolve_model",
    "weights_argument",
]


@dataclasses.dataclass
class ModelSpec:
    """What a model name or path stands for.

    Attributes:
        kind: `"application"` (a `keras.applications` constructor), `"zoo"` (a
            `keras_se.applications` constructor) or `"file"` (a `.keras` file).
        name: the constructor's name (`"MobileNetV2"`, `"SEResNet50"`) or the
            file's path.
        constructor: the constructor, or None for a file.
        family: the `keras.applications` module name (`"mobilenet_v2"`) whose
            `preprocess_input` the model expects, or None if unknown.
        default_size: the default input size, or None for a file.
        placement: the SE zoo's placement for the family, or None.
        select: the SE zoo's `select` for the family, or None.
        path: the `.keras` file, for `kind="file"`.
        sidecar: the `keras_se.json` beside a file (`{}` if none).
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

    @property
    def label(self) -> str:
        """The name to show: the constructor's, or the file's base name."""
        return os.path.basename(self.name) if self.kind == "file" else self.name


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
            ignored), an SE zoo name, or a path to a `.keras` file or to a
            folder holding `model.keras`.

    Returns:
        A `ModelSpec`.

    Raises:
        ValueError: for an unknown name (with the nearest names) or a missing
            or non-`.keras` file.
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
    if _looks_like_path(text):
        path = os.path.join(text, MODEL_FILE) if os.path.isdir(text) else text
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
    names = model_names()
    by_key = {zoo.canonical_name(n): n for n in names}
    near = [n for k, n in by_key.items() if k.startswith(key) or (len(k) > 3 and key.startswith(k))]
    near = sorted(near, key=len)[:4]
    for k in difflib.get_close_matches(key, list(by_key), n=4, cutoff=0.6):
        if by_key[k] not in near and len(near) < 5:
            near.append(by_key[k])
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    raise ValueError(
        "`model` is not a keras.applications name, an SE zoo name or a .keras file."
        f"{hint} Received: model={text!r}"
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


def weights_argument(weights: str | None) -> str | None:
    """`None`, `"imagenet"` or an existing file, from a `--weights` text."""
    if weights is None or weights.lower() in ("none", "null", ""):
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` must be 'imagenet', 'none' or an existing weights file. "
            f"Received: weights={weights!r}"
        )
    return weights


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
            (loaded after construction). Ignored for files.
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


def preprocess_function(name: str | None) -> Callable | None:
    """The `preprocess_input` named `name`.

    `None`/`"none"`: no preprocessing (the model gets pixels in [0, 255]);
    `"tf"`, `"torch"`, `"caffe"`: `imagenet_utils.preprocess_input` modes; a
    `keras.applications` module name (`"mobilenet_v2"`, `"resnet"`): that
    family's `preprocess_input`.
    """
    if name in (None, "none"):
        return None
    if name in ("tf", "torch", "caffe"):
        return functools.partial(keras.applications.imagenet_utils.preprocess_input, mode=name)
    module = getattr(keras.applications, name, None)
    if module is None or not hasattr(module, "preprocess_input"):
        families = sorted(
            n
            for n in dir(keras.applications)
            if hasattr(getattr(keras.applications, n), "preprocess_input") and n != "imagenet_utils"
        )
        raise ValueError(
            "`preprocess` must be none, tf, torch, caffe or a keras.applications family "
            f"({', '.join(families)}). Received: preprocess={name!r}"
        )
    return module.preprocess_input
