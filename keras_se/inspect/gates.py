"""The gate model: `Excitation`, a probe layer that outputs the gate of one SE layer, and
`excitation_model`, which returns every SE gate of a model for an input batch."""

from __future__ import annotations

import warnings

import keras
from keras import tree

from keras_se import _keras_compat as compat
from keras_se.layers import SqueezeExcite
from keras_se.sites import check_model, graph_of, is_container, se_layers

__all__ = ["Excitation", "excitation_model", "require_se_layers"]


# ----------------------------------------------------------------------- the tap layer
@keras.saving.register_keras_serializable(package="keras_se")
class Excitation(keras.layers.Layer):
    """Outputs the gate that a `SqueezeExcite` layer computes for its input.

    A probe for analysis: called on the tensor that `se_layer` recalibrates,
    it returns `se_layer.excitation(inputs)`, the per-channel gate, in
    float32. It shares the SE layer's weights (it holds the layer itself) and
    adds none. `excitation_model` builds its graph from these probes; no
    `Lambda` layer is involved.

    Args:
        se_layer: the `keras_se.SqueezeExcite` layer to read the gate of.
        **kwargs: base layer arguments (`name`).

    Input shape:
        The shape `se_layer` takes, e.g. `(batch, height, width, channels)`.

    Output shape:
        `(batch, channels)`.

    Example:

    >>> import numpy as np
    >>> import keras_se
    >>> from keras_se.inspect import Excitation
    >>> se = keras_se.SqueezeExcite(ratio=4, init="identity")
    >>> x = np.random.rand(2, 8, 8, 16).astype("float32")
    >>> gate = Excitation(se)(x)
    >>> tuple(gate.shape), float(np.min(gate)), float(np.max(gate))
    ((2, 16), 1.0, 1.0)
    """

    def __init__(self, se_layer: SqueezeExcite, **kwargs):
        if isinstance(se_layer, dict):  # from a config
            se_layer = keras.saving.deserialize_keras_object(se_layer)
        if not isinstance(se_layer, SqueezeExcite):
            raise TypeError(
                "`se_layer` must be a keras_se.SqueezeExcite layer. "
                f"Received: se_layer of type {type(se_layer).__name__}"
            )
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.se_layer = se_layer

    def build(self, input_shape):
        if not self.se_layer.built:
            self.se_layer.build(input_shape)

    def call(self, inputs):
        return self.se_layer.excitation(inputs)

    def compute_output_shape(self, input_shape):
        axis = -1 if self.se_layer.data_format == "channels_last" else 1
        return (input_shape[0], input_shape[axis])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config["se_layer"] = keras.saving.serialize_keras_object(self.se_layer)
        return config


# ------------------------------------------------------------------ excitation model
def _has_se(model):
    return bool(se_layers(model, deep=True))


def _no_se_error(model):
    return ValueError(
        f"Model {model.name!r} has no keras_se.SqueezeExcite layer in its graph, so "
        "there is no gate to read. Add SE blocks first with "
        f"keras_se.add_se_blocks(model, placement). Received: model={model.name!r}"
    )


def require_se_layers(model):
    """Raises what `excitation_model` would for `model`, without tracing its graph.

    The cheap part of its checks: a Functional or Sequential model holding at
    least one `SqueezeExcite` layer (the command line runs it before reading data).
    """
    check_model(model, "inspected")
    if not _has_se(model):
        raise _no_se_error(model)


def _new_inputs(model):
    return tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name),
        graph_of(model).input,
    )


def _trace(model, inputs, path, augmented):
    """Calls the layers of `model` on `inputs`, adding an `Excitation` per SE call.

    A nested model that holds SE layers is replaced by an augmented copy of its
    graph (same layers) that also returns its gates, so that each model keeps
    its own layer namespace. Returns the model's outputs and the list of
    `(path, se_layer, gate tensor)` in graph order.
    """
    fn = graph_of(model)
    taps = []
    taken = {l.name for l in fn.layers}

    def probe_name(layer):
        name = f"{layer.name}_excitation"
        i = 1
        while name in taken:
            i += 1
            name = f"{layer.name}_excitation_{i}"
        taken.add(name)
        return name

    def operation_fn(op):
        if isinstance(op, SqueezeExcite):

            def call_se(*args, **kwargs):
                x = args[0] if args else kwargs["inputs"]
                taps.append((path, op, Excitation(op, name=probe_name(op))(x)))
                return op(*args, **kwargs)

            return call_se
        if is_container(op) and _has_se(op):

            def call_nested(*args, **kwargs):
                x = args[0] if args else kwargs["inputs"]
                if id(op) not in augmented:
                    augmented[id(op)] = _augment(op, path + (op.name,), augmented)
                aug, inner = augmented[id(op)]
                outputs, gates = aug(x)
                taps.extend((p, l, g) for (p, l), g in zip(inner, gates))
                return outputs

            return call_nested
        return op

    # The same walk that `Functional.call` and `keras.models.clone_model` do.
    outputs = compat.run_through_graph(fn, inputs, operation_fn)
    return outputs, taps


