"""`excitation_profile`: the mean SE gate per channel over a dataset, overall and per
class, as an `ExcitationProfile`."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np

from keras_se.inspect.gates import _build

__all__ = ["ExcitationProfile", "excitation_profile"]


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
