"""int8 export of SE models: accuracy, size, LiteRT latency, and how the SE gate quantizes.

    python benchmarks/bench_int8.py [--work DIR] [--variants demo demo_hard ...]
        [--data-dir TFDS_DIR] [--repeats N] [--threads 1 2] [--quick]

Each variant is a model fine-tuned on the builtin dataset by the command line
(`keras-se demo` / `keras-se finetune`, trained into `--work` when missing,
reused otherwise):

- `demo`: what `keras-se demo` trains: MobileNetV2 alpha 0.35 at 64 px with SE
  after each block's depthwise ReLU6, `init="identity"` (gate `2 * sigmoid`);
- `demo_hard`: the same with `gate="hard_sigmoid"` (`2 * hard_sigmoid`);
- `demo_standard`: the same with `init="standard"` (a plain `sigmoid` gate);
- `mobilenet_v2`: a retrofitted MobileNetV2 at full width (alpha 1.0), 64 px.

For each it exports float32 and int8 TFLite files with
`keras_se.export.export_tflite` (int8: full-integer post-training
quantization, calibrated on `INT8_CALIBRATION_SAMPLES` training images, as
`keras-se export --quantize int8 --data builtin` would), and reports:

- validation accuracy (600 images) of the Keras model, the float32 file and
  the int8 file in the LiteRT interpreter (target: int8 at most 1 point
  below float32);
- file sizes;
- LiteRT latency at batch 1, float32 vs int8 interleaved in one process
  (1 thread: the calling thread's CPU time; 2 threads: wall time);
- zero-range activations (`keras_se.export.degenerate_int8_tensors`): an SE
  bottleneck whose ReLU units are all dead on the calibration images; when
  LiteRT's XNNPACK delegate cannot load the file (it aborts), int8 accuracy
  comes from the reference kernels and there is no int8 latency;
- the gate: every SE layer's gate (the per-channel factor its final MUL
  applies) read from the int8 model (reference kernels, all tensors kept)
  against the float32 Keras gate on the same validation images: mean and
  max absolute error, the gate tensor's quantization step and zero point,
  and for sigmoid gates the `LOGISTIC` output's step (int8 `LOGISTIC` has a
  fixed output scale of 1/256).

Results: `benchmarks/results/int8.json` and `int8.md`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import interleaved, machine_info, write_results  # noqa: E402

import keras_se  # noqa: E402
from keras_se import data as D  # noqa: E402
from keras_se import export as E  # noqa: E402
from keras_se import inspect as se_inspect  # noqa: E402

DEMO_SELECT = r"^(expanded_conv|block_\d+)_depthwise_relu$"
_DEMO = [
    "--image-size", "64", "--batch-size", "32", "--lr", "1e-2", "--schedule", "cosine",
    "--freeze", "none", "--weights", "none", "--alpha", "0.35",
    "--placement", "post_activation", "--select", DEMO_SELECT, "--bn-momentum", "0.9",
    "--epochs", "10",
]
VARIANTS = {
    # name: (description, command-line arguments after `python -m keras_se`)
    "demo": ("keras-se demo: MobileNetV2 0.35, 2*sigmoid gate (identity init)", ["demo"]),
    "demo_hard": (
        "demo with gate=hard_sigmoid (2*hard_sigmoid, identity init)",
        ["finetune", "mobilenet_v2", "--data", "builtin", *_DEMO, "--gate", "hard_sigmoid"],
    ),
    "demo_standard": (
        "demo with init=standard (plain sigmoid gate)",
        ["finetune", "mobilenet_v2", "--data", "builtin", *_DEMO, "--init", "standard"],
    ),
    "mobilenet_v2": (
        "retrofitted MobileNetV2 1.0 (zoo placement, 2*sigmoid), 64 px",
        [
            "finetune", "mobilenet_v2", "--data", "builtin", "--image-size", "64",
            "--lr", "1e-2", "--freeze", "none", "--weights", "none", "--alpha", "1.0",
            "--bn-momentum", "0.9", "--epochs", "8",
        ],
    ),
}
TARGET_POINTS = 1.0


def train(variant, out, data_dir, log):
    """Trains `variant` into `out` with the command line unless it is there."""
    model_file = os.path.join(out, "model.keras")
    if os.path.exists(model_file):
        return model_file
    cmd = [sys.executable, "-m", "keras_se", *VARIANTS[variant][1], "--out", out]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    log(f"training {variant}: {' '.join(cmd[2:])}")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    log(f"  trained in {time.perf_counter() - t0:.0f} s")
    return model_file


def load_run(out, data_dir):
    """The fine-tuned model and its data pipeline, preprocessed as it was trained."""
    from keras_se import cli

    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    sidecar = cli.read_sidecar(out)
    preprocess = cli.preprocess_function(sidecar.get("preprocess", "none"))
    size = tuple(int(s) for s in model.inputs[0].shape[1:3])
    data = D.load_data("builtin", image_size=size, batch_size=32, preprocess=preprocess,
                       data_dir=data_dir, cache=False)
    return model, data


# ------------------------------------------------------------------ the gate
def _interpreter(content, keep_all=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=keep_all,
    )
    it.allocate_tensors()
    return it


def gate_tensors(it, se_names):
    """For each SE layer, the tensor its rescale multiplies by, and its LOGISTIC output.

    The rescale is the last MUL in the layer's name scope; of its two inputs
    the gate is the one with one element per channel.
    """
    details = {d["index"]: d for d in it.get_tensor_details()}
    found = {}
    for op in it._get_ops_details():
        names = [details[t]["name"] for t in op["outputs"]]
        for layer in se_names:
            pattern = re.compile(rf"(^|[/;]){re.escape(layer)}(_\d+)?/")
            if not any(pattern.search(n) for n in names):
                continue
            entry = found.setdefault(layer, {})
            if op["op_name"] == "LOGISTIC":
                entry["logistic"] = int(op["outputs"][0])
            if op["op_name"] == "MUL":
                ins = [int(t) for t in op["inputs"]]
                sizes = [int(np.prod(details[t]["shape"])) for t in ins]
                if max(sizes) > min(sizes):  # the rescale: a map times a gate
                    entry["gate"] = ins[int(np.argmin(sizes))]
    return found, details


def _dequantize(value, detail):
    scale, zero = detail["quantization"]
    if not scale:
        return value.astype("float64")
    return (value.astype("float64") - zero) * scale


def gate_errors(model, content, images):
    """int8 gates against Keras's float32 gates on `images`, per SE layer."""
    layers = [la for la in _all_layers(model) if isinstance(la, keras_se.SqueezeExcite)]
    names = [la.name for la in layers]
    probe = se_inspect.excitation_model(model)
    it = _interpreter(content, keep_all=True)
    found, details = gate_tensors(it, names)
    inp = it.get_input_details()[0]
    errors = {n: [] for n in names}
    logistic_steps, gate_info = set(), {}
    for image in images:
        it.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        it.invoke()
        float_gates = probe(image[None], training=False)
        if isinstance(float_gates, dict):
            float_gates = [float_gates[n] for n in names]
        for name, ref in zip(names, float_gates):
            if "gate" not in found.get(name, {}):
                continue
            d = details[found[name]["gate"]]
            q = _dequantize(it.get_tensor(d["index"]), d).reshape(-1)
            errors[name].append(np.abs(q - np.asarray(ref, "float64").reshape(-1)))
            gate_info[name] = {"scale": float(d["quantization"][0]),
                               "zero_point": int(d["quantization"][1])}
            if "logistic" in found[name]:
                logistic_steps.add(float(details[found[name]["logistic"]]["quantization"][0]))
    all_err = np.concatenate([np.concatenate(v) for v in errors.values() if v])
    per_layer = {
        n: {"mean_abs": float(np.mean(np.concatenate(v))),
            "max_abs": float(np.max(np.concatenate(v))), **gate_info[n]}
        for n, v in errors.items() if v
    }
    steps = [v["scale"] for v in gate_info.values()]
    return {
        "layers": len(per_layer),
        "mean_abs": float(np.mean(all_err)),
        "max_abs": float(np.max(all_err)),
        "gate_step_median": float(np.median(steps)) if steps else None,
        "mean_abs_in_steps": float(np.mean(all_err) / np.median(steps)) if steps else None,
        "logistic_steps": sorted(logistic_steps),
        "per_layer": per_layer,
    }


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def se_op_list(content, model):
    """The ops of the first SE block in the int8 file (names only)."""
    it = _interpreter(content)
    names = [la.name for la in _all_layers(model) if isinstance(la, keras_se.SqueezeExcite)]
    details = {d["index"]: d for d in it.get_tensor_details()}
    first = re.compile(rf"(^|[/;]){re.escape(names[0])}(_\d+)?/")
    return [
        f"{op['op_name']}({np.dtype(op['result_types'][0]).name})"
        for op in it._get_ops_details()
        if any(first.search(details[t]["name"]) for t in op["outputs"])
    ]


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "keras_se_int8"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--gate-images", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="10 repeats, 16 gate images")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 20)
    gate_images = 16 if args.quick else args.gate_images
    os.makedirs(args.work, exist_ok=True)
    rows, data_out, gate_rows = [], [], []
    started = time.perf_counter()

    def log(msg):
        print(msg, flush=True)

    for variant in args.variants:
        out = os.path.join(args.work, variant)
        train(variant, out, args.data_dir, log)
        model, data = load_run(out, args.data_dir)
        tmp = tempfile.mkdtemp(prefix="keras_se_int8_")
        f32_path, int8_path = os.path.join(tmp, "f32.tflite"), os.path.join(tmp, "int8.tflite")
        t0 = time.perf_counter()
        diff_f32 = E.export_tflite(model, f32_path)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            E.export_tflite(model, int8_path, quantize="int8",
                            representative_data=data.train, verify=False)
        log(f"{variant}: exported in {time.perf_counter() - t0:.0f} s")
        with open(f32_path, "rb") as f:
            f32 = f.read()
        with open(int8_path, "rb") as f:
            int8 = f.read()
        degenerate = E.degenerate_int8_tensors(int8)
        xnnpack = E.tflite._xnnpack_loads(int8)
        if xnnpack:
            check = E.sample_inputs(model)
            diff_int8 = float(np.max(np.abs(E.run_tflite(int8, check) - model(check).numpy())))
        else:
            diff_int8 = float("nan")
            log(f"  {variant}: XNNPACK cannot load the int8 file (zero-range activations: "
                f"{len(degenerate)}); int8 accuracy with the reference kernels, no latency")
        acc_keras = float(model.evaluate(data.validation, verbose=0)[1])
        acc_f32 = E.tflite_accuracy(f32, data.validation)
        acc_int8 = E.tflite_accuracy(int8, data.validation, delegate=xnnpack)
        images = np.concatenate([b for b, _ in data.validation.take(
            (gate_images + 31) // 32).as_numpy_iterator()])[:gate_images]
        gates = gate_errors(model, int8, images)
        x = images[:1]
        timing = {}
        for threads in args.threads:
            import bench_litert

            clock = time.thread_time if threads == 1 else time.perf_counter
            fns = {"f32": bench_litert.invoker(f32, x, threads)}
            if xnnpack:
                fns["int8"] = bench_litert.invoker(int8, x, threads)
            timed = interleaved(fns, repeats=repeats, warmup=2, min_sample_s=0.02, clock=clock)
            timing[threads] = {k: v.to_dict() for k, v in timed.items()}
            if xnnpack:
                timing[threads]["ratio"] = timed["int8"].median / timed["f32"].median
        row = {
            "variant": variant,
            "what": VARIANTS[variant][0],
            "acc": f"{acc_keras:.3f} / {acc_f32:.3f} / {acc_int8:.3f}",
            "drop": f"{(acc_f32 - acc_int8) * 100:+.1f}",
            "met": "yes" if (acc_f32 - acc_int8) * 100 <= TARGET_POINTS else "no",
            "size": f"{len(f32) / 1e6:.2f} → {len(int8) / 1e6:.2f} MB",
            "diff": f"{diff_f32:.1e} / {diff_int8:.3f}",
            "dead": f"{len(degenerate)}" + ("" if xnnpack else " (XNNPACK aborts)"),
        }
        for threads in args.threads:
            t = timing[threads]
            row[f"lat{threads}"] = (
                f"{t['f32']['median_s'] * 1e3:.2f} → {t['int8']['median_s'] * 1e3:.2f} ms "
                f"({t['ratio']:.2f}x)" if xnnpack
                else f"{t['f32']['median_s'] * 1e3:.2f} → n/a (XNNPACK aborts)"
            )
        rows.append(row)
        gate_rows.append({
            "variant": variant,
            "gate": gates["mean_abs"],
            "row": f"| {variant} | {gates['mean_abs']:.4f} | {gates['max_abs']:.3f} | "
            f"{gates['gate_step_median']:.4f} | {gates['mean_abs_in_steps']:.2f} | "
            f"{', '.join(f'{s:.5f}' for s in gates['logistic_steps']) or '-'} | "
            f"{' → '.join(se_op_list(int8, model))} |",
        })
        data_out.append({
            "variant": variant, "description": VARIANTS[variant][0],
            "accuracy": {"keras": acc_keras, "tflite_float32": acc_f32, "tflite_int8": acc_int8},
            "sizes_bytes": {"float32": len(f32), "int8": len(int8)},
            "max_abs_diff": {"float32": diff_f32, "int8": diff_int8},
            "latency": timing, "gate": gates,
            "zero_range_activations": degenerate, "xnnpack_loads": xnnpack,
        })
        log(str(row))
        _write(rows, gate_rows, data_out, args, repeats, started)
        keras.backend.clear_session()
    log(f"total {time.perf_counter() - started:.0f} s")


COLUMNS = [
    ("variant", "model"),
    ("what", "what"),
    ("acc", "val accuracy: Keras / TFLite float32 / int8"),
    ("drop", "int8 drop (points)"),
    ("met", "≤ 1 point"),
    ("size", "file size float32 → int8"),
    ("diff", "max abs diff vs Keras (softmax): float32 / int8"),
    ("dead", "zero-range int8 activations"),
    ("lat1", "LiteRT latency, 1 thread (CPU time)"),
    ("lat2", "LiteRT latency, 2 threads (wall)"),
]


def _write(rows, gate_rows, data_out, args, repeats, started):
    gate_table = "\n".join(
        [
            "## How the SE gate quantizes",
            "",
            "Every SE layer's gate in the int8 model (dequantized input of its rescale MUL; "
            "reference kernels with all tensors kept) against the float32 Keras gate "
            "(`keras_se.inspect.excitation_model`) on validation images.",
            "",
            "| model | mean abs error | max abs error | gate step (median) | mean error in steps "
            "| LOGISTIC output step | first SE block, int8 ops |",
            "|---|---|---|---|---|---|---|",
            *[g["row"] for g in gate_rows],
        ]
    )
    intro = (
        "Models fine-tuned on the builtin dataset (600 validation images, 6 classes) by the "
        "command line, exported with `keras_se.export.export_tflite` as float32 and as int8 "
        "(full-integer post-training quantization, float32 input/output, calibrated on "
        f"{E.INT8_CALIBRATION_SAMPLES} training images). Latency: batch 1 in the LiteRT "
        f"interpreter (XNNPACK), float32 and int8 interleaved, {repeats} repeats, median. "
        "Command: `python benchmarks/bench_int8.py`."
    )
    write_results(
        "int8",
        "int8 export of SE models: accuracy, size, latency, gate quantization",
        rows,
        [c for c in COLUMNS if not c[0].startswith("lat") or int(c[0][3:]) in args.threads],
        data={"repeats": repeats, "elapsed_s": round(time.perf_counter() - started, 1),
              "variants": data_out},
        intro=intro,
        sections=[gate_table],
        info=machine_info(),
    )


if __name__ == "__main__":
    main()
