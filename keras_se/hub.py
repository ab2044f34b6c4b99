"""keras-hub models: SE backbones and tasks that keep their class, config and presets.

`keras_se.add_se_blocks` sends keras-hub `Backbone`s and `Task`s here
(`rewrite_hub_model`). A retrofitted backbone is an instance of a registered
subclass of its own class, `SE<Base>` (`SEResNetBackbone` for a
`ResNetBackbone`): its config is the base backbone's config plus two keys,
`base_class` (the base's registered name) and `se` (the arguments of
`add_se_blocks`), and `from_config` rebuilds the base from its arguments and
rewrites it again. So `save_to_preset` / `from_preset`, `get_config` /
`from_config`, `pyramid_outputs` (RetinaNet, DeepLabV3, ...) and
`isinstance(backbone, keras_hub.models.ResNetBackbone)` keep working. A task
becomes an instance of `SE<Task>` (a registered subclass of its class whose
`backbone_cls` is the SE backbone class), with the same preprocessor and head
weights.

keras-hub is optional (`pip install keras-se[hub]`); this module imports it only
when a keras-hub model or preset is at hand. The SE classes are registered with
Keras as soon as both `keras_se` and `keras_hub` are imported, in either order
(`install_import_hook`), so `keras_hub.models.Backbone.from_preset(dir)` finds
them once `keras_se` is imported. Without `keras_se` imported, keras-hub cannot
resolve `keras_se>SE...` and says so ("no class registered with Keras").
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import importlib.abc
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_se import _keras_compat as compat
from keras_se.layers import SqueezeExcite
from keras_se.sites import CONV_LAYERS, PLACEMENTS, Skipped, compile_select, is_container

__all__ = [
    "HUB_PLACEMENTS",
    "PIP_HINT",
    "HubPreset",
    "OpaqueLayer",
    "SEBackbone",
    "find_opaque_layers",
    "from_preset",
    "hub_hint",
    "install_import_hook",
    "is_hub_model",
    "register_se_classes",
    "resolve_hub_model",
    "rewrite_hub_model",
    "se_backbone_class",
    "se_task_class",
]

PIP_HINT = "pip install keras-se[hub]"

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

#: Constructor arguments that put keras-hub's own SE blocks inside the
#: subclassed blocks the graph rewrite cannot see into, by backbone class.
_OWN_SE_ARGUMENTS = {
    "MobileNetBackbone": "`stackwise_se_ratio` and `squeeze_and_excite`",
    "MobileNetV5Backbone": "`stackwise_se_ratios`",
    "EfficientNetBackbone": "`stackwise_squeeze_and_excite_ratios`",
}

_SE_CLASS_NAME = re.compile(r"(?i)squeeze.?(and.?)?excit")
_PRESET_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")

# Set while the hub code runs the plain graph rewrite, so that the dispatch in
# `keras_se.add_se_blocks` does not send the backbone back here.
_PLAIN_REWRITE = contextvars.ContextVar("keras_se_hub_plain_rewrite", default=False)
# A backbone instance `SEBackbone.__init__` rewrites instead of building one from
# its config (`add_se_blocks` on a live backbone keeps its weights that way).
_GIVEN_BASE = contextvars.ContextVar("keras_se_hub_given_base", default=None)

_SE_BACKBONE_CLASSES: dict[type, type] = {}
_SE_COMPANION_CLASSES: dict[type, type] = {}


# ================================================================ Keras internals
# Read through keras_se._keras_compat (the one door to private Keras attributes).
def _sublayers(layer):
    return list(compat.flatten_layers(layer))


def _was_compiled_with_arguments(model):
    return bool(getattr(model, "compiled", False) and model.get_compile_config())


# ================================================================ keras-hub access
def _keras_hub(what: str = "This"):
    """Imports keras_hub, or raises an ImportError that says how to install it."""
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError(
            f"{what} needs keras-hub, which is not installed: `{PIP_HINT}` "
            "(keras-hub needs Python 3.11 or newer)."
        ) from e
    return keras_hub


def _hub_loaded():
    """The keras_hub module if it is imported (never imports it), else None."""
    module = sys.modules.get("keras_hub")
    if module is None or not hasattr(module, "models"):
        return None
    return module


def _hub_installed() -> bool:
    """Whether keras_hub can be imported (without importing it)."""
    if "keras_hub" in sys.modules:
        return sys.modules["keras_hub"] is not None
    try:
        return importlib.util.find_spec("keras_hub") is not None
    except (ImportError, ValueError):
        return False


def is_hub_model(obj) -> bool:
    """Whether `obj` is an instance of a keras-hub class (imports nothing)."""
    return any(
        getattr(c, "__module__", "").split(".")[0] in ("keras_hub", "keras_nlp")
        for c in type(obj).__mro__
    )


# ================================================================ SE classes
def _registered_name(cls) -> str:
    return keras.saving.get_registered_name(cls)


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
        kh = _keras_hub("An SE keras-hub backbone")
        base_cls = type(self)._se_base_class
        if base_cls is None:
            raise TypeError(
                "`SEBackbone` is a mixin; use `keras_se.add_se_blocks(backbone)` or "
                "`keras_se.hub.se_backbone_class(BackboneClass)`. "
                f"Received: class {type(self).__name__}"
            )
        expected = _registered_name(base_cls)
        if base_class is not None and base_class != expected:
            raise ValueError(
                f"`base_class` must be {expected!r} for {type(self).__name__}. "
                f"Received: base_class={base_class!r}"
            )
        new_specs = _normalize_specs(se)
        given = _GIVEN_BASE.get()
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
            model, report = _plain_rewrite(model, spec)
        kh.models.Backbone.__init__(
            self, inputs=model.input, outputs=model.output, name=name, dtype=dtype,
            trainable=trainable,
        )
        if hasattr(model, "output_names"):
            self.output_names = list(model.output_names)
        self._se_specs = specs
        self._se_base_config = {
            k: v for k, v in base_config.items() if k not in ("name", "dtype", "trainable")
        }
        self._se_report = report
        _copy_plain_attributes(base, self)
        if getattr(base, "pyramid_outputs", None):
            self.pyramid_outputs = _map_pyramid(base.pyramid_outputs, self, report)
        for site in report.sites:  # the report must not keep the base's layers alive
            site._anchor_layer = None

    # ------------------------------------------------------------------ config
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
        kh = _keras_hub()
        config = dict(self._se_base_config)
        config.update(kh.models.Backbone.get_config(self))  # name, trainable, dtype
        config["base_class"] = _registered_name(type(self)._se_base_class)
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
        token = _GIVEN_BASE.set(base)
        try:
            twin = type(self)(se=self.se_config)
        finally:
            _GIVEN_BASE.reset(token)
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
    kh = _keras_hub()
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
            "__module__": __name__,
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
    kh = _keras_hub()
    if not (isinstance(task_cls, type) and issubclass(task_cls, kh.models.Task)):
        raise TypeError(
            "`task_cls` must be a keras_hub.models.Task subclass with a `backbone_cls`. "
            f"Received: task_cls={task_cls!r}"
        )
    return _se_companion_class(task_cls)


def _se_companion_class(cls: type) -> type:
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
            "__module__": __name__,
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
    setattr(sys.modules[__name__], name, cls)  # keras_se.hub.SEResNetBackbone
    return cls


def register_se_classes() -> int:
    """Makes and registers the SE class of every keras-hub backbone class, and of
    every task, preprocessor and image converter class tied to one.

    Called when keras_hub is imported (see `install_import_hook`); call it again
    after defining your own `Backbone` subclasses. Returns the number of classes.
    """
    kh = _keras_hub()
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
            _se_companion_class(c)
    return len(_SE_BACKBONE_CLASSES) + len(_SE_COMPANION_CLASSES)


def __getattr__(name):
    # `keras_se.hub.SEResNetBackbone` before the classes are registered.
    if name.startswith("SE") and name != "SEBackbone" and _hub_installed():
        register_se_classes()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if _hub_loaded() is not None:
        register_se_classes()
        return
    if sys.modules.get("keras_hub", 0) is None:  # import blocked on purpose
        return
    if _HOOK is None:
        _HOOK = _KerasHubImportHook()
        sys.meta_path.insert(0, _HOOK)


# ================================================================ SE specs
def _serializable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_serializable(v) for v in value]
    if isinstance(value, dict):
        return {k: _serializable(v) for k, v in value.items()}
    return keras.saving.serialize_keras_object(value)


def _make_spec(placement, ratio, select, init, skip_existing, se_options):
    return {
        "placement": placement,
        "select": select,
        "ratio": ratio,
        "init": init,
        "skip_existing": bool(skip_existing),
        **se_options,
    }


def _normalize_specs(se):
    if se is None:
        raise TypeError(
            "An SE backbone needs its SE arguments: `se` must be a dict such as "
            "{'placement': 'residual'} or a list of them. Received: se=None"
        )
    specs = [se] if isinstance(se, dict) else list(se)
    out = []
    for s in specs:
        if not isinstance(s, dict) or "placement" not in s:
            raise TypeError(
                "`se` must be a dict of add_se_blocks arguments with a `placement`, or a "
                f"list of them. Received: se={se!r}"
            )
        out.append(dict(s))
    return out


class _Replay:
    """A select or ratio callable, recorded on the first rewrite and replayed after.

    The site finder calls `select` once per candidate and `ratio` once per
    selected site, in graph order, which is the same for a backbone rebuilt from
    the same config. A user's callable cannot be saved in a config; its answers
    can.
    """

    def __init__(self, fn=None, answers=None):
        self.fn = fn
        self.answers = list(answers) if answers is not None else []
        self.calls = 0

    def __call__(self, site):
        i = self.calls
        self.calls += 1
        if self.fn is not None:
            answer = self.fn(site)
            answer = bool(answer) if isinstance(answer, (bool, type(None))) else int(answer)
            self.answers.append(answer)
            return answer
        if i >= len(self.answers):
            raise ValueError(
                "The backbone's graph has more SE candidates than when its SE config was "
                f"recorded ({len(self.answers)}); it cannot be rebuilt from this config."
            )
        return self.answers[i]


def _runtime_args(spec):
    """add_se_blocks keyword arguments from a spec; callables for recorded answers."""
    args = dict(spec)
    select, ratio = args.get("select"), args.get("ratio", 16)
    if isinstance(select, dict):
        args["select"] = _Replay(answers=[bool(a) for a in select["recorded"]])
    if isinstance(ratio, dict):
        args["ratio"] = _Replay(answers=[int(a) for a in ratio["recorded"]])
    return args


def _plain_rewrite(model, spec):
    """`keras_se.add_se_blocks` on the graph (no hub dispatch): (plain model, report)."""
    from keras_se.rewrite import add_se_blocks

    args = _runtime_args(spec)
    placement = args.pop("placement")
    token = _PLAIN_REWRITE.set(True)
    try:
        return add_se_blocks(model, placement, return_report=True, **args)
    finally:
        _PLAIN_REWRITE.reset(token)


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
    se_ids = {id(w) for layer in _all_layers(target) if isinstance(layer, SqueezeExcite)
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


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if is_container(layer):
            yield from _all_layers(layer)


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


# ================================================================ opaque blocks
@dataclasses.dataclass
class OpaqueLayer:
    """A subclassed layer holding convolutions: its graph is not visible.

    Attributes:
        name: `path/name` of the layer in the model.
        class_name: its class.
        carries_se: it already holds an SE block (keras_se's `SqueezeExcite`, or
            a layer whose class is named like SqueezeAndExcite).
        se_class_name: the class of that SE block, or None.
    """

    name: str
    class_name: str
    carries_se: bool
    se_class_name: str | None = None


def find_opaque_layers(model, path: tuple = ()) -> list[OpaqueLayer]:
    """The subclassed layers of `model` (nested models too) that hold convolutions.

    `add_se_blocks` sees the layer graph of Functional and Sequential models; a
    subclassed layer (a keras-hub `InvertedResidualBlock`, `HGNetV2Encoder`, ...)
    is one node to it, whatever convolutions it runs inside. Keras's own layers
    (`Conv2D`, `BatchNormalization`, ...) are not opaque.

    Args:
        model: a Functional or Sequential model.

    Returns:
        A list of `OpaqueLayer`, in layer order.
    """
    out = []
    for layer in model.layers:
        if is_container(layer):
            out += find_opaque_layers(layer, path + (layer.name,))
            continue
        if type(layer).__module__.startswith("keras.") or isinstance(layer, SqueezeExcite):
            continue
        subs = _sublayers(layer)
        if not any(isinstance(s, CONV_LAYERS) for s in subs):
            continue
        carries, se_name = _carries_se(layer, subs)
        out.append(OpaqueLayer(
            name="/".join(path + (layer.name,)),
            class_name=type(layer).__name__,
            carries_se=carries,
            se_class_name=se_name,
        ))
    return out


_SE_RATIO_KEY = re.compile(r"(^|_)se_ratio$|squeeze_excite_ratio$|^squeeze_and_excite$")


def _carries_se(layer, sublayers):
    """(whether an opaque block computes SE inside, how it is called).

    The block's own SE-ratio argument decides when it has one
    (EfficientNet's `se_ratio`, MobileNetV3's `squeeze_excite_ratio`: keras-hub
    builds the SE sublayers even when the ratio is 0 and then skips them);
    otherwise a sublayer that is keras_se's `SqueezeExcite` or whose class is
    named like SqueezeAndExcite.
    """
    se = [s for s in sublayers if isinstance(s, SqueezeExcite)
          or _SE_CLASS_NAME.search(type(s).__name__)]
    named = type(se[0]).__name__ if se else None
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a layer without a usable config
        config = {}
    for key, value in config.items():
        if _SE_RATIO_KEY.search(key):
            on = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            return on, ((named or f"SE ({key}={value})") if on else None)
    return bool(se), named


def _names(items, limit=6):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_opaque(model, placement, select, skip_existing, ratio, se_options):
    """Raises NoSitesError when opaque blocks hide where SE would go (keras-hub rule).

    Rule: a keras-hub backbone whose subclassed blocks hold convolutions is
    refused unless every such block already carries SE (and `skip_existing` is
    on) or `select` says which visible sites to use; a backbone with no visible
    site at all is refused whatever `select` says. The refusal names the opaque
    blocks and the constructor arguments that put keras-hub's own SE inside
    them, where the class has them.
    """
    from keras_se.rewrite import NoSitesError, SEReport
    from keras_se.sites import run_finder

    opaque = find_opaque_layers(model)
    if not opaque:
        return
    finder = run_finder(model, placement, select, skip_existing, ratio, se_options)
    with_se = [o for o in opaque if o.carries_se]
    blocking = [o for o in opaque if not (o.carries_se and skip_existing)]
    if finder.sites and (not blocking or select is not None):
        return
    skipped = list(finder.skipped) + [
        Skipped(o.name, f"opaque: subclassed {o.class_name} holding convolutions"
                + (f" (already carries {o.se_class_name})" if o.carries_se else ""))
        for o in opaque
    ]
    report = SEReport(model.name, placement, finder.sites, skipped, model.count_params())
    parts = [
        f"No SE site can be placed in {type(model).__name__} {model.name!r} for "
        f"placement={placement!r}: {len(opaque)} of its layers are subclassed blocks "
        "holding convolutions, whose graph add_se_blocks cannot see"
    ]
    if blocking:
        parts[0] += ": " + _names([f"{o.name} ({o.class_name})" for o in blocking]) + "."
    else:
        parts[0] += "."
    if with_se:
        carried = sorted({o.se_class_name for o in with_se})
        parts.append(
            f"{len(with_se)} of them already carry SE ({', '.join(carried)})"
            + (", which skip_existing=True leaves alone." if skip_existing else ".")
        )
    if finder.sites:
        parts.append(
            f"Outside them, {len(finder.sites)} site(s) were found ("
            + _names([s.full_name for s in finder.sites], 4)
            + "): pass `select=` with those names to place SE there only."
        )
    else:
        parts.append("No site is visible outside them.")
    own = _OWN_SE_ARGUMENTS.get(_base_name(model))
    if own:
        parts.append(f"keras-hub puts its own SE blocks inside them with {own}.")
    parts.append(f"Received: model={model.name!r}, placement={placement!r}")
    raise NoSitesError(report, " ".join(parts))


def _base_name(model):
    cls = type(model)
    base = getattr(cls, "_se_base_class", None) or cls
    return base.__name__


# ================================================================ the rewrite
def rewrite_hub_model(
    model,
    placement: str = "post_activation",
    *,
    ratio: int | Callable = 16,
    select: str | Sequence[str] | Callable | None = None,
    init: str = "identity",
    skip_existing: bool = True,
    return_report: bool = False,
    verbose: bool = False,
    **se_options: Any,
):
    """`keras_se.add_se_blocks` for keras-hub Backbones and Tasks; None for others.

    `keras_se.add_se_blocks` calls it first and returns its result when it is
    not None. A keras-hub `Backbone` becomes an instance of its SE class (see
    `SEBackbone`); a `Task` whose backbone is a `Backbone` becomes an instance
    of its SE task class around the SE backbone, with a copy of its
    preprocessor, its head weights and its compile configuration. Any other
    model (and any model while keras_hub is not imported) gives None.

    Arguments and return value are those of `keras_se.add_se_blocks`.

    Raises:
        NoSitesError: no site, or subclassed blocks hide the sites
            (`find_opaque_layers`).
    """
    if _PLAIN_REWRITE.get():
        return None
    kh = _hub_loaded()
    if kh is None:
        return None
    if isinstance(model, kh.models.Backbone):
        new, report = _rewrite_backbone(
            model, placement, ratio, select, init, skip_existing, se_options)
    elif isinstance(model, kh.models.Task) and isinstance(
            getattr(model, "backbone", None), kh.models.Backbone):
        new, report = _rewrite_task(
            model, placement, ratio, select, init, skip_existing, se_options)
    else:
        return None
    if verbose:
        print(report.summary())
    return (new, report) if return_report else new


def _rewrite_backbone(backbone, placement, ratio, select, init, skip_existing, se_options):
    if placement not in PLACEMENTS:  # the same message as add_se_blocks
        from keras_se.sites import check_placement

        check_placement(placement)
    _check_opaque(backbone, placement, select, skip_existing, ratio, se_options)
    # A select is stored as its answers, candidate by candidate: layer names the
    # backbone does not set itself (`activation_3`) differ from process to process,
    # and a callable cannot be saved at all.
    select_rec = None if select is None else _Replay(fn=compile_select(select))
    ratio_rec = _Replay(fn=ratio) if callable(ratio) else ratio
    spec = _make_spec(placement, ratio_rec, select_rec, init, skip_existing, se_options)
    base_cls = getattr(type(backbone), "_se_base_class", None) or type(backbone)
    cls = se_backbone_class(base_cls)
    token = _GIVEN_BASE.set(backbone)
    try:
        new = cls(se=[spec])
    finally:
        _GIVEN_BASE.reset(token)
    # Callables are stored as their recorded answers; everything else serialised.
    last = new._se_specs[-1]
    if isinstance(select_rec, _Replay):
        given = select if isinstance(select, str) or (
            isinstance(select, (list, tuple)) and all(isinstance(x, str) for x in select)
        ) else "<callable>"
        last["select"] = {"given": given, "recorded": list(select_rec.answers)}
    if isinstance(ratio_rec, _Replay):
        last["ratio"] = {"recorded": list(ratio_rec.answers)}
    for key in list(last):
        last[key] = _serializable(last[key])
    new._se_report.model_name = backbone.name
    return new, new._se_report


def _rewrite_task(task, placement, ratio, select, init, skip_existing, se_options):
    from keras_se.rewrite import SEReport

    backbone, report = _rewrite_backbone(
        task.backbone, placement, ratio, select, init, skip_existing, se_options)
    cls = type(task)
    if isinstance(getattr(cls, "backbone_cls", None), type):
        cls = _se_companion_class(cls)
    config = task.get_config()
    config["backbone"] = backbone
    config["preprocessor"] = _copy_layer(task.preprocessor)
    new = cls.from_config(config)
    _copy_head_weights(task, new)
    if task.trainable != new.trainable:
        new.trainable = task.trainable
    if _was_compiled_with_arguments(task):
        # Tasks override `compile()`, so Keras's `compile_from_config` skips them.
        new.compile(**keras.saving.deserialize_keras_object(task.get_compile_config()))
    prefix = (task.backbone.name,)
    for site in report.sites:
        site.path = prefix + site.path
    skipped = [Skipped(f"{task.backbone.name}/{k.name}", k.reason) for k in report.skipped]
    task_report = SEReport(task.name, placement, report.sites, skipped, task.count_params())
    return new, task_report


def _copy_layer(layer):
    if layer is None:
        return None
    try:
        return keras.layers.deserialize(keras.layers.serialize(layer))
    except Exception:  # noqa: BLE001 - a layer that does not round-trip is shared
        return layer


def _copy_head_weights(task, new):
    skip = {id(task.backbone), id(task.preprocessor)}
    for layer in task.layers:
        if id(layer) in skip or not layer.weights:
            continue
        twin = new.get_layer(layer.name)
        if len(twin.weights) != len(layer.weights):
            raise RuntimeError(
                f"Head layer {layer.name!r} has {len(layer.weights)} weights but its copy has "
                f"{len(twin.weights)}."
            )
        for src, dst in zip(layer.weights, twin.weights):
            dst.assign(src)


# ================================================================ presets
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
    kh = _keras_hub("keras_se.from_preset")
    task_kwargs = dict(task_kwargs or {})
    local = os.path.isdir(preset)
    config = _read_json(preset, "config.json") if local else None
    task_config = _read_json(preset, "task.json") if local else None
    model = _load_preset(kh, preset, task, task_kwargs, load_weights, task_config)
    base_name = (config or {}).get("registered_name") or _registered_name(
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


def _load_preset(kh, preset, task, task_kwargs, load_weights, task_config):
    if task is False:
        return kh.models.Backbone.from_preset(preset, load_weights=load_weights)
    if isinstance(task, str):
        cls = getattr(kh.models, task, None) or keras.saving.get_registered_object(task)
        if cls is None:
            raise ValueError(
                "`task` must be a keras_hub.models Task class name such as "
                f"'ImageClassifier'. Received: task={task!r}"
            )
        task = cls
    if isinstance(task, type):
        return task.from_preset(preset, load_weights=load_weights, **task_kwargs)
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
        return kh.models.Backbone.from_preset(preset, load_weights=load_weights)
    cls = keras.saving.get_registered_object(task_config["registered_name"])
    if cls is None:
        raise ValueError(
            f"The preset's task class {task_config['registered_name']!r} is not registered "
            f"with Keras. Received: preset={preset!r}"
        )
    return cls.from_preset(preset, load_weights=load_weights, **task_kwargs)


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

    def load(self, *, task: bool | None = None, load_weights: bool = True):
        """The preset's model as saved (no SE added)."""
        kh = _keras_hub("Loading a keras-hub preset")
        config = _read_json(self.preset, "task.json") if os.path.isdir(self.preset) else None
        return _load_preset(kh, self.preset, task, {}, load_weights, config)


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
        _keras_hub(f"The keras-hub preset {text!r}")
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
        _keras_hub(f"The keras-hub preset {text!r}")
        return HubPreset(preset=text)
    if not _hub_installed():
        return None
    kh = _keras_hub()
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
    name = _registered_name(cls)
    placement, select = _auto_placement(name)
    return HubPreset(preset=text, backbone_class=name, placement=placement, select=select)


def hub_hint() -> str:
    """A hint for an unknown MODEL: how to get keras-hub presets, or ""."""
    if not _hub_installed():
        return f" keras-hub presets need keras-hub: `{PIP_HINT}`."
    return ""
