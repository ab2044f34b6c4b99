"""`keras-se export MODEL --format F --out PATH`: a serving artifact, checked."""

from __future__ import annotations

import os
import time

from keras_se.cli import command
from keras_se.cli._args import (
    UsageError,
    add_model_argument,
    add_output_arguments,
    positive_int,
    usage_errors,
)
from keras_se.cli._output import OutputDir, relative, remove, size_of


def add_arguments(p):
    from keras_se._options import FORMATS, QUANTIZATIONS

    add_model_argument(p, help_extra="; usually the .keras file (or the directory "
                       "holding model.keras) that retrofit or finetune wrote")
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="saved_model (TF Serving), tflite (LiteRT) or onnx (ONNX Runtime, "
                   "TensorRT, OpenVINO)")
    p.add_argument(
        "--weights", default="imagenet",
        help="for a MODEL built by name, as for retrofit (imagenet, none, a weights "
        "file, a timm checkpoint; a keras-hub preset's or timm:... model's own weights "
        "with imagenet). Ignored for .keras files. Default: imagenet",
    )
    add_output_arguments(p, what="PATH")
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="tflite only: none (float32), float16 weights, or int8 (full-integer "
        "post-training quantization, calibrated on --data). Default: none",
    )
    p.add_argument("--data", default=None,
                   help="with --quantize int8: the data to calibrate on and to measure "
                   "accuracy with (builtin, an image folder or a TFDS name, as for finetune; "
                   "the fine-tuning data)")
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    p.add_argument("--opset", type=positive_int, default=None,
                   help="onnx only: the ONNX opset. Default: the converter's (15 with tf2onnx)")


@command("export", help="export a model to a SavedModel, TFLite or ONNX",
         arguments=add_arguments)
def main(args) -> int:
    """Exports MODEL as a TF SavedModel, a TFLite flatbuffer or an ONNX file.

    MODEL is usually the .keras file a retrofit or finetune run wrote; a
    keras-hub preset, or a name with --weights, is built first. Each artifact
    is run and compared with Keras on a sample batch: the SavedModel's `serve`
    endpoint after tf.saved_model.load (tolerance 1e-5), the TFLite model in
    the LiteRT interpreter (1e-4 for float32, 2e-2 with --quantize float16),
    the ONNX file in ONNX Runtime (1e-4; dynamic batch, the model's input name
    kept). A model the converter cannot write exits with 2, naming the layer;
    no partial file is left. The artifact takes what the model takes:
    preprocessed images (see keras_se.json's "preprocess" beside a run's
    model.keras).

    Backends: every format from tensorflow and jax (--backend); from torch,
    see `keras_se.export.BACKEND_FORMATS` (a format it cannot write exits with 2).
    """
    import keras

    from keras_se import export
    from keras_se.models import build_model, resolve_model, resolve_weights

    with usage_errors():
        spec = resolve_model(args.model)
        weights = None if spec.kind == "file" else resolve_weights(spec, args.weights)
    if args.quantize != "none" and args.format != "tflite":
        raise UsageError(
            f"`--quantize` applies to --format tflite only. Received: quantize={args.quantize!r}"
        )
    if args.quantize == "int8" and args.data is None:
        raise UsageError(
            "`--quantize int8` needs --data: the images to calibrate the activations on "
            "(the fine-tuning data). Received: data=None"
        )
    if args.data is not None and args.quantize != "int8":
        raise UsageError(
            f"`--data` applies to --quantize int8 only. Received: data={args.data!r}"
        )
    if args.opset is not None and args.format != "onnx":
        raise UsageError(f"`--opset` applies to --format onnx only. Received: opset={args.opset}")
    suffix = {"tflite": ".tflite", "onnx": ".onnx"}.get(args.format)
    if suffix and not args.out.endswith(suffix):
        raise UsageError(
            f"`--out` of a {args.format} model must end with {suffix}. Received: out={args.out!r}"
        )
    if args.format == "onnx" and export.onnx_requirements():
        missing = export.onnx_requirements()
        # keras-se[onnx] brings onnx, onnxruntime and tf2onnx; jax2onnx (Keras's JAX
        # converter) is heavy (flax, optax, orbax...) and left to the user.
        hint = " ".join(p for p in (
            "'keras-se[onnx]'" if set(missing) - {"jax2onnx"} else "",
            "jax2onnx" if "jax2onnx" in missing else "") if p)
        raise UsageError(
            f"`--format onnx` needs {', '.join(missing)} on the {keras.backend.backend()} "
            f"backend: pip install {hint}. Received: format='onnx'"
        )
    with usage_errors():
        export.check_export_support(args.format)  # before any work: one line, exit 2
    out = OutputDir(args.out, overwrite=args.overwrite, is_file=suffix is not None).check()
    with usage_errors():
        model = build_model(spec, weights=weights, include_top=True)
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
        data = _calibration_data(args, spec, model) if args.quantize == "int8" else None
        tmp = os.path.join(out.parent, f".{os.path.basename(out.out)}.partial{os.getpid()}")
        try:
            diff = export.export_tflite(
                model, tmp, quantize=args.quantize, inputs=inputs,
                representative_data=data.unaugmented_train if data is not None else None,
            )
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
    if args.quantize == "int8":
        with open(out.out, "rb") as f:
            int8 = export.tflite_accuracy(f.read(), data.validation)
        keras_acc = _keras_accuracy(model, data.validation)
        print(f"validation accuracy on {data.num_validation} images of {data.description}: "
              f"Keras float32 {keras_acc:.3f}, LiteRT int8 {int8:.3f} ({int8 - keras_acc:+.3f})")
    return 0


def _keras_accuracy(model, dataset) -> float:
    import numpy as np

    correct = total = 0
    for images, labels in dataset.as_numpy_iterator():
        predicted = np.argmax(np.asarray(model.predict_on_batch(images)), axis=-1)
        labels = np.asarray(labels).reshape(-1)
        correct += int(np.sum(predicted == labels))
        total += labels.size
    return correct / max(total, 1)


def _calibration_data(args, spec, model):
    """The data `--quantize int8` calibrates on: the model's input size and preprocessing."""
    from keras_se.data import load_data
    from keras_se.models import preprocess_function

    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    if None in size:
        raise UsageError(
            "`--quantize int8` needs a model with a fixed input size to calibrate. "
            f"Received: model={args.model!r} with input {tuple(model.inputs[0].shape)}"
        )
    preprocess = spec.sidecar.get("preprocess", "none") if spec.kind == "file" else (
        spec.family or "none")
    with usage_errors():
        return load_data(args.data, image_size=size, batch_size=32,
                         preprocess=preprocess_function(preprocess), data_dir=args.data_dir)
