"""keras-hub presets: load one and add SE (`from_preset`), and tell a MODEL argument
that names one (`resolve_hub_model`), for the command line and `keras_se.models`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_se.hub._access import PIP_HINT, hub_installed, keras_hub
from keras_se.hub.classes import SEBackbone, registered_name

#: The placement `from_preset(..., placement="auto")` uses for each keras-hub
#: backbone class: `(placement, select)`, as `keras_se.applications` places SE in
#: the matching `keras.applications` family. Other classes get `"post_activation"`.
HUB_PLACEMENTS = {
    "ResNetBackbone": ("residual", None),
    "XceptionBackbone": ("residual", None),
    "CSPNetBackbone": ("residual", None),
    "VGGBackbone": ("post_activation", None),
    "DenseNetBackbone": ("post_activation", None),
}

_PRESET_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")


def _read_json(preset, name):
    path = os.path.join(preset, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _auto_placement(base_class_name):
    short = base_class_name.split(">")[-1]
    if short.startswith("SE") and short[2:] in HUB_PLACEMENTS:
        short = short[2:]
    return HUB_PLACEMENTS.get(short, ("post_activation", None))


def from_preset(
    preset: str,
    placement: str = "auto",
    *,
    task: bool | str | type | None = None,
    task_kwargs: dict | None = None,
    load_weights: bool = True,
    ratio: int | Callable = 16,
    select: str | Sequence[str] | Callable | None = None,
    init: str = "identity",
    skip_existing: bool = True,
    return_report: bool = False,
    verbose: bool = False,
    **se_options: Any,
):
    """Loads a keras-hub preset with its weights, then adds SE blocks.

    The base weights load into the base model before the rewrite, which keeps
    them; with `init="identity"` the result computes exactly what the preset's
    model does. A preset that already holds an SE model (saved with
    `save_to_preset` from a keras-se model) loads as saved when
    `placement="auto"`.

    Args:
        preset: a keras-hub preset: a built-in name (`"resnet_50_imagenet"`,
            downloaded by keras-hub), a `kaggle://` / `hf://` handle, or a local
            preset folder.
        placement: one of `keras_se.PLACEMENTS`, or `"auto"`: the placement
            `HUB_PLACEMENTS` gives the backbone class (`"residual"` for ResNet,
            Xception and CSPNet, `"post_activation"` otherwise). Defaults to
            `"auto"`.
        task: None: the task the preset holds (its `task.json`), else its
            backbone; False: the backbone; True: the task (error if none); a
            Task class or its name (`"ImageClassifier"`): that task class's
            `from_preset`.
        task_kwargs: passed to the task's `from_preset` (`num_classes=6` makes
            a new head, as in keras-hub).
        load_weights: load the preset's weights. Defaults to `True`.
        ratio, select, init, skip_existing, return_report, verbose,
            **se_options: as in `keras_se.add_se_blocks`.

    Returns:
        The SE backbone or task, or `(model, report)` with `return_report=True`
        (the report is None when an SE preset is returned as saved).

    Example:

    >>> import keras_se
    >>> model = keras_se.from_preset("resnet_50_imagenet", "residual")  # doctest: +SKIP
    """
    kh = keras_hub("keras_se.from_preset")
    task_kwargs = dict(task_kwargs or {})
    local = os.path.isdir(preset)
    config = _read_json(preset, "config.json") if local else None
    task_config = _read_json(preset, "task.json") if local else None
    model = _load_preset(kh, preset, task, task_kwargs, load_weights, task_config)
    base_name = (config or {}).get("registered_name") or registered_name(
        type(model.backbone if isinstance(model, kh.models.Task) else model))
    already_se = "keras_se>" in base_name
    if placement == "auto":
        if already_se:
            return (model, None) if return_report else model
        placement, auto_select = _auto_placement(base_name)
        if select is None:
            select = auto_select
    from keras_se.rewrite import add_se_blocks

    return add_se_blocks(
        model, placement, ratio=ratio, select=select, init=init, skip_existing=skip_existing,
        return_report=return_report, verbose=verbose, **se_options,
    )


def _load_preset(kh, preset, task, task_kwargs, load_weights, task_config, **kwargs):
    """The preset's backbone or task; `kwargs` (`image_shape`) go to every loader."""
    if task is False:
        return kh.models.Backbone.from_preset(preset, load_weights=load_weights, **kwargs)
    if isinstance(task, str):
        cls = getattr(kh.models, task, None) or keras.saving.get_registered_object(task)
        if cls is None:
            raise ValueError(
                "`task` must be a keras_hub.models Task class name such as "
                f"'ImageClassifier'. Received: task={task!r}"
            )
        task = cls
    if isinstance(task, type):
        return task.from_preset(preset, load_weights=load_weights, **task_kwargs, **kwargs)
    if task_config is None and task is None and not os.path.isdir(preset):
        # A remote preset: keras-hub knows whether it has a task.
        with contextlib.suppress(FileNotFoundError, ValueError):
            from keras_hub.src.utils.preset_utils import load_json

            task_config = load_json(preset, "task.json")
    if task_config is None:
        if task is True or task_kwargs:
            raise ValueError(
                "The preset has no task.json: pass `task` (a Task class or its name, such as "
                "'ImageClassifier') to build a task around its backbone. Received: "
                f"preset={preset!r}, task={task!r}, task_kwargs={task_kwargs!r}"
            )
        return kh.models.Backbone.from_preset(preset, load_weights=load_weights, **kwargs)
    cls = keras.saving.get_registered_object(task_config["registered_name"])
    if cls is None:
        raise ValueError(
            f"The preset's task class {task_config['registered_name']!r} is not registered "
            f"with Keras. Received: preset={preset!r}"
        )
    return cls.from_preset(preset, load_weights=load_weights, **task_kwargs, **kwargs)


