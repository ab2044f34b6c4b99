"""What SE blocks learn: the gates a model computes, profiled per class, and plots.

The excitation of an SE block is the per-channel gate it multiplies its input
by (`keras_se.SqueezeExcite.excitation`). Hu et al. (2018, Section 7.2,
Fig. 6) average it over the images of a class and compare classes: in early
blocks the gates hardly depend on the class, in late blocks they do.

- `excitation_model(model)`: a model that returns every SE gate of `model`
  (nested models included) for an input batch, as a dict keyed by SE layer name.
- `excitation_profile(model, dataset)`: the mean gate per channel and SE block,
  over a whole `tf.data` dataset, overall and per class (an `ExcitationProfile`).
- `plot_excitation(profile, path)` and `plot_class_specificity(profile, path)`:
  PNG plots of a profile (matplotlib, no display needed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np
from keras import tree

from keras_se import _keras_compat as compat
from keras_se.layers import SqueezeExcite
from keras_se.sites import check_model, graph_of, is_container, se_layers

__all__ = [
    "Excitation",
    "ExcitationProfile",
    "excitation_model",
    "excitation_profile",
    "plot_class_specificity",
    "plot_excitation",
]


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


# ------------------------------------------------------------------------- profile
@dataclasses.dataclass
class ExcitationProfile:
    """Gate statistics of a model's SE blocks over a dataset.

    Attributes:
        blocks: the SE keys (see `excitation_model`), in graph order.
        count: the number of examples.
        mean: block -> mean gate per channel, shape `(channels,)`.
        std: block -> standard deviation per channel over all examples.
        classes: the class ids present in the data, sorted (empty without labels).
        class_counts: examples per class, aligned with `classes`.
        class_mean: block -> mean gate per class and channel,
            shape `(len(classes), channels)` (absent without labels).
        class_std: block -> the standard deviation within each class, same shape.
        class_names: optional names, aligned with `classes`.
    """

    blocks: list[str]
    count: int
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    classes: list[int] = dataclasses.field(default_factory=list)
    class_counts: list[int] = dataclasses.field(default_factory=list)
    class_mean: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    class_std: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    class_names: list[str] | None = None

    @property
    def by_class(self) -> bool:
        return bool(self.class_mean)

    def class_label(self, cls: int) -> str:
        """The name of class id `cls` if names were given, else its id."""
        if self.class_names is not None:
            return str(self.class_names[self.classes.index(cls)])
        return str(cls)

    def class_specificity(self) -> dict[str, float]:
        """How much the mean gate depends on the class, per block.

        For each block: the standard deviation across classes of the per-class
        mean gate, averaged over channels. 0 means every class gets the same
        average gate (a class-agnostic block); it grows as the blocks
        specialise. Needs a profile with labels and at least two classes.

        Returns:
            A dict block -> float, in graph order.
        """
        self._require_classes("class_specificity")
        return {b: float(np.mean(np.std(self.class_mean[b], axis=0))) for b in self.blocks}

    def within_class_spread(self) -> dict[str, float]:
        """The spread of the gate among examples of one class, per block.

        For each block: the within-class standard deviation of the gate,
        averaged over channels and classes. Compare it with
        `class_specificity`: a block is class-specific where the classes differ
        by more than their examples do.

        Returns:
            A dict block -> float, in graph order.
        """
        self._require_classes("within_class_spread")
        return {b: float(np.mean(self.class_std[b])) for b in self.blocks}

    def _require_classes(self, what):
        if len(self.classes) < 2:
            raise ValueError(
                f"`{what}` needs a profile computed with by_class=True on data with at "
                f"least two classes. Received: a profile with classes={self.classes}"
            )

    def to_dict(self, channels: bool = True) -> dict[str, Any]:
        """A JSON-ready summary; with `channels=False`, only the per-block numbers."""
        out: dict[str, Any] = {
            "count": self.count,
            "classes": [int(c) for c in self.classes],
            "class_names": self.class_names,
            "class_counts": [int(c) for c in self.class_counts],
            "blocks": [],
        }
        specificity = self.class_specificity() if len(self.classes) > 1 else {}
        spread = self.within_class_spread() if len(self.classes) > 1 else {}
        for b in self.blocks:
            entry: dict[str, Any] = {
                "name": b,
                "channels": int(self.mean[b].shape[0]),
                "mean": float(np.mean(self.mean[b])),
            }
            if b in specificity:
                entry["class_specificity"] = specificity[b]
                entry["within_class_spread"] = spread[b]
            if channels:
                entry["mean_per_channel"] = self.mean[b].tolist()
                if self.by_class:
                    entry["class_mean_per_channel"] = self.class_mean[b].tolist()
            out["blocks"].append(entry)
        return out

    def to_json(self, path: str | os.PathLike, channels: bool = True) -> str:
        """Writes `to_dict(channels)` as JSON to `path`; returns the path."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(channels), f, indent=1)
        return str(path)


