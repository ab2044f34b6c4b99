"""Model overhead of SE at 224x224: inference and a training step, SE against no SE.

    python benchmarks/bench_models.py [--quick] [--repeats N] [--warmup N]
        [--train-size PX] [--pairs resnet50_residual ...] [--skip-train]

Three A/B pairs, each interleaved in one process (see `_timing.ab`), weights=None,
float32, channels_last, SE models built with `init="standard"`:

- ResNet50 against `keras_se.applications.SEResNet50` (placement "residual");
- ResNet50 against `keras_se.add_se_blocks(ResNet50, "post_activation")`;
- MobileNet against `keras_se.applications.SEMobileNet`.

Each pair times a `tf.function` predict step (`model(x, training=False)`) at
batch 1 and batch 32, and a `tf.function` training step at batch 32 (SGD, sparse
categorical crossentropy, forward + backward + update): what Keras's `predict`
and `fit` run on a CPU. It also times the batch-1 predict step under
`tf.function(jit_compile=True)` (XLA, what Keras uses by default on a GPU). The
ratio B/A is the overhead; targets (issue 7): inference at batch 1 at most +3%,
training at most +10%.

In the `tf.function` rows a third contender, "B before", is the same SE model
traced with the library's squeeze as it was before the pooled squeeze
(`ops.mean` over H and W; `keras_se.layers._pooled_mean`), interleaved with A
and B: the before/after record of that change. Results go to `benchmarks/results/models.json` and `models.md`, rewritten
after every pair so that a cut-off run still leaves what it measured.
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
from _timing import ABResult, interleaved, machine_info, write_results  # noqa: E402

import keras_se  # noqa: E402
import keras_se.layers  # noqa: E402
from keras_se import applications as se_apps  # noqa: E402

TARGETS = {"infer_b1": 1.03, "train_b32": 1.10}


def _resnet50(size):
    return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))


def _mobilenet(size):
    return keras.applications.MobileNet(weights=None, input_shape=(size, size, 3))


def _se_resnet50(size):
    return se_apps.SEResNet50(
        weights=None, input_shape=(size, size, 3), placement="residual", init="standard"
    )


def _resnet50_post_activation(size):
    return keras_se.add_se_blocks(_resnet50(size), "post_activation", init="standard")


def _se_mobilenet(size):
    return se_apps.SEMobileNet(weights=None, input_shape=(size, size, 3), init="standard")


PAIRS = {
    # key: (label A, builder A, label B, builder B)
    "resnet50_residual": ("ResNet50", _resnet50, "SE-ResNet50 (residual)", _se_resnet50),
    "resnet50_post_activation": (
        "ResNet50",
        _resnet50,
        "ResNet50 + SE (post_activation)",
        _resnet50_post_activation,
    ),
    "mobilenet": ("MobileNet", _mobilenet, "SE-MobileNet", _se_mobilenet),
}

REFERENCE = """\
Reference figures (see `/work/shared/REFERENCE.md`): the SE paper (Hu et al., Section 4)
reports CPU inference of one 224x224 image at 164 ms for ResNet-50 and 167 ms for
SE-ResNet-50 (+1.8%), and a GPU training step (forward + backward, minibatch 256) at
190 ms vs 209 ms (+10%). timm on CPU, batch 1, 224 px: resnet50 vs seresnet50 +24%
(14.9 vs 18.5 ms, i9-10940X) and +8% (32.8 vs 35.4 ms, i7-12700H). Targets (issue 7):
inference overhead at batch 1 at most +3%, training-step overhead at most +10%."""


def predict_fn(model, x, jit_compile=False):
    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def step(x):
        return model(x, training=False)

    return lambda: step(x)


def traced_before(make_fn, *args):
    """`make_fn(*args)`'s function, traced now with the squeeze as it was before.

    Before the pooled squeeze the layer always took `ops.mean`; the library
    still takes that path where TensorFlow sees an accelerator, so the trace is
    made with `set_pooled_squeeze(False)`. Later calls reuse the trace.
    """
    keras_se.layers.set_pooled_squeeze(False)
    try:
        fn = make_fn(*args)
        fn()
    finally:
        keras_se.layers.set_pooled_squeeze(None)
    return fn


def train_fn(model, x, y):
    optimizer = keras.optimizers.SGD(learning_rate=1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: step(x, y)


MODE_LABELS = {
    "infer_b1": "inference",
    "infer_b32": "inference",
    "train_b32": "train step",
    "infer_b1_xla": "inference, XLA",
}


def _row(pair, mode, batch, size, result, before=None):
    a, b = result.a, result.b
    paired = result.paired_ratios
    overhead = (result.ratio - 1) * 100
    target = TARGETS.get(mode.removesuffix("_xla"))
    return {
        "pair": pair,
        "mode": MODE_LABELS[mode],
        "batch": batch,
        "size": size,
        "a_ms": f"{a.median * 1e3:.1f}",
        "a_iqr": f"{a.q1 * 1e3:.1f}-{a.q3 * 1e3:.1f}",
        "b_ms": f"{b.median * 1e3:.1f}",
        "b_iqr": f"{b.q1 * 1e3:.1f}-{b.q3 * 1e3:.1f}",
        "overhead": f"{overhead:+.1f}%",
        "before_ms": "" if before is None else f"{before.median * 1e3:.1f}",
        "before_overhead": ""
        if before is None
        else f"{(before.median / a.median - 1) * 100:+.1f}%",
        "paired": f"{(min(paired) - 1) * 100:+.1f}% .. {(max(paired) - 1) * 100:+.1f}%",
        "target": "" if target is None else f"<= {(target - 1) * 100:+.0f}%",
        "met": "" if target is None else ("yes" if result.ratio <= target else "no"),
    }


COLUMNS = [
    ("pair", "A vs B"),
    ("mode", "step"),
    ("batch", "batch"),
    ("size", "px"),
    ("a_ms", "A median (ms)"),
    ("a_iqr", "A IQR (ms)"),
    ("b_ms", "B median (ms)"),
    ("b_iqr", "B IQR (ms)"),
    ("overhead", "overhead B/A"),
    ("before_ms", "B before (ms)"),
    ("before_overhead", "overhead before"),
    ("paired", "paired-ratio range"),
    ("target", "target"),
    ("met", "met"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 1 warm-up")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--size", type=int, default=224, help="inference image size")
    parser.add_argument(
        "--train-size", type=int, default=224, help="training image size (160 if 224 is too slow)"
    )
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-xla", action="store_true", help="no XLA inference rows")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    rng = np.random.default_rng(0)
    rows, data, loads = [], [], []
    started = time.perf_counter()

    def write():
        info = machine_info()
        loads.append(info.get("loadavg_1_5_15"))
        intro = (
            'A = the plain Keras model, B = the same with SE (`init="standard"`); '
            "weights=None, float32. Inference: `model(x, training=False)` in a "
            '`tf.function` ("inference, XLA": `tf.function(jit_compile=True)`); train '
            "step: forward + backward + SGD update in a `tf.function`, sparse categorical "
            'crossentropy. "B before" = the same SE model traced with the squeeze as it '
            "was before the pooled squeeze (`ops.mean`); at batch 1 the library itself "
            "keeps `ops.mean` (a static batch of 1), so there B and B before are the same "
            "computation and their difference shows the noise. A, B (and B before) interleaved "
            f"in one process (`_timing.interleaved`), {repeats} repeats after {warmup} "
            "warm-up round(s), median; IQR = interquartile range of the samples; "
            "paired-ratio range = min/max of the per-round B/A ratios. Overhead = "
            "median(B)/median(A) - 1."
        )
        notes = [
            REFERENCE,
            "Load average (1 min) when each row was written: "
            + ", ".join(str(lo[0]) for lo in loads if lo)
            + f" on {info.get('cpus_usable')} usable cores. A load well above the "
            "benchmark's own ~1-2 means other work shared the cores, inflating absolute "
            "times and spreads; the interleaved ratios are the figure to read.",
        ]
        if args.train_size != args.size:
            notes.append(
                f"The training step ran at {args.train_size}x{args.train_size} px, not "
                f"{args.size}, to fit the time available on this machine."
            )
        write_results(
            "models",
            "Model overhead of SE: inference and training step",
            rows,
            COLUMNS,
            data={
                "repeats": repeats,
                "warmup": warmup,
                "size": args.size,
                "train_size": args.train_size,
                "quick": args.quick,
                "loadavg_per_pair": loads,
                "elapsed_s": round(time.perf_counter() - started, 1),
                "pairs": data,
            },
            intro=intro,
            sections=notes,
            info=info,
        )

    for key in args.pairs:
        label_a, build_a, label_b, build_b = PAIRS[key]
        pair = f"{label_a} vs {label_b}"
        jobs = [("infer_b1", 1, args.size), ("infer_b32", 32, args.size)]
        if not args.skip_xla:
            jobs.append(("infer_b1_xla", 1, args.size))
        if not args.skip_train:
            jobs.append(("train_b32", 32, args.train_size))
        for size in sorted({s for _, _, s in jobs}):
            model_a, model_b = build_a(size), build_b(size)
            params = (model_a.count_params(), model_b.count_params())
            for mode, batch, job_size in jobs:
                if job_size != size:
                    continue
                x = tf.constant(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
                if mode.startswith("infer"):
                    jit = mode.endswith("_xla")
                    fns = {
                        "a": predict_fn(model_a, x, jit_compile=jit),
                        "b": predict_fn(model_b, x, jit_compile=jit),
                    }
                    if not jit:
                        fns["before"] = traced_before(predict_fn, model_b, x)
                    min_sample_s = 0.25
                else:
                    y = tf.constant(rng.integers(0, 1000, size=(batch,)), dtype=tf.int32)
                    fns = {
                        "a": train_fn(model_a, x, y),
                        "b": train_fn(model_b, x, y),
                        "before": traced_before(train_fn, model_b, x, y),
                    }
                    min_sample_s = 0.01
                t0 = time.perf_counter()
                timed = interleaved(fns, repeats=repeats, warmup=warmup, min_sample_s=min_sample_s)
                result = ABResult(timed["a"], timed["b"])
                before = timed.get("before")
                row = _row(pair, mode, batch, size, result, before)
                rows.append(row)
                data.append(
                    {
                        "pair": key,
                        "a": label_a,
                        "b": label_b,
                        "params_a": params[0],
                        "params_b": params[1],
                        "mode": mode,
                        "batch": batch,
                        "size": size,
                        "seconds": round(time.perf_counter() - t0, 1),
                        **result.to_dict(),
                        "before": None if before is None else before.to_dict(),
                        "before_over_a": None
                        if before is None
                        else before.median / result.a.median,
                    }
                )
                print(row, f"({time.perf_counter() - t0:.0f} s)", flush=True)
                write()
            del model_a, model_b
            keras.backend.clear_session()
            gc.collect()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
