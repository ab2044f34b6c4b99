"""The bottleneck width of an SE block: the paper's `C // r` and timm's rounding."""

from __future__ import annotations


def make_divisible(
    value: float, divisor: int = 1, min_value: int = 1, round_limit: float = 0.9
) -> int:
    """Rounds `value` to the nearest multiple of `divisor`, at least `min_value`.

    timm's `make_divisible` (`timm.layers.helpers`), the MobileNet family's
    channel rule: with the default `round_limit=0.9` it never rounds down by
    more than 10%. timm's own SE blocks (`timm.layers.SEModule`) call it with
    `round_limit=0.0`, so they may round down further (C=76, r=4, divisor 8:
    16 with 0.0, 24 with 0.9). `divisor=1` truncates (`C // r`, the paper).

    Args:
        value: the width to round.
        divisor: the multiple to round to. Defaults to 1 (no rounding).
        min_value: the lower bound; with `divisor > 1` it is at least
            `divisor`, as in timm. Defaults to 1.
        round_limit: the rounded width is raised by `divisor` when it falls
            below `round_limit * value`. Defaults to 0.9.

    Returns:
        The rounded width, an int.

    Example:

    >>> from keras_se import make_divisible
    >>> make_divisible(76 / 4, 8), make_divisible(76 / 4, 8, round_limit=0.0)
    (24, 16)
    """
    if divisor == 1:
        return max(min_value, int(value))
    # timm's default floor is the divisor itself: with a floor of 1, a value
    # that rounds to 0 became 1, then 1 + divisor (2 -> 9 for divisor 8).
    min_value = max(min_value, divisor)
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def bottleneck_width(
    channels: int,
    ratio: float = 16,
    units: int | None = None,
    min_units: int = 1,
    divisor: int = 1,
    round_limit: float = 0.9,
) -> int:
    """The bottleneck width of an SE block on `channels` channels.

    `units` if given, else `make_divisible(channels // ratio, divisor, min_units,
    round_limit)`: `channels // ratio` with the defaults (the paper), and
    exactly the width of timm's SE blocks (`timm.layers.SEModule`,
    `make_divisible(C / r, 8, round_limit=0.0)`) with `divisor=8,
    round_limit=0.0` (for an even divisor, rounding `C // r` or `C / r` to the
    nearest multiple is the same). `SqueezeExcite`, `find_se_sites` and
    `add_se_blocks` all take the width from here.

    Example:

    >>> from keras_se.widths import bottleneck_width
    >>> bottleneck_width(256), bottleneck_width(76, 4, divisor=8, round_limit=0.0)
    (16, 16)
    """
    if units is not None:
        return units
    return make_divisible(channels // ratio, divisor, min_units, round_limit)


def se_params(channels: int, units: int, use_bias: bool = True) -> int:
    """The parameters of an SE block: `2 * C * units`, plus `units + C` biases."""
    return 2 * channels * units + (units + channels if use_bias else 0)
