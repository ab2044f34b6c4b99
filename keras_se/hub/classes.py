"""The SE classes: `SE<Base>` for each keras-hub backbone, task, preprocessor, converter.

A retrofitted backbone is an instance of a registered subclass of its own class
(`SEResNetBackbone` for a `ResNetBackbone`): its config is the base backbone's
config plus `base_class` and `se` (the `add_se_blocks` arguments), and
`from_config` rebuilds the base from its arguments and rewrites it again. Tasks,
preprocessors and image converters tied to a backbone class get an `SE<Name>`
subclass whose `backbone_cls` is the SE backbone class, which is how keras-hub's
`from_preset` finds them. Every class is registered with Keras as
`keras_se>SE<Name>` once keras_hub is imported (`install_import_hook`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.abc
import json
import os
import re
import sys

import keras

from keras_se import _keras_compat as compat
from keras_se.hub._access import GIVEN_BASE, hub_loaded, keras_hub
from keras_se.hub._specs import normalize_specs, plain_rewrite
from keras_se.layers import SqueezeExcite
from keras_se.sites import is_container

#: The package the classes are exposed in (`keras_se.hub.SEResNetBackbone`).
_PACKAGE = "keras_se.hub"

_SE_BACKBONE_CLASSES: dict[type, type] = {}
_SE_COMPANION_CLASSES: dict[type, type] = {}


def registered_name(cls) -> str:
    return keras.saving.get_registered_name(cls)


@dataclasses.dataclass
class _SEData:
    """An SE backbone's SE arguments (one dict per rewrite) and its base's config."""

    specs: list
    base_config: dict


class SEBackbone:
    """Mixin of the SE backbone classes (`SEResNetBackbone`, `SEVGGBackbone`, ...).

    Do not instantiate it directly: `keras_se.add_se_blocks(backbone, ...)`
    returns an instance of `se_backbone_class(type(backbone))`, and
    `from_config` / `from_preset` rebuild one. The class derives from the base
    backbone class, so `isinstance(se, keras_hub.models.ResNetBackbone)` holds
    and the base's attributes (`image_shape`, `data_format`,
    `stackwise_num_filters`, ...) are there.

    Args:
        se: the SE arguments: a dict with `placement`, `select`, `ratio`,
            `init`, `skip_existing` and `SqueezeExcite` options (`squeeze`,
            `gate`, ...), as `add_se_blocks` takes them; or a list of such
            dicts, applied in order (SE added to an SE backbone).
        base_class: the base backbone's registered name
            (`"keras_hub>ResNetBackbone"`); checked against the class.
        **kwargs: the base backbone's constructor arguments (with `name`,
            `dtype`, `trainable`).

    Attributes:
        se_config: the list of SE argument dicts.
        se_report: the `SEReport` of the last rewrite of this instance.
        base_config: the base backbone's config (without `name`, `dtype`,
            `trainable`).
    """

    _se_base_class: type | None = None

    def __init__(self, se=None, base_class=None, **kwargs):
        kh = keras_hub("An SE keras-hub backbone")
        base_cls = type(self)._se_base_class
        if base_cls is None:
            raise TypeError(
                "`SEBackbone` is a mixin; use `keras_se.add_se_blocks(backbone)` or "
                "`keras_se.hub.se_backbone_class(BackboneClass)`. "
                f"Received: class {type(self).__name__}"
            )
        expected = registered_name(base_cls)
        if base_class is not None and base_class != expected:
            raise ValueError(
                f"`base_class` must be {expected!r} for {type(self).__name__}. "
                f"Received: base_class={base_class!r}"
            )
        new_specs = normalize_specs(se)
        given = GIVEN_BASE.get()
        if given is not None:
            base = given
            name = kwargs.get("name", base.name)
            dtype = kwargs.get("dtype", base.dtype_policy)
            trainable = kwargs.get("trainable", base.trainable)
        else:
            base = base_cls(**kwargs)
            name, dtype = base.name, kwargs.get("dtype")
            trainable = kwargs.get("trainable", True)
        if isinstance(base, SEBackbone):  # SE on an SE backbone: the specs stack up
            specs = list(base._se_specs) + new_specs
            base_config = dict(base._se_base_config)
        else:
            specs = new_specs
            base_config = base.get_config()
        model, report = base, None
        for spec in new_specs:
            model, report = plain_rewrite(model, spec)
        kh.models.Backbone.__init__(
            self, inputs=model.input, outputs=model.output, name=name, dtype=dtype,
            trainable=trainable,
        )
        if hasattr(model, "output_names"):
            self.output_names = list(model.output_names)
        # Kept in a plain object: Keras wraps a list or dict assigned to a layer in a
        # tracked one that points back to the layer, and deep-copying that (as the
        # config properties do) pickled the whole model, several times per save.
        self._se_data = _SEData(specs, {
            k: v for k, v in base_config.items() if k not in ("name", "dtype", "trainable")
        })
        self._se_report = report
        _copy_plain_attributes(base, self)
        if getattr(base, "pyramid_outputs", None):
            self.pyramid_outputs = _map_pyramid(base.pyramid_outputs, self, report)
        for site in report.sites:  # the report must not keep the base's layers alive
            site._anchor_layer = None

    # ------------------------------------------------------------------ config
    @property
    def _se_specs(self) -> list[dict]:
        return self._se_data.specs

    @property
    def _se_base_config(self) -> dict:
        return self._se_data.base_config

    @property
    def se_config(self) -> list[dict]:
        return copy.deepcopy(self._se_specs)

    @property
    def se_report(self):
        return self._se_report

    @property
    def base_config(self) -> dict:
        return copy.deepcopy(self._se_base_config)

    def get_config(self):
        kh = keras_hub()
        config = dict(self._se_base_config)
        config.update(kh.models.Backbone.get_config(self))  # name, trainable, dtype
        config["base_class"] = registered_name(type(self)._se_base_class)
        specs = copy.deepcopy(self._se_specs)
        config["se"] = specs[0] if len(specs) == 1 else specs
        return config

    def base_backbone(self):
        """A new instance of the base backbone class, from `base_config`, random init."""
        base_cls = type(self)._se_base_class
        config = dict(self._se_base_config)
        config["dtype"] = self.dtype_policy
        return base_cls.from_config(config)

    # ----------------------------------------------------------------- weights
    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads SE weights, or the base backbone's weights.

        A file saved from this SE backbone (or one with the same config) loads
        as in Keras. A file saved from the base backbone (no SE layers in it,
        such as a base preset's `model.weights.h5`) loads into the base layers
        (`load_base_weights`); the SE layers keep their values.
        """
        if not skip_mismatch and _holds_se_weights(filepath) is False:
            return self.load_base_weights(filepath)
        return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def load_base_weights(self, filepath):
        """Loads a base backbone's weights file into the base layers.

        The file is loaded into a fresh base backbone built from
        `base_config`, which is then rewritten with this backbone's SE config
        (the rewrite keeps every weight): the result has this backbone's graph,
        built the same way, so its weights line up with this backbone's one by
        one. They are copied, except those of the SE layers, which keep their
        values (identity at initialisation).
        """
        base = self.base_backbone()
        base.load_weights(filepath)
        token = GIVEN_BASE.set(base)
        try:
            twin = type(self)(se=self.se_config)
        finally:
            GIVEN_BASE.reset(token)
        _copy_weights_except_se(twin, self)


