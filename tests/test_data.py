"""keras_se.data: the builtin TFDS dataset, image folders, TFDS catalog datasets, the pipeline."""


import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_se import data as D


# ----------------------------------------------------------------- the drawings
def test_draw_builtin_example_is_deterministic_and_per_class():
    a = D.draw_builtin_example(2, np.random.default_rng([7, 3]))
    b = D.draw_builtin_example(2, np.random.default_rng([7, 3]))
    c = D.draw_builtin_example(2, np.random.default_rng([7, 4]))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10
    small = D.draw_builtin_example(0, np.random.default_rng(0), size=24)
    assert small.shape == (24, 24, 3)


def test_draw_builtin_example_rejects_bad_label():
    with pytest.raises(ValueError, match=r"`label` must be in \[0, 6\)\. Received: label=6"):
        D.draw_builtin_example(6, np.random.default_rng(0))


def test_builtin_foreground_is_brighter_than_background():
    # The property that makes the set learnable in a few epochs (see the docstring).
    for label in range(len(D.BUILTIN_CLASSES)):
        image = D.draw_builtin_example(label, np.random.default_rng([1, label])).astype(float)
        lum = image.mean(axis=-1)
        assert np.percentile(lum, 95) - np.percentile(lum, 5) > 60


# ----------------------------------------------------------- the TFDS builder
def test_builtin_loads_offline_with_tfds_load(builtin_tfds_dir):
    train, info = tfds.load(
        "keras_se_builtin", data_dir=builtin_tfds_dir, split="train", as_supervised=True, with_info=True
    )
    assert info.features["label"].names == list(D.BUILTIN_CLASSES)
    assert info.splits["train"].num_examples == D.BUILTIN_SPLITS["train"][0]
    assert info.splits["validation"].num_examples == D.BUILTIN_SPLITS["validation"][0]
    labels = np.array([int(lbl) for _, lbl in train])
    np.testing.assert_array_equal(np.bincount(labels), [300] * 6)


def test_builtin_examples_are_the_drawings(builtin_tfds_dir):
    # Lossless PNG: the stored bytes are exactly what draw_builtin_example makes.
    n, seed = D.BUILTIN_SPLITS["validation"]
    builder = tfds.builder("keras_se_builtin", data_dir=builtin_tfds_dir)
    ds = builder.as_dataset(split="validation", shuffle_files=False)
    found = {}
    for ex in ds.take(50):
        found[int(ex["label"])] = ex["image"].numpy()
    assert len(found) == 6
    drawn = [D.draw_builtin_example(i % 6, np.random.default_rng([seed, i])) for i in range(n)]
    for label, image in found.items():
        assert any(np.array_equal(image, d) for d in drawn[label::6])


def test_load_data_builtin_pipeline(builtin_tfds_dir):
    data = D.load_data(
        "builtin",
        image_size=40,
        batch_size=16,
        preprocess=keras.applications.mobilenet_v2.preprocess_input,
        data_dir=builtin_tfds_dir,
    )
    assert data.source == "builtin" and data.num_classes == 6
    assert (data.num_train, data.num_validation) == (1800, 600)
    x, y = next(iter(data.train))
    assert x.shape == (16, 40, 40, 3) and x.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    assert float(tf.reduce_max(x)) - float(tf.reduce_min(x)) > 1.0
    assert y.dtype == tf.int64 and set(y.numpy()) <= set(range(6))
    # Validation is neither shuffled nor augmented: two passes give the same batches.
    v1 = next(iter(data.validation))[0].numpy()
    v2 = next(iter(data.validation))[0].numpy()
    np.testing.assert_array_equal(v1, v2)


def test_load_data_augment_changes_train_images_only(builtin_tfds_dir):
    def first_batches(augment):
        data = D.load_data("builtin", image_size=32, batch_size=8, data_dir=builtin_tfds_dir,
                           augment=augment, cache=False, seed=3)
        (xt, yt), (xv, yv) = next(iter(data.train)), next(iter(data.validation))
        return xt.numpy(), yt.numpy(), xv.numpy(), yv.numpy()

    plain_x, plain_y, plain_vx, plain_vy = first_batches(False)
    aug_x, aug_y, aug_vx, aug_vy = first_batches(True)
    # The same shuffled examples (same seed), so the labels agree...
    np.testing.assert_array_equal(plain_y, aug_y)
    # ...but every training image is changed, and stays a valid image of the same size.
    assert aug_x.shape == plain_x.shape == (8, 32, 32, 3)
    assert all(np.abs(a - p).mean() > 1.0 for a, p in zip(aug_x, plain_x))
    assert 0.0 <= aug_x.min() and aug_x.max() <= 255.0
    # Validation images are never augmented.
    np.testing.assert_array_equal(plain_vx, aug_vx)
    np.testing.assert_array_equal(plain_vy, aug_vy)


