"""A class-per-folder tree of real photographs, written offline for tests and benchmarks.

`write_photo_folder(root)` cuts small tiles out of photographs that the
scikit-image wheel bundles (they install with `pip install scikit-image` and
need no network: they are package data, not files fetched by pooch on first
use) and writes them as JPEG files:

    root/train/<class>/<class>_0000.jpg ...
    root/val/<class>/<class>_0000.jpg ...

which `keras_se.load_data(root)` (and `keras-se finetune --data root`) read as
a training and a validation split.

Two sets of classes are offered:

`"photos"` (the default, 4 classes, RGB): which photograph a tile comes from.
    astronaut  skimage/data/astronaut.png, 512x512. Eileen Collins, NASA Great
               Images database; "No known copyright restrictions, released into
               the public domain" (NASA).
    cat        skimage/data/chelsea.png, 451x300. Chelsea the cat; "No copyright
               restrictions. CC0 by the photographer (Stefan van der Walt)".
    coffee     skimage/data/coffee.png, 600x400. A coffee cup on wood, courtesy
               of Pikolo Espresso Bar; "No copyright restrictions. CC0 by the
               photographer (Rachel Michetti)".
    rocket     skimage/data/rocket.jpg, 640x427. Falcon 9 launching DSCOVR,
               SpaceX; released into the public domain by SpaceX.

`"textures"` (3 classes, grey levels): which material a tile shows.
    brick      skimage/data/brick.png, 512x512. CC0Textures "Bricks25", CC0
               (perspective-corrected, rotated, scaled, grey by scikit-image).
    grass      skimage/data/grass.png, 512x512. DeviantArt "Grass-01" by
               linolafett, CC0 (cropped, grey by scikit-image).
    gravel     skimage/data/gravel.png, 512x512. CC0Textures "Gravel04", CC0
               (rescaled, cropped, grey by scikit-image).

(The licences are those stated in the docstrings of `skimage.data.astronaut`,
`chelsea`, `coffee`, `rocket`, `brick`, `grass` and `gravel`, scikit-image
0.26.) Every tile is a random square crop (side drawn from a range of
fractions of a grid cell) of one photograph, resized with antialiasing to
`size` pixels, with a random horizontal flip. Each photograph is cut into a
`grid x grid` array of cells; a fixed, diagonal set of cells (one per row and
per column) gives the validation tiles and the other cells the training
tiles, so no validation pixel was ever seen in training, while both splits
sample every part of the picture. The task is learnable (the photographs
differ in colour, texture and content) but not trivial at 32 px: tiles of
sky, wood, cloth and fur look alike across classes, and a nearest-colour
classifier stays far below 100% (see `colour_baseline`).

Everything is a deterministic function of the arguments (numpy's
`default_rng(seed)`, Pillow's resize and JPEG encoder).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

SETS = {
    "photos": {
        "astronaut": "astronaut.png",
        "cat": "chelsea.png",
        "coffee": "coffee.png",
        "rocket": "rocket.jpg",
    },
    "textures": {
        "brick": "brick.png",
        "grass": "grass.png",
        "gravel": "gravel.png",
    },
}


def skimage_data_dir() -> Path | None:
    """The folder of scikit-image's bundled images, or None if it is not installed.

    Found without importing scikit-image (only its files are read).
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if (folder / "astronaut.png").is_file() else None


def load_source(filename: str) -> np.ndarray:
    """One bundled photograph as a `(h, w, 3)` uint8 array (grey images repeated)."""
    from PIL import Image

    folder = skimage_data_dir()
    if folder is None:
        raise ImportError(
            "the real-image fixture needs scikit-image's bundled photographs: "
            "pip install scikit-image (or pip install -e '.[test]')"
        )
    with Image.open(folder / filename) as im:
        return np.asarray(im.convert("RGB"))