def se_backbone_class(base_cls: type) -> type:
    """The registered SE subclass of a keras-hub backbone class (made once).

    Args:
        base_cls: a `keras_hub.models.Backbone` subclass, e.g.
            `keras_hub.models.ResNetBackbone`.

    Returns:
        `SE<Name>`, a subclass of `SEBackbone` and `base_cls`, registered with
        Keras as `keras_se>SE<Name>`.
    """
    kh = keras_hub()
    if isinstance(base_cls, type) and issubclass(base_cls, SEBackbone):
        return base_cls
    if not (isinstance(base_cls, type) and issubclass(base_cls, kh.models.Backbone)
            and base_cls is not kh.models.Backbone):
        raise TypeError(
            "`base_cls` must be a keras_hub.models.Backbone subclass. "
            f"Received: base_cls={base_cls!r}"
        )
    cls = _SE_BACKBONE_CLASSES.get(base_cls)
    if cls is None:
        name = "SE" + base_cls.__name__
        cls = type(name, (SEBackbone, base_cls), {
            "__module__": _PACKAGE,
            "__qualname__": name,
            "_se_base_class": base_cls,
            "__doc__": f"`{base_cls.__name__}` with SE blocks (see `keras_se.hub.SEBackbone`).",
        })
        cls = _register(cls, name)
        _SE_BACKBONE_CLASSES[base_cls] = cls
    return cls