def _split_batch(batch, by_class):
    """(images, labels) from a dataset element: a tuple, a list or a dict."""
    if isinstance(batch, dict):
        x = batch.get("image", batch.get("images"))
        y = batch.get("label", batch.get("labels"))
        if x is None:
            raise ValueError(
                "A dataset of dicts must have an 'image' key (and 'label' for "
                f"by_class=True). Received: keys={sorted(batch)}"
            )
    elif isinstance(batch, (tuple, list)):
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
    else:
        x, y = batch, None
    if by_class and y is None:
        raise ValueError(
            "`by_class=True` needs a dataset of (images, labels) batches; this one "
            "gives images only. Pass by_class=False, or map it to (images, labels). "
            "Received: by_class=True"
        )
    return x, y


def _host(x):
    """A batch as NumPy where it is not the backend's own tensor (a tf.data batch on
    JAX or PyTorch); backend tensors pass through."""
    if hasattr(x, "numpy") and not keras.ops.is_tensor(x):
        return x.numpy()
    return x


def _class_ids(y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot or probabilities
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(
                "Labels must be integer class ids or one-hot vectors. "
                f"Received: labels of dtype {y.dtype} with values like {y[:3].tolist()}"
            )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"Labels must be non-negative class ids. Received: label={y.min()}")
    return y


