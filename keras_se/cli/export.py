"""`keras-se export MODEL.keras --format F --out PATH`: a serving artifact, checked."""

from __future__ import annotations

import os
import time

from keras_se.cli import command
from keras_se.cli._args import UsageError, add_output_arguments, usage_errors
from keras_se.cli._output import OutputDir, relative, remove, size_of


def add_arguments(p):
    from keras_se.export import FORMATS, QUANTIZATIONS

    p.add_argument("model", metavar="MODEL.keras",
                   help="a .keras file (or a directory holding model.keras)")
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="saved_model (TF Serving) or tflite")
    add_output_arguments(p, what="PATH")
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="tflite only: none (float32) or float16 weights. Default: none",
    )


@command("export", help="export a .keras model to a SavedModel or TFLite", arguments=add_arguments)
def main(args) -> int:
    """Exports MODEL.keras as a TF SavedModel (serving format) or a TFLite flatbuffer.

    Backends: both formats from tensorflow and jax (--backend); neither from
    torch (Keras needs torch_xla or litert-torch for them): exit code 2.

    The SavedModel is loaded back with tf.saved_model.load and its `serve`
    endpoint compared with Keras (tolerance 1e-5); the TFLite model is run in
    the LiteRT interpreter and compared with Keras (tolerance 1e-4 for
    float32, 2e-2 with --quantize float16).
    """
    from keras_se import export
    from keras_se.models import MODEL_FILE, load_model

    path = os.path.join(args.model, MODEL_FILE) if os.path.isdir(args.model) else args.model
    if not os.path.isfile(path):
        raise UsageError(f"`model` file does not exist: {path}. Received: model={args.model!r}")
    if args.quantize != "none" and args.format != "tflite":
        raise UsageError(
            f"`--quantize` applies to --format tflite only. Received: quantize={args.quantize!r}"
        )
    if args.format == "tflite" and not args.out.endswith(".tflite"):
        raise UsageError(
            f"`--out` of a TFLite model must end with .tflite. Received: out={args.out!r}"
        )
    with usage_errors():
        export.check_export_support(args.format)  # before any work: one line, exit 2
    out = OutputDir(args.out, overwrite=args.overwrite, is_file=args.format == "tflite").check()
    with usage_errors():
        model = load_model(path)
        inputs = export.sample_inputs(model)
    started = time.time()
    if args.format == "saved_model":
        out.prepare()
        os.rmdir(out.path)  # model.export creates the directory itself
        try:
            diff = export.export_saved_model(model, out.path, inputs=inputs)
            out.commit()
        except BaseException:
            out.abort()
            raise
        atol = export.SAVED_MODEL_ATOL
        what = "SavedModel (serve signature)"
    else:
        tmp = os.path.join(out.parent, f".{os.path.basename(out.out)}.partial{os.getpid()}")
        try:
            diff = export.export_tflite(model, tmp, quantize=args.quantize, inputs=inputs)
            os.replace(tmp, out.out)
        except BaseException:
            remove(tmp)
            raise
        atol = export.TFLITE_ATOL[args.quantize]
        kind = "float32" if args.quantize == "none" else args.quantize
        what = f"TFLite ({kind}, LiteRT interpreter)"
    print(
        f"wrote {relative(out.out)} ({size_of(out.out) / 1e6:.2f} MB) in "
        f"{time.time() - started:.1f}s; {what} matches Keras on {inputs.shape[0]} inputs: "
        f"max abs diff {diff:.3g} (tolerance {atol:g})"
    )
    return 0
