"""keras_se_builtin: the small image-classification dataset keras-se draws offline.

Six balanced classes of shapes and textures (circle, square, triangle, ring,
stripes, checkerboard) with random colours, positions, sizes, orientations and
pixel noise, 64x64 RGB, 1800 training and 600 validation images, drawn with fixed
seeds: every machine builds the same bytes, with no download. `KerasSeBuiltin` is
a TensorFlow Datasets builder, registered when this module is imported (as
`keras_se.data` does), so `tfds.load("keras_se_builtin")` works offline; the
command line's `--data builtin`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from keras_se._options import BUILTIN  # noqa: F401  (re-exported)

BUILTIN_TFDS_NAME = "keras_se_builtin"
BUILTIN_CLASSES = ("circle", "square", "triangle", "ring", "stripes", "checkerboard")
BUILTIN_IMAGE_SIZE = 64
BUILTIN_SPLITS = {"train": (1800, 1001), "validation": (600, 2002)}  # (examples, seed)


def _grid(size):
    y, x = np.mgrid[0:size, 0:size].astype("float32")
    return x, y


def _pick_colours(rng):
    """A dark background and a bright foreground colour, both random."""
    bg = rng.uniform(0, 110, size=3)
    fg = rng.uniform(150, 255, size=3)
    return bg.astype("float32"), fg.astype("float32")


def _triangle_mask(x, y, cx, cy, r, angle):
    corners = [
        (cx + r * np.cos(angle + k * 2 * np.pi / 3), cy + r * np.sin(angle + k * 2 * np.pi / 3))
        for k in range(3)
    ]
    inside = np.ones_like(x, dtype=bool)
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        # Counter-clockwise corners: a point is inside when it is on the left
        # of every edge.
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def draw_builtin_example(label: int, rng: np.random.Generator, size: int = BUILTIN_IMAGE_SIZE):
    """Draws one image of class `BUILTIN_CLASSES[label]`, a uint8 array.

    Every image has a random dark background colour with a random smooth
    gradient, a random bright foreground colour, a random position, size and
    orientation, and Gaussian pixel noise; the class is only in the shape or
    the texture. (The foreground is always the brighter: with both colours
    free, a small network trained from scratch for a few epochs stays near
    50% on this task; with a fixed contrast polarity it passes 90%.)

    Args:
        label: int, the class index into `BUILTIN_CLASSES`.
        rng: a `numpy.random.Generator`; the image is a pure function of it.
        size: int, the height and width in pixels. Defaults to `64`.

    Returns:
        A `(size, size, 3)` uint8 array.

    Example:

    >>> import numpy as np
    >>> from keras_se.data import BUILTIN_CLASSES, draw_builtin_example
    >>> image = draw_builtin_example(4, np.random.default_rng(0))
    >>> BUILTIN_CLASSES[4], image.shape, image.dtype
    ('stripes', (64, 64, 3), dtype('uint8'))
    """
    if not 0 <= label < len(BUILTIN_CLASSES):
        raise ValueError(
            f"`label` must be in [0, {len(BUILTIN_CLASSES)}). Received: label={label!r}"
        )
    x, y = _grid(size)
    bg, fg = _pick_colours(rng)
    # A smooth background: the background colour plus a random linear ramp.
    ramp = rng.uniform(-40, 40, size=(2, 3)).astype("float32")
    image = bg + (x[..., None] / size - 0.5) * ramp[0] + (y[..., None] / size - 0.5) * ramp[1]
    name = BUILTIN_CLASSES[label]
    r = rng.uniform(0.2, 0.38) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    if name == "circle":
        mask = (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    elif name == "ring":
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        mask = (d <= r) & (d >= r * rng.uniform(0.45, 0.65))
    elif name == "square":
        c, s = np.cos(angle), np.sin(angle)
        u = (x - cx) * c + (y - cy) * s
        v = -(x - cx) * s + (y - cy) * c
        half = r * 0.85
        mask = (np.abs(u) <= half) & (np.abs(v) <= half)
    elif name == "triangle":
        mask = _triangle_mask(x, y, cx, cy, r * 1.15, angle)
    elif name == "stripes":
        period = rng.uniform(8, 16)
        phase = rng.uniform(0, period)
        t = x * np.cos(angle) + y * np.sin(angle) + phase
        mask = (t % period) < period / 2
    else:  # checkerboard
        cell = rng.uniform(7, 12)
        c, s = np.cos(angle / 8), np.sin(angle / 8)
        u = (x * c + y * s) // cell
        v = (-x * s + y * c) // cell
        mask = ((u + v) % 2) == 0
    image = np.where(mask[..., None], fg, image)
    image = image + rng.normal(0, 12, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype("uint8")


class KerasSeBuiltin(tfds.core.GeneratorBasedBuilder):
    """Shapes and textures: keras-se's small offline image-classification set.

    Six balanced classes (circle, square, triangle, ring, stripes,
    checkerboard), 64x64 RGB, 1800 training and 600 validation images, drawn
    procedurally by `keras_se.data.draw_builtin_example` with fixed seeds, so
    every machine builds the same bytes and no download is needed. Random
    colours, positions, sizes, orientations and pixel noise make it a small
    but real learning problem: chance is 1/6.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(BUILTIN_IMAGE_SIZE, BUILTIN_IMAGE_SIZE, 3)
                    ),
                    "label": tfds.features.ClassLabel(names=list(BUILTIN_CLASSES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/keras-se/keras-se",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {
            split: self._generate_examples(num_examples=n, seed=seed)
            for split, (n, seed) in BUILTIN_SPLITS.items()
        }

    def _generate_examples(self, num_examples, seed):
        num_classes = len(BUILTIN_CLASSES)
        for index in range(num_examples):
            label = index % num_classes
            rng = np.random.default_rng([seed, index])
            yield index, {"image": draw_builtin_example(label, rng), "label": label}