def se_task_class(task_cls: type) -> type:
    """The registered SE subclass of a keras-hub task class (made once).

    Its `backbone_cls` is the SE class of the task's `backbone_cls`, which is
    how keras-hub's `Task.from_preset` picks the task class for a preset, so
    `ImageClassifier.from_preset(dir)` and `ResNetImageClassifier.from_preset(dir)`
    find it.

    Args:
        task_cls: a `keras_hub.models.Task` subclass with a `backbone_cls`,
            e.g. `keras_hub.models.ResNetImageClassifier`.

    Returns:
        `SE<Name>`, registered with Keras as `keras_se>SE<Name>`.
    """
    kh = keras_hub()
    if not (isinstance(task_cls, type) and issubclass(task_cls, kh.models.Task)):
        raise TypeError(
            "`task_cls` must be a keras_hub.models.Task subclass with a `backbone_cls`. "
            f"Received: task_cls={task_cls!r}"
        )
    return se_companion_class(task_cls)


def se_companion_class(cls: type) -> type:
    """`SE<Name>` for a class keras-hub matches to backbones by `backbone_cls`.

    Tasks, preprocessors and image converters: keras-hub's `from_preset` on
    them looks for the registered subclass whose `backbone_cls` is the
    preset's backbone class, here an SE backbone class.
    """
    if getattr(cls, "_se_companion", False):
        return cls
    backbone_cls = getattr(cls, "backbone_cls", None)
    if not isinstance(backbone_cls, type):
        raise TypeError(
            f"`{getattr(cls, '__name__', cls)}` has no `backbone_cls`: it has no SE "
            f"counterpart. Received: {cls!r}"
        )
    se_cls = _SE_COMPANION_CLASSES.get(cls)
    if se_cls is None:
        name = "SE" + cls.__name__
        se_cls = type(name, (cls,), {
            "__module__": _PACKAGE,
            "__qualname__": name,
            "backbone_cls": se_backbone_class(backbone_cls),
            "_se_companion": True,
            "__doc__": f"`{cls.__name__}` for an SE backbone (see `keras_se.hub`).",
        })
        se_cls = _register(se_cls, name)
        _SE_COMPANION_CLASSES[cls] = se_cls
    return se_cls


def _register(cls, name):
    registered = f"keras_se>{name}"
    existing = keras.saving.get_custom_objects().get(registered)
    if existing is not None and existing is not cls:
        # Another base class with the same name (a user's own backbone named
        # like a keras-hub one): keep the first, refuse the second.
        raise ValueError(
            f"Cannot register {registered!r} for {cls.__mro__[1]!r}: the name is taken by "
            f"{existing!r}. Rename the base class."
        )
    cls = keras.saving.register_keras_serializable(package="keras_se", name=name)(cls)
    setattr(sys.modules[_PACKAGE], name, cls)  # keras_se.hub.SEResNetBackbone
    return cls


def register_se_classes() -> int:
    """Makes and registers the SE class of every keras-hub backbone class, and of
    every task, preprocessor and image converter class tied to one.

    Called when keras_hub is imported (see `install_import_hook`); call it again
    after defining your own `Backbone` subclasses. Returns the number of classes.
    """
    kh = keras_hub()
    objects = set(keras.saving.get_custom_objects().values())
    backbones = [c for c in objects if isinstance(c, type) and issubclass(c, kh.models.Backbone)
                 and c is not kh.models.Backbone and not issubclass(c, SEBackbone)]
    companions = [c for c in objects if isinstance(c, type)
                  and isinstance(getattr(c, "backbone_cls", None), type)
                  and issubclass(c.backbone_cls, kh.models.Backbone)
                  and not getattr(c, "_se_companion", False)]
    for c in sorted(backbones, key=lambda c: (c.__module__, c.__name__)):
        with contextlib.suppress(ValueError):
            se_backbone_class(c)
    for c in sorted(companions, key=lambda c: (c.__module__, c.__name__)):
        with contextlib.suppress(ValueError, TypeError):
            se_companion_class(c)
    return len(_SE_BACKBONE_CLASSES) + len(_SE_COMPANION_CLASSES)



