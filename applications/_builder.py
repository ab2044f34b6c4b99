"""The one builder behind every SE constructor of the zoo.

Every constructor in `keras_se.applications` is a thin factory: it calls the stock
`keras.applications` constructor, then `keras_se.add_se_blocks` with the placement
the paper uses for that family (`Family`). This module holds what they share: the
checks of `weights` and of the SE options, the rule that tells a weights file of the
stock model from one of the SE model, and the docstring template.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import textwrap
import zipfile
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import h5py
import keras

import keras_se

#: Options of `keras_se.SqueezeExcite` a constructor accepts through `**se_options`
#: (`ratio`, `squeeze`, `gate` and `init` have their own arguments).
SE_OPTIONS = tuple(o for o in keras_se.layers.SE_OPTIONS if o not in ("squeeze", "gate"))

#: The default (ImageNet) input size of the `keras.applications` models that do not
#: take 224x224 images.
DEFAULT_INPUT_SIZES = {
    "InceptionV3": 299,
    "InceptionResNetV2": 299,
    "Xception": 299,
    "NASNetLarge": 331,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
    "EfficientNetV2B1": 240,
    "EfficientNetV2B2": 260,
    "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384,
    "EfficientNetV2M": 480,
    "EfficientNetV2L": 480,
}


def default_input_size(base_name: str) -> int:
    """The default input size of the `keras.applications` model `base_name`."""
    return DEFAULT_INPUT_SIZES.get(base_name, 224)


def canonical_name(name: str) -> str:
    """A model name with case, spaces, `_`, `-` and `.` ignored: `se_resnet50` ->
    `seresnet50`. The one rule by which names are matched (zoo and command line)."""
    return re.sub(r"[\s_\-.]", "", name).lower()

#: The types of the constructors' `weights`, `ratio` and `select` arguments.
Weights = str | os.PathLike | None
Ratio = int | Callable[[keras_se.Site], int]
Select = str | Sequence[str] | Callable[[keras_se.Site], bool] | None

_WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


@dataclasses.dataclass(frozen=True)
class Family:
    """A `keras.applications` family and where its SE blocks go.

    Attributes:
        name: the family's name, e.g. `"ResNet"`.
        module: the `keras.applications` module of the family (its
            `preprocess_input` and `decode_predictions` are the SE models').
        placement: the default placement, one of `keras_se.PLACEMENTS`.
        select: the default `select` of `add_se_blocks` (a regular expression
            on the anchor layer's name), or None for every site.
        rationale: why SE goes there, one paragraph.
    """

    name: str
    module: ModuleType
    placement: str
    select: str | None
    rationale: str

    @property
    def preprocess_input(self) -> Callable:
        return self.module.preprocess_input

    @property
    def decode_predictions(self) -> Callable:
        return self.module.decode_predictions


# ---------------------------------------------------------------------------- checks
def check_weights(weights: Any, include_top: bool, classes: int) -> str | None:
    """Validates `weights` as Keras does; returns it (a path as a `str`).

    Raises:
        TypeError: `weights` is neither None, a string nor a path.
        ValueError: an unknown string, a missing file, or ImageNet weights with
            a classification head of other than 1000 classes.
    """
    if weights is None:
        return None
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(
            "`weights` must be None, 'imagenet' or the path to a weights file. "
            f"Received: weights={weights!r} of type {type(weights).__name__}"
        )
    if weights == "imagenet":
        if include_top and classes != 1000:
            raise ValueError(
                "If using `weights='imagenet'` with `include_top=True`, `classes` "
                f"must be 1000. Received: classes={classes!r}"
            )
        return weights
    if os.path.isfile(weights):
        return weights
    if os.sep in weights or "/" in weights or weights.endswith(_WEIGHT_SUFFIXES):
        raise ValueError(
            "`weights` names a file that does not exist. Pass None (random "
            "initialization), 'imagenet' (pre-training on ImageNet) or the path to "
            f"an existing weights file. Received: weights={weights!r}"
        )
    raise ValueError(
        "`weights` must be None (random initialization), 'imagenet' (pre-training "
        "on ImageNet) or the path to a weights file (`.weights.h5`, `.keras` or a "
        f"legacy `.h5`). Received: weights={weights!r}"
    )


def check_se_arguments(placement, ratio, squeeze, gate, init, se_options) -> None:
    """Checks the SE arguments before the (possibly large) base model is built."""
    if placement is not None and placement not in keras_se.PLACEMENTS:
        raise ValueError(
            "`placement` must be None (the family's placement) or one of "
            f"{', '.join(repr(p) for p in keras_se.PLACEMENTS)}. "
            f"Received: placement={placement!r}"
        )
    unknown = sorted(set(se_options) - set(SE_OPTIONS))
    if unknown:
        raise TypeError(
            f"Unknown argument(s) {unknown}: an SE constructor takes the Keras "
            "constructor's arguments, `ratio`, `squeeze`, `gate`, `init`, `placement`, "
            f"`select` and the SqueezeExcite options {', '.join(SE_OPTIONS)}. "
            f"Received: {', '.join(f'{k}={se_options[k]!r}' for k in unknown)}"
        )
    if not callable(ratio):
        # The layer names the argument and the allowed values in its ValueError.
        keras_se.SqueezeExcite(ratio=ratio, squeeze=squeeze, gate=gate, init=init,
                               **se_options)
    else:
        keras_se.SqueezeExcite(squeeze=squeeze, gate=gate, init=init, **se_options)


# ------------------------------------------------------------------- weights files
def holds_se_weights(path: str) -> bool:
    """True if the file at `path` holds `SqueezeExcite` weights.

    The rule that tells the two kinds of weights file apart:

    - a `.keras` archive: its `config.json` names the class `SqueezeExcite`;
    - a `.weights.h5` (Keras 3): it has a `squeeze_excite` entry (Keras keys the
      weights of a model's layers by class name: `layers/squeeze_excite_3/vars`);
    - a legacy `.h5` (Keras 2 and the ImageNet downloads): its `model_config`
      names `SqueezeExcite`, or a layer has a `reduce_kernel` weight.

    Anything else (for instance the stock model's weights) is not.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                return False
            return _config_has_se(archive.read("config.json").decode("utf-8"))
    try:
        f = h5py.File(path, "r")
    except OSError:
        return False
    with f:
        config = f.attrs.get("model_config")
        if config is not None and _config_has_se(config):
            return True
        found = []

        def visit(name, obj):
            if any(part.startswith("squeeze_excite") for part in name.split("/")):
                found.append(name)
                return True
            names = obj.attrs.get("weight_names") if isinstance(obj, h5py.Group) else None
            if names is not None and any(
                _text(n).split("/")[-1].split(":")[0] == "reduce_kernel" for n in names
            ):
                found.append(name)
                return True
            return None

        f.visititems(visit)
        return bool(found)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _config_has_se(config) -> bool:
    config = _text(config)
    try:
        parsed = json.loads(config)
    except ValueError:
        return '"SqueezeExcite"' in config
    stack = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "SqueezeExcite":
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --------------------------------------------------------------------------- builder
def build_se_model(
    base_fn: Callable[..., keras.Model],
    family: Family,
    *,
    name: str | None,
    weights: Any,
    ratio,
    squeeze: str,
    gate: str,
    init: str,
    placement: str | None,
    select,
    se_options: dict[str, Any],
    **base_kwargs: Any,
) -> keras.Model:
    """Builds `base_fn(**base_kwargs)`, adds SE blocks and loads `weights`.

    `weights` (None, "imagenet" or a file) goes to the stock constructor, and
    the SE blocks are added after it with `init` (identity by default, so that
    pretrained weights predict exactly what they did); a file that holds SE
    weights (`holds_se_weights`) instead loads whole into the SE model built on
    a random base.
    """
    if init is None:  # SEResNet50/101/152: None is "standard" with timm weights only
        init = "identity"
    weights = check_weights(
        weights, base_kwargs.get("include_top", True), base_kwargs.get("classes", 1000)
    )
    check_se_arguments(placement, ratio, squeeze, gate, init, se_options)
    se_file = weights not in (None, "imagenet") and holds_se_weights(weights)
    base = base_fn(weights=None if se_file else weights, **base_kwargs)
    if placement is None:
        placement = family.placement
        if select is None:
            select = family.select
    model = keras_se.add_se_blocks(
        base, placement, ratio=ratio, select=select, init=init, squeeze=squeeze,
        gate=gate, **se_options,
    )
    if base_kwargs.get("input_tensor") is not None:
        # `add_se_blocks` clones the graph onto new inputs; rebuild it (same
        # layers, no copy) on the caller's tensors, as the stock model is built.
        model = keras.models.clone_model(
            model, input_tensors=base.input, clone_function=lambda layer: layer
        )
    model.name = name if name is not None else "se_" + base.name
    if se_file:
        model.load_weights(weights)
    return model


# ------------------------------------------------------------------------ docstrings
_DOC = """Instantiates {se_name}: Keras's {base_name} with Squeeze-and-Excitation blocks.

{intro}

{rationale}

    Args:
{args}

    Returns:
        A `keras.Model`. `keras_se.applications.{module}.preprocess_input`
        prepares its inputs and `decode_predictions` reads its ImageNet outputs.

    Raises:
        ValueError: for a bad `weights` (an unknown string, a missing file,
            ImageNet weights with `include_top=True` and `classes != 1000`), a
            bad SE option, or an argument the stock constructor rejects.
        TypeError: for an unknown keyword argument.

    Reference:
        - [Hu et al., 2018, Squeeze-and-Excitation Networks](
            https://arxiv.org/abs/1709.01507)
        - {reference}
    """

_ARG_DOCS = {
    "include_top": "whether to include the fully-connected layer at the top. "
    "Defaults to `True`.",
    "include_preprocessing": "whether the model starts with its own input "
    "normalization. Defaults to `True`.",
    "weights": "None (random initialization), `\"imagenet\"` (the stock "
    "model's ImageNet weights, then SE blocks that start as the identity: the "
    "model predicts exactly what the pretrained {base_name} does) or the path to "
    "a weights file. A file of the stock {base_name} loads into the base before "
    "SE is added; a file saved from this SE model (`.weights.h5` or `.keras`) "
    "loads whole. The rule: a file holding `SqueezeExcite` weights is the SE "
    "model's (`keras_se.applications.holds_se_weights`). Defaults to "
    "`\"imagenet\"`.",
    "input_tensor": "optional Keras tensor to use as the model's image input.",
    "input_shape": "optional shape tuple, as for `keras.applications.{base_name}`.",
    "pooling": "None, `\"avg\"` or `\"max\"`: the pooling after the last block "
    "when `include_top=False`. Defaults to `None`.",
    "classes": "number of classes, with `include_top=True` and no `weights`. "
    "Defaults to `1000`.",
    "classifier_activation": "the activation of the top layer (None for logits). "
    "Defaults to `\"softmax\"`.",
    "alpha": "the width multiplier of the network. Defaults to `1.0`.",
    "depth_multiplier": "the depth multiplier of the depthwise convolutions. "
    "Defaults to `1`.",
    "dropout": "the dropout rate before the top. Defaults to `0.001`.",
    "name": "the model's name. Defaults to {default_name}.",
    "ratio": "the SE reduction ratio r, an int or a callable(site) -> int. "
    "Defaults to `16`.",
    "squeeze": "`\"avg\"` (the paper), `\"max\"` or `\"avg_max\"`. Defaults to "
    "`\"avg\"`.",
    "gate": "`\"sigmoid\"`, `\"hard_sigmoid\"` or `\"tanh\"`. Defaults to "
    "`\"sigmoid\"`.",
    "init": "`\"identity\"` (SE starts as the identity; its gate is rescaled, "
    "e.g. `2 * sigmoid(z)`) or `\"standard\"` (the paper's block). It selects the "
    "gate's form, so load an SE weights file with the `init` it was saved with. "
    "Defaults to `\"identity\"`.",
    "placement": "None (the family's, `{placement!r}`) or another of "
    "`keras_se.PLACEMENTS`. Defaults to `None`.",
    "select": "which sites get SE: a regular expression searched in the anchor "
    "layer's name, a list of layer names or a callable(site) -> bool. None means "
    "the family's choice ({select}) with the family's placement, and every site "
    "with another placement. Defaults to `None`.",
    "se_options": "further `keras_se.SqueezeExcite` options: `units`, "
    "`min_units`, `divisor`, `activation`, `use_bias`, initializers and "
    "regularizers.",
}


def _wrap(text: str, indent: int, first: str = "") -> str:
    lines = textwrap.wrap(
        first + text, width=88, initial_indent=" " * indent,
        subsequent_indent=" " * (indent + (4 if first else 0)),
        break_on_hyphens=False, break_long_words=False,
    )
    return "\n".join(lines)


def se_docstring(constructor: Callable, base_name: str, family: Family, *, module: str,
                 n_sites: int, reference: str, arg_docs: dict[str, str] | None = None,
                 note: str | None = None) -> str:
    """The docstring of an SE constructor, from the shared template.

    `arg_docs` replaces the template's text of some arguments; `note` is a
    paragraph added after the rationale.
    """
    docs = {**_ARG_DOCS, **(arg_docs or {})}
    params = inspect.signature(constructor).parameters
    default_name = params["name"].default
    fields = dict(
        base_name=base_name,
        placement=family.placement,
        select=f"`{family.select!r}`" if family.select else "every site",
        default_name=f"`{default_name!r}`" if default_name is not None
        else "`\"se_\"` + the stock model's name",
    )
    args = []
    for p in params.values():
        key = "**se_options" if p.kind is p.VAR_KEYWORD else p.name
        args.append(_wrap(docs[p.name].format(**fields), 8, f"{key}: "))
    select_text = f", select={family.select!r}" if family.select else ""
    intro = (
        f"A thin factory: `keras.applications.{base_name}` with the same arguments, "
        f"then `keras_se.add_se_blocks(model, {family.placement!r}{select_text})` "
        f"({n_sites} SE blocks at the default input size)."
    )
    return _DOC.format(
        se_name=constructor.__name__,
        base_name=base_name,
        intro=_wrap(intro, 4),
        rationale=_wrap(family.rationale, 4)
        + ("\n\n" + "\n\n".join(_wrap(n, 4) for n in note.split("\n\n")) if note else ""),
        args="\n".join(args),
        module=module,
        reference=reference,
    )


# ----------------------------------------------------------------------- zoo entries
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


def zoo_entry(
    constructor: Callable, base: str, *, se_blocks: int, reference: str,
    arg_docs: dict[str, str] | None = None, note: str | None = None,
) -> ModelInfo:
    """Declares an SE constructor: writes its docstring and returns its `ModelInfo`.

    Called at the bottom of each family module, whose `FAMILY` it reads; the
    registry collects the family modules' `MODELS` lists. `arg_docs` and `note`
    go to `se_docstring`.
    """
    module = sys.modules[constructor.__module__]
    family = module.FAMILY
    constructor.__doc__ = se_docstring(
        constructor, base, family, module=module.__name__.rsplit(".", 1)[-1],
        n_sites=se_blocks, reference=reference, arg_docs=arg_docs, note=note,
    )
    return ModelInfo(constructor.__name__, constructor, base, module, family, se_blocks,
                     default_input_size(base))