def _augment(model, path, augmented):
    """`model`'s graph as a model that returns `[outputs, [gates...]]`."""
    inputs = _new_inputs(model)
    outputs, taps = _trace(model, inputs, path, augmented)
    aug = keras.Model(inputs, [outputs, [g for _, _, g in taps]], name=model.name)
    return aug, [(p, l) for p, l, _ in taps]


def _gate_keys(taps):
    """Dict keys for the taps: the SE layer's name, qualified only where needed."""
    layer_ids = {}
    for _, layer, _ in taps:
        layer_ids.setdefault(layer.name, set()).add(id(layer))
    keys, calls = [], {}
    for path, layer, _ in taps:
        # Two different SE layers with one name (in different nested models):
        # prefix the path of nested model names.
        key = "/".join(path + (layer.name,)) if len(layer_ids[layer.name]) > 1 else layer.name
        n = calls.get(key, 0)
        calls[key] = n + 1
        # A shared SE layer called at several places: `name`, `name#1`, ...
        keys.append(key if n == 0 else f"{key}#{n}")
    return keys


def _build(model):
    require_se_layers(model)
    inputs = _new_inputs(model)
    _, taps = _trace(model, inputs, (), {})
    if not taps:
        raise _no_se_error(model)
    tapped = {id(layer) for _, layer, _ in taps}
    missed = [layer.name for layer in se_layers(model, deep=True) if id(layer) not in tapped]
    if missed:
        warnings.warn(
            f"{len(missed)} SqueezeExcite layer(s) of model {model.name!r} are not called "
            f"in a Functional or Sequential graph (e.g. inside a custom layer) and are left "
            f"out: {missed}",
            stacklevel=3,
        )
    keys = _gate_keys(taps)
    outputs = {key: gate for key, (_, _, gate) in zip(keys, taps)}
    emodel = keras.Model(inputs, outputs, name=f"{model.name}_excitation")
    return emodel, keys


def excitation_model(model: keras.Model) -> keras.Model:
    """Returns a model that computes every SE gate of `model` for an input batch.

    The result takes the inputs of `model` and returns a dict: for every
    `keras_se.SqueezeExcite` layer, keyed by its name, the gate it multiplies
    its input by, shape `(batch, channels)`, float32. SE layers inside nested
    Functional or Sequential models (at any depth) are included. It shares the
    layers and weights of `model`: train `model` and the gates follow.

    Keys are the SE layer names (`<anchor>_se` for `keras_se.add_se_blocks`);
    where two SE layers in different nested models share a name, the key is
    qualified with the nested model names (`backbone/conv_se`), and an SE
    layer called at several places gives `name`, `name#1`, ... The keys come
    in the order the graph computes the gates, by depth from the input.

    Call it with `training=False` (or use `predict`), as for inference.

    Args:
        model: a built Functional or Sequential model with SE layers.

    Returns:
        A Functional `keras.Model` with dict outputs.

    Raises:
        TypeError: if `model` is not a Functional or Sequential model.
        ValueError: if `model` has no SE layer or is not built.

    Example:

    >>> import numpy as np, keras, keras_se
    >>> from keras_se.inspect import excitation_model
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    >>> x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    >>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> se_model = keras_se.add_se_blocks(keras.Model(inputs, y), ratio=4)
    >>> gates = excitation_model(se_model)(np.ones((5, 16, 16, 3)), training=False)
    >>> {k: tuple(v.shape) for k, v in gates.items()}
    {'conv1_se': (5, 8), 'conv2_se': (5, 16)}
    >>> float(np.min(gates["conv2_se"])), float(np.max(gates["conv2_se"]))
    (1.0, 1.0)

    Reference:
        - [Hu et al., 2018, Squeeze-and-Excitation Networks](
            https://arxiv.org/abs/1709.01507), Section 7.2.
    """
    return _build(model)[0]
