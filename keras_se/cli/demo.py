"""`keras-se demo`: retrofit, fine-tune and export a small MobileNetV2, offline.

The demo is `keras-se finetune` with its own argument list (`finetune_argv`), then a
report.
"""

from __future__ import annotations

import argparse
import os
import time

from keras_se.cli import command, parse
from keras_se.cli._args import add_output_arguments, image_size, positive_float, positive_int
from keras_se.cli._output import relative

DEFAULT_OUT = os.path.join("runs", "demo")
#: SE after each block's depthwise ReLU6 (the MobileNetV3 / SE zoo placement).
SELECT = r"^(expanded_conv|block_\d+)_depthwise_relu$"


def add_arguments(p):
    add_output_arguments(p, required=False, default=DEFAULT_OUT)
    p.add_argument("--epochs", type=positive_int, default=10, help="Default: 10")
    p.add_argument("--image-size", type=image_size, default=(64, 64), help="Default: 64")
    p.add_argument("--batch-size", type=positive_int, default=32, help="Default: 32")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="Default: finetune's (1e-2 from random weights)")
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    p.add_argument("--steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--validation-steps", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fresh", action="store_true", help="discard an interrupted demo in --out")


def finetune_argv(args) -> list[str]:
    """The `keras-se finetune` arguments the demo runs with."""
    h, w = args.image_size
    argv = [
        "finetune", "mobilenet_v2", "--data", "builtin", "--out", args.out,
        "--weights", "none", "--alpha", "0.35", "--freeze", "none",
        "--placement", "post_activation", "--select", SELECT,
        "--epochs", args.epochs, "--image-size", f"{h}x{w}", "--batch-size", args.batch_size,
        # The builtin drawings already vary position, size, colour and noise; in a
        # 10-epoch demo augmentation only slows learning (0.84 with, 0.95 without).
        "--augment", "off",
    ]
    for flag, value in (("--lr", args.lr), ("--data-dir", args.data_dir),
                        ("--steps-per-epoch", args.steps_per_epoch),
                        ("--validation-steps", args.validation_steps),
                        ("--backend", args.backend)):
        if value is not None:
            argv += [flag, value]
    argv += [flag for flag, on in (("--overwrite", args.overwrite), ("--fresh", args.fresh),
                                   ("--verbose", args.verbose)) if on]
    return [str(a) for a in argv]


@command("demo", help="retrofit, fine-tune and export a small MobileNetV2, offline",
         arguments=add_arguments)
def main(args) -> int:
    """The whole workflow in a few minutes on a laptop CPU, with no network.

    A MobileNetV2 (alpha 0.35, random weights: pretrained ones would need the
    network) gets SE blocks after the depthwise ReLU of every block (the
    MobileNetV3 / SE zoo placement) and a classifier; it is trained from
    scratch on the builtin dataset (six classes of shapes and textures,
    chance = 1/6), exported as a SavedModel, and the SavedModel is reloaded
    in a fresh Python process and checked against Keras.
    """
    from keras_se.cli import finetune

    started = time.time()
    print("keras-se demo: MobileNetV2 (alpha 0.35, random init) + SE, trained on the builtin "
          "dataset, exported and reloaded in a fresh process", flush=True)
    ft_args = parse(finetune_argv(args))
    run = finetune.execute(ft_args, fit_verbose=2, fresh_process_check=True)
    rep, data, result = run.se_report, run.data, run.result
    before, after = result.before or {}, result.after or {}
    h, w = run.image_size
    lines = [
        "",
        "=" * 72,
        "keras-se demo report",
        "=" * 72,
        f"model          MobileNetV2 alpha=0.35, {h}x{w}, "
        f"{data.num_classes} classes ({', '.join(data.class_names)})",
        f"SE sites       {rep.get('num_sites')} (after each block's depthwise ReLU6), "
        f"ratio {ft_args.ratio}, init {ft_args.init}",
        f"parameters     {rep.get('params_before', 0):,} -> {rep.get('params_after', 0):,} "
        f"(+{rep.get('params_added', 0):,}, +{rep.get('percent_added', 0):.1f}%) for the backbone",
        f"data           {data.num_train} train / {data.num_validation} validation images "
        f"(chance = {1 / data.num_classes:.3f})",
        f"val accuracy   {before.get('accuracy', float('nan')):.3f} before -> "
        f"{after.get('accuracy', float('nan')):.3f} after {len(result.history['epoch'])} epochs "
        f"({result.seconds:.0f}s of training)",
        f"SavedModel     reloaded in a fresh process with tf.saved_model.load: serve matches "
        f"Keras (max abs diff {run.diffs['saved_model']:.2g})"
        if "saved_model" in run.diffs
        else f"SavedModel     not written on {run.result.backend}: .keras only",
        f"outputs        {relative(run.out)}/",
        "                 model.keras  "
        + ("saved_model/  " if "saved_model" in run.diffs else "")
        + "report.json  history.json  metrics.json  curves.png",
        f"total time     {time.time() - started:.0f}s",
        "=" * 72,
    ]
    print("\n".join(lines))
    return 0
