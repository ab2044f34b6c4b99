"""Speed of one `SqueezeExcite` layer against a memory-bound floor.

    python benchmarks/bench_layer.py [--quick] [--repeats N] [--no-ab]

For each input shape (channels_last, float32) and each execution mode (eager,
`tf.function`, `tf.function(jit_compile=True)`) it times, interleaved in one
process:

- the *floor*: one elementwise multiply of the same tensor by a broadcast
  per-channel gate of shape `(batch, 1, 1, C)` (the layer's own last op),
  which reads the tensor once and writes the output once;
- the squeeze alone, as the layer computes it (`SqueezeExcite._squeeze`: a
  whole-map average pool on CPU-only TensorFlow), one more read of the tensor;
- `keras_se.SqueezeExcite()` with its defaults.

Effective bandwidth is the floor's traffic, `2 * tensor bytes`, divided by
the time. Then (unless `--no-ab`) it A/B-times candidate rewrites of the
layer's `call` against the library's, for the record of what was tried.
Results go to `benchmarks/results/layer.json` and `layer.md`
(`layer_quick.*` with `--quick`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import interleaved, machine_info, markdown_table, write_results  # noqa: E402
from keras import ops  # noqa: E402

import keras_se  # noqa: E402

SHAPES = [(32, 56, 56, 256), (32, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048)]
QUICK_SHAPES = [(8, 56, 56, 256), (32, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048)]
MODES = ("eager", "tf.function", "xla")
TARGET = 1.5

INTRO = """\
**What is timed.** `keras_se.SqueezeExcite()` (defaults: average squeeze, r=16, ReLU,
sigmoid) on a channels_last float32 tensor, against the *floor*: `x * g`, one elementwise
multiply of the same tensor by a broadcast per-channel gate `g` of shape `(N, 1, 1, C)`
(the layer's own last op). The floor reads the tensor once and writes the output once,
`2 * tensor bytes`, the least that any layer returning a rescaled copy must move; the
GB/s columns are those bytes divided by each time. "squeeze" is the layer's own global
average over H, W alone (on CPU-only TensorFlow a whole-map `AvgPool`, see below). Floor, squeeze and layer alternate round by round in one process, warm-up
excluded; times are medians with [min - max] over the kept rounds. Modes: eager
(`layer(x)`), `tf.function`, `tf.function(jit_compile=True)` ("xla"). Target (issue):
the layer at most 1.5x the floor in the best mode.

**Why the ratio is what it is.** SE cannot be done in one pass: the gate depends on the
mean over all of H and W, so the tensor is read once for the squeeze and again for the
multiply, which also writes the output. The floor is that last multiply, so the layer
costs at least floor + squeeze; the column "(floor+squeeze)/floor" is that two-pass
bound, measured. In bytes it is 3 transfers against 2: 1.5x when the squeeze reads as
fast per byte as the multiply moves data. The MLP and gate on `(N, C)` are
negligible on big tensors. What decides the ratio is how fast the squeeze reads.
TensorFlow's own (Eigen) `Mean` over the middle axes takes longer than the whole
multiply, which put the layer at 2-2.5x the floor outside XLA; the library therefore
squeezes with oneDNN's average pooling over the whole map on CPU-only TensorFlow, about
twice as fast (the A/B below, "before: ops.mean squeeze"). XLA's reduction reads about
as fast as its pooling, so under XLA the layer lands near the two-pass bound either way.
On the last, small shape (3.2 MB, inside L3) two things add to that: the MLP's
weights (2 x 2048 x 128 floats, 2.1 MB) are two thirds the size of the tensor, so even
the bytes bound is 1.83x, not 1.5x; and fixed per-op costs (dispatch in eager mode,
eleven small ops through `keras.ops`; kernel launches in graph modes) are no longer
small against 0.2 ms.
"""


def _make_fn(fn, mode):
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "xla"), autograph=False)


def _fmt_ms(stats):
    return f"{stats.median * 1e3:.3f} [{stats.min * 1e3:.3f} - {stats.max * 1e3:.3f}]"


def _gbps(nbytes, seconds):
    return 2 * nbytes / seconds / 1e9


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal(shape, dtype=np.float32))
    gate = tf.constant(rng.uniform(size=(shape[0], 1, 1, shape[-1])).astype(np.float32))
    return x, gate


def bench_shape(shape, repeats, warmup):
    """Floor, squeeze and layer for one shape in every mode; a dict per mode."""
    x, gate = _inputs(shape)
    layer = keras_se.SqueezeExcite()
    layer(x)  # build

    def floor(t):
        return t * gate

    def squeeze(t):
        return layer._squeeze(t, "avg")

    def se(t):
        return layer(t)

    out = {}
    for mode in MODES:
        fns = {
            name: _make_fn(f, mode)
            for name, f in (("floor", floor), ("squeeze", squeeze), ("se", se))
        }
        res = interleaved(
            {name: (lambda f=f: f(x)) for name, f in fns.items()},
            repeats=repeats,
            warmup=warmup,
        )
        paired = [s / f for f, s in zip(res["floor"].samples, res["se"].samples)]
        out[mode] = dict(res)
        out[mode].update(
            ratio=res["se"].median / res["floor"].median,
            paired_ratio_median=statistics.median(paired),
            paired_ratio_min=min(paired),
            paired_ratio_max=max(paired),
            bound=(res["floor"].median + res["squeeze"].median) / res["floor"].median,
        )
    weight_bytes = layer.count_params() * 4
    for r in out.values():
        r["byte_bound"] = (3 * x.shape.num_elements() * 4 + weight_bytes) / (
            2 * x.shape.num_elements() * 4
        )
        r["weight_bytes"] = weight_bytes
    return x.shape.num_elements() * 4, out


def run(shapes, repeats, warmup):
    rows, data = [], []
    for shape in shapes:
        t0 = time.perf_counter()
        nbytes, res = bench_shape(shape, repeats, warmup)
        best_floor_mode = min(res, key=lambda m: res[m]["floor"].median)
        best_floor = res[best_floor_mode]["floor"].median
        best_se_mode = min(res, key=lambda m: res[m]["se"].median)
        for mode, r in res.items():
            vs_best = r["se"].median / best_floor
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "mb": f"{nbytes / 1e6:.1f}",
                    "mode": mode + (" (best SE)" if mode == best_se_mode else ""),
                    "floor": _fmt_ms(r["floor"]),
                    "squeeze": _fmt_ms(r["squeeze"]),
                    "se": _fmt_ms(r["se"]),
                    "ratio": f"{r['ratio']:.2f} [{r['paired_ratio_min']:.2f} - "
                    f"{r['paired_ratio_max']:.2f}]",
                    "bound": f"{r['bound']:.2f}",
                    "byte_bound": f"{r['byte_bound']:.2f}",
                    "vs_best": f"{vs_best:.2f}",
                    "floor_gbps": f"{_gbps(nbytes, r['floor'].median):.1f}",
                    "se_gbps": f"{_gbps(nbytes, r['se'].median):.1f}",
                }
            )
            data.append(
                {
                    "shape": list(shape),
                    "tensor_bytes": nbytes,
                    "mode": mode,
                    "floor": r["floor"].to_dict(),
                    "squeeze": r["squeeze"].to_dict(),
                    "se": r["se"].to_dict(),
                    "se_over_floor": r["ratio"],
                    "se_over_floor_paired_median": r["paired_ratio_median"],
                    "se_over_floor_paired_min": r["paired_ratio_min"],
                    "se_over_floor_paired_max": r["paired_ratio_max"],
                    "two_pass_bound": r["bound"],
                    "byte_bound": r["byte_bound"],
                    "se_weight_bytes": r["weight_bytes"],
                    "se_over_best_floor": vs_best,
                    "best_floor_mode": best_floor_mode,
                    "best_floor_median_s": best_floor,
                    "floor_gbps": _gbps(nbytes, r["floor"].median),
                    "squeeze_read_gbps": nbytes / r["squeeze"].median / 1e9,
                    "se_gbps": _gbps(nbytes, r["se"].median),
                }
            )
        best = res[best_se_mode]["se"].median / best_floor
        print(
            f"{shape}: best SE {best_se_mode} {res[best_se_mode]['se'].median * 1e3:.3f} ms, "
            f"best floor {best_floor_mode} {best_floor * 1e3:.3f} ms, ratio {best:.2f} "
            f"({'meets' if best <= TARGET else 'misses'} {TARGET}x; "
            f"{time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return rows, data


COLUMNS = [
    ("shape", "shape (NHWC)"),
    ("mb", "MB"),
    ("mode", "mode"),
    ("floor", "floor ms"),
    ("squeeze", "squeeze ms"),
    ("se", "SE ms"),
    ("ratio", "SE/floor, same mode [paired min - max]"),
    ("bound", "(floor+squeeze)/floor"),
    ("byte_bound", "bytes bound"),
    ("vs_best", "SE / best-mode floor"),
    ("floor_gbps", "floor GB/s"),
    ("se_gbps", "SE GB/s"),
]


def summary(data):
    """One line per shape: the layer's best mode against the floor."""
    lines = [
        "**Against the target** (SE at most 1.5x the floor in the best mode). For each "
        "shape, the mode where the layer is closest to the floor, with the median of the "
        "per-round SE/floor ratios in that mode (the estimate least hurt by other work on "
        "the machine); then the stricter cross-mode figure, the fastest SE against the "
        "fastest floor of any mode; and the *bytes bound*, the least the layer must move "
        "relative to the floor: `(3 * tensor + SE weights) / (2 * tensor)` (read for the "
        "squeeze, read and write for the multiply, plus reading the MLP's weights once):",
        "",
    ]
    ratios = []
    for shape in dict.fromkeys(tuple(d["shape"]) for d in data):
        ds = [d for d in data if tuple(d["shape"]) == shape]
        best = min(ds, key=lambda d: d["se_over_floor_paired_median"])
        fastest = min(ds, key=lambda d: d["se"]["median_s"])
        ratio = best["se_over_floor_paired_median"]
        cross = fastest["se"]["median_s"] / fastest["best_floor_median_s"]
        ratios.append(ratio)
        lines.append(
            f"- {'x'.join(map(str, shape))}: best mode {best['mode']}, SE/floor "
            f"**{ratio:.2f}x** ({'meets' if ratio <= TARGET else 'misses'} the {TARGET}x "
            f"target; bytes bound {best['byte_bound']:.2f}x, two-pass bound measured "
            f"{best['two_pass_bound']:.2f}x); fastest SE ({fastest['mode']}, "
            f"{fastest['se']['median_s'] * 1e3:.3f} ms) vs fastest floor "
            f"({fastest['best_floor_mode']}, {fastest['best_floor_median_s'] * 1e3:.3f} ms): "
            f"{cross:.2f}x"
        )
    lines += ["", f"Median over shapes, best mode: {statistics.median(ratios):.2f}x."]
    return "\n".join(lines)


# ------------------------------------------------------------- candidates
class _MeanSqueeze(keras_se.SqueezeExcite):
    """Before (the library until the pooled squeeze): `ops.mean` / `ops.max`."""

    def _squeeze(self, x, reduce):
        axes = self._spatial_axes(len(x.shape))
        return ops.mean(x, axis=axes) if reduce == "avg" else ops.max(x, axis=axes)


class _MatmulSqueeze(keras_se.SqueezeExcite):
    """Candidate: the average as a batched matmul of a `1/n` row with `(N, H*W, C)`."""

    def _squeeze(self, x, reduce):
        n = x.shape[1] * x.shape[2]
        flat = ops.reshape(x, (-1, n, self.channels))
        weights = ops.full((1, 1, n), 1.0 / n, dtype="float32")
        weights = ops.broadcast_to(weights, (ops.shape(x)[0], 1, n))
        return ops.reshape(ops.matmul(weights, flat), (-1, self.channels))


class _RawTF(keras_se.SqueezeExcite):
    """Reference, not a candidate (the library uses `keras.ops` only): the defaults'
    op sequence written in plain `tf.*`, channels_last, float32."""

    def call(self, inputs):
        window = inputs.shape[1:3]
        m = tf.reshape(tf.nn.avg_pool2d(inputs, window, 1, "VALID"), (-1, self.channels))
        h = tf.nn.relu(tf.matmul(m, self.reduce_kernel) + self.reduce_bias)
        s = tf.sigmoid(tf.matmul(h, self.expand_kernel) + self.expand_bias)
        return inputs * tf.reshape(s, (-1, 1, 1, self.channels))


CANDIDATES = {
    "before: ops.mean squeeze": _MeanSqueeze,
    "squeeze as batched matmul": _MatmulSqueeze,
    "plain tf.* (reference)": _RawTF,
}


def ab_candidates(shapes, repeats, warmup):
    """Library layer (A) against each candidate (B), interleaved, every mode."""
    rows, data = [], []
    for shape in shapes:
        x, _ = _inputs(shape)
        base = keras_se.SqueezeExcite()
        ref = base(x).numpy()
        for cname, cls in CANDIDATES.items():
            cand = cls(name="candidate")
            cand(x)
            cand.set_weights(base.get_weights())
            diff = float(np.max(np.abs(cand(x).numpy() - ref)))
            for mode in MODES:
                fa, fb = _make_fn(base, mode), _make_fn(cand, mode)
                res = interleaved(
                    {"a": lambda f=fa, t=x: f(t), "b": lambda f=fb, t=x: f(t)},
                    repeats=repeats,
                    warmup=warmup,
                )
                a, b = res["a"], res["b"]
                paired = sorted(sb / sa for sa, sb in zip(a.samples, b.samples))
                rows.append(
                    {
                        "shape": "x".join(map(str, shape)),
                        "candidate": cname,
                        "mode": mode,
                        "before": _fmt_ms(a),
                        "after": _fmt_ms(b),
                        "ratio": f"{b.median / a.median:.3f}",
                        "paired": f"{statistics.median(paired):.3f} "
                        f"[{paired[len(paired) // 4]:.3f} - {paired[(3 * len(paired)) // 4]:.3f}]",
                        "diff": "0 (bitwise)" if diff == 0 else f"{diff:.1e}",
                    }
                )
                data.append(
                    {
                        "shape": list(shape),
                        "candidate": cname,
                        "mode": mode,
                        "before": a.to_dict(),
                        "after": b.to_dict(),
                        "after_over_before": b.median / a.median,
                        "paired_ratios": paired,
                        "max_abs_output_diff": diff,
                    }
                )
        print(f"A/B {shape} done", flush=True)
    return rows, data


AB_COLUMNS = [
    ("shape", "shape"),
    ("candidate", "candidate"),
    ("mode", "mode"),
    ("before", "library ms"),
    ("after", "candidate ms"),
    ("ratio", "candidate/library"),
    ("paired", "paired ratio median [IQR]"),
    ("diff", "max abs output diff"),
]

AB_NOTE = """\
## Before and after, and other candidates (A/B: library against candidate)

Each candidate is a subclass of the library layer with the same weights, timed
interleaved with it in the same process; a ratio above 1 means the library is faster.
"before: ops.mean squeeze" is the layer as it was before the pooled squeeze went in,
so its row is the before/after record. A change belongs in the library only if it is
faster in `tf.function` (what Keras's `fit`/`predict` run on a CPU: `jit_compile="auto"`
turns XLA off when there is no accelerator) and no slower under XLA (Keras's default
on a GPU), with the same output up to float32 rounding.
"""

AB_WHY = """\
Reading the rows:

- *before: ops.mean squeeze*: TensorFlow's `Mean` over H and W (an Eigen reduction over
  the middle axes) against the library's whole-map `AvgPool` (oneDNN). The pooled
  squeeze is the change this benchmark led to; under XLA both lower to a reduction and
  time about the same. On a GPU the library keeps `ops.mean` (it takes the pool only
  when TensorFlow sees no accelerator), since a huge pooling window is a poor fit for
  GPU kernels and no GPU was available to measure it.
- *squeeze as batched matmul*: also faster than `Mean` under `tf.function`, but far
  slower under XLA, so not adopted.
- *plain tf.\\* (reference)*: the library's op sequence written directly in `tf.*`,
  which the layer may not use; it shows what `keras.ops` costs. Under `tf.function` and
  XLA it traces to the same graph; only eager mode pays `keras.ops`'s Python dispatch.
- Tried earlier and dropped, each timed equal to the library (ratios 0.99-1.00 under
  `tf.function` and XLA, in the session-1 run of this script): skipping the no-op float32
  casts (`tf.cast` to the same dtype adds no op), `sum * (1/n)` instead of `mean` (the
  same reduction kernel), and a reshape to `(N, H*W, C)` before the reduction
  (TensorFlow already merges adjacent reduced axes).
"""


def ab_verdict(data):
    """One line per candidate: geometric-mean candidate/library per mode."""
    lines = [
        "Geometric mean over shapes of the median paired (same-round) candidate/library"
        " time ratio (below 1: the candidate is faster):",
        "",
    ]
    for cname in CANDIDATES:
        ds = [d for d in data if d["candidate"] == cname]
        per_mode = []
        for mode in MODES:
            ratios = [statistics.median(d["paired_ratios"]) for d in ds if d["mode"] == mode]
            per_mode.append(f"{mode} {statistics.geometric_mean(ratios):.3f}")
        diff = max(d["max_abs_output_diff"] for d in ds)
        lines.append(
            f"- *{cname}*: {', '.join(per_mode)}; output "
            + ("bitwise equal" if diff == 0 else f"differs by up to {diff:.1e}")
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and a smaller first shape"
    )
    parser.add_argument("--repeats", type=int, default=None, help="kept rounds (>= 10)")
    parser.add_argument("--warmup", type=int, default=3, help="discarded rounds")
    parser.add_argument("--no-ab", action="store_true", help="skip the candidate A/B")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 40)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    t0 = time.perf_counter()
    load_start = machine_info()["loadavg_1_5_15"]
    rows, data = run(shapes, repeats, args.warmup)
    sections = [summary(data)]
    results = {"repeats": repeats, "warmup": args.warmup, "target": TARGET, "rows": data}
    if not args.no_ab:
        ab_rows, ab_data = ab_candidates(shapes, repeats, args.warmup)
        sections += [AB_NOTE, ab_verdict(ab_data), AB_WHY, markdown_table(ab_rows, AB_COLUMNS)]
        results["ab_candidates"] = ab_data
    info = machine_info()
    info["loadavg_at_start"] = load_start
    info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    sections.append(
        f"Command: `python benchmarks/bench_layer.py{' --quick' if args.quick else ''}` "
        f"(repeats={repeats}, warmup={args.warmup}); total {time.perf_counter() - t0:.0f} s; "
        f"1-minute load average {load_start[0] if load_start else '?'} at the start, "
        f"{info['loadavg_1_5_15'][0] if info['loadavg_1_5_15'] else '?'} at the end "
        "(2 cores: a load above ~1 means other processes shared them and the spreads widen)."
    )
    name = "layer_quick" if args.quick else "layer"
    json_path, md_path = write_results(
        name,
        "SqueezeExcite layer vs. a one-multiply floor",
        rows,
        COLUMNS,
        results,
        intro=INTRO,
        sections=sections,
        info=info,
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
