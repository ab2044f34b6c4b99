"""SE overhead at batch 1 on CPU in ONNX Runtime, beside TensorFlow and LiteRT.

    python benchmarks/bench_onnx.py [--quick] [--repeats N] [--warmup N] [--size PX]
        [--pairs mobilenet resnet50] [--threads 1 2] [--no-plain-export]

Two A/B pairs, weights=None, float32, SE models with `init="standard"`:

- MobileNet against `keras_se.applications.SEMobileNet` (SE on the 13 pointwise
  convolutions);
- ResNet50 against `keras_se.applications.SEResNet50` (placement "residual").

Each model is run at batch 1 (224x224 by default) three ways:

- TensorFlow: `model(x, training=False)` in a `tf.function` (TensorFlow's own
  thread pools: every core);
- ONNX Runtime, CPU execution provider, all graph optimisations, on the file
  `keras_se.export.export_onnx` writes (which also reports its parity), with
  `intra_op_num_threads` 1 and 2;
- LiteRT: the `ai_edge_litert` interpreter (XNNPACK) on the file
  `keras_se.export.export_tflite` writes, with `num_threads` 1 and 2.

A and B of a pair alternate round by round in one process (`_timing.ab`),
warm-up excluded; the ratio B/A is SE's overhead in that runtime. With ONNX
Runtime a third contender, "B plain", runs the SE model as Keras's own
`model.export(format="onnx")` writes it without `export_onnx`'s mean squeeze (the
layer's CPU fast path, a whole-map `AvgPool`, becomes an ONNX `AveragePool`
behind a transpose): what the `mean_squeeze` switch changes at run time.
Results go to `benchmarks/results/onnx.json` and `onnx.md`, rewritten after
every row so that a cut-off run still leaves what it measured.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import ABResult, interleaved, machine_info, write_results  # noqa: E402

from keras_se import applications as se_apps  # noqa: E402
from keras_se import export  # noqa: E402

PAIRS = {
    # key: (label A, builder A, label B, builder B)
    "mobilenet": (
        "MobileNet",
        lambda s: keras.applications.MobileNet(weights=None, input_shape=(s, s, 3)),
        "SE-MobileNet",
        lambda s: se_apps.SEMobileNet(weights=None, input_shape=(s, s, 3), init="standard"),
    ),
    "resnet50": (
        "ResNet50",
        lambda s: keras.applications.ResNet50(weights=None, input_shape=(s, s, 3)),
        "SE-ResNet50",
        lambda s: se_apps.SEResNet50(weights=None, input_shape=(s, s, 3), init="standard"),
    ),
}

VERSIONS = ("onnx", "onnxruntime", "tf2onnx", "ai-edge-litert")


def _versions() -> dict:
    out = {}
    for name in VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def tf_fn(model, x):
    @tf.function(reduce_retracing=True)
    def step(x):
        return model(x, training=False)

    x = tf.constant(x)
    return lambda: step(x)


def ort_fn(path, x, threads):
    session = export.onnx._onnx_session(path, threads)
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def litert_fn(path, x, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    index = detail["index"]

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return run


def _row(pair, runtime, threads, result, plain=None, parity=""):
    a, b = result.a, result.b
    paired = result.paired_ratios
    return {
        "pair": pair,
        "runtime": runtime,
        "threads": threads,
        "a_ms": f"{a.median * 1e3:.2f}",
        "a_iqr": f"{a.q1 * 1e3:.2f}-{a.q3 * 1e3:.2f}",
        "b_ms": f"{b.median * 1e3:.2f}",
        "b_iqr": f"{b.q1 * 1e3:.2f}-{b.q3 * 1e3:.2f}",
        "overhead": f"{(result.ratio - 1) * 100:+.1f}%",
        "paired": f"{(min(paired) - 1) * 100:+.1f}% .. {(max(paired) - 1) * 100:+.1f}%",
        "plain_ms": "" if plain is None else f"{plain.median * 1e3:.2f}",
        "plain_overhead": "" if plain is None else f"{(plain.median / a.median - 1) * 100:+.1f}%",
        "parity": parity,
    }


COLUMNS = [
    ("pair", "A vs B"),
    ("runtime", "runtime"),
    ("threads", "threads"),
    ("a_ms", "A median (ms)"),
    ("a_iqr", "A IQR (ms)"),
    ("b_ms", "B median (ms)"),
    ("b_iqr", "B IQR (ms)"),
    ("overhead", "overhead B/A"),
    ("paired", "paired-ratio range"),
    ("plain_ms", "B plain export (ms)"),
    ("plain_overhead", "overhead plain"),
    ("parity", "export max abs diff A / B"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 1 warm-up")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument(
        "--no-plain-export", action="store_true", help="no 'B plain' (Keras's export as is)"
    )
    parser.add_argument("--min-sample-s", type=float, default=0.2)
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    versions = _versions()
    rows, data, loads = [], [], []
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="keras_se_bench_onnx_")

    def write():
        info = machine_info()
        info.update(versions)
        loads.append(info.get("loadavg_1_5_15"))
        intro = (
            f"Batch 1, {args.size}x{args.size}, float32, CPU, weights=None; B = the SE model "
            '(`init="standard"`). TensorFlow: a `tf.function` of `model(x, training=False)`, '
            "TensorFlow's own thread pools. ONNX Runtime "
            f"{versions['onnxruntime']} (CPU execution provider, all graph optimisations) on "
            f"`export_onnx`'s file (tf2onnx {versions['tf2onnx']}, opset 15); LiteRT "
            f"(ai-edge-litert {versions['ai-edge-litert']}, XNNPACK) on `export_tflite`'s "
            "file; threads = `intra_op_num_threads` / `num_threads`. \"B plain export\" = "
            "the SE model as Keras's `model.export(format=\"onnx\")` writes it by itself "
            "(the layer's CPU squeeze, a whole-map `AvgPool`, becomes an ONNX `AveragePool` "
            "behind a transpose), interleaved with A and B. A and B (and B plain) "
            f"interleaved in one process (`_timing.interleaved`), {repeats} repeats after "
            f"{warmup} warm-up round(s), median; IQR = interquartile range; paired-ratio "
            "range = min/max of the per-round B/A ratios. Overhead = median(B)/median(A) - 1. "
            "Parity: the max abs difference from Keras (softmax outputs, 4 images) that "
            "`export_onnx` / `export_tflite` measured; with weights=None these models' "
            "softmax barely depends on the input, so the column shows that the exports run, "
            "not how close they are (`tests/test_export_onnx.py` measures that on "
            "informative weights)."
        )
        notes = [
            "Load average (1 min) when each row was written: "
            + ", ".join(str(lo[0]) for lo in loads if lo)
            + f" on {info.get('cpus_usable')} usable cores. A load well above the "
            "benchmark's own ~1-2 means other work shared the cores: absolute times and "
            "spreads are inflated, the interleaved ratios are the figure to read."
        ]
        write_results(
            "onnx",
            "SE overhead at batch 1: ONNX Runtime, TensorFlow, LiteRT",
            rows,
            COLUMNS,
            data={
                "repeats": repeats,
                "warmup": warmup,
                "size": args.size,
                "threads": args.threads,
                "quick": args.quick,
                "versions": versions,
                "loadavg_per_row": loads,
                "elapsed_s": round(time.perf_counter() - started, 1),
                "rows": data,
            },
            intro=intro,
            sections=notes,
            info=info,
        )

    def record(key, label_a, label_b, runtime, threads, timed, parity, extra):
        result = ABResult(timed["a"], timed["b"])
        plain = timed.get("plain")
        row = _row(f"{label_a} vs {label_b}", runtime, threads, result, plain, parity)
        rows.append(row)
        data.append(
            {
                "pair": key,
                "a": label_a,
                "b": label_b,
                "runtime": runtime,
                "threads": threads,
                **result.to_dict(),
                "plain": None if plain is None else plain.to_dict(),
                "plain_over_a": None if plain is None else plain.median / result.a.median,
                **extra,
            }
        )
        print(row, flush=True)
        write()

    try:
        for key in args.pairs:
            label_a, build_a, label_b, build_b = PAIRS[key]
            keras.utils.set_random_seed(0)
            models = {"a": build_a(args.size), "b": build_b(args.size)}
            x = export.sample_inputs(models["a"], batch_size=1)
            check = export.sample_inputs(models["a"], batch_size=4)
            # Export first: each export is checked against Keras and reports its parity.
            onnx_paths, tflite_paths, diffs = {}, {}, {}
            for k, model in models.items():
                t0 = time.perf_counter()
                onnx_paths[k] = os.path.join(workdir, f"{key}_{k}.onnx")
                diffs[("onnx", k)] = export.export_onnx(model, onnx_paths[k], inputs=check)
                tflite_paths[k] = os.path.join(workdir, f"{key}_{k}.tflite")
                diffs[("tflite", k)] = export.export_tflite(model, tflite_paths[k], inputs=check)
                print(f"{key} {k}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
            plain_path = None
            if not args.no_plain_export:
                plain_path = os.path.join(workdir, f"{key}_b_plain.onnx")
                models["b"].export(plain_path, format="onnx", verbose=False)

            def parity(fmt, diffs=diffs):
                return f"{diffs[(fmt, 'a')]:.1e} / {diffs[(fmt, 'b')]:.1e}"

            extra = {
                "size": args.size,
                "params_a": models["a"].count_params(),
                "params_b": models["b"].count_params(),
            }
            fns = {k: tf_fn(m, x) for k, m in models.items()}
            timed = interleaved(fns, repeats=repeats, warmup=warmup, min_sample_s=args.min_sample_s)
            record(key, label_a, label_b, "TensorFlow", "all", timed, "", extra)
            for threads in args.threads:
                fns = {k: ort_fn(p, x, threads) for k, p in onnx_paths.items()}
                if plain_path is not None:
                    fns["plain"] = ort_fn(plain_path, x, threads)
                timed = interleaved(
                    fns, repeats=repeats, warmup=warmup, min_sample_s=args.min_sample_s
                )
                record(key, label_a, label_b, "ONNX Runtime", threads, timed, parity("onnx"),
                       {**extra, "max_abs_diff": {k: diffs[("onnx", k)] for k in models}})
            for threads in args.threads:
                fns = {k: litert_fn(p, x, threads) for k, p in tflite_paths.items()}
                timed = interleaved(
                    fns, repeats=repeats, warmup=warmup, min_sample_s=args.min_sample_s
                )
                record(key, label_a, label_b, "LiteRT", threads, timed, parity("tflite"),
                       {**extra, "max_abs_diff": {k: diffs[("tflite", k)] for k in models}})
            del models, fns
            keras.backend.clear_session()
            gc.collect()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