@dataclasses.dataclass
class HubPreset:
    """A MODEL argument that names a keras-hub preset (see `resolve_hub_model`).

    Attributes:
        preset: the preset as given (name, handle or folder).
        backbone_class: the backbone's registered name
            (`"keras_hub>ResNetBackbone"`; `"keras_se>SEResNetBackbone"` for an
            SE preset), or None until the preset is read (remote presets).
        task_class: the registered name in `task.json`, or None.
        has_se: the preset already holds SE blocks.
        image_size: `(height, width)` from the preset's image converter, or None.
        placement, select: what `placement="auto"` uses.
    """

    preset: str
    backbone_class: str | None = None
    task_class: str | None = None
    has_se: bool = False
    image_size: tuple | None = None
    placement: str = "post_activation"
    select: str | None = None

    def build(self, placement: str = "auto", **kwargs):
        """`keras_se.hub.from_preset(self.preset, placement, **kwargs)`."""
        return from_preset(self.preset, placement, **kwargs)

    def load(self, *, task: bool | str | type | None = None, load_weights: bool = True,
             task_kwargs: dict | None = None, **kwargs):
        """The preset's model as saved (no SE added).

        Args:
            task: as for `from_preset`: None for the preset's task (else its
                backbone), False for the backbone, a Task class or its name.
            load_weights: load the preset's weights.
            task_kwargs: passed to the task's `from_preset` (`num_classes`).
            **kwargs: passed to every `from_preset` (`image_shape`).
        """
        kh = keras_hub("Loading a keras-hub preset")
        config = _read_json(self.preset, "task.json") if os.path.isdir(self.preset) else None
        return _load_preset(kh, self.preset, task, dict(task_kwargs or {}), load_weights,
                            config, **kwargs)

    def model(self, *, include_top: bool = True, classes: int | None = None,
              input_shape: tuple | None = None, load_weights: bool = True):
        """The preset's model for a MODEL argument (`keras_se.models.build_model`).

        Args:
            include_top: the preset's task (its `task.json`), else its backbone;
                False: the backbone.
            classes: with `include_top`, a new head of that many classes: the
                preset's task class, or keras-hub's `ImageClassifier` for the
                backbone (without a preprocessor if the preset has no image
                converter).
            input_shape: `(height, width, channels)`, the backbone's `image_shape`.
            load_weights: load the preset's weights (else random ones).
        """
        kwargs = {} if input_shape is None else {"image_shape": tuple(input_shape)}
        task, task_kwargs = (None if include_top else False), {}
        if include_top and classes is not None:
            task_kwargs["num_classes"] = classes
            if self.task_class is None:
                task = "ImageClassifier"  # keras-hub finds the class for the backbone
                if os.path.isdir(self.preset) and self.preprocessing() == "none":
                    task_kwargs["preprocessor"] = None
        return self.load(task=task, load_weights=load_weights, task_kwargs=task_kwargs,
                         **kwargs)

    def preprocessing(self) -> dict | str:
        """`preset_preprocessing(self.preset)`."""
        return preset_preprocessing(self.preset)


