"""The fused SE-block gradient: training-step overhead of SE, fused against autodiff.

    python benchmarks/bench_fused.py [--quick] [--pairs mobilenet resnet50_residual]
        [--train-size PX] [--batch N] [--repeats N] [--skip-layer] [--skip-models]

Layer: one `SqueezeExcite` (defaults) forward + backward (gradient with
respect to the input and the four weights) in a `tf.function`, on the
shapes of `bench_layer.py`; "autodiff" is the same layer traced with the
fused gradient off (`keras_se.layers._FUSED_GRADIENT = False`), interleaved.

Models: for each pair of `bench_models.PAIRS`, a `tf.function` training step
(forward + backward + SGD update, `bench_models.train_fn`) of A (no SE), B
(SE, the fused gradient) and "B autodiff" (the same SE model traced with the
fused gradient off), all three interleaved in one process. Targets (issue
16): SE-MobileNet's training-step overhead at most +6%, SE-ResNet50's at most
+4%.

Results: `benchmarks/results/fused.json` and `fused.md`.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import interleaved, machine_info, write_results  # noqa: E402
from bench_models import PAIRS, train_fn  # noqa: E402

import keras_se  # noqa: E402
import keras_se.layers  # noqa: E402

TARGETS = {"mobilenet": 1.06, "resnet50_residual": 1.04}
LAYER_SHAPES = [(32, 56, 56, 256), (32, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048),
                (32, 112, 112, 64)]
QUICK_LAYER_SHAPES = [(8, 56, 56, 256), (32, 14, 14, 1024), (8, 112, 112, 64)]


def traced_autodiff(make_fn, *args):
    """`make_fn(*args)`'s function, traced now with the fused gradient off."""
    saved = keras_se.layers._FUSED_GRADIENT
    keras_se.layers._FUSED_GRADIENT = False
    try:
        fn = make_fn(*args)
        fn()
    finally:
        keras_se.layers._FUSED_GRADIENT = saved
    return fn


def layer_step_fn(layer, x):
    weights = tf.cos(tf.range(x.shape[-1], dtype="float32"))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return lambda: step(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", nargs="*", default=["mobilenet", "resnet50_residual"],
                        choices=list(PAIRS))
    parser.add_argument("--train-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip-layer", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--name", default=None, help="result file stem (default fused)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 15)
    rng = np.random.default_rng(0)
    rows, data = [], {"layer": [], "models": []}
    started = time.perf_counter()

    def write():
        write_results(
            args.name or ("fused" if not args.quick else "fused_quick"),
            "The fused SE-block gradient: SE's training-step cost, fused vs autodiff",
            rows,
            COLUMNS,
            data={"repeats": repeats, "train_size": args.train_size, "batch": args.batch,
                  "elapsed_s": round(time.perf_counter() - started, 1), **data},
            intro=INTRO.format(repeats=repeats),
            info=machine_info(),
        )

    if not args.skip_layer:
        for shape in QUICK_LAYER_SHAPES if args.quick else LAYER_SHAPES:
            x = tf.constant(rng.standard_normal(shape, dtype=np.float32))
            layer = keras_se.SqueezeExcite()
            layer.build(shape)
            fns = {"fused": layer_step_fn(layer, x),
                   "autodiff": traced_autodiff(layer_step_fn, layer, x)}
            timed = interleaved(fns, repeats=repeats, warmup=2, min_sample_s=0.05)
            f, a = timed["fused"], timed["autodiff"]
            paired = sorted(fs / as_ for fs, as_ in zip(f.samples, a.samples))
            rows.append({
                "what": f"SqueezeExcite forward + backward {shape}",
                "a": "", "b": f"{f.median * 1e3:.2f}", "auto": f"{a.median * 1e3:.2f}",
                "overhead": "", "overhead_auto": "",
                "gain": f"{(f.median / a.median - 1) * 100:+.1f}% "
                        f"(paired {(paired[len(paired) // 2] - 1) * 100:+.1f}%)",
                "target": "", "met": "",
            })
            data["layer"].append({"shape": shape, "fused": f.to_dict(), "autodiff": a.to_dict()})
            print(rows[-1], flush=True)
            write()
    if not args.skip_models:
        for key in args.pairs:
            label_a, build_a, label_b, build_b = PAIRS[key]
            size = args.train_size
            model_a, model_b = build_a(size), build_b(size)
            x = tf.constant(rng.standard_normal((args.batch, size, size, 3), dtype=np.float32))
            y = tf.constant(rng.integers(0, 1000, size=(args.batch,)), dtype=tf.int32)
            fns = {"a": train_fn(model_a, x, y), "b": train_fn(model_b, x, y),
                   "auto": traced_autodiff(train_fn, model_b, x, y)}
            t0 = time.perf_counter()
            timed = interleaved(fns, repeats=repeats, warmup=2, min_sample_s=0.01)
            a, b, auto = timed["a"], timed["b"], timed["auto"]
            target = TARGETS.get(key)
            rows.append({
                "what": f"train step, {label_a} vs {label_b}, batch {args.batch}, {size} px",
                "a": f"{a.median * 1e3:.0f}", "b": f"{b.median * 1e3:.0f}",
                "auto": f"{auto.median * 1e3:.0f}",
                "overhead": f"{(b.median / a.median - 1) * 100:+.1f}%",
                "overhead_auto": f"{(auto.median / a.median - 1) * 100:+.1f}%",
                "gain": f"{(b.median / auto.median - 1) * 100:+.1f}%",
                "target": "" if target is None else f"≤ {(target - 1) * 100:+.0f}%",
                "met": "" if target is None else ("yes" if b.median / a.median <= target else "no"),
            })
            data["models"].append({"pair": key, "size": size, "a": a.to_dict(), "b": b.to_dict(),
                                   "autodiff": auto.to_dict(),
                                   "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
            write()
            del model_a, model_b, fns
            keras.backend.clear_session()
            gc.collect()
    write()
    print(f"total {time.perf_counter() - started:.0f} s")


COLUMNS = [
    ("what", "what"),
    ("a", "A, no SE (ms)"),
    ("b", "B fused (ms)"),
    ("auto", "B autodiff (ms)"),
    ("overhead", "B fused / A - 1"),
    ("overhead_auto", "B autodiff / A - 1"),
    ("gain", "fused / autodiff - 1"),
    ("target", "target"),
    ("met", "met"),
]

INTRO = (
    "B fused = the library (one custom gradient for the SE block in training); B autodiff = "
    "the same model or layer traced with `keras_se.layers._FUSED_GRADIENT = False`. All "
    "contenders interleaved in one process (`_timing.interleaved`), {repeats} repeats after 2 "
    "warm-up rounds, median wall time, float32, CPU TensorFlow. Command: "
    "`python benchmarks/bench_fused.py`."
)


if __name__ == "__main__":
    main()
