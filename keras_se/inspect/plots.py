"""PNG plots of an `ExcitationProfile` (matplotlib, no display needed): the mean gate per
channel and class (the paper's Fig. 6), and how class-specific each SE block is."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from keras_se.inspect.profile import ExcitationProfile

__all__ = ["plot_class_specificity", "plot_excitation"]


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
