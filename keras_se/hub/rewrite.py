"""`add_se_blocks` on a keras-hub Backbone or Task: the result keeps its keras-hub class.

`keras_se.add_se_blocks` calls `rewrite_hub_model` first and returns its result
when it is not None. A Backbone becomes an instance of its SE class
(`keras_se.hub.classes`); a Task becomes its SE task class around the SE
backbone, with a copy of its preprocessor, its head weights and its compile
configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_se.hub._access import GIVEN_BASE, PLAIN_REWRITE, hub_loaded
from keras_se.hub._specs import Replay, make_spec, serializable
from keras_se.hub.classes import se_backbone_class, se_companion_class
from keras_se.hub.opaque import check_opaque
from keras_se.sites import PLACEMENTS, Skipped, compile_select


def _was_compiled_with_arguments(model):
    return bool(getattr(model, "compiled", False) and model.get_compile_config())


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
    if PLAIN_REWRITE.get():
        return None
    kh = hub_loaded()
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
    check_opaque(backbone, placement, select, skip_existing, ratio, se_options)
    # A select is stored as its answers, candidate by candidate: layer names the
    # backbone does not set itself (`activation_3`) differ from process to process,
    # and a callable cannot be saved at all.
    select_rec = None if select is None else Replay(fn=compile_select(select))
    ratio_rec = Replay(fn=ratio) if callable(ratio) else ratio
    spec = make_spec(placement, ratio_rec, select_rec, init, skip_existing, se_options)
    base_cls = getattr(type(backbone), "_se_base_class", None) or type(backbone)
    cls = se_backbone_class(base_cls)
    token = GIVEN_BASE.set(backbone)
    try:
        new = cls(se=[spec])
    finally:
        GIVEN_BASE.reset(token)
    # Callables are stored as their recorded answers; everything else serialised.
    last = new._se_specs[-1]
    if isinstance(select_rec, Replay):
        given = select if isinstance(select, str) or (
            isinstance(select, (list, tuple)) and all(isinstance(x, str) for x in select)
        ) else "<callable>"
        last["select"] = {"given": given, "recorded": list(select_rec.answers)}
    if isinstance(ratio_rec, Replay):
        last["ratio"] = {"recorded": list(ratio_rec.answers)}
    for key in list(last):
        last[key] = serializable(last[key])
    new._se_report.model_name = backbone.name
    return new, new._se_report


def _rewrite_task(task, placement, ratio, select, init, skip_existing, se_options):
    from keras_se.rewrite import SEReport

    backbone, report = _rewrite_backbone(
        task.backbone, placement, ratio, select, init, skip_existing, se_options)
    cls = type(task)
    if isinstance(getattr(cls, "backbone_cls", None), type):
        cls = se_companion_class(cls)
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