def excitation_profile(
    model: keras.Model,
    dataset: Iterable,
    by_class: bool = True,
    *,
    steps: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ExcitationProfile:
    """The mean excitation per channel of every SE block, overall and per class.

    Runs `model`'s SE gates (see `excitation_model`) in inference mode on
    every batch of `dataset` and averages them over the examples, in float64:
    for each block, a mean gate per channel over all examples and, with
    `by_class=True`, over the examples of each class (the data behind the
    paper's Fig. 6), with the standard deviations.

    Args:
        model: a built Functional or Sequential model with SE layers.
        dataset: a batched `tf.data.Dataset` (or any iterable of batches) of
            `(images, labels)` tuples, `{"image": ..., "label": ...}` dicts, or
            images only with `by_class=False`. Labels are integer class ids or
            one-hot rows.
        by_class: also average per class. Defaults to `True`.
        steps: stop after this many batches. Defaults to `None` (all).
        class_names: optional names of the class ids `0, 1, ...`, used by the
            plots. Defaults to `None`.

    Returns:
        An `ExcitationProfile`.

    Raises:
        TypeError: if `model` is not a Functional or Sequential model.
        ValueError: if `model` has no SE layer, if `dataset` is empty, or if
            `by_class=True` and the batches carry no labels.

    Example:

    >>> import numpy as np, keras, tensorflow as tf, keras_se
    >>> from keras_se.inspect import excitation_profile
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    >>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> se_model = keras_se.add_se_blocks(keras.Model(inputs, y), ratio=4)
    >>> images = np.random.rand(12, 16, 16, 3).astype("float32")
    >>> labels = np.arange(12) % 3
    >>> data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(5)
    >>> profile = excitation_profile(se_model, data)
    >>> profile.blocks, profile.count, profile.classes, profile.class_counts
    (['conv1_se'], 12, [0, 1, 2], [4, 4, 4])
    >>> profile.class_mean["conv1_se"].shape  # identity-initialised: all gates are 1
    (3, 8)
    >>> float(np.abs(profile.class_mean["conv1_se"] - 1).max())
    0.0
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"`steps` must be a positive integer or None. Received: steps={steps!r}")
    emodel, keys = _build(model)
    sums = {k: 0.0 for k in keys}
    squares = {k: 0.0 for k in keys}
    class_sums: dict[str, np.ndarray] = {}
    class_squares: dict[str, np.ndarray] = {}
    class_counts = np.zeros((0,), np.int64)
    count = 0
    for step, batch in enumerate(dataset):
        if steps is not None and step >= steps:
            break
        x, y = _split_batch(batch, by_class)
        x, y = _host(x), None if y is None else _host(y)
        gates = emodel.predict_on_batch(x)  # inference mode, one compiled function
        gates = {k: keras.ops.convert_to_numpy(gates[k]).astype(np.float64) for k in keys}
        n = gates[keys[0]].shape[0]
        count += n
        for k in keys:
            sums[k] = sums[k] + gates[k].sum(axis=0)
            squares[k] = squares[k] + np.square(gates[k]).sum(axis=0)
        if by_class:
            ids = _class_ids(keras.ops.convert_to_numpy(y))
            if ids.shape[0] != n:
                raise ValueError(
                    f"Each batch needs one label per image. Received: {n} images and "
                    f"{ids.shape[0]} labels"
                )
            num = max(class_counts.shape[0], int(ids.max()) + 1)
            if num > class_counts.shape[0]:
                grow = num - class_counts.shape[0]
                class_counts = np.concatenate([class_counts, np.zeros(grow, np.int64)])
                for k in keys:
                    c = gates[k].shape[1]
                    class_sums[k] = np.concatenate(
                        [class_sums.get(k, np.zeros((0, c))), np.zeros((grow, c))]
                    )
                    class_squares[k] = np.concatenate(
                        [class_squares.get(k, np.zeros((0, c))), np.zeros((grow, c))]
                    )
            np.add.at(class_counts, ids, 1)
            for k in keys:
                np.add.at(class_sums[k], ids, gates[k])
                np.add.at(class_squares[k], ids, np.square(gates[k]))
    if count == 0:
        raise ValueError("`dataset` gave no examples. Received: an empty dataset")

    def spread(total, total_sq, n):
        mean = total / n
        return mean, np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0))

    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = spread(sums[k], squares[k], count)
    profile = ExcitationProfile(blocks=list(keys), count=count, mean=mean, std=std)
    if by_class:
        present = np.flatnonzero(class_counts)
        n = class_counts[present][:, None]
        profile.classes = [int(c) for c in present]
        profile.class_counts = [int(c) for c in class_counts[present]]
        for k in keys:
            profile.class_mean[k], profile.class_std[k] = spread(
                class_sums[k][present], class_squares[k][present], n
            )
        if class_names is not None:
            class_names = list(class_names)
            if len(class_names) <= int(present.max()):
                raise ValueError(
                    f"`class_names` must name every class id; the data has id "
                    f"{int(present.max())}. Received: {len(class_names)} class_names"
                )
            profile.class_names = [str(class_names[c]) for c in present]
    return profile


# --------------------------------------------------------------------------- plots
def _figure(width, height):
    # An object-oriented figure with its own Agg canvas: no pyplot state, no
    # display, whatever matplotlib backend the session uses.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _spread_indices(n, k):
    """`k` indices spread evenly over `range(n)`, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _pick_blocks(profile, blocks, max_blocks):
    if blocks is None:
        return [profile.blocks[i] for i in _spread_indices(len(profile.blocks), max_blocks)]
    unknown = [b for b in blocks if b not in profile.mean]
    if unknown:
        raise ValueError(
            f"`blocks` must name SE blocks of the profile ({len(profile.blocks)} blocks, "
            f"e.g. {profile.blocks[:3]}). Received: blocks={unknown}"
        )
    return list(blocks)


def _pick_classes(profile, classes, max_classes):
    if not profile.by_class:
        return []
    if classes is None:
        return profile.classes[:max_classes]
    unknown = [c for c in classes if c not in profile.classes]
    if unknown:
        raise ValueError(
            f"`classes` must be class ids present in the profile ({profile.classes}). "
            f"Received: classes={unknown}"
        )
    return list(classes)


def plot_excitation(
    profile: ExcitationProfile,
    path: str | os.PathLike,
    *,
    blocks: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    max_blocks: int = 6,
    max_classes: int = 4,
    max_channels: int | None = None,
    show_std: bool = False,
) -> str:
    """Plots the mean excitation per channel, per block, for a few classes.

    One panel per SE block, the channel index on the x axis and the mean gate
    on the y axis: one line per class and a dashed black line for all the
    data, as in the paper's Fig. 6. Where the lines coincide, the block
    treats every class alike.

    Args:
        profile: an `ExcitationProfile` (per class, for the class lines).
        path: where to write the PNG.
        blocks: the blocks to plot. Defaults to `max_blocks` blocks spread
            evenly from the first to the last.
        classes: the class ids to plot. Defaults to the first `max_classes`.
        max_blocks: see `blocks`. Defaults to `6`.
        max_classes: see `classes`. Defaults to `4`.
        max_channels: plot only the first `max_channels` channels of each
            block, for readability. Defaults to `None` (all).
        show_std: shade mean +- the within-class standard deviation.
            Defaults to `False`.

    Returns:
        `path`, as a string.

    Example:

    >>> import numpy as np, keras, tensorflow as tf, keras_se, tempfile, os
    >>> from keras_se.inspect import excitation_profile, plot_excitation
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    >>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> se_model = keras_se.add_se_blocks(keras.Model(inputs, y), ratio=4, init="standard")
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.random.rand(8, 16, 16, 3).astype("float32"), np.arange(8) % 2)).batch(4)
    >>> png = plot_excitation(excitation_profile(se_model, data),
    ...                       os.path.join(tempfile.mkdtemp(), "gates.png"))
    >>> open(png, "rb").read(4)
    b'\\x89PNG'
    """
    chosen = _pick_blocks(profile, blocks, max_blocks)
    cls = _pick_classes(profile, classes, max_classes)
    ncols = min(3, len(chosen))
    nrows = -(-len(chosen) // ncols)
    fig = _figure(4.2 * ncols, 2.9 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = [f"C{i % 10}" for i in range(len(cls))]
    for ax, block in zip(axes, chosen):
        end = max_channels or profile.mean[block].shape[0]
        channels = np.arange(min(end, profile.mean[block].shape[0]))
        for color, c in zip(colors, cls):
            row = profile.classes.index(c)
            m = profile.class_mean[block][row, : len(channels)]
            ax.plot(channels, m, color=color, lw=1.0, label=profile.class_label(c))
            if show_std:
                s = profile.class_std[block][row, : len(channels)]
                ax.fill_between(channels, m - s, m + s, color=color, alpha=0.15, lw=0)
        ax.plot(channels, profile.mean[block][: len(channels)], "k--", lw=1.0, label="all")
        ax.set_title(block, fontsize=9)
        ax.set_xlabel("channel index", fontsize=8)
        ax.set_ylabel("mean excitation", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(chosen) :]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 9), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    fig.savefig(path, format="png")
    return str(path)


def plot_class_specificity(
    profile: ExcitationProfile,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
) -> str:
    """Plots, per SE block in graph order, how class-specific its gates are.

    Bars: `profile.class_specificity()`, the spread across classes of the
    per-class mean gate. Line: `profile.within_class_spread()`, the spread
    among examples of one class. The paper finds the early blocks
    class-agnostic (short bars) and the late ones class-specific.

    Args:
        profile: an `ExcitationProfile` computed with `by_class=True`.
        path: where to write the PNG.
        labels: tick labels for the blocks. Defaults to the block names.

    Returns:
        `path`, as a string.

    Raises:
        ValueError: if the profile has fewer than two classes.

    Example:

    >>> import numpy as np, keras, tensorflow as tf, keras_se, tempfile, os
    >>> from keras_se.inspect import excitation_profile, plot_class_specificity
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    >>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> se_model = keras_se.add_se_blocks(keras.Model(inputs, y), ratio=4, init="standard")
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.random.rand(8, 16, 16, 3).astype("float32"), np.arange(8) % 2)).batch(4)
    >>> png = plot_class_specificity(excitation_profile(se_model, data),
    ...                              os.path.join(tempfile.mkdtemp(), "specificity.png"))
    >>> open(png, "rb").read(4)
    b'\\x89PNG'
    """
    between = profile.class_specificity()
    within = profile.within_class_spread()
    names = list(labels) if labels is not None else list(profile.blocks)
    if len(names) != len(profile.blocks):
        raise ValueError(
            f"`labels` must have one entry per block ({len(profile.blocks)}). "
            f"Received: {len(names)} labels"
        )
    x = np.arange(len(profile.blocks))
    fig = _figure(max(5.0, 0.32 * len(x) + 2.0), 4.2)
    ax = fig.subplots()
    ax.bar(x, [between[b] for b in profile.blocks], color="C0", label="between classes")
    ax.plot(x, [within[b] for b in profile.blocks], "o-", color="C3", ms=3, lw=1,
            label="within a class")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("std of the gate, mean over channels", fontsize=8)
    ax.set_title(f"Class specificity of the SE gates ({len(profile.classes)} classes)",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return str(path)
