"""`keras-se retrofit MODEL --out DIR`: add SE blocks to a model and save it, checked."""

from __future__ import annotations

import time

from keras_se.cli import command
from keras_se.cli._args import (
    add_build_arguments,
    add_model_argument,
    add_output_arguments,
    add_se_arguments,
    input_shape,
    positive_int,
    resolve_init,
    se_options,
    usage_errors,
)
from keras_se.cli._output import OutputDir, relative
from keras_se.cli._report import se_summary, site_table


def add_arguments(p):
    add_model_argument(p)
    add_output_arguments(p)
    add_se_arguments(p)
    add_build_arguments(p, weights_default="imagenet")
    p.add_argument(
        "--input-shape", type=input_shape, default=None, help="H,W,C. Default: the model's"
    )
    p.add_argument(
        "--classes",
        type=positive_int,
        default=None,
        help="classes of the classification head (needs --weights none or a file unless 1000)",
    )


def sidecar(spec, model, source, *, placement=None, select=None, class_names=None,
            preprocess=None) -> dict:
    """What `keras_se.json` beside `model.keras` records for later commands."""
    family = spec.family
    return {
        "source": source,
        "model": spec.label,
        "family": family,
        "preprocess": preprocess if preprocess is not None else (family or "none"),
        "input_shape": [None if d is None else int(d) for d in model.inputs[0].shape[1:]],
        "placement": placement,
        "select": select,
        "class_names": class_names,
    }


@command("retrofit", help="add SE blocks to a model and save it", arguments=add_arguments)
def main(args) -> int:
    """Adds SE blocks to MODEL; writes DIR/model.keras, DIR/saved_model/ and DIR/report.json.

    (No saved_model/ on --backend torch: see `keras-se export --help`.)

    Both artifacts are loaded back and compared with the in-memory model
    before success is reported. With --init identity (the default unless the
    weights are timm's) the report also gives the largest difference between
    the original and the retrofitted model's outputs: 0 up to float rounding.
    A keras-hub model (MODEL a keras-hub preset, or a timm v1.5/ResNet-D
    checkpoint) keeps its keras-hub class and is also written as a keras-hub
    preset, DIR/preset/ (reloaded and compared too). A model built with SE
    blocks (an SE zoo name, a timm checkpoint, an SE preset) is saved as built.
    """
    import keras
    import numpy as np

    from keras_se import add_se_blocks, export, hub
    from keras_se._files import write_json
    from keras_se.models import (
        SIDECAR,
        build_model,
        default_preprocess,
        resolve_model,
        resolve_weights,
    )
    from keras_se.sites import se_layers

    started = time.time()
    with usage_errors():
        spec = resolve_model(args.model)
        placement, select, options = se_options(args, spec)
    resolve_init(args, spec)
    with usage_errors():
        weights = resolve_weights(spec, args.weights)  # a timm checkpoint: found (or not) now
    out = OutputDir(args.out, overwrite=args.overwrite).check()
    with usage_errors():
        base = build_model(spec, weights=weights, include_top=True,
                           input_shape=args.input_shape, classes=args.classes, alpha=args.alpha)
    inputs = export.sample_inputs(base, batch_size=2)
    if spec.has_se:
        model = base
        report = {"model": spec.name, "zoo": spec.kind == "zoo",
                  "num_sites": len(se_layers(model)), "params_after": int(model.count_params())}
        what = "from the SE zoo" if spec.kind == "zoo" else "built with SE"
        summary = f"{spec.label} {what}: {report['num_sites']} SE blocks"
        identity_diff = None
    else:
        with usage_errors():
            model, rep = add_se_blocks(base, placement, ratio=args.ratio, select=select,
                                       init=args.init, return_report=True, **options)
        report = rep.to_dict()
        summary = site_table(rep.sites, max_rows=12) + "\n" + se_summary(report)
        identity_diff = float(np.max(np.abs(
            keras.ops.convert_to_numpy(model(inputs, training=False))
            - keras.ops.convert_to_numpy(base(inputs, training=False))
        )))
    report.update({
        "source": args.model,
        "weights": args.weights,
        "input_shape": list(model.inputs[0].shape[1:]),
        "init": args.init,
        "select": select,
        "max_abs_diff_vs_original": identity_diff,
    })
    out.prepare()
    try:
        diffs = export.save_artifacts(model, out.path, inputs)
        written = ["model.keras"] + (["saved_model/"] if "saved_model" in diffs else [])
        if hub.is_hub_model(model):  # keeps its keras-hub class: a preset too
            diffs["preset"] = hub.save_preset(model, out.file("preset"), inputs)
            written.append("preset/")
            if not diffs["preset"] <= export.SAVED_MODEL_ATOL:
                raise export.ParityError(
                    f"preset/ reloads with different outputs (max abs diff {diffs['preset']:.3g})")
        report["reload_max_abs_diff"] = diffs
        write_json(out.file("report.json"), report)
        write_json(out.file(SIDECAR), sidecar(spec, model, args.model, placement=placement,
                                              select=select,
                                              preprocess=default_preprocess(spec, weights)))
        out.commit()
    except BaseException:
        out.abort()
        raise
    print(summary)
    if identity_diff is not None:
        print(f"outputs vs the original model: max abs diff {identity_diff:.3g} (init={args.init})")
    if "saved_model" in diffs:
        reloaded = (f"reloaded model.keras (max abs diff {diffs['keras']:.3g}), saved_model/ "
                    f"(serve signature, max abs diff {diffs['saved_model']:.3g})")
    else:
        reloaded = (f"reloaded model.keras (max abs diff {diffs['keras']:.3g}); no saved_model/: "
                    f"{export.export_support('saved_model')}")
    if "preset" in diffs:
        reloaded += f", preset/ (keras-hub from_preset, max abs diff {diffs['preset']:.3g})"
    print(reloaded)
    print(f"wrote {relative(out.out)}/{{{', '.join(written + ['report.json'])}}} "
          f"in {time.time() - started:.1f}s")
    return 0


__all__ = ["add_arguments", "main", "sidecar"]
