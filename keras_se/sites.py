"""Where SE blocks go: `Site`, `Skipped`, the placements, and `find_se_sites`.

`find_se_sites` is a dry run of `keras_se.add_se_blocks`: it walks the layer graph of
a model (and of every Functional or Sequential model nested in it, at any depth) and
returns the places an SE block would be inserted for a given placement, without
building anything. This module holds the vocabulary (the records, the layer kinds, the
argument checks); the graph walk and the placement rules are in `keras_se.site_finder`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras

from keras_se import _keras_compat as compat
from keras_se._options import PLACEMENTS
from keras_se.layers import SqueezeExcite

CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
NORM_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
)
ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)
#: Layers that merge a residual branch into its shortcut. `CustomScaleLayer` is
#: keras.applications' InceptionResNetV2 merge (`x + scale * branch`). Extend this
#: tuple of class names for your own additive merge layers.
RESIDUAL_MERGE_CLASS_NAMES = ("Add", "CustomScaleLayer")


class Site:
    """One place where an SE block goes.

    Attributes:
        anchor: name of the layer the SE block is attached to. With
            `position="after"` SE is applied to its output; with
            `position="before"` to the input(s) of the `targets`.
        path: names of the nested models that lead to the anchor, outermost
            first (empty for a layer of the top model).
        placement: the placement that found the site.
        position: `"after"` or `"before"`.
        targets: for `position="before"`, the `(layer name, input index)` pairs
            whose input is replaced by the SE output.
        channels: number of channels the SE block recalibrates.
        spatial_shape: spatial dimensions of the recalibrated tensor (`None`
            where unknown).
        se_name: the name of the SE layer that is (or would be) inserted.
        params: parameters the SE block adds.
        ratio: the reduction ratio used for this site.
        data_format: `"channels_last"` or `"channels_first"`.
    """

    def __init__(self, **kwargs):
        self.anchor = kwargs["anchor"]
        self.path = tuple(kwargs.get("path", ()))
        self.placement = kwargs["placement"]
        self.position = kwargs.get("position", "after")
        self.targets = tuple(kwargs.get("targets", ()))
        self.channels = kwargs["channels"]
        self.spatial_shape = tuple(kwargs["spatial_shape"])
        self.se_name = kwargs["se_name"]
        self.params = kwargs.get("params", 0)
        self.ratio = kwargs.get("ratio", 16)
        self.data_format = kwargs.get("data_format", "channels_last")
        # Graph handles for the rewrite; not part of the public record.
        self._key = kwargs.get("_key")
        self._target_keys = kwargs.get("_target_keys", ())
        self._anchor_layer = kwargs.get("_anchor_layer")

    @property
    def full_name(self) -> str:
        """`path/anchor`, unique in the whole model."""
        return "/".join(self.path + (self.anchor,))

    def to_dict(self) -> dict[str, Any]:
        return {
            "anchor": self.anchor,
            "path": list(self.path),
            "placement": self.placement,
            "position": self.position,
            "targets": [list(t) for t in self.targets],
            "channels": self.channels,
            "spatial_shape": list(self.spatial_shape),
            "se_name": self.se_name,
            "params": self.params,
            "ratio": self.ratio,
            "data_format": self.data_format,
        }

    def __repr__(self):
        where = f"{self.position} {self.full_name}"
        return (
            f"Site({where!r}, se_name={self.se_name!r}, channels={self.channels}, "
            f"spatial_shape={self.spatial_shape}, params={self.params})"
        )

    def __eq__(self, other):
        return isinstance(other, Site) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((self.full_name, self.se_name, self.position))


@dataclasses.dataclass
class Skipped:
    """A candidate that got no SE block, and why."""

    name: str
    reason: str

    def to_dict(self):
        return {"name": self.name, "reason": self.reason}


# ---------------------------------------------------------------------------- checks
def check_placement(placement):
    if placement not in PLACEMENTS:
        raise ValueError(
            "`placement` must be one of "
            f"{', '.join(repr(p) for p in PLACEMENTS)}. Received: placement={placement!r}"
        )


def check_ratio(ratio):
    if callable(ratio):
        return
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(
            "`ratio` must be a positive integer or a callable(site) -> int. "
            f"Received: ratio={ratio!r}"
        )


def check_model(model, action: str = "rewritten") -> None:
    """Raises unless `model` is a built Functional or Sequential model.

    The check shared by `find_se_sites`, `add_se_blocks` and `keras_se.inspect`:
    Functional subclasses (keras-hub backbones) pass, a subclassed `keras.Model`
    (whose graph is not visible) gets a `TypeError`, an unbuilt Sequential model
    a `ValueError`.

    Args:
        model: the model to check.
        action: what is done to it, for the messages ("rewritten",
            "inspected"). Defaults to `"rewritten"`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model of type {type(model).__name__}"
        )
    if not is_container(model):
        raise TypeError(
            f"Only Functional and Sequential models (and models nesting them) can be "
            f"{action}; a subclassed model's graph is not visible. Add "
            "`keras_se.SqueezeExcite` layers to its `call()` by hand. "
            f"Received: model of type {type(model).__name__}"
        )
    if compat.graph_of(model) is None:
        raise ValueError(
            f"The model must be built (have known inputs) before it can be {action}: "
            "give it an Input or call `model.build(input_shape)`. "
            f"Received: model={model.name!r} (not built)"
        )


