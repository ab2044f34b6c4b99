"""The squeeze alone, five ways, on every backend: is there a faster one than `mean`?

    python benchmarks/bench_squeeze_backends.py [--backends tensorflow jax torch] [--repeats N]

On TensorFlow with only CPUs keras-se squeezes with a whole-map average pool (oneDNN),
faster than `tf.reduce_mean` (`bench_layer.py`). This asks the same question of the
other two backends, on `bench_backends.py`'s quick layer shapes (channels_last), with
the broadcast multiply `x * g` as the reference: one child process per backend (glibc
malloc fixed as in `_timing.MALLOC_ENV`), every variant interleaved in it
(`_timing.interleaved`), in `tf.function` on TensorFlow, jitted on JAX, eager on PyTorch.

| variant | TensorFlow | JAX | PyTorch |
| --- | --- | --- | --- |
| mean | `tf.reduce_mean` | `x.mean(axis=(1, 2))` (what `keras.ops.mean` runs) | `x.mean(dim=(1, 2))` |
| flat mean / sum | reshape, `reduce_sum` / hw | `x.reshape(b, hw, c).sum(1) / hw` | `x.view(b, hw, c).mean(1)` |
| pool | `tf.nn.avg_pool`, whole map (keras-se's) | `lax.reduce_window` over the whole map | `avg_pool2d`, whole map, on the NCHW view (keras-se's) |
| sum / n | `reduce_sum` / hw | two single-axis sums | `x.sum(dim=(1, 2)) / hw` |
| matmul by ones | `(b, 1, hw) @ (b, hw, c)` | `lax.dot_general` with a `(b, hw)` ones / hw | `(1, 1, hw) @ (b, hw, c)` |

An SE block reads its input once to squeeze it and once more to scale it, so no
block built from a backend's ops can be faster, relative to `x * g`, than
`(fastest squeeze + x * g) / x * g` (the bound column: the two matmuls, the
activations and the gate counted as free). Where a backend's bound is above
TensorFlow's layer ratio (`bench_backends.py`'s last run), the bar "no backend's layer
ratio above TensorFlow's" cannot be met there by any such block.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _timing import RESULTS_DIR, child_env, interleaved, machine_info, write_results  # noqa: E402

SHAPES = [(8, 56, 56, 256), (16, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048)]
VARIANTS = ("mean", "flat", "pool", "sum_n", "matmul_ones")


def _jax_fns(x, g):
    import jax
    import jax.numpy as jnp
    from jax import lax

    b, h, w, c = x.shape
    hw = h * w
    ones = jnp.full((b, hw), 1.0 / hw, x.dtype)
    fns = {
        "floor": jax.jit(lambda t: t * g),
        "mean": jax.jit(lambda t: t.mean(axis=(1, 2))),
        "flat": jax.jit(lambda t: t.reshape(b, hw, c).sum(1) / hw),
        "pool": jax.jit(lambda t: lax.reduce_window(
            t, 0.0, lax.add, (1, h, w, 1), (1, 1, 1, 1), "VALID").reshape(b, c) / hw),
        "sum_n": jax.jit(lambda t: t.sum(axis=1).sum(axis=1) / hw),
        "matmul_ones": jax.jit(lambda t: lax.dot_general(
            t.reshape(b, hw, c), ones, (((1,), (1,)), ((0,), (0,))))),
    }
    return {k: (lambda f=f: jax.block_until_ready(f(x))) for k, f in fns.items()}


def _tf_fns(x, g):
    import tensorflow as tf

    b, h, w, c = x.shape
    hw = h * w
    ones = tf.fill((b, 1, hw), 1.0 / hw)
    fns = {
        "floor": lambda t: t * g,
        "mean": lambda t: tf.reduce_mean(t, axis=(1, 2)),
        "flat": lambda t: tf.reduce_sum(tf.reshape(t, (b, hw, c)), 1) / hw,
        # keras-se's CPU squeeze (keras_se.layers._pooled_mean): oneDNN's pool.
        "pool": lambda t: tf.reshape(tf.nn.avg_pool(t, (h, w), 1, "VALID"), (b, c)),
        "sum_n": lambda t: tf.reduce_sum(t, axis=(1, 2)) / hw,
        "matmul_ones": lambda t: tf.linalg.matmul(ones, tf.reshape(t, (b, hw, c))),
    }
    compiled = {k: tf.function(f) for k, f in fns.items()}
    return {k: (lambda f=f: f(x)) for k, f in compiled.items()}


def _torch_fns(x, g):
    import torch
    import torch.nn.functional as F

    b, h, w, c = x.shape
    hw = h * w
    ones = torch.full((1, 1, hw), 1.0 / hw)
    fns = {
        "floor": lambda: x * g,
        "mean": lambda: x.mean(dim=(1, 2)),
        "flat": lambda: x.view(b, hw, c).mean(1),
        # What keras-se's block runs (keras_se/_torch_block.py): channels-last pooling.
        "pool": lambda: F.avg_pool2d(x.permute(0, 3, 1, 2), (h, w)),
        "sum_n": lambda: x.sum(dim=(1, 2)) / hw,
        "matmul_ones": lambda: torch.matmul(ones, x.view(b, hw, c)),
    }

    def no_grad(f):
        def run():
            with torch.no_grad():
                return f()
        return run

    return {k: no_grad(f) for k, f in fns.items()}


def run_backend(repeats):
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        x = keras.ops.convert_to_tensor(rng.standard_normal(shape, dtype=np.float32))
        g = keras.ops.convert_to_tensor(
            rng.uniform(size=(shape[0], 1, 1, shape[-1])).astype("float32"))
        fns = {"jax": _jax_fns, "torch": _torch_fns, "tensorflow": _tf_fns}[backend](x, g)
        want = keras.ops.convert_to_numpy(fns["mean"]())
        for name in VARIANTS:  # every variant computes the same squeeze
            got = keras.ops.convert_to_numpy(fns[name]()).reshape(want.shape)
            assert np.allclose(got, want, atol=1e-5), (backend, shape, name)
        timed = interleaved(fns, repeats=repeats, warmup=2, min_sample_s=0.02)
        rows.append({"shape": list(shape),
                     **{k: timed[k].median for k in ("floor", *VARIANTS)}})
        print(f"[{backend}] {shape}: " + " ".join(
            f"{k} {timed[k].median * 1e3:.3f}" for k in ("floor", *VARIANTS)), flush=True)
    path = os.path.join(RESULTS_DIR, f"squeeze_backends_{backend}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"backend": backend, "rows": rows, "machine": machine_info()}, f, indent=1)
    return path


def _tf_layer_ratios():
    """TensorFlow's layer / x*g ratio per shape, best mode, from `bench_backends.py`'s
    last run (`results/backends.json`), or {}."""
    from bench_backends import _best_layer

    path = os.path.join(RESULTS_DIR, "backends.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        layer = json.load(f)["results"].get("tensorflow", {}).get("layer", [])
    return {shape: r["ratio"] for shape, r in _best_layer(layer).items()}


def merge(paths):
    rows, runs = [], {}
    tf_layer = _tf_layer_ratios()
    for p in paths:
        with open(p, encoding="utf-8") as f:
            run = json.load(f)
        runs[run["backend"]] = run
        for r in run["rows"]:
            best = min(VARIANTS, key=lambda k: r[k])
            bound = (r[best] + r["floor"]) / r["floor"]
            tf_ratio = tf_layer.get(tuple(r["shape"]))
            rows.append({
                "backend": run["backend"], "shape": "x".join(map(str, r["shape"])),
                "floor": f"{r['floor'] * 1e3:.3f}",
                **{k: f"{r[k] * 1e3:.3f} ({r[k] / r['mean']:.2f})" for k in VARIANTS},
                "best": best,
                "bound": f"{bound:.2f}x",
                "tf": "" if tf_ratio is None else f"{tf_ratio:.2f}x"
                + (" (bound above)" if run["backend"] != "tensorflow" and bound > tf_ratio
                   else ""),
            })
    columns = [("backend", "backend"), ("shape", "shape"), ("floor", "x*g (ms)"),
               *[(k, f"{k} (ms, / mean)") for k in VARIANTS], ("best", "fastest"),
               ("bound", "(fastest + x*g) / x*g"),
               ("tf", "TensorFlow's layer ratio (backends.md)")]
    info = dict(next(iter(runs.values()))["machine"])
    info["keras_backend"] = ", ".join(runs)
    write_results("squeeze_backends", "The squeeze, five ways, on every backend", rows,
                  columns, data=runs, intro=__doc__.split("\n\n", 2)[2], info=info)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", default=["tensorflow", "jax", "torch"],
                        choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(run_backend(args.repeats))
        return 0
    paths = []
    for backend in args.backends:
        env = child_env(KERAS_BACKEND=backend)
        code = subprocess.call([sys.executable, __file__, "--child", "--repeats",
                                str(args.repeats)], env=env)
        path = os.path.join(RESULTS_DIR, f"squeeze_backends_{backend}.json")
        if code == 0 and os.path.exists(path):
            paths.append(path)
    merge(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
