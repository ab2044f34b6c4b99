"""`add_se_blocks`: retrofit SE blocks into an existing Functional or Sequential model."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops, tree

from keras_se import _keras_compat as compat
from keras_se import hub as _hub
from keras_se.layers import SE_OPTIONS, SqueezeExcite
from keras_se.site_finder import run_finder
from keras_se.sites import (
    CONV_LAYERS,
    NORM_LAYERS,
    PLACEMENTS,
    Site,
    Skipped,
    graph_of,
    is_container,
)

__all__ = ["add_se_blocks", "NoSitesError", "SEReport", "PLACEMENTS"]


class SEReport:
    """What `add_se_blocks` did (or would do).

    Attributes:
        model_name: the model's name.
        placement: the placement used.
        sites: the `Site`s that got an SE block.
        skipped: the `Skipped` candidates, each with its reason.
        params_before: parameters of the original model.
        params_added: parameters the SE blocks add.
    """

    def __init__(self, model_name, placement, sites, skipped, params_before):
        self.model_name = model_name
        self.placement = placement
        self.sites: list[Site] = list(sites)
        self.skipped: list[Skipped] = list(skipped)
        self.params_before = int(params_before)

    @property
    def params_added(self) -> int:
        return int(sum(s.params for s in self.sites))

    @property
    def params_after(self) -> int:
        return self.params_before + self.params_added

    @property
    def percent(self) -> float:
        return 100.0 * self.params_added / self.params_before if self.params_before else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "placement": self.placement,
            "num_sites": len(self.sites),
            "params_before": self.params_before,
            "params_added": self.params_added,
            "params_after": self.params_after,
            "percent_added": round(self.percent, 4),
            "sites": [s.to_dict() for s in self.sites],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self, max_rows: int | None = None) -> str:
        """A readable table of the sites, the parameters and the skipped candidates."""
        lines = [
            f"SE blocks for {self.model_name!r}, placement {self.placement!r}: "
            f"{len(self.sites)} sites, +{self.params_added:,} parameters "
            f"({self.params_before:,} -> {self.params_after:,}, +{self.percent:.2f}%)"
        ]
        rows = self.sites if max_rows is None else self.sites[:max_rows]
        if rows:
            # Nested sites print as path/name: size the column from what is printed.
            wheres = ["/".join(s.path + (s.se_name,)) for s in rows]
            width = max(len("SE layer"), *map(len, wheres))
            lines.append(f"  {'SE layer':<{width}}  {'channels':>8}  {'spatial':<12} params")
            for s, where in zip(rows, wheres):
                spatial = "x".join("?" if d is None else str(d) for d in s.spatial_shape)
                lines.append(f"  {where:<{width}}  {s.channels:>8}  {spatial:<12} {s.params:,}")
            if max_rows is not None and len(self.sites) > max_rows:
                lines.append(f"  ... {len(self.sites) - max_rows} more")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} candidates:")
            for k in self.skipped if max_rows is None else self.skipped[:max_rows]:
                lines.append(f"  {k.name}: {k.reason}")
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"SEReport(model={self.model_name!r}, placement={self.placement!r}, "
            f"sites={len(self.sites)}, params_added={self.params_added})"
        )


def _check_se_options(se_options):
    unknown = sorted(set(se_options) - set(SE_OPTIONS))
    if unknown:
        raise TypeError(
            f"Unknown SE option(s) {unknown}; allowed: {', '.join(SE_OPTIONS)}. "
            f"Received: {', '.join(f'{k}={se_options[k]!r}' for k in unknown)}"
        )
    # Let the layer validate the values (it raises ValueError naming the argument).
    SqueezeExcite(**se_options)


class NoSitesError(ValueError):
    """Raised by `add_se_blocks` when a model has no site for the placement.

    Its `report` attribute is the `SEReport`, with every skipped candidate and
    the reason (for instance, that it already carries SE).
    """

    def __init__(self, report, message):
        super().__init__(message)
        self.report = report


class _Rewriter:
    """Clones a model with `keras.models.clone_model`, inserting SE layers.

    `clone_model` is called with `recursive=False`: nested Functional and
    Sequential models are rewritten by our own `clone_function`, because Keras's
    recursion passes no `call_function` to Sequential models (where SE must be
    inserted into the layer list instead) and keeps one cache per model, which
    would duplicate layers shared across nesting levels.
    """

    def __init__(self, finder, init, se_options):
        self.finder = finder
        self.init = init
        self.se_options = se_options
        self.clones = {}  # id(original layer) -> clone
        self.originals = {}  # id(clone) -> original layer
        self.pairs = []  # (original, clone) plain layers whose weights are copied
        self.containers = []  # (original, clone) nested models
        self.se_layers = {}  # id(site) -> SqueezeExcite

    # -- layers
    def se_layer(self, site):
        layer = self.se_layers.get(id(site))
        if layer is None:
            anchor = site._anchor_layer
            dtype = getattr(anchor, "dtype_policy", None)  # plain ops have none
            layer = SqueezeExcite(
                ratio=site.ratio,
                init=self.init,
                data_format=site.data_format,
                name=site.se_name,
                dtype=dtype,
                **self.se_options,
            )
            self.se_layers[id(site)] = layer
        return layer

    def clone_layer(self, layer):
        if id(layer) in self.clones:
            return self.clones[id(layer)]
        if is_container(layer):
            clone = self.rewrite(layer)
            self.containers.append((layer, clone))
        else:
            clone = layer.__class__.from_config(layer.get_config())
            _fill_new_weights_with_zeros(clone)
            self.pairs.append((layer, clone))
        self.clones[id(layer)] = clone
        self.originals[id(clone)] = layer
        return clone

    # -- models
    def rewrite(self, model):
        if isinstance(model, keras.Sequential):
            return self._rewrite_sequential(model)
        return self._rewrite_functional(model)

    def _rewrite_sequential(self, model):
        after = self.finder.sites_by_model.get(id(model), {})
        fn = graph_of(model)
        layers = []
        for layer in model.layers:
            layers.append(self.clone_layer(layer))
            site = after.get((id(layer), 0))
            if site is not None:
                layers.append(self.se_layer(site))
        ref = fn.inputs[0]
        inputs = keras.Input(
            batch_shape=ref.shape, dtype=ref.dtype, name=compat.input_layer_name(model)
        )
        return keras.Sequential([inputs] + layers, name=model.name, trainable=model.trainable)

    def _rewrite_functional(self, model):
        after = self.finder.sites_by_model.get(id(model), {})
        before = self.finder.before_by_model.get(id(model), {})
        calls = {}  # id(original layer) -> number of calls so far
        cache = {}  # (id(site), id(input tensor)) -> SE output, for shared SE-PRE inputs

        def call_function(layer, *args, **kwargs):
            original = self.originals.get(id(layer), layer)
            ordinal = calls.get(id(original), 0)
            calls[id(original)] = ordinal + 1
            key = (id(original), ordinal)
            for index, site in before.get(key, ()):
                args, kwargs = _replace_input(
                    args, kwargs, index, lambda t, site=site: self._apply_cached(site, t, cache)
                )
            outputs = layer(*args, **kwargs)
            site = after.get(key)
            if site is not None:
                outputs = self.se_layer(site)(outputs)
            return outputs

        # Name the new inputs after the input *layers* (clone_model would name them
        # after the symbolic tensors, "keras_tensor_N", for auto-named inputs).
        inputs = tree.map_structure(
            lambda x: keras.Input(
                batch_shape=x.shape, dtype=x.dtype, name=compat.producing_layer_name(x)
            ),
            model.input,
        )
        # Keras builds the graph of a Functional model recursively; deep models with
        # many inserted layers (EfficientNetV2L stacked with several placements)
        # exceed Python's default recursion limit.
        with _recursion_limit(10_000):
            new = keras.models.clone_model(
                model, input_tensors=inputs, clone_function=self.clone_layer,
                call_function=call_function,
            )
        # Keep the output names (serving signatures, loss dictionaries) when an SE
        # block now ends an output.
        if hasattr(model, "output_names"):
            new.output_names = list(model.output_names)
        return new

    def _apply_cached(self, site, tensor, cache):
        key = (id(site), id(tensor))
        if key not in cache:
            cache[key] = self.se_layer(site)(tensor)
        return cache[key]

    def copy_state(self):
        for original, clone in self.pairs:
            _restore_add_weight(clone)
            # Plain operations (e.g. `x + 3.0` in MobileNetV3) hold no weights.
            src = getattr(original, "weights", [])
            dst = getattr(clone, "weights", [])
            if len(src) != len(dst):
                raise RuntimeError(
                    f"Layer {original.name!r} has {len(src)} weights but its clone has "
                    f"{len(dst)}: cannot copy them."
                )
            for s, d in zip(src, dst):
                # A copy, not the value itself: on JAX a variable's value is an
                # immutable array that `assign` would share, and the JAX trainer
                # donates (deletes) the new model's arrays in its first step,
                # which would delete the original model's weights with them.
                d.assign(ops.copy(s.value))
            # State derived from the weights (an adapted Normalization's mean and
            # variance), which `assign` does not update; Keras's own weight loading
            # calls it too. Only Keras's preprocessing layers define it.
            finalize = getattr(clone, "finalize_state", None)
            if src and callable(finalize):
                finalize()
        for original, clone in self.containers:
            if original.trainable != clone.trainable:
                clone.trainable = original.trainable


# Layers whose build derives nothing from their weights' initial values (exact
# types: a subclass may). Others, such as Normalization, compute state from the
# initial values at build time, which the copy would not redo.
_ZERO_FILL_SAFE = (*CONV_LAYERS, *NORM_LAYERS, keras.layers.Dense)


def _fill_new_weights_with_zeros(layer):
    """Makes `layer.add_weight` fill new weights with zeros (see `_restore_add_weight`).

    A clone's weights are overwritten with the original's by `copy_state`, so
    drawing them from their initializers first is wasted work: `add_se_blocks`
    over `clone_model` + `set_weights` went from 1.01-1.18x to 0.58-0.87x on
    TensorFlow (`benchmarks/results/rewrite.md`). Only
    the convolutions, normalizations (`keras_se.sites`' kinds) and Dense are
    affected; every weight of every clone is copied either way. The override is
    an instance attribute, set and removed with `object`'s methods (Keras tracks
    what a layer's own `__setattr__` receives).
    """
    if type(layer) not in _ZERO_FILL_SAFE:
        return
    add_weight = layer.add_weight

    def add_zero_weight(*args, **kwargs):
        if len(args) > 1:  # add_weight(shape, initializer, ...)
            args = (args[0], "zeros", *args[2:])
        else:
            kwargs["initializer"] = "zeros"
        return add_weight(*args, **kwargs)

    object.__setattr__(layer, "add_weight", add_zero_weight)


def _restore_add_weight(layer):
    if "add_weight" in vars(layer):
        object.__delattr__(layer, "add_weight")


@contextlib.contextmanager
def _recursion_limit(limit):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _replace_input(args, kwargs, index, fn):
    """Applies `fn` to the `index`-th tensor among the call's (args, kwargs)."""
    flat = tree.flatten((args, kwargs))
    positions = [i for i, x in enumerate(flat) if keras.backend.is_keras_tensor(x)]
    flat = list(flat)
    flat[positions[index]] = fn(flat[positions[index]])
    return tree.pack_sequence_as((args, kwargs), flat)


def add_se_blocks(
    model: keras.Model,
    placement: str = "post_activation",
    *,
    ratio: int | Callable[[Site], int] = 16,
    select: str | Sequence[str] | Callable[[Site], bool] | None = None,
    init: str = "identity",
    skip_existing: bool = True,
    return_report: bool = False,
    verbose: bool = False,
    **se_options: Any,
) -> keras.Model | tuple[keras.Model, SEReport]:
    """Returns a copy of `model` with Squeeze-and-Excitation blocks inserted.

    The result is a new model: the input model is untouched and shares no
    variables with it. Every original weight is copied exactly; layer names,
    input and output names, trainable flags and dtype policies are kept; a
    compiled model gives a compiled result (same optimizer configuration,
    loss and metrics; fresh optimizer state). Inserted layers are
    `keras_se.SqueezeExcite` named `<anchor layer name>_se`.

    Built on `keras.models.clone_model` with a `clone_function` (copies of the
    layers) and a `call_function` (the SE insertion), recursing into nested
    Functional and Sequential models at any depth. A keras-hub `Backbone` or
    `Task` keeps its class, config and presets (`keras_se.hub`).

    Placements (Hu et al., 2018, Section 6.5 and Table 14):
        - `"post_activation"`: after every non-linear activation fed by a
          convolution (possibly through normalization layers), and after
          convolutions with a fused non-linear activation. The paper's rule
          for non-residual networks (VGG, MobileNet).
        - `"residual"`: the standard SE-ResNet module, on the residual branch
          just before it merges with the shortcut.
        - `"residual_pre"`, `"residual_post"`, `"residual_identity"`: SE-PRE
          (on the residual branch's input), SE-POST (after the merge and its
          activation) and SE-Identity (on the shortcut, in parallel).
        - `"module_output"`: after every multi-branch `Concatenate` (the
          SE-Inception module).
        Sites with a 1x1 spatial size, sites inside an existing gating path
        and (with `skip_existing`) sites that already feed an SE block are
        skipped; the report lists them with the reason.

    Args:
        model: a Functional or Sequential model, possibly nesting others.
        placement: one of `keras_se.PLACEMENTS`. Defaults to
            `"post_activation"`.
        ratio: the reduction ratio, an int or a callable(site) -> int.
            Defaults to `16`.
        select: None (all sites), a regex searched in the anchor layer's name,
            a list of layer names, or a callable(site) -> bool.
        init: `"identity"` (the result computes exactly what `model` did until
            trained) or `"standard"` (the paper's initialisation). Defaults to
            `"identity"`.
        skip_existing: skip sites that already carry or feed SE. Defaults to
            `True`; running `add_se_blocks` on its own output adds nothing.
        return_report: also return the `SEReport`. Defaults to `False`.
        verbose: print the report. Defaults to `False`.
        **se_options: passed to every `SqueezeExcite` (`squeeze`, `gate`,
            `activation`, `units`, `min_units`, `divisor`, `use_bias`,
            initializers, regularizers).

    Returns:
        The new model, or `(model, report)` with `return_report=True`.

    Raises:
        TypeError: for a subclassed model or an unknown SE option.
        ValueError: for a bad argument, or when no site is found.

    Example:

    >>> import keras, keras_se
    >>> base = keras.applications.MobileNet(weights=None, input_shape=(64, 64, 3), alpha=0.25)
    >>> se, report = keras_se.add_se_blocks(
    ...     base, select=r"^conv_pw_\\d+_relu$", return_report=True)
    >>> len(report.sites), se.get_layer("conv_pw_1_relu_se").name
    (13, 'conv_pw_1_relu_se')

    Reference:
        - [Hu et al., 2018, Squeeze-and-Excitation Networks](
            https://arxiv.org/abs/1709.01507)
    """
    if init not in ("identity", "standard"):
        raise ValueError(
            f"`init` must be one of 'identity', 'standard'. Received: init={init!r}"
        )
    _check_se_options(se_options)
    if init == "identity" and se_options.get("gate") == "relu":
        SqueezeExcite(init=init, gate="relu")  # raises the layer's ValueError
    # A keras-hub Backbone or Task keeps its class, config and presets (keras_se.hub).
    hub = _hub.rewrite_hub_model(
        model, placement, ratio=ratio, select=select, init=init, skip_existing=skip_existing,
        return_report=return_report, verbose=verbose, **se_options,
    )
    if hub is not None:
        return hub
    finder = run_finder(model, placement, select, skip_existing, ratio, se_options)
    report = SEReport(model.name, placement, finder.sites, finder.skipped, model.count_params())
    if not finder.sites:
        already = [k for k in finder.skipped if "SE" in k.reason]
        hint = f" {len(already)} candidate(s) already carry SE." if already else ""
        raise NoSitesError(
            report,
            f"No SE site found in model {model.name!r} for placement={placement!r}"
            f"{' and the given select' if select is not None else ''}.{hint} "
            "Call keras_se.find_se_sites(model, placement) to see the candidates, or "
            f"try another placement ({', '.join(PLACEMENTS)})."
        )
    rewriter = _Rewriter(finder, init, se_options)
    new = rewriter.rewrite(model)
    rewriter.copy_state()
    compile_config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if compile_config:
        new.compile_from_config(compile_config)
    if verbose:
        print(report.summary())
    return (new, report) if return_report else new