def _cells(shape, grid):
    """[(row, col, y0, y1, x0, x1)] of a `grid x grid` split of an image."""
    h, w = shape[:2]
    ys = np.linspace(0, h, grid + 1).astype(int)
    xs = np.linspace(0, w, grid + 1).astype(int)
    return [(r, c, ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(grid) for c in range(grid)]


def _is_validation_cell(row, col, grid):
    # One cell per row and per column: a wrapped diagonal, shifted so that it
    # does not sit on the corners only.
    return (row + col) % grid == grid // 2


def make_tiles(
    image: np.ndarray,
    count: int,
    *,
    split: str,
    size: int,
    grid: int = 4,
    scale: tuple[float, float] = (0.5, 1.0),
    rng: np.random.Generator,
) -> np.ndarray:
    """`count` random square tiles of `image` from the training or validation cells.

    Args:
        image: `(h, w, 3)` uint8.
        count: int, how many tiles.
        split: `"train"` or `"val"`: which cells the crops come from.
        size: int, the tiles' side in pixels.
        grid: int, the image is cut into `grid x grid` cells. Defaults to 4.
        scale: the crop's side as a fraction of the cell's smaller side,
            drawn uniformly from this range. Defaults to `(0.5, 1.0)`.
        rng: a `numpy.random.Generator`.

    Returns:
        `(count, size, size, 3)` uint8.
    """
    from PIL import Image

    if split not in ("train", "val"):
        raise ValueError(f"`split` must be 'train' or 'val'. Received: split={split!r}")
    cells = [
        cell for cell in _cells(image.shape, grid)
        if _is_validation_cell(cell[0], cell[1], grid) == (split == "val")
    ]
    out = np.empty((count, size, size, 3), dtype="uint8")
    for i in range(count):
        _, _, y0, y1, x0, x1 = cells[rng.integers(len(cells))]
        side = int(round(rng.uniform(*scale) * min(y1 - y0, x1 - x0)))
        side = max(side, 8)
        y = int(rng.integers(y0, y1 - side + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        crop = Image.fromarray(image[y : y + side, x : x + side])
        tile = np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS))
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        out[i] = tile
    return out


def write_photo_folder(
    root: str | os.PathLike,
    *,
    classes: str = "photos",
    train_per_class: int = 240,
    val_per_class: int = 60,
    size: int = 32,
    grid: int = 4,
    seed: int = 0,
    image_format: str = "jpg",
) -> dict:
    """Writes `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg` tiles of real photographs.

    With the defaults: 4 classes, 240 training and 60 validation JPEG tiles
    of 32x32 per class (960 / 240 in all, the size of the folder in issue
    14), written in about a second.

    Args:
        root: the folder to create (its parents too); existing files with
            the same names are overwritten.
        classes: `"photos"` (4 RGB photographs) or `"textures"` (3 grey
            textures); see the module docstring. Defaults to `"photos"`.
        train_per_class: int. Defaults to `240`.
        val_per_class: int. Defaults to `60`.
        size: int, the tiles' side in pixels. Defaults to `32`.
        grid: int, cells per side; see `make_tiles`. Defaults to `4`.
        seed: int. Defaults to `0`.
        image_format: `"jpg"` (quality 90) or `"png"`. Defaults to `"jpg"`.

    Returns:
        `{"root": str, "class_names": [...], "num_train": int,
        "num_validation": int, "size": int}`.
    """
    from PIL import Image

    if classes not in SETS:
        raise ValueError(
            f"`classes` must be one of {', '.join(map(repr, SETS))}. Received: classes={classes!r}"
        )
    if image_format not in ("jpg", "png"):
        raise ValueError(
            f"`image_format` must be 'jpg' or 'png'. Received: image_format={image_format!r}"
        )
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = sorted(SETS[classes])
    for name in names:
        image = load_source(SETS[classes][name])
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, tile in enumerate(make_tiles(image, count, split=split, size=size, grid=grid, rng=rng)):
                path = folder / f"{name}_{i:04d}.{image_format}"
                if image_format == "jpg":
                    Image.fromarray(tile).save(path, quality=90)
                else:
                    Image.fromarray(tile).save(path)
    return {
        "root": str(root),
        "class_names": names,
        "num_train": train_per_class * len(names),
        "num_validation": val_per_class * len(names),
        "size": size,
    }


def read_photo_folder(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """`(images uint8 (n, h, w, 3), labels int64 (n,), class_names)` of one split of a tree."""
    from PIL import Image

    folder = Path(root) / split
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(names):
        for path in sorted((folder / name).iterdir()):
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype="int64"), names


def colour_baseline(root: str | os.PathLike) -> float:
    """Validation accuracy of a nearest-class-mean classifier on each tile's mean colour and
    standard deviation (6 numbers): how far colour statistics alone get on the tree."""
    x_train, y_train, _ = read_photo_folder(root, "train")
    x_val, y_val, _ = read_photo_folder(root, "val")

    def features(x):
        x = x.reshape(len(x), -1, 3).astype("float64")
        return np.concatenate([x.mean(1), x.std(1)], axis=1)

    f_train, f_val = features(x_train), features(x_val)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-9
    f_train, f_val = (f_train - mu) / sd, (f_val - mu) / sd
    centres = np.stack([f_train[y_train == k].mean(0) for k in range(int(y_train.max()) + 1)])
    pred = np.argmin(((f_val[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    return float((pred == y_val).mean())
