"""`keras-se inspect MODEL.keras --data DATA --out DIR`: what the SE gates learned."""

from __future__ import annotations

from keras_se.cli import command
from keras_se.cli._args import (
    UsageError,
    add_output_arguments,
    fraction,
    image_size,
    positive_int,
    usage_errors,
)
from keras_se.cli._output import OutputDir, relative


def add_arguments(p):
    from keras_se._options import BUILTIN

    p.add_argument("model", metavar="MODEL.keras", help="a trained .keras model with SE blocks "
                   "(or a directory holding model.keras, as finetune writes)")
    p.add_argument("--data", default=BUILTIN, help="builtin, an image folder or a TFDS name, "
                   "as for finetune; its validation images are profiled. Default: builtin")
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    add_output_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="Default: 32")
    p.add_argument("--image-size", type=image_size, default=None, help="Default: the model's")
    p.add_argument("--val-split", type=fraction, default=None, help="as for finetune")
    p.add_argument("--steps", type=positive_int, default=None, help="profile at most this many "
                   "batches. Default: all")
    p.add_argument("--preprocess", default="auto", help="auto (from keras_se.json beside the "
                   "model), none, tf, torch, caffe or a keras.applications family. Default: auto")


@command("inspect", help="profile what the SE gates of a trained model learned",
         arguments=add_arguments)
def main(args) -> int:
    """Mean SE excitation per channel, block and class over the validation images.

    Writes DIR/profile.json (per block: mean gate per channel, overall and per
    class, class specificity), DIR/excitation_per_class.png (the paper's
    Fig. 6) and DIR/class_specificity.png. See keras_se.inspect.
    """
    from keras_se import inspect as se_inspect
    from keras_se.data import load_data
    from keras_se.models import (
        load_model,
        preprocess_function,
        resolve_image_size,
        resolve_model,
    )

    with usage_errors():
        spec = resolve_model(args.model)
    if spec.kind != "file":
        raise UsageError(
            "`model` must be a trained .keras file: a model built from a name has no "
            f"trained SE gates to inspect. Received: model={args.model!r}"
        )
    out = OutputDir(args.out, overwrite=args.overwrite).check()
    with usage_errors():
        model = load_model(spec.path)
        # A model with no SE layer is refused before any data is read or built.
        se_inspect.require_se_layers(model)
    preprocess = args.preprocess
    if preprocess == "auto":
        preprocess = spec.sidecar.get("preprocess", "none")
    with usage_errors():
        size = resolve_image_size(spec, args.image_size, model)
    if not args.verbose:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    with usage_errors():
        data = load_data(args.data, image_size=size, batch_size=args.batch_size,
                         preprocess=preprocess_function(preprocess), val_split=args.val_split,
                         data_dir=args.data_dir)
    profile = se_inspect.excitation_profile(model, data.validation, steps=args.steps,
                                            class_names=data.class_names)
    out.prepare()
    try:
        profile.to_json(out.file("profile.json"))
        se_inspect.plot_excitation(profile, out.file("excitation_per_class.png"))
        if len(profile.classes) > 1:
            se_inspect.plot_class_specificity(profile, out.file("class_specificity.png"))
        out.commit()
    except BaseException:
        out.abort()
        raise
    spec_by_block = profile.class_specificity() if len(profile.classes) > 1 else {}
    width = max(len(b) for b in profile.blocks)
    print(f"{len(profile.blocks)} SE blocks, {profile.count} images of {data.description}, "
          f"{len(profile.classes)} classes")
    print(f"  {'SE block':<{width}}  {'channels':>8}  {'mean gate':>9}  {'class specificity':>17}")
    for b in profile.blocks:
        s = f"{spec_by_block[b]:.4f}" if b in spec_by_block else "-"
        print(f"  {b:<{width}}  {profile.mean[b].shape[0]:>8}  {profile.mean[b].mean():>9.4f}  "
              f"{s:>17}")
    written = ["profile.json", "excitation_per_class.png"] + (
        ["class_specificity.png"] if spec_by_block else [])
    print(f"wrote {relative(out.out)}/{{{', '.join(written)}}}")
    return 0
