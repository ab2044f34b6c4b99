"""Input pipelines for fine-tuning: the builtin dataset, image folders, TFDS.

Three kinds of `data` are understood by `load_data`:

- `"builtin"`: `keras_se_builtin`, a small image-classification dataset that
  keras-se draws itself (`keras_se.builtin_data`) (six classes of shapes and textures with random
  colours, positions, sizes and noise). It is a proper TFDS dataset builder,
  so `tfds.load("keras_se_builtin")` works offline once `keras_se` is
  imported; generation is deterministic and takes a few seconds.
- a path to a folder of images with one sub-folder per class (or a folder
  with `train/` and `val/` (or `validation/`, `test/`) sub-folders, each
  holding the class sub-folders).
- any TensorFlow Datasets catalog name (`tf_flowers`, `cifar10`, ...): TFDS
  downloads and prepares it, which needs the network the first time. When
  the dataset is not prepared in `data_dir` yet, the download's host is tried
  first with a short timeout; when it cannot be reached, `NeedsNetworkError`
  says so in one line (what was being fetched, from where, and how to point
  `data_dir` at a copy prepared elsewhere) instead of TFDS's retries. That
  part is `keras_se.tfds_data`; its public names are re-exported here.

The pipeline is plain `tf.data`: decode, resize, cache (as uint8, after the
resize), shuffle, optional augmentation, batch, the model family's
`preprocess_input`, prefetch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_se import tfds_data
from keras_se.builtin_data import (  # noqa: F401  (registers the TFDS builder; re-exported)
    BUILTIN,
    BUILTIN_CLASSES,
    BUILTIN_IMAGE_SIZE,
    BUILTIN_SPLITS,
    BUILTIN_TFDS_NAME,
    KerasSeBuiltin,
    draw_builtin_example,
)
from keras_se.tfds_data import (  # noqa: F401  (re-exported, as before the split)
    NeedsNetworkError,
    check_can_download,
    tfds_builder,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_VAL_DIR_NAMES = ("val", "validation", "test")


# --------------------------------------------------------------------------
# Raw sources: (unbatched dataset of (uint8 image, int label), size) pairs.
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Data:
    """Batched train and validation pipelines and what they hold.

    Attributes:
        train: `tf.data.Dataset` of `(images, labels)` batches, shuffled and
            (optionally) augmented, preprocessed for the model.
        validation: the same for validation, neither shuffled nor augmented.
        class_names: list of str, index = label.
        num_train: int, number of training examples.
        num_validation: int, number of validation examples.
        source: str, `"builtin"`, `"folder"` or `"tfds"`.
        description: str, a one-line description of where the data came from.
        unaugmented_train: the training images as the model sees them at
            inference (no augmentation, not cached), for re-estimating
            BatchNorm statistics after training; None if not built.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: list
    num_train: int
    num_validation: int
    source: str
    description: str
    unaugmented_train: tf.data.Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _check_val_split(val_split):
    if val_split is None:
        return
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not (
        0 < val_split < 1
    ):
        raise ValueError(
            "`val_split` must be a fraction strictly between 0 and 1, or None "
            f"to use the dataset's own validation split. Received: val_split={val_split!r}"
        )


def _list_class_folder(root):
    """Returns (class_names, [(path, label), ...]) for a one-folder-per-class tree."""
    class_names = sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    )
    files, kept = [], []
    for name in class_names:
        folder = os.path.join(root, name)
        paths = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                    paths.append(os.path.join(dirpath, f))
        if paths:
            files.extend((p, len(kept)) for p in paths)
            kept.append(name)
    return kept, files