graph_of = compat.graph_of


def is_container(layer) -> bool:
    """Whether `layer` is a Functional or Sequential model (a graph to walk into)."""
    return isinstance(layer, keras.Sequential) or compat.is_functional(layer)


def leaf_layers(model: keras.Model) -> Iterable[keras.layers.Layer]:
    """Every layer of `model` that is not itself a model, nested models included.

    Depth first, in each model's `layers` order. Layers held inside a custom
    layer are not listed (see `_keras_compat.flatten_layers` for those).
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def se_layers(model: keras.Model, *, deep: bool = False) -> list[SqueezeExcite]:
    """The `SqueezeExcite` layers of `model` (nested models included).

    With `deep=True`, also those held inside custom layers.
    """
    layers = compat.flatten_layers(model) if deep else leaf_layers(model)
    return [layer for layer in layers if isinstance(layer, SqueezeExcite)]


def is_se_layer(layer) -> bool:
    return isinstance(layer, SqueezeExcite)


# ---------------------------------------------------------------------------- finding
def compile_select(select) -> Callable[[Site], bool]:
    """`select` (None, a regex, a list of names, a callable) as a `callable(site) -> bool`."""
    if select is None:
        return lambda site: True
    if isinstance(select, str):
        try:
            pattern = re.compile(select)
        except re.error as e:
            raise ValueError(
                f"`select` is not a valid regular expression ({e}). Received: select={select!r}"
            ) from e
        return lambda site: pattern.search(site.anchor) is not None
    if isinstance(select, re.Pattern):
        return lambda site: select.search(site.anchor) is not None
    if callable(select):
        return lambda site: bool(select(site))
    if isinstance(select, Sequence) and all(isinstance(s, str) for s in select):
        wanted = set(select)
        return lambda site: site.anchor in wanted or site.full_name in wanted
    raise TypeError(
        "`select` must be None, a regular expression string, a list of layer names or a "
        f"callable(site) -> bool. Received: select={select!r}"
    )


def find_se_sites(
    model: keras.Model,
    placement: str = "post_activation",
    *,
    select: str | Sequence[str] | Callable[[Site], bool] | None = None,
    skip_existing: bool = True,
    ratio: int | Callable[[Site], int] = 16,
    **se_options: Any,
) -> list[Site]:
    """Lists where `add_se_blocks` would insert SE blocks, building nothing.

    Args:
        model: a built Functional or Sequential model (nested models are
            searched too).
        placement: one of `keras_se.PLACEMENTS`. Defaults to
            `"post_activation"`.
        select: None (every site), a regular expression searched in the anchor
            layer's name, a list of layer names, or a callable(site) -> bool.
        skip_existing: skip sites that already carry or feed an SE block.
            Defaults to `True`.
        ratio: the reduction ratio, an int or a callable(site) -> int; used for
            the parameter counts. Defaults to `16`.
        **se_options: `units`, `min_units`, `divisor`, `use_bias` affect the
            parameter counts; other SqueezeExcite options are ignored here.

    Returns:
        A list of `Site`, in graph order (nested models first).

    Example:

    >>> import keras, keras_se
    >>> base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    >>> sites = keras_se.find_se_sites(base, "residual")
    >>> len(sites), sum(s.params for s in sites)
    (16, 2530992)
    """
    from keras_se.site_finder import run_finder  # it imports this module: on first use

    return run_finder(model, placement, select, skip_existing, ratio, se_options).sites
