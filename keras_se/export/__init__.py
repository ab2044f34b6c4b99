"""Export for serving: TF SavedModel (TF Serving format), TFLite and ONNX, each verified.

- `export_saved_model(model, path)`: `model.export(path, format="tf_saved_model")`,
  the format TF Serving and `tf.saved_model.load` read, with a `serve`
  endpoint and a `serving_default` signature. It then loads the SavedModel
  back and checks that `serve` gives Keras's outputs.
- `export_tflite(model, path)`: a SavedModel, then
  `tf.lite.TFLiteConverter.from_saved_model`, builtin ops only (so the plain
  LiteRT runtime runs it). It then runs the flatbuffer in the LiteRT
  interpreter (`ai_edge_litert`, or `tf.lite.Interpreter` where that is not
  installed) and checks the outputs against Keras's.
- `export_tflite(model, path, quantize="int8", representative_data=batches)`:
  full-integer post-training quantization (int8 weights and activations,
  float32 input and output), calibrated on `INT8_CALIBRATION_SAMPLES` images
  of `representative_data` (see `representative_samples`).
- `export_onnx(model, path)`: `model.export(path, format="onnx")` (tf2onnx on
  TensorFlow, jax2onnx on JAX, `torch.onnx` on torch), with the SE squeeze
  traced as a mean (`keras_se.layers.mean_squeeze`, so that it becomes
  `GlobalAveragePool`/`ReduceMean`), a dynamic batch and the Keras input's
  name (both checked in the file). It then runs the file in ONNX Runtime
  (CPU) and checks the outputs against Keras's. A layer whose op the
  converter lacks raises `ExportError` naming it; no file is left behind.

Backends (`BACKEND_FORMATS`, `export_support`): TensorFlow and JAX write every
format (JAX's SavedModel and TFLite through Keras's own `model.export`, which
converts the model with jax2tf, TensorFlow installed; its ONNX through jax2onnx,
which keras-se does not install). PyTorch writes ONNX (`torch.onnx`) but neither
SavedModel nor TFLite (Keras needs torch_xla or litert-torch for them): asking
raises a one-line `ValueError`. The checks are the same on every backend.

One module per format: `saved_model` (with `save_artifacts`, the pair
`keras-se retrofit` and `finetune` write), `tflite` (float32, float16, int8),
`onnx`; `_common` holds the formats, tolerances, backend support and
`sample_inputs`. Every public name is importable from `keras_se.export`.

Tolerances (max absolute difference of the outputs on the check batch):

| artifact | tolerance | why |
| --- | --- | --- |
| SavedModel | `SAVED_MODEL_ATOL` = 1e-5 | the same TensorFlow kernels; only graph optimisation reorders float sums |
| TFLite float32 | `TFLITE_ATOL["none"]` = 1e-4 | different kernels (XNNPACK) and fused ops, float32 throughout |
| TFLite float16 weights | `TFLITE_ATOL["float16"]` = 2e-2 | weights rounded to 11 significant bits |
| TFLite int8 (full integer) | `TFLITE_ATOL["int8"]` = 0.3 | weights and activations on 256 levels; a sanity bound, the real check is accuracy on data (`tflite_accuracy`) |
| ONNX (ONNX Runtime, CPU) | `ONNX_ATOL` = 1e-4 | different kernels (MLAS, NCHWc-blocked convolutions, BatchNorm folded into them, fused activations), float32 throughout: the same case as TFLite float32 |

Measured on the demo's trained SE-MobileNetV2 (softmax outputs, 4 inputs):
SavedModel 1.8e-7, TFLite float32 1.2e-7, TFLite float16 3.1e-4, TFLite int8
0.20 (validation accuracy 0.953 float32, 0.958 int8:
`benchmarks/results/int8.md`); on the tests' random-weight models, at most a
few 1e-7 for float32. ONNX, on the
ONNX tests' models (random weights made informative; logits up to 0.4-4.4,
softmax for the demo model): at most 1.6e-5 (ResNet50 `residual_identity`),
typically 1e-6 to 6e-6; the SE layer alone 1e-7 to 1e-6.

`check_saved_model_in_fresh_process` loads a SavedModel in a new Python process
that imports TensorFlow and NumPy only (no keras_se, no Keras model code), to prove
the export stands on its own; `keras-se demo` uses it. `save_artifacts` writes the
`model.keras` and `saved_model/` pair that `keras-se retrofit` and `finetune` leave,
each reloaded and checked.
"""

from keras_se.export._common import (  # noqa: F401
    BACKEND_FORMATS,
    FORMATS,
    INT8_CALIBRATION_SAMPLES,
    QUANTIZATIONS,
    SAVED_MODEL_ATOL,
    TFLITE_ATOL,
    ParityError,
    _max_diff,
    check_export_support,
    export_support,
    sample_inputs,
)
from keras_se.export.onnx import (  # noqa: F401
    ONNX_ATOL,
    ExportError,
    check_onnx,
    export_onnx,
    onnx_io,
    onnx_requirements,
    run_onnx,
)
from keras_se.export.saved_model import (  # noqa: F401
    check_saved_model,
    check_saved_model_in_fresh_process,
    export_saved_model,
    save_artifacts,
)
from keras_se.export.tflite import (  # noqa: F401
    convert_tflite,
    degenerate_int8_tensors,
    export_tflite,
    representative_samples,
    run_tflite,
    tflite_accuracy,
)

__all__ = [
    "BACKEND_FORMATS",
    "ExportError",
    "FORMATS",
    "INT8_CALIBRATION_SAMPLES",
    "ONNX_ATOL",
    "ParityError",
    "QUANTIZATIONS",
    "SAVED_MODEL_ATOL",
    "TFLITE_ATOL",
    "check_export_support",
    "check_onnx",
    "check_saved_model",
    "check_saved_model_in_fresh_process",
    "convert_tflite",
    "degenerate_int8_tensors",
    "export_onnx",
    "export_saved_model",
    "export_support",
    "export_tflite",
    "onnx_io",
    "onnx_requirements",
    "representative_samples",
    "run_onnx",
    "run_tflite",
    "sample_inputs",
    "save_artifacts",
    "tflite_accuracy",
]
