"""Input preprocessing by name: what `keras_se.json` records and `--preprocess` takes.

`preprocess_function(name)` turns a recorded name into a function: none, a
`keras.applications` `preprocess_input` mode or family, or a keras-hub
`ImageConverter`'s rescaling as `{"scale": s, "offset": o}`. Which one a model
expects is `keras_se.models.default_preprocess(spec, weights)`; both are importable
from `keras_se.models`.

Keras and NumPy only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import numpy as np

__all__ = ["preprocess_function"]


def preprocess_function(name: str | dict | None) -> Callable | None:
    """The `preprocess_input` named `name`.

    `None`/`"none"`: no preprocessing (the model gets pixels in [0, 255]);
    `"tf"`, `"torch"`, `"caffe"`: `imagenet_utils.preprocess_input` modes; a
    `keras.applications` module name (`"mobilenet_v2"`, `"resnet"`): that
    family's `preprocess_input`; `{"scale": s, "offset": o}`: `x * s + o`, a
    number or one per channel each (a keras-hub `ImageConverter`'s rescaling;
    None skips it).
    """
    if isinstance(name, dict):
        return _scale_offset(name)
    if name in (None, "none"):
        return None
    if name in ("tf", "torch", "caffe"):
        return functools.partial(keras.applications.imagenet_utils.preprocess_input, mode=name)
    module = getattr(keras.applications, name, None)
    if module is None or not hasattr(module, "preprocess_input"):
        families = sorted(
            n
            for n in dir(keras.applications)
            if hasattr(getattr(keras.applications, n), "preprocess_input") and n != "imagenet_utils"
        )
        raise ValueError(
            "`preprocess` must be none, tf, torch, caffe or a keras.applications family "
            f"({', '.join(families)}). Received: preprocess={name!r}"
        )
    return module.preprocess_input


def _scale_offset(config: dict) -> Callable:
    unknown = sorted(set(config) - {"scale", "offset"})
    values = {}
    for key in ("scale", "offset"):
        value = config.get(key)
        try:
            values[key] = None if value is None else np.asarray(value, dtype="float32")
        except (TypeError, ValueError):
            unknown.append(key)
    if unknown or any(v is not None and v.ndim > 1 for v in values.values()):
        raise ValueError(
            "`preprocess` as a dict must be {'scale': s, 'offset': o}, each a number, one "
            f"per channel, or None. Received: preprocess={config!r}"
        )
    scale, offset = values["scale"], values["offset"]

    def preprocess(x):
        if scale is not None:
            x = x * scale
        if offset is not None:
            x = x + offset
        return x

    return preprocess
