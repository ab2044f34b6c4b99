"""TensorFlow Datasets catalog data for `keras_se.data.load_data`: the builder lookup, a
quick check that a download's host answers (`NeedsNetworkError`), and the raw splits."""

from __future__ import annotations

import difflib
import socket
import threading
import urllib.parse

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_se.builtin_data import BUILTIN, BUILTIN_TFDS_NAME

# Seconds to wait for the download host of a TFDS dataset that is not prepared yet.
NETWORK_TIMEOUT_S = 3.0


def _image_and_label_keys(info, data):
    if info.supervised_keys and len(info.supervised_keys) == 2:
        return tuple(info.supervised_keys)
    image_key = label_key = None
    for key, feature in info.features.items():
        if isinstance(feature, tfds.features.Image) and image_key is None:
            image_key = key
        if isinstance(feature, tfds.features.ClassLabel) and label_key is None:
            label_key = key
    if image_key is None or label_key is None:
        raise ValueError(
            "`data` must be an image-classification dataset (an Image and a "
            f"ClassLabel feature). Received: data={data!r}"
        )
    return image_key, label_key


def tfds_builder(name: str, data_dir: str | None = None):
    """`tfds.builder(name)`, with unknown names raising a `ValueError`.

    Args:
        name: a TFDS catalog name, optionally with config and version
            (`"cifar10"`, `"tf_flowers:3.*.*"`), or `"builtin"`.
        data_dir: where TFDS keeps prepared datasets. Defaults to TFDS's
            own default (`~/tensorflow_datasets`).

    Returns:
        The `tfds.core.DatasetBuilder`.
    """
    if name == BUILTIN:
        name = BUILTIN_TFDS_NAME
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        base = name.split(":")[0].split("/")[0]
        near = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False), n=3)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        raise ValueError(
            f"`data` is neither 'builtin', an existing folder, nor a TensorFlow Datasets "
            f"name.{hint} Received: data={name!r}"
        ) from None


class NeedsNetworkError(ConnectionError):
    """A TFDS dataset must be downloaded, and its host cannot be reached."""


def _unreachable(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to `host:port` opens within `timeout` seconds, else why not.

    The name lookup happens in a daemon thread too, so a resolver that hangs
    costs `timeout` seconds, not its own.
    """
    outcome = {}

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = True
        except OSError as e:
            outcome["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if outcome.get("ok"):
        return None
    return outcome.get("error") or f"no answer within {timeout:g} s"


def _download_plan(builder):
    """(hosts as [(host, port)], number of files, total bytes or None) a builder downloads."""
    try:
        infos = dict(builder.url_infos or {})
    except Exception:  # noqa: BLE001 - a builder without registered checksums
        infos = {}
    hosts = []
    for url in infos:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if (parts.hostname, port) not in hosts:
                hosts.append((parts.hostname, port))
    sizes = [getattr(info, "size", None) for info in infos.values()]
    total = sum(int(s) for s in sizes) if sizes and all(s is not None for s in sizes) else None
    return hosts, len(infos), total


def _size_text(num_bytes):
    if num_bytes is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f", {num_bytes / scale:.0f} {unit}"
    return f", {num_bytes} bytes"


def check_can_download(builder, name: str) -> None:
    """Raises `NeedsNetworkError` when the hosts `builder` downloads from cannot be reached.

    Tries a TCP connection to each host of the builder's registered download
    URLs with a timeout of `NETWORK_TIMEOUT_S` seconds; returns as soon as one
    answers, and at once when the builder lists no URL (it generates its data
    locally, or downloads from places TFDS does not register).

    Args:
        builder: a `tfds.core.DatasetBuilder` that is not prepared yet.
        name: the dataset name as the user gave it, for the message.
    """
    hosts, files, total = _download_plan(builder)
    if not hosts:
        return
    reasons = []
    for host, port in hosts:
        reason = _unreachable(host, port, NETWORK_TIMEOUT_S)
        if reason is None:
            return
        reasons.append(f"{host}: {reason}")
    where = ", ".join(h for h, _ in hosts)
    what = f"{files} file{'s' if files != 1 else ''}{_size_text(total)} from {where}"
    raise NeedsNetworkError(
        f"`data` {name!r} is a TensorFlow Datasets dataset that is not prepared in "
        f"{builder.data_dir} and must be downloaded first ({what}), which needs the network, "
        f"and the network is unreachable ({'; '.join(reasons)}). On a machine with the network, "
        f"prepare it with `tfds build {name} --data_dir DIR` (or run this command there with "
        f"--data-dir DIR), copy DIR here and pass --data-dir DIR. Received: data={name!r}"
    )


def _load_tfds(name, val_split, data_dir, seed, download):
    builder = tfds_builder(name, data_dir)
    if name in (BUILTIN, BUILTIN_TFDS_NAME):
        builder.download_and_prepare()
    elif not builder.is_prepared():
        if not download:
            raise ValueError(
                f"`data` {name!r} is not prepared in {builder.data_dir} and downloading is off; "
                f"pass the --data-dir that holds a prepared copy. Received: data={name!r}"
            )
        check_can_download(builder, name)
        builder.download_and_prepare()
    info = builder.info
    image_key, label_key = _image_and_label_keys(info, name)
    label_feature = info.features[label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
        raise ValueError(
            "`data` must be an image-classification dataset; its label feature "
            f"{label_key!r} is not a ClassLabel. Received: data={name!r}"
        )
    splits = set(info.splits.keys())
    if "train" not in splits:
        raise ValueError(
            f"`data` has no 'train' split (it has {sorted(splits)}). Received: data={name!r}"
        )
    own_val = next((s for s in ("validation", "test") if s in splits), None)
    if val_split is None and own_val is not None:
        train_split, val_split_name = "train", own_val
    else:
        pct = int(round((val_split or 0.2) * 100))
        if not 0 < pct < 100:
            raise ValueError(
                "`val_split` rounds to 0% or 100% of the training split. "
                f"Received: val_split={val_split!r}"
            )
        train_split, val_split_name = f"train[{pct}%:]", f"train[:{pct}%]"

    def _load(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)

        def pick(example):
            image = example[image_key]
            if image.shape.rank == 3 and image.shape[-1] == 1:
                image = tf.image.grayscale_to_rgb(image)
            return image, tf.cast(example[label_key], "int64")

        n = int(info.splits[split].num_examples)
        return ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE), n

    train, n_train = _load(train_split)
    val, n_val = _load(val_split_name)
    names = list(label_feature.names)
    return train, val, names, n_train, n_val, f"tfds {builder.name} ({train_split} / {val_split_name})"