def _plain_number(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def preset_preprocessing(preset: str) -> dict | str:
    """The input rescaling of a preset's `ImageConverter`: `{"scale": s, "offset": o}`.

    What `keras_se.models.preprocess_function` takes: `x * s + o` on RGB pixels
    in [0, 255], each a number, one per channel, or None. Resizing is left to
    whoever loads the images. `"none"` when the preset has no image converter.
    A local folder's `image_converter.json` is read; for a preset name or
    handle, keras-hub loads the converter (downloading the preset's files).
    """
    if os.path.isdir(preset):
        converter = _read_json(preset, "image_converter.json")
        config = (converter or {}).get("config")
    else:
        kh = keras_hub(f"The keras-hub preset {preset!r}")
        try:
            layer = kh.layers.ImageConverter.from_preset(preset)
        except (FileNotFoundError, ValueError):
            config = None
        else:
            config = {"scale": layer.scale, "offset": layer.offset}
    if not config or (config.get("scale") is None and config.get("offset") is None):
        return "none"
    return {"scale": _plain_number(config.get("scale")),
            "offset": _plain_number(config.get("offset"))}


def save_preset(model, directory: str, inputs) -> float:
    """`model.save_to_preset(directory)`, reloaded with keras-hub and compared.

    The preset is loaded back with the model class's `from_preset` (what
    `keras_hub.models.ImageClassifier.from_preset` or `Backbone.from_preset`
    picks for it) and both are called on `inputs`.

    Returns:
        The largest absolute difference between the outputs.
    """
    import numpy as np

    model.save_to_preset(directory)
    reloaded = type(model).from_preset(directory)
    a = keras.ops.convert_to_numpy(model(inputs, training=False))
    b = keras.ops.convert_to_numpy(reloaded(inputs, training=False))
    return float(np.max(np.abs(a.astype("float64") - b.astype("float64"))))


def resolve_hub_model(text: str) -> HubPreset | None:
    """Tells whether a MODEL argument names a keras-hub preset.

    For the command line: call it after the `keras.applications` names, the SE
    zoo names and `.keras` files, before "unknown model".

    Args:
        text: a local preset folder (a directory with a `config.json` written
            by `save_to_preset`), a `kaggle://` / `hf://` / `modelscope://` /
            `gs://` handle, or a keras-hub built-in preset name.

    Returns:
        A `HubPreset`, or None if `text` is none of these.

    Raises:
        ImportError: `text` is a preset folder or handle and keras-hub is not
            installed (the message says `pip install keras-se[hub]`).
    """
    if os.path.isdir(text):
        config = _read_json(text, "config.json")
        if not isinstance(config, dict) or "registered_name" not in config:
            return None
        keras_hub(f"The keras-hub preset {text!r}")
        task_config = _read_json(text, "task.json") or {}
        converter = _read_json(text, "image_converter.json") or {}
        size = (converter.get("config") or {}).get("image_size")
        name = config["registered_name"]
        placement, select = _auto_placement(name)
        return HubPreset(
            preset=text, backbone_class=name, task_class=task_config.get("registered_name"),
            has_se="keras_se>" in name, image_size=tuple(size) if size else None,
            placement=placement, select=select,
        )
    if text.startswith(_PRESET_SCHEMES):
        keras_hub(f"The keras-hub preset {text!r}")
        return HubPreset(preset=text)
    if not hub_installed():
        return None
    kh = keras_hub()
    presets = kh.models.Backbone.presets
    if text not in presets:
        return None
    # The most specific backbone class listing the preset (its presets include
    # those of its subclasses).
    classes = [c for c in set(keras.saving.get_custom_objects().values())
               if isinstance(c, type) and issubclass(c, kh.models.Backbone)
               and c is not kh.models.Backbone and not issubclass(c, SEBackbone)
               and text in c.presets]
    if not classes:
        return HubPreset(preset=text)
    cls = min(classes, key=lambda c: len(c.presets))
    name = registered_name(cls)
    placement, select = _auto_placement(name)
    return HubPreset(preset=text, backbone_class=name, placement=placement, select=select)


def hub_hint() -> str:
    """A hint for an unknown MODEL: how to get keras-hub presets, or ""."""
    if not hub_installed():
        return f" keras-hub presets need keras-hub: `{PIP_HINT}`."
    return ""