def test_augment_image_keeps_shape_and_range():
    image = tf.constant(D.draw_builtin_example(0, np.random.default_rng(0)), tf.float32)
    out = D.augment_image(image)
    assert out.shape == image.shape
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0


# ------------------------------------------------------------- image folders
def test_folder_split_is_stratified_and_deterministic(tmp_path, image_folder):
    root = image_folder(tmp_path / "imgs", per_class=10)
    a = D.load_data(str(root), image_size=16, batch_size=64, val_split=0.2, seed=3)
    b = D.load_data(str(root), image_size=16, batch_size=64, val_split=0.2, seed=3)
    assert a.source == "folder" and a.class_names == ["a", "b", "c"]
    assert (a.num_train, a.num_validation) == (24, 6)
    xa, ya = next(iter(a.validation))
    xb, yb = next(iter(b.validation))
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(np.bincount(ya.numpy()), [2, 2, 2])
    assert xa.shape == (6, 16, 16, 3)


def test_folder_with_train_and_val_subfolders(tmp_path, image_folder):
    image_folder(tmp_path / "ds" / "train", per_class=4, ext=".jpg")
    image_folder(tmp_path / "ds" / "val", per_class=2)
    data = D.load_data(str(tmp_path / "ds"), image_size=16, batch_size=4)
    assert (data.num_train, data.num_validation) == (12, 6)
    assert "train/ and val/" in data.description


def test_folder_errors(tmp_path, image_folder):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"`data` folder does not exist: .*Received: data="):
        D.load_data(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"`data` folder holds no images"):
        D.load_data(str(tmp_path / "empty"))
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"`data` folder holds no images"):
        D.load_data(str(tmp_path / "noimg"))
    one = image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match=r"at least 2 classes .*'only'"):
        D.load_data(str(one))
    bad = image_folder(tmp_path / "bad")
    (bad / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"not a readable image: .*broken\.jpg"):
        D.load_data(str(bad))
    image_folder(tmp_path / "mis" / "train", classes=("a", "b"))
    image_folder(tmp_path / "mis" / "val", classes=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"different classes \(2 vs 3"):
        D.load_data(str(tmp_path / "mis"))
    tiny = image_folder(tmp_path / "tiny", per_class=1)
    with pytest.raises(ValueError, match=r"too few images"):
        D.load_data(str(tiny))
    afile = tmp_path / "file.png"
    afile.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"is a file"):
        D.load_data(str(afile))


def test_argument_errors(tmp_path, image_folder):
    root = image_folder(tmp_path / "imgs")
    with pytest.raises(ValueError, match=r"`val_split` must be a fraction .*Received: val_split=1\.5"):
        D.load_data(str(root), val_split=1.5)
    with pytest.raises(ValueError, match=r"`image_size` must be .*Received: image_size=0"):
        D.load_data(str(root), image_size=0)
    with pytest.raises(ValueError, match=r"`image_size` must be .*Received: image_size=\(1, 2, 3\)"):
        D.load_data(str(root), image_size=(1, 2, 3))
    with pytest.raises(TypeError, match=r"`data` must be .*Received: data=3"):
        D.load_data(3)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive int. Received: batch_size=0"):
        D.load_data(str(root), batch_size=0)


# ------------------------------------------------------------- TFDS catalog
class KerasSeTestGray(tfds.core.GeneratorBasedBuilder):
    """A tiny grayscale set with only a train split: the generic TFDS path."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(12, 12, 1)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(40):
            value = 30 if i % 2 == 0 else 220
            yield i, {"image": np.full((12, 12, 1), value, np.uint8), "label": i % 2}


def test_tfds_catalog_path_with_a_local_builder(tmp_path):
    data = D.load_data("keras_se_test_gray", image_size=8, batch_size=64, data_dir=str(tmp_path))
    assert data.source == "tfds" and data.class_names == ["dark", "light"]
    # No validation split of its own: 20% of train is held out.
    assert (data.num_train, data.num_validation) == (32, 8)
    x, y = next(iter(data.validation))
    assert x.shape == (8, 8, 8, 3)  # grayscale became RGB
    bright = x.numpy().mean(axis=(1, 2, 3)) > 128
    np.testing.assert_array_equal(bright, y.numpy() == 1)


def test_unknown_tfds_name_lists_near_matches():
    with pytest.raises(ValueError, match=r"Did you mean: .*mnist.*Received: data='mnsit'"):
        D.load_data("mnsit")
