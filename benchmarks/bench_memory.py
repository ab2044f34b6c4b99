"""Peak resident memory of a training step, with and without SE.

    python benchmarks/bench_memory.py [--quick] [--batch 32] [--size 224] [--steps 3]

ResNet50 against `keras_se.applications.SEResNet50` (placement "residual",
`init="standard"`), weights=None, float32. Each model runs in a fresh subprocess
so that the peaks do not mix: the child builds the model, records its resident
set size (RSS, from /proc/self/statm), runs a few `tf.function` training steps
(SGD, sparse categorical crossentropy) and reports the peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`). The training-step memory is the
peak minus the RSS after the build. Results go to `benchmarks/results/memory.json`
and `memory.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODELS = {"ResNet50": "ResNet50", "SE-ResNet50 (residual)": "SEResNet50"}


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="utf-8") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(which: str, batch: int, size: int, steps: int) -> dict:
    """Runs in the subprocess: build, measure, train, measure."""
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    start_rss = _rss_mib()
    if which == "ResNet50":
        model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    else:
        from keras_se import applications as se_apps

        model = se_apps.SEResNet50(
            weights=None, input_shape=(size, size, 3), placement="residual", init="standard"
        )
    optimizer = keras.optimizers.SGD(learning_rate=1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
    y = tf.constant(rng.integers(0, 1000, size=(batch,)), dtype=tf.int32)
    built_rss = _rss_mib()
    built_maxrss = _maxrss_mib()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y).numpy()
        times.append(time.perf_counter() - t0)
    peak = _maxrss_mib()
    return {
        "model": which,
        "params": model.count_params(),
        "weights_mib": sum(int(np.prod(v.shape)) for v in model.weights) * 4 / 2**20,
        "rss_start_mib": start_rss,
        "rss_after_build_mib": built_rss,
        "maxrss_after_build_mib": built_maxrss,
        "peak_rss_mib": peak,
        "rss_end_mib": _rss_mib(),
        "train_step_mib": peak - built_rss,
        "step_s": times,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 steps")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = args.batch or (16 if args.quick else 32)
    steps = args.steps or (2 if args.quick else 3)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, batch, args.size, steps)), flush=True)
        return

    from _timing import machine_info, write_results

    results = {}
    for label, which in MODELS.items():
        cmd = [sys.executable, os.path.abspath(__file__), "--child", which]
        cmd += ["--batch", str(batch), "--size", str(args.size), "--steps", str(steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{label} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[label] = json.loads(lines[-1][len("RESULT ") :])
        print(label, results[label], flush=True)
    base, se = results["ResNet50"], results["SE-ResNet50 (residual)"]
    rows = []
    for label, r in results.items():
        rows.append(
            {
                "model": label,
                "params": f"{r['params']:,}",
                "after_build": f"{r['rss_after_build_mib']:.0f}",
                "peak": f"{r['peak_rss_mib']:.0f}",
                "step": f"{r['train_step_mib']:.0f}",
                "step_ratio": f"{r['train_step_mib'] / base['train_step_mib']:.3f}",
                "peak_ratio": f"{r['peak_rss_mib'] / base['peak_rss_mib']:.3f}",
            }
        )
    columns = [
        ("model", "model"),
        ("params", "parameters"),
        ("after_build", "RSS after build (MiB)"),
        ("peak", "peak RSS (MiB)"),
        ("step", "peak - after build (MiB)"),
        ("step_ratio", "train-step memory vs ResNet50"),
        ("peak_ratio", "peak RSS vs ResNet50"),
    ]
    ratio = se["train_step_mib"] / base["train_step_mib"]
    write_results(
        "memory",
        "Peak resident memory of a training step: ResNet50 vs SE-ResNet50",
        rows,
        columns,
        data={
            "batch": batch,
            "size": args.size,
            "steps": steps,
            "models": results,
            "train_step_ratio": ratio,
            "peak_ratio": se["peak_rss_mib"] / base["peak_rss_mib"],
        },
        intro=(
            f"Training step (tf.function, SGD, sparse categorical crossentropy), batch {batch}, "
            f"{args.size}x{args.size}, float32, weights=None, {steps} steps; each model in a "
            "fresh subprocess. Peak RSS = `getrusage(RUSAGE_SELF).ru_maxrss` after the steps; "
            "the train-step memory is the peak minus the RSS right after the model, optimizer "
            "and batch were built (activations kept for the backward pass, gradients, "
            "TensorFlow's allocator caches and the traced graph)."
        ),
        sections=[
            f"SE-ResNet50 needs {(ratio - 1) * 100:+.1f}% training-step memory over ResNet50 "
            f"({se['train_step_mib'] - base['train_step_mib']:+.0f} MiB). Its weights add "
            f"{se['weights_mib'] - base['weights_mib']:.1f} MiB ({se['params'] - base['params']:,}"
            " parameters); each SE block also keeps its gate output and the scaled tensor "
            "(one extra activation the size of the block's output) for the backward pass."
        ],
        info=machine_info(),
    )


if __name__ == "__main__":
    main()