# ================================================================ import hook
class _KerasHubImportHook(importlib.abc.MetaPathFinder):
    """Registers the SE classes right after `import keras_hub` finishes."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras_hub":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _remove_hook()
            register_se_classes()

        loader.exec_module = exec_and_register
        return spec


_HOOK = None


def _remove_hook():
    global _HOOK
    if _HOOK is not None and _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
    _HOOK = None


def install_import_hook() -> None:
    """Registers the SE classes now if keras_hub is imported, else when it is.

    `import keras_se` calls it. It never imports keras_hub itself, so keras_se
    stays light and works without keras-hub.
    """
    global _HOOK
    if hub_loaded() is not None:
        register_se_classes()
        return
    if sys.modules.get("keras_hub", 0) is None:  # import blocked on purpose
        return
    if _HOOK is None:
        _HOOK = _KerasHubImportHook()
        sys.meta_path.insert(0, _HOOK)



# ================================================================ graph helpers
def _copy_plain_attributes(base, target):
    """Copies the base backbone's public config-like attributes (`image_shape`, ...)."""
    have = set(vars(target))
    for key, value in vars(base).items():
        if key.startswith("_") or key in have or not _is_plain(value):
            continue
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            setattr(target, key, copy.deepcopy(_unwrap(value)))


def _unwrap(value):
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _is_plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _map_pyramid(pyramid, target, report):
    """The base's pyramid outputs as tensors of `target`, found by layer name.

    An SE block inserted right after a pyramid layer (`residual_post`,
    `post_activation` on the stage's last activation) recalibrates what the
    next stage reads, so the pyramid output is the SE block's output.
    """
    after = {}
    if report is not None:
        for site in report.sites:
            if site.position == "after" and not site.path:
                after[site.anchor] = site.se_name
    out = {}
    for key, tensor in pyramid.items():
        layer, node_index, tensor_index = compat.keras_history(tensor)
        se_name = after.get(layer.name)
        if se_name is not None:
            se_layer = target.get_layer(se_name)
            out[key] = compat.call_output(se_layer, min(node_index, compat.call_count(se_layer) - 1), 0)
        else:
            clone = target.get_layer(layer.name)
            out[key] = compat.call_output(clone, node_index, tensor_index)
    return out


def _copy_weights_except_se(source, target):
    """Assigns `source`'s weights to `target`'s, in order, except SE layers' ones.

    `source` and `target` must be built the same way (same classes, config and
    SE config): their weights then come in the same order, whatever the
    layers' names.
    """
    se_ids = {id(w) for layer in all_layers(target) if isinstance(layer, SqueezeExcite)
              for w in layer.weights}
    src, dst = source.weights, target.weights
    if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(src, dst)):
        raise ValueError(
            f"The base weights do not fit {target.name!r}: its graph differs from the one "
            "built from its config."
        )
    for a, b in zip(src, dst):
        if id(b) not in se_ids:
            b.assign(a)


def all_layers(model):
    for layer in model.layers:
        yield layer
        if is_container(layer):
            yield from all_layers(layer)


_SE_WEIGHTS_KEY = re.compile(r"(^|/)layers/squeeze_excite(_\d+)?$")


def _holds_se_weights(filepath):
    """True/False when a Keras weights file does/does not hold the weights of
    SqueezeExcite layers of a model; None when it cannot tell (then the file is
    loaded as usual).

    Keras keys a model's layers in a `.weights.h5` file as `layers/<snake-cased
    class name>[_<n>]` (`layers/squeeze_excite_3`), never by layer name;
    sublayers of a layer are keyed by attribute name, so keras-hub's own SE
    blocks inside MobileNetV3 blocks (`.../squeeze_excite/conv_reduce`) do not
    count.
    """
    path = str(filepath)
    try:
        if path.endswith(".weights.json"):
            with open(path, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map", {})
            return any(_SE_WEIGHTS_KEY.search(k.rsplit("/vars", 1)[0]) for k in weight_map)
        if path.endswith(".weights.h5") and os.path.isfile(path):
            import h5py

            names = []
            with h5py.File(path, "r") as f:
                f.visit(names.append)
            return any(_SE_WEIGHTS_KEY.search(n) for n in names)
    except (OSError, ValueError, ImportError):
        return None
    return None