def _check_images_readable(files, data):
    """Raises ValueError naming the first file that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    for path, _ in files:
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(
                f"`data` folder holds a file that is not a readable image: {path} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}). "
                f"Remove or fix it. Received: data={data!r}"
            ) from None


def _decode_file(path, label):
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image, label


def _paths_dataset(files):
    paths = [p for p, _ in files]
    labels = np.array([lbl for _, lbl in files], dtype="int64")
    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
        _decode_file, num_parallel_calls=tf.data.AUTOTUNE
    )


def _split_per_class(files, val_split, seed):
    """A deterministic stratified split of (path, label) pairs."""
    rng = np.random.default_rng(seed)
    by_class = {}
    for item in files:
        by_class.setdefault(item[1], []).append(item)
    train, val = [], []
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_val = int(round(len(items) * val_split))
        if len(items) >= 2:
            n_val = min(max(n_val, 1), len(items) - 1)
        else:
            n_val = 0
        val.extend(items[i] for i in order[:n_val])
        train.extend(items[i] for i in order[n_val:])
    return train, val


def _folder_files(path, val_split, seed, check_images):
    """(train files, validation files, class names, description) of an image folder."""
    data = path
    if not os.path.exists(path):
        raise ValueError(f"`data` folder does not exist: {path}. Received: data={data!r}")
    if not os.path.isdir(path):
        raise ValueError(
            f"`data` must be 'builtin', a TFDS name or a folder of images; {path} is "
            f"a file. Received: data={data!r}"
        )
    subdirs = {d.lower(): d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))}
    val_dir = next((subdirs[n] for n in _VAL_DIR_NAMES if n in subdirs), None)
    if "train" in subdirs and val_dir is not None and val_split is None:
        classes, train_files = _list_class_folder(os.path.join(path, subdirs["train"]))
        val_classes, val_files = _list_class_folder(os.path.join(path, val_dir))
        if classes != val_classes:
            raise ValueError(
                f"`data` folder's train/ and {val_dir}/ hold different classes "
                f"({len(classes)} vs {len(val_classes)}: {classes} vs {val_classes}). "
                f"Received: data={data!r}"
            )
        description = f"folder {path} (train/ and {val_dir}/)"
    else:
        classes, files = _list_class_folder(path)
        train_files = files
        val_files = None
        description = f"folder {path}"
    if not classes or not train_files:
        raise ValueError(
            f"`data` folder holds no images: expected one sub-folder per class with "
            f"{', '.join(IMAGE_EXTENSIONS)} files in {path}. Received: data={data!r}"
        )
    if len(classes) < 2:
        raise ValueError(
            f"`data` folder must hold at least 2 classes (one sub-folder each); found "
            f"only {classes[0]!r} in {path}. Received: data={data!r}"
        )
    if check_images:
        _check_images_readable(train_files + (val_files or []), data)
    if val_files is None:
        train_files, val_files = _split_per_class(train_files, val_split or 0.2, seed)
    if not val_files:
        raise ValueError(
            f"`data` folder {path} has too few images to hold out a validation split "
            f"(at least 2 per class are needed). Received: data={data!r}"
        )
    return train_files, val_files, classes, description


def _load_folder(path, val_split, seed, check_images):
    train_files, val_files, classes, description = _folder_files(
        path, val_split, seed, check_images
    )
    return (
        _paths_dataset(train_files),
        _paths_dataset(val_files),
        classes,
        len(train_files),
        len(val_files),
        description,
    )


@dataclasses.dataclass(frozen=True)
class DataProbe:
    """What is known of a dataset before its pipeline is built.

    Attributes:
        num_train: int, training examples (after `val_split`).
        image_size: `(height, width)` shared by (nearly) all images, or None
            when they differ or it is unknown.
        source: `"builtin"`, `"folder"` or `"tfds"`.
    """

    num_train: int
    image_size: tuple | None
    source: str


def _is_path(data: str) -> bool:
    return os.sep in data or data.startswith(".") or os.path.exists(data)


def probe_data(
    data: str = BUILTIN, *, val_split: float | None = None, seed: int = 0,
    data_dir: str | None = None,
) -> DataProbe:
    """How many training images `data` has and their own size, reading no pixels.

    For choosing a run's defaults before `load_data` builds the pipeline
    (`keras_se.defaults.plan_defaults`): a folder's file headers are read
    (`keras_se.defaults.folder_image_size`), a TFDS dataset's metadata.

    Raises:
        ValueError: for what `load_data` would refuse (a missing folder, an
            unknown name).

    Example:

    >>> from keras_se.data import probe_data
    >>> probe_data("builtin")
    DataProbe(num_train=1800, image_size=(64, 64), source='builtin')
    """
    from keras_se.defaults import folder_image_size

    data = os.fspath(data)
    _check_val_split(val_split)
    if data in (BUILTIN, BUILTIN_TFDS_NAME):
        n = BUILTIN_SPLITS["train"][0]
        if val_split is not None:
            n -= int(round(n * val_split))
        return DataProbe(n, (BUILTIN_IMAGE_SIZE, BUILTIN_IMAGE_SIZE), "builtin")
    if _is_path(data):
        train_files, _, _, _ = _folder_files(data, val_split, seed, check_images=False)
        size = folder_image_size([p for p, _ in train_files])
        return DataProbe(len(train_files), size, "folder")
    info = tfds_data.tfds_builder(data, data_dir).info
    image_key, _ = tfds_data._image_and_label_keys(info, data)
    shape = tuple(info.features[image_key].shape or ())[:2]
    size = shape if len(shape) == 2 and all(isinstance(d, int) for d in shape) else None
    splits = info.splits
    n = int(splits["train"].num_examples) if "train" in splits else 0
    own_val = any(s in splits for s in ("validation", "test"))
    if val_split is not None or not own_val:
        n -= int(round(n * (val_split or 0.2)))
    return DataProbe(max(n, 1), size, "tfds")


# --------------------------------------------------------------------------
# The pipeline.
# --------------------------------------------------------------------------
def _as_size(image_size):
    size = image_size
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair of positive "
            f"ints. Received: image_size={image_size!r}"
        )
    return tuple(size)


def augment_image(image, seed=None):
    """Light, label-preserving augmentation of one float32 image in [0, 255].

    Random horizontal flip, a random translation of up to 1/8 of the size
    (pad by reflection, then crop) and a small brightness/contrast jitter.
    """
    h, w = image.shape[0], image.shape[1]
    image = tf.image.random_flip_left_right(image, seed=seed)
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = tf.pad(image, [[ph, ph], [pw, pw], [0, 0]], mode="REFLECT")
    image = tf.image.random_crop(padded, [h, w, 3], seed=seed)
    image = tf.image.random_brightness(image, 20.0, seed=seed)
    image = tf.image.random_contrast(image, 0.8, 1.2, seed=seed)
    return tf.clip_by_value(image, 0.0, 255.0)


def make_pipeline(
    dataset: tf.data.Dataset,
    *,
    image_size=224,
    batch_size: int = 32,
    preprocess: Callable | None = None,
    training: bool = False,
    augment: bool = False,
    cache: bool | str = True,
    shuffle_buffer: int = 10_000,
    seed: int | None = 0,
) -> tf.data.Dataset:
    """Turns `(uint8 image, label)` examples into model-ready batches.

    Args:
        dataset: unbatched `tf.data.Dataset` of `(image, label)`; images of
            any size, 3 channels.
        image_size: int or `(height, width)`. Defaults to `224`.
        batch_size: int. Defaults to `32`.
        preprocess: the model family's `preprocess_input` (applied to
            float32 batches in [0, 255]), or None. Defaults to `None`.
        training: bool; shuffles (and augments if `augment`). Defaults to
            `False`.
        augment: bool, applies `augment_image` when training. Defaults to
            `False`.
        cache: `True` caches the resized uint8 images in memory, a str
            caches them to that file, `False` does not cache. Defaults to
            `True`.
        shuffle_buffer: int. Defaults to `10_000`.
        seed: int or None, the shuffle and augmentation seed. Defaults to
            `0`.

    Returns:
        A batched, prefetched `tf.data.Dataset`.
    """
    size = _as_size(image_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")

    def resize(image, label):
        image = tf.image.resize(tf.cast(image, "float32"), size, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), "uint8"), label

    ds = dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def to_float(image, label):
        image = tf.cast(image, "float32")
        if training and augment:
            image = augment_image(image, seed=None)
        return image, label

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if preprocess is not None:

        def prep(images, labels):
            return preprocess(images), labels

        ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_data(
    data: str = BUILTIN,
    *,
    image_size=224,
    batch_size: int = 32,
    preprocess: Callable | None = None,
    val_split: float | None = None,
    augment: bool = False,
    cache: bool | str = True,
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = True,
    check_images: bool = True,
) -> Data:
    """Loads an image-classification dataset as train and validation batches.

    Args:
        data: `"builtin"`, a folder of images (one sub-folder per class) or a
            TFDS catalog name. Defaults to `"builtin"`.
        image_size: int or `(height, width)`, the model's input size.
            Defaults to `224`.
        batch_size: int. Defaults to `32`.
        preprocess: the family's `preprocess_input` or None. Defaults to
            `None`.
        val_split: fraction of the training data held out for validation,
            or None to use the dataset's own validation (or test) split,
            falling back to 0.2. Defaults to `None`.
        augment: bool, augment the training images. Defaults to `False`.
        cache: see `make_pipeline`. Defaults to `True`.
        seed: int, for the split, shuffling and augmentation. Defaults to
            `0`.
        data_dir: TFDS data directory. Defaults to TFDS's default.
        download: bool, let TFDS download and prepare a catalog dataset.
            Defaults to `True`.
        check_images: bool, open every file of a folder once to report
            unreadable images up front. Defaults to `True`.

    Returns:
        A `Data`.

    Example:

    >>> import keras_se
    >>> data = keras_se.load_data("builtin", image_size=32, batch_size=8,
    ...                           data_dir="/tmp/tfds")  # doctest: +SKIP
    >>> data.class_names[:3]  # doctest: +SKIP
    ['circle', 'square', 'triangle']
    """
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise TypeError(
            "`data` must be 'builtin', a folder path or a TFDS name (a str). "
            f"Received: data={data!r}"
        )
    data = os.fspath(data)
    _check_val_split(val_split)
    size = _as_size(image_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    looks_like_path = _is_path(data)
    if data == BUILTIN or data == BUILTIN_TFDS_NAME:
        train, val, names, n_train, n_val, desc = tfds_data._load_tfds(
            BUILTIN_TFDS_NAME, val_split, data_dir, seed, True
        )
        source = "builtin"
    elif looks_like_path:
        train, val, names, n_train, n_val, desc = _load_folder(data, val_split, seed, check_images)
        source = "folder"
    else:
        train, val, names, n_train, n_val, desc = tfds_data._load_tfds(data, val_split, data_dir, seed, download)
        source = "tfds"
    common = dict(image_size=size, batch_size=batch_size, preprocess=preprocess)
    train_cache, val_cache = cache, cache
    if isinstance(cache, str):
        train_cache, val_cache = f"{cache}.train", f"{cache}.validation"
    return Data(
        train=make_pipeline(
            train, training=True, augment=augment, seed=seed, cache=train_cache, **common
        ),
        validation=make_pipeline(val, training=False, cache=val_cache, **common),
        class_names=names,
        num_train=n_train,
        num_validation=n_val,
        source=source,
        description=desc,
        unaugmented_train=make_pipeline(train, training=False, cache=False, **common),
    )
