"""`keras-se export MODEL.keras --format F --out PATH`: a serving artifact, checked."""

from __future__ import annotations

import os
import time

from keras_se.cli import command
from keras_se.cli._args import UsageError, add_output_arguments, positive_int, usage_errors
from keras_se.cli._output import OutputDir, relative, remove, size_of


def add_arguments(p):
    from keras_se.export import FORMATS, QUANTIZATIONS

    p.add_argument("model", metavar="MODEL.keras",
                   help="a .keras file (or a directory holding model.keras)")
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="saved_model (TF Serving), tflite (LiteRT) or onnx (ONNX Runtime, "
                   "TensorRT, OpenVINO)")
    add_output_arguments(p, what="PATH")
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="tflite only: none (float32) or float16 weights. Default: none",
    )
    p.add_argument("--opset", type=positive_int, default=None,
                   help="onnx only: the ONNX opset. Default: the converter's (15 with tf2onnx)")


@command("export", help="export a .keras model to a SavedModel, TFLite or ONNX",
         arguments=add_arguments)
def main(args) -> int:
    """Exports MODEL.keras as a TF SavedModel, a TFLite flatbuffer or an ONNX file.

    Each artifact is run and compared with Keras on a sample batch: the
    SavedModel's `serve` endpoint after tf.saved_model.load (tolerance 1e-5),
    the TFLite model in the LiteRT interpreter (1e-4 for float32, 2e-2 with
    --quantize float16), the ONNX file in ONNX Runtime (1e-4; dynamic batch,
    the model's input name kept). A model the converter cannot write exits
    with 2, naming the layer; no partial file is left.
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
    if args.opset is not None and args.format != "onnx":
        raise UsageError(f"`--opset` applies to --format onnx only. Received: opset={args.opset}")
    suffix = {"tflite": ".tflite", "onnx": ".onnx"}.get(args.format)
    if suffix and not args.out.endswith(suffix):
        raise UsageError(
            f"`--out` of a {args.format} model must end with {suffix}. Received: out={args.out!r}"
        )
    if args.format == "onnx" and export.onnx_requirements():
        missing = ", ".join(export.onnx_requirements())
        raise UsageError(
            f"`--format onnx` needs {missing}: pip install 'keras-se[onnx]'. "
            f"Received: format='onnx'"
        )
    out = OutputDir(args.out, overwrite=args.overwrite, is_file=suffix is not None).check()
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
    elif args.format == "onnx":
        # export_onnx writes beside --out and replaces it only when the file checks out.
        with usage_errors():  # ExportError: a layer the converter lacks, named
            diff = export.export_onnx(model, out.out, inputs=inputs, opset=args.opset)
        atol = export.ONNX_ATOL
        (name, shape), = export.onnx_io(out.out)["inputs"][:1]
        dims = ", ".join(str(d) for d in shape)
        what = f"ONNX (input {name!r} ({dims}), ONNX Runtime)"
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
