"""Opaque blocks: subclassed layers holding convolutions, whose graph the rewrite cannot see.

keras-hub builds some backbones from subclassed blocks (MobileNetV3's
`InvertedResidualBlock`, HGNetV2's encoder, the ViT family's patch embedding):
`add_se_blocks` sees each as one node. The keras-hub rule (`_check_opaque`):
refuse with a `NoSitesError` that names the blocks, unless every one already
carries SE (and `skip_existing`) or `select=` says which visible sites to use.
"""

from __future__ import annotations

import dataclasses
import re

from keras_se import _keras_compat as compat
from keras_se.layers import SqueezeExcite
from keras_se.sites import CONV_LAYERS, Skipped, is_container

#: Constructor arguments that put keras-hub's own SE blocks inside the
#: subclassed blocks the graph rewrite cannot see into, by backbone class.
_OWN_SE_ARGUMENTS = {
    "MobileNetBackbone": "`stackwise_se_ratio` and `squeeze_and_excite`",
    "MobileNetV5Backbone": "`stackwise_se_ratios`",
    "EfficientNetBackbone": "`stackwise_squeeze_and_excite_ratios`",
}

_SE_CLASS_NAME = re.compile(r"(?i)squeeze.?(and.?)?excit")


def _sublayers(layer):
    return list(compat.flatten_layers(layer))


@dataclasses.dataclass
class OpaqueLayer:
    """A subclassed layer holding convolutions: its graph is not visible.

    Attributes:
        name: `path/name` of the layer in the model.
        class_name: its class.
        carries_se: it already holds an SE block (keras_se's `SqueezeExcite`, or
            a layer whose class is named like SqueezeAndExcite).
        se_class_name: the class of that SE block, or None.
    """

    name: str
    class_name: str
    carries_se: bool
    se_class_name: str | None = None


def find_opaque_layers(model, path: tuple = ()) -> list[OpaqueLayer]:
    """The subclassed layers of `model` (nested models too) that hold convolutions.

    `add_se_blocks` sees the layer graph of Functional and Sequential models; a
    subclassed layer (a keras-hub `InvertedResidualBlock`, `HGNetV2Encoder`, ...)
    is one node to it, whatever convolutions it runs inside. Keras's own layers
    (`Conv2D`, `BatchNormalization`, ...) are not opaque.

    Args:
        model: a Functional or Sequential model.

    Returns:
        A list of `OpaqueLayer`, in layer order.
    """
    out = []
    for layer in model.layers:
        if is_container(layer):
            out += find_opaque_layers(layer, path + (layer.name,))
            continue
        if type(layer).__module__.startswith("keras.") or isinstance(layer, SqueezeExcite):
            continue
        subs = _sublayers(layer)
        if not any(isinstance(s, CONV_LAYERS) for s in subs):
            continue
        carries, se_name = _carries_se(layer, subs)
        out.append(OpaqueLayer(
            name="/".join(path + (layer.name,)),
            class_name=type(layer).__name__,
            carries_se=carries,
            se_class_name=se_name,
        ))
    return out


_SE_RATIO_KEY = re.compile(r"(^|_)se_ratio$|squeeze_excite_ratio$|^squeeze_and_excite$")


def _carries_se(layer, sublayers):
    """(whether an opaque block computes SE inside, how it is called).

    The block's own SE-ratio argument decides when it has one
    (EfficientNet's `se_ratio`, MobileNetV3's `squeeze_excite_ratio`: keras-hub
    builds the SE sublayers even when the ratio is 0 and then skips them);
    otherwise a sublayer that is keras_se's `SqueezeExcite` or whose class is
    named like SqueezeAndExcite.
    """
    se = [s for s in sublayers if isinstance(s, SqueezeExcite)
          or _SE_CLASS_NAME.search(type(s).__name__)]
    named = type(se[0]).__name__ if se else None
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a layer without a usable config
        config = {}
    for key, value in config.items():
        if _SE_RATIO_KEY.search(key):
            on = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            return on, ((named or f"SE ({key}={value})") if on else None)
    return bool(se), named


def _names(items, limit=6):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_opaque(model, placement, select, skip_existing, ratio, se_options):
    """Raises NoSitesError when opaque blocks hide where SE would go (keras-hub rule).

    Rule: a keras-hub backbone whose subclassed blocks hold convolutions is
    refused unless every such block already carries SE (and `skip_existing` is
    on) or `select` says which visible sites to use; a backbone with no visible
    site at all is refused whatever `select` says. The refusal names the opaque
    blocks and the constructor arguments that put keras-hub's own SE inside
    them, where the class has them.
    """
    from keras_se.rewrite import NoSitesError, SEReport
    from keras_se.site_finder import run_finder

    opaque = find_opaque_layers(model)
    if not opaque:
        return
    finder = run_finder(model, placement, select, skip_existing, ratio, se_options)
    with_se = [o for o in opaque if o.carries_se]
    blocking = [o for o in opaque if not (o.carries_se and skip_existing)]
    if finder.sites and (not blocking or select is not None):
        return
    skipped = list(finder.skipped) + [
        Skipped(o.name, f"opaque: subclassed {o.class_name} holding convolutions"
                + (f" (already carries {o.se_class_name})" if o.carries_se else ""))
        for o in opaque
    ]
    report = SEReport(model.name, placement, finder.sites, skipped, model.count_params())
    parts = [
        f"No SE site can be placed in {type(model).__name__} {model.name!r} for "
        f"placement={placement!r}: {len(opaque)} of its layers are subclassed blocks "
        "holding convolutions, whose graph add_se_blocks cannot see"
    ]
    if blocking:
        parts[0] += ": " + _names([f"{o.name} ({o.class_name})" for o in blocking]) + "."
    else:
        parts[0] += "."
    if with_se:
        carried = sorted({o.se_class_name for o in with_se})
        parts.append(
            f"{len(with_se)} of them already carry SE ({', '.join(carried)})"
            + (", which skip_existing=True leaves alone." if skip_existing else ".")
        )
    if finder.sites:
        parts.append(
            f"Outside them, {len(finder.sites)} site(s) were found ("
            + _names([s.full_name for s in finder.sites], 4)
            + "): pass `select=` with those names to place SE there only."
        )
    else:
        parts.append("No site is visible outside them.")
    own = _OWN_SE_ARGUMENTS.get(_base_name(model))
    if own:
        parts.append(f"keras-hub puts its own SE blocks inside them with {own}.")
    parts.append(f"Received: model={model.name!r}, placement={placement!r}")
    raise NoSitesError(report, " ".join(parts))


def _base_name(model):
    cls = type(model)
    base = getattr(cls, "_se_base_class", None) or cls
    return base.__name__
