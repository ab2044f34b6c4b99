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

Where things are (one module per idea):

- `classes`: `SEBackbone`, `se_backbone_class`, `se_task_class`, the registration
  and the import hook;
- `rewrite`: `rewrite_hub_model`, what `add_se_blocks` calls for keras-hub models;
- `opaque`: `find_opaque_layers` and the refusal of subclassed blocks;
- `presets`: `from_preset`, `resolve_hub_model`, `HubPreset` (the command line's
  MODEL), the preset's preprocessing;
- `_specs` (the SE arguments a config stores) and `_access` (importing keras-hub).
"""

from keras_se.hub._access import PIP_HINT, is_hub_model
from keras_se.hub.classes import (
    SEBackbone,
    install_import_hook,
    register_se_classes,
    se_backbone_class,
    se_task_class,
)
from keras_se.hub.opaque import OpaqueLayer, find_opaque_layers
from keras_se.hub.presets import (
    HUB_PLACEMENTS,
    HubPreset,
    from_preset,
    hub_hint,
    preset_preprocessing,
    resolve_hub_model,
    save_preset,
)
from keras_se.hub.rewrite import rewrite_hub_model

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
    "preset_preprocessing",
    "register_se_classes",
    "resolve_hub_model",
    "rewrite_hub_model",
    "save_preset",
    "se_backbone_class",
    "se_task_class",
]


def __getattr__(name):
    # `keras_se.hub.SEResNetBackbone` before the classes are registered (registering
    # sets them as attributes of this package).
    from keras_se.hub._access import hub_installed

    if name.startswith("SE") and name != "SEBackbone" and hub_installed():
        register_se_classes()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
