"""Where SE's model overhead goes: a TensorFlow profiler trace, op by op.

    python benchmarks/profile_models.py [--pairs resnet50_residual ...]
        [--modes infer_b1 train] [--steps N] [--rounds N] [--train-batch N] [--size PX]

For each pair of `bench_models.PAIRS` (the plain model A and its SE version B)
and each step (`infer_b1`: `model(x, training=False)` at batch 1;
`infer_b32`; `train`: forward + backward + SGD update at `--train-batch`), both
run under `tf.function` exactly as `bench_models.py` times them. After two
warm-up calls, `tf.profiler.experimental` records `--steps` calls of A and of
B in `--rounds` alternating rounds, and the trace's `framework_op_stats` table
(TensorFlow's own per-op accounting, the table TensorBoard's profile plugin
shows) is read back. Each op's self time is attributed:

- to SE when its name lies under an inserted `SqueezeExcite` layer's scope
  (forward ops, and their gradients under `gradient_tape/`), split by op type
  (`Mean` or `_MklNativeAvgPool` = the squeeze, `_MklNativeFusedMatMul` = the
  two FC layers with bias and activation fused by oneDNN, `Mul` = the
  rescale, ...);
- otherwise to the rest of the model, which B shares with A; B's rest minus
  A's rest is what inserting SE did to the ops around it (a lost fusion, a
  different schedule) plus noise.

It also estimates the *SE floor*, the least the SE layers could cost without
fusing into their neighbours (see `se_floor`), against A's unprofiled wall time.

Self times are summed over ops, so on 2 cores with intra-op parallelism they
add up to more than the wall time; the shares are what to read. Results go to
`benchmarks/results/profile.json` and `profile.md`.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import machine_info, write_results  # noqa: E402
from bench_models import PAIRS, predict_fn, train_fn  # noqa: E402
from tensorflow.python.profiler.internal import (  # noqa: E402
    _pywrap_profiler_plugin as profiler_plugin,
)

import keras_se  # noqa: E402

MODES = {"infer_b1": ("inference", 1), "infer_b32": ("inference", 32), "train": ("train", None)}


def op_stats(fn, steps: int) -> list[dict]:
    """Runs `fn` `steps` times under the profiler; the `framework_op_stats` rows."""
    logdir = tempfile.mkdtemp(prefix="keras_se_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                fn()
        finally:
            tf.profiler.experimental.stop()
        planes = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        raw, ok = profiler_plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
        if not ok:
            raise RuntimeError(f"the profiler could not convert {planes}")
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    tables = json.loads(raw)
    table = tables[0] if isinstance(tables, list) else tables
    cols = [c["id"] for c in table["cols"]]
    rows = []
    for r in table["rows"]:
        row = dict(zip(cols, [c.get("v") if c else None for c in r["c"]]))
        if row["type"] == "IDLE":
            continue
        rows.append(
            {
                "op": row["operation"],
                "type": row["type"],
                "calls": row["occurrences"],
                "self_us": float(row["total_self_time"]) / steps,
            }
        )
    return rows


def se_floor(model, rescale_us: float, training: bool) -> dict:
    """The least time the SE layers of `model` could take per call.

    Every SE layer must read its input for the squeeze, then read it again and
    write the output for the rescale: 3 transfers of its input against the 2 of
    the rescale alone, so at best 1.5 x the rescale's time. `rescale_us` is that
    time as profiled inside the model (the `Mul` ops in SE scopes, forward), where
    the input is as cache-resident as it really is. Each layer also reads its
    MLP weights once, at the bandwidth of a 64 MiB multiply. A training step's
    backward pass moves at least as much again, so it counts twice.
    """
    weight_bytes = sum(
        layer.count_params() * 4
        for layer in _all_layers(model)
        if isinstance(layer, keras_se.SqueezeExcite)
    )
    bandwidth = stream_bandwidth()
    forward_ms = 1.5 * rescale_us / 1e3 + weight_bytes / bandwidth * 1e3
    return {
        "rescale_ms": rescale_us / 1e3,
        "weight_bytes": weight_bytes,
        "stream_bandwidth_gbps": bandwidth / 1e9,
        "floor_ms": forward_ms * (2 if training else 1),
    }


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def stream_bandwidth(nbytes: int = 64 * 2**20, repeats: int = 20) -> float:
    """Bytes/s of one broadcast multiply over `nbytes` (read once, write once)."""
    n = nbytes // 4 // 256
    x = tf.random.uniform((n, 256))
    g = tf.random.uniform((1, 256))
    fn = tf.function(lambda t: t * g)
    return 2 * n * 256 * 4 / _median_time(lambda: fn(x), repeats)


def wall_ms(fn, repeats: int = 10) -> float:
    return _median_time(fn, repeats) * 1e3


def se_matcher(model):
    names = [
        layer.name for layer in _all_layers(model) if isinstance(layer, keras_se.SqueezeExcite)
    ]
    if not names:
        return lambda op: False
    pattern = re.compile(r"(^|/)(" + "|".join(map(re.escape, names)) + r")(_\d+)?/")
    return lambda op: bool(pattern.search(op))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def attribute(rows_a, rows_b, is_se) -> dict:
    total_a = sum(r["self_us"] for r in rows_a)
    total_b = sum(r["self_us"] for r in rows_b)
    se_fwd, se_bwd = collections.Counter(), collections.Counter()
    rest_a, rest_b = collections.Counter(), collections.Counter()
    for r in rows_a:
        rest_a[r["type"]] += r["self_us"]
    for r in rows_b:
        if is_se(r["op"]):
            (se_bwd if r["op"].startswith("gradient_tape/") else se_fwd)[r["type"]] += r["self_us"]
        else:
            rest_b[r["type"]] += r["self_us"]
    rest_delta = {
        k: rest_b[k] - rest_a[k]
        for k in set(rest_a) | set(rest_b)
        if abs(rest_b[k] - rest_a[k]) > 1.0
    }
    return {
        "a_us": total_a,
        "b_us": total_b,
        "se_forward_us": dict(se_fwd.most_common()),
        "se_backward_us": dict(se_bwd.most_common()),
        "se_us": sum(se_fwd.values()) + sum(se_bwd.values()),
        "rest_delta_us": dict(sorted(rest_delta.items(), key=lambda kv: -abs(kv[1]))),
    }


def _fmt_types(counter: dict, total_a: float, top: int = 5) -> str:
    items = list(counter.items())[:top]
    return ", ".join(f"{k} {v / 1e3:.2f} ms ({v / total_a * 100:.1f}%)" for k, v in items) or "-"


COLUMNS = [
    ("pair", "A vs B"),
    ("step", "step"),
    ("a_ms", "A op time (ms)"),
    ("b_ms", "B op time (ms)"),
    ("delta", "B - A"),
    ("se", "SE layers' own ops"),
    ("rest", "rest of B - A"),
    ("fwd", "SE forward ops, by type"),
    ("bwd", "SE gradient ops, by type"),
    ("rest_types", "rest of B - A, by type"),
    ("bytes_floor", "SE floor vs A's wall time"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--modes", nargs="*", default=["infer_b1", "train"], choices=list(MODES))
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="profiled calls per model and round (default 10 for inference, 1 for training)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating A/B profiling rounds")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    for name in ("steps", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1; received {value}")
    rng = np.random.default_rng(0)
    rows, data = [], []
    started = time.perf_counter()
    for key in args.pairs:
        label_a, build_a, label_b, build_b = PAIRS[key]
        model_a, model_b = build_a(args.size), build_b(args.size)
        is_se = se_matcher(model_b)
        for mode in args.modes:
            kind, batch = MODES[mode]
            batch = batch or args.train_batch
            x = tf.constant(rng.standard_normal((batch, args.size, args.size, 3), dtype=np.float32))
            if kind == "inference":
                fa, fb = predict_fn(model_a, x), predict_fn(model_b, x)
            else:
                y = tf.constant(rng.integers(0, 1000, size=(batch,)), dtype=tf.int32)
                fa, fb = train_fn(model_a, x, y), train_fn(model_b, x, y)
            for _ in range(2):
                fa(), fb()
            steps = args.steps or (10 if kind == "inference" else 1)
            rows_a, rows_b = [], []
            for r in range(args.rounds):
                # Alternate which model goes first, as `_timing.interleaved` does.
                order = [(fa, rows_a), (fb, rows_b)][:: 1 if r % 2 == 0 else -1]
                for fn, sink in order:
                    sink += [
                        dict(row, self_us=row["self_us"] / args.rounds)
                        for row in op_stats(fn, steps)
                    ]
            result = attribute(rows_a, rows_b, is_se)
            total_a = result["a_us"]
            # The least SE could cost (forward; a training step's backward moves
            # at least as much again), against A's unprofiled wall time.
            floor = se_floor(model_b, result["se_forward_us"].get("Mul", 0.0), kind == "train")
            floor_ms = floor["floor_ms"]
            a_wall = wall_ms(fa, repeats=10 if kind == "inference" else 3)
            result.update(se_floor=floor, se_floor_ms=floor_ms, a_wall_ms=a_wall)
            rows.append(
                {
                    "pair": f"{label_a} vs {label_b}",
                    "step": f"{kind}, batch {batch}",
                    "a_ms": f"{total_a / 1e3:.1f}",
                    "b_ms": f"{result['b_us'] / 1e3:.1f}",
                    "delta": f"{(result['b_us'] / total_a - 1) * 100:+.1f}%",
                    "se": f"{result['se_us'] / 1e3:.2f} ms ({result['se_us'] / total_a * 100:.1f}%)",
                    "rest": f"{(result['b_us'] - total_a - result['se_us']) / 1e3:+.2f} ms",
                    "fwd": _fmt_types(result["se_forward_us"], total_a),
                    "bwd": _fmt_types(result["se_backward_us"], total_a),
                    "rest_types": _fmt_types(result["rest_delta_us"], total_a, top=3),
                    "bytes_floor": f"{floor_ms:.2f} ms of {a_wall:.1f} ms "
                    f"({floor_ms / a_wall * 100:.1f}%)",
                }
            )
            data.append(
                {
                    "pair": key,
                    "mode": mode,
                    "batch": batch,
                    "size": args.size,
                    "steps": steps,
                    **result,
                }
            )
            print(rows[-1], flush=True)
        del model_a, model_b
        keras.backend.clear_session()
    intro = (
        "Per-op self time from the TensorFlow profiler (`framework_op_stats`), "
        f"averaged over {args.rounds} alternating rounds (A B, B A, ...) of "
        "10 profiled calls (inference) or 1 (training step) per model, after 2 "
        "warm-up calls, "
        "each under `tf.function` as in `bench_models.py` (weights=None, float32, "
        f"{args.size} px). Op times are summed over ops, so with intra-op parallelism "
        "they exceed the wall time; percentages are of A's op time. \"SE layers' own "
        'ops" = ops under an inserted SqueezeExcite scope (forward and gradient); '
        '"rest of B - A" = everything else in B minus all of A: what inserting SE '
        'changed around it, plus noise. "SE floor": the least the SE layers could take '
        "without fusing into the ops around them. Each must read its input for the "
        "squeeze, then read it again and write the output for the rescale: 3 transfers "
        "against the rescale's 2, so the floor is 1.5 x the SE rescales' own time as "
        "profiled in the model (the forward `Mul` column) plus reading the MLP weights "
        "once (at the bandwidth of a 64 MiB multiply measured in the same run); doubled "
        "for a training step, whose backward pass moves at least as much again. It is set "
        "against A's unprofiled wall time. Command: "
        "`python benchmarks/profile_models.py`."
    )
    write_results(
        "profile",
        "Where SE's overhead goes: TensorFlow profiler, per op",
        rows,
        COLUMNS,
        data={
            "rounds": args.rounds,
            "size": args.size,
            "train_batch": args.train_batch,
            "elapsed_s": round(time.perf_counter() - started, 1),
            "profiles": data,
        },
        intro=intro,
        info=machine_info(),
    )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
