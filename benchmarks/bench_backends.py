"""SE's cost on each Keras backend: the layer against a broadcast multiply, and two models.

    python benchmarks/bench_backends.py [--backends tensorflow jax torch] [--quick]
        [--repeats N] [--size PX] [--train-size PX] [--skip-layer] [--skip-models]

One child process per backend (`KERAS_BACKEND` is fixed when Keras loads), run one
after the other; each writes `results/backends_<backend>.json`, and this process merges
them into `results/backends.json` and `backends.md`. Within a child every A/B pair is
interleaved in one process (`_timing.interleaved`), as in `bench_layer.py` and
`bench_models.py`, on the backend's own execution modes:

| backend | modes |
| --- | --- |
| TensorFlow | `graph` (`tf.function`), `xla` (`tf.function(jit_compile=True)`); the layer also `eager` |
| JAX | `jit` (`jax.jit`: JAX always compiles) |
| PyTorch | `eager`; `compile` (`torch.compile`) where it works on this machine |

- The layer: `keras_se.SqueezeExcite()` (defaults) against the floor, `x * g`, one
  multiply of the same tensor by a broadcast per-channel gate (`bench_layer.py`'s
  method), on the shapes of `bench_layer.py`. The ratio layer/floor in the backend's
  best mode, set against TensorFlow's: the issue's bar is that no backend's ratio
  exceeds TensorFlow's. Interleaved with both, the same block hand-written in the
  backend's own ops (`tf.*`, `jax.numpy`, `torch.*`; mean, two matmuls with bias,
  ReLU, sigmoid, multiply) in the same mode: "native SE/A" is what the block costs on
  that backend whoever writes it, "layer/native SE" is what keras-se's layer adds.
  Also interleaved: `x * g` as a Keras layer (`keras.layers.Multiply()([x, g])`), so
  that "layer/Multiply layer" sets the SE layer against a layer that only multiplies,
  both paying what calling a Keras layer costs on the backend (PyTorch's eager mode
  pays it on every call; a traced `tf.function` or `jax.jit` pays it once).
- Each child runs with glibc's malloc fixed (`_timing.MALLOC_ENV`): left to itself,
  it can hand a 25 MB output freshly mapped pages on every call (JAX's `x * g` at
  8x56x56x256: 1 ms or 8 ms a call, by buffer).
- The models: ResNet50 against SE-ResNet50 (`residual`) and MobileNet against
  SE-MobileNet (`init="standard"`, weights=None, float32, 224 px): inference at batch
  1 and 32 (`model(x, training=False)`) and a training step at batch 32 (forward,
  backward, SGD update, sparse categorical crossentropy) as each backend's trainer
  runs it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _timing import RESULTS_DIR, child_env, interleaved, machine_info, write_results  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
LAYER_SHAPES = [(32, 56, 56, 256), (32, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048)]
QUICK_LAYER_SHAPES = [(8, 56, 56, 256), (16, 28, 28, 512), (32, 14, 14, 1024), (8, 7, 7, 2048)]
PAIRS = ("resnet50", "mobilenet")


# ------------------------------------------------------------------ per backend
class Runner:
    """How one backend runs a function, a model's predict step and a train step."""

    modes: tuple[str, ...] = ()
    layer_modes: tuple[str, ...] = ()
    notes: list[str]

    def __init__(self):
        self.notes = []

    def tensor(self, array):
        import keras

        return keras.ops.convert_to_tensor(array)

    def block(self, value):
        return value


def _multiply_layer():
    """`x * g` as a Keras layer (`keras.layers.Multiply`, broadcasting the gate): the
    floor plus what calling any Keras layer costs on the backend."""
    import keras

    return keras.layers.Multiply()


class TensorFlowRunner(Runner):
    modes = ("graph", "xla")
    layer_modes = ("eager", "graph", "xla")

    def function(self, fn, mode):
        import tensorflow as tf

        if mode == "eager":
            return fn
        return tf.function(fn, jit_compile=mode == "xla", autograph=False, reduce_retracing=True)

    def layer_fns(self, layer, x, gate, mode):
        import tensorflow as tf

        w1, b1, w2, b2 = (self.tensor(w) for w in _se_weights(layer))

        def native(t):
            s = tf.reduce_mean(t, axis=(1, 2))
            g = tf.sigmoid(tf.matmul(tf.nn.relu(tf.matmul(s, w1) + b1), w2) + b2)
            return t * g[:, None, None, :]

        floor = self.function(lambda t: t * gate, mode)
        se = self.function(lambda t: layer(t), mode)
        hand = self.function(native, mode)
        multiply = _multiply_layer()
        as_layer = self.function(lambda t: multiply([t, gate]), mode)
        return ((lambda: floor(x)), (lambda: se(x)), (lambda: hand(x)),
                (lambda: as_layer(x)))

    def predict(self, model, x, mode):
        step = self.function(lambda t: model(t, training=False), mode)
        return lambda: step(x)

    def train(self, model, x, y, mode):
        import keras
        import tensorflow as tf

        optimizer = keras.optimizers.SGD(learning_rate=1e-3)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy()

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        fn = self.function(step, mode)
        return lambda: fn(x, y)


class JaxRunner(Runner):
    modes = ("jit",)
    layer_modes = ("jit",)

    def block(self, value):
        import jax

        return jax.block_until_ready(value)

    def layer_fns(self, layer, x, gate, mode):
        import jax

        values = [v.value for v in layer.trainable_variables]
        weights = [self.tensor(w) for w in _se_weights(layer)]

        @jax.jit
        def native(w, t):
            w1, b1, w2, b2 = w
            s = t.mean(axis=(1, 2))
            g = jax.nn.sigmoid(jax.nn.relu(s @ w1 + b1) @ w2 + b2)
            return t * g[:, None, None, :]

        floor = jax.jit(lambda t, g: t * g)
        se = jax.jit(lambda vs, t: layer.stateless_call(vs, [], t)[0])
        multiply = _multiply_layer()
        multiply([x, gate])  # built, as stateless_call requires
        as_layer = jax.jit(lambda t, g: multiply.stateless_call([], [], [t, g])[0])
        return ((lambda: self.block(floor(x, gate))), (lambda: self.block(se(values, x))),
                (lambda: self.block(native(weights, x))),
                (lambda: self.block(as_layer(x, gate))))

    def predict(self, model, x, mode):
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        step = jax.jit(lambda tv, ntv, t: model.stateless_call(tv, ntv, t, training=False)[0])
        return lambda: self.block(step(trainable, non_trainable, x))

    def train(self, model, x, y, mode):
        """Keras's JAX train step in essence: value_and_grad of a stateless call, then
        the SGD update, in one jitted function with the state donated."""
        import jax
        import keras

        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        state = {
            "tv": [v.value for v in model.trainable_variables],
            "ntv": [v.value for v in model.non_trainable_variables],
        }

        def loss_of(tv, ntv, x, y):
            out, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_fn(y, out), ntv

        @jax.jit
        def step(tv, ntv, x, y):
            (loss, ntv), grads = jax.value_and_grad(loss_of, has_aux=True)(tv, ntv, x, y)
            tv = [v - 1e-3 * g for v, g in zip(tv, grads)]
            return loss, tv, ntv

        def run():
            loss, state["tv"], state["ntv"] = step(state["tv"], state["ntv"], x, y)
            return self.block(loss)

        return run


class TorchRunner(Runner):
    modes = ("eager", "compile")
    layer_modes = ("eager", "compile")

    def __init__(self):
        super().__init__()
        self.compile_error = None

    def _compile(self, fn):
        import torch

        compiled = torch.compile(fn)
        return compiled

    def _wrap(self, fn, mode):
        import torch

        if mode == "compile":
            fn = self._compile(fn)

        def run(*args):
            with torch.no_grad():
                return fn(*args)

        return run

    def layer_fns(self, layer, x, gate, mode):
        import torch

        w1, b1, w2, b2 = (self.tensor(w) for w in _se_weights(layer))

        def native(t):
            s = t.mean(dim=(1, 2))
            g = torch.sigmoid(torch.relu(s @ w1 + b1) @ w2 + b2)
            return t * g[:, None, None, :]

        floor = self._wrap(lambda t: t * gate, mode)
        se = self._wrap(lambda t: layer(t), mode)
        hand = self._wrap(native, mode)
        multiply = _multiply_layer()
        as_layer = self._wrap(lambda t: multiply([t, gate]), mode)
        return ((lambda: floor(x)), (lambda: se(x)), (lambda: hand(x)),
                (lambda: as_layer(x)))

    def predict(self, model, x, mode):
        step = self._wrap(lambda t: model(t, training=False), mode)
        return lambda: step(x)

    def train(self, model, x, y, mode):
        """Keras's torch train step: zero the grads, forward, backward, optimizer.apply."""
        import keras
        import torch

        optimizer = keras.optimizers.SGD(learning_rate=1e-3)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        variables = model.trainable_variables

        def forward_loss(x, y):
            return loss_fn(y, model(x, training=True))

        compute = self._compile(forward_loss) if mode == "compile" else forward_loss

        def step():
            model.zero_grad()
            loss = compute(x, y)
            loss.backward()
            grads = [v.value.grad for v in variables]
            with torch.no_grad():
                optimizer.apply(grads, variables)
            return loss

        return step


def _se_weights(layer):
    """The layer's kernels and biases as NumPy arrays, for the hand-written block."""
    import keras

    return [keras.ops.convert_to_numpy(v) for v in
            (layer.reduce_kernel, layer.reduce_bias, layer.expand_kernel, layer.expand_bias)]


RUNNERS = {"tensorflow": TensorFlowRunner, "jax": JaxRunner, "torch": TorchRunner}


# ------------------------------------------------------------------ one backend
def _models(name, size):
    import keras

    from keras_se import applications

    shape = (size, size, 3)
    if name == "resnet50":
        return (
            "ResNet50", keras.applications.ResNet50(weights=None, input_shape=shape),
            "SE-ResNet50", applications.SEResNet50(weights=None, input_shape=shape,
                                                   placement="residual", init="standard"),
        )
    return (
        "MobileNet", keras.applications.MobileNet(weights=None, input_shape=shape),
        "SE-MobileNet", applications.SEMobileNet(weights=None, input_shape=shape,
                                                 init="standard"),
    )


def _summary(stats):
    return {"median_s": stats.median, "q1_s": stats.q1, "q3_s": stats.q3,
            "min_s": stats.min, "max_s": stats.max, "repeats": len(stats.samples)}


def _ab(fns, repeats, warmup, min_sample_s):
    timed = interleaved(fns, repeats=repeats, warmup=warmup, min_sample_s=min_sample_s)
    a, b = timed["a"], timed["b"]
    paired = [sb / sa for sa, sb in zip(a.samples, b.samples)]
    result = {"a": _summary(a), "b": _summary(b), "ratio": b.median / a.median,
              "paired_median": statistics.median(paired), "paired_min": min(paired),
              "paired_max": max(paired)}
    # Interleaved with them, where given: "n", the same block hand-written in the
    # backend's own ops (n/a is what SE costs on this backend whoever writes it; b/n is
    # what keras-se adds); "k", x * g as a Keras Multiply layer (b/k sets the SE layer
    # against a layer that only multiplies: both pay Keras's per-call cost).
    for key, name, vs in (("n", "native", "layer_vs_native"),
                          ("k", "keras_multiply", "layer_vs_multiply_layer")):
        if key not in timed:
            continue
        other = timed[key]
        paired = [sb / so for so, sb in zip(other.samples, b.samples)]
        result.update({name: _summary(other), f"{name}_ratio": other.median / a.median,
                       vs: b.median / other.median, f"{vs}_min": min(paired),
                       f"{vs}_max": max(paired)})
    return result


def run_backend(args):
    import keras
    import numpy as np

    import keras_se

    backend = keras.backend.backend()
    runner = RUNNERS[backend]()
    rng = np.random.default_rng(0)
    repeats = args.repeats or (10 if args.quick else 15)
    warmup = 1 if args.quick else 2
    result = {"backend": backend, "repeats": repeats, "warmup": warmup, "layer": [],
              "models": [], "failed": [], "machine": machine_info()}
    path = os.path.join(RESULTS_DIR, f"backends_{backend}.json")

    def save():
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)

    def attempt(what, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a mode that fails is recorded, not fatal
            line = " ".join(f"{type(e).__name__}: {e}".split())[:400]
            result["failed"].append({"what": what, "error": line})
            print(f"[{backend}] {what} failed: {line}", flush=True)
            save()
            return None

    if not args.skip_layer:
        for shape in QUICK_LAYER_SHAPES if args.quick else LAYER_SHAPES:
            x = runner.tensor(rng.standard_normal(shape, dtype=np.float32))
            gate = runner.tensor(rng.uniform(size=(shape[0], 1, 1, shape[-1])).astype("float32"))
            layer = keras_se.SqueezeExcite()
            layer(x)
            for mode in runner.layer_modes:
                def one(mode=mode, layer=layer, x=x, gate=gate):
                    floor, se, native, as_layer = runner.layer_fns(layer, x, gate, mode)
                    return _ab({"a": floor, "b": se, "n": native, "k": as_layer}, repeats,
                               warmup, 0.05)

                t0 = time.perf_counter()
                r = attempt(f"layer {shape} {mode}", one)
                if r is not None:
                    result["layer"].append({"shape": list(shape), "mode": mode, **r})
                    print(f"[{backend}] layer {shape} {mode}: {r['ratio']:.2f}x, native "
                          f"{r['native_ratio']:.2f}x "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
                    save()
            del x, gate, layer
            gc.collect()

    if not args.skip_models:
        jobs = [("infer", 1, args.size), ("infer", 32, args.size), ("train", 32, args.train_size)]
        for pair in PAIRS:
            for size in sorted({s for _, _, s in jobs}):
                keras.utils.set_random_seed(0)
                label_a, model_a, label_b, model_b = _models(pair, size)
                for kind, batch, job_size in jobs:
                    if job_size != size:
                        continue
                    x = runner.tensor(rng.standard_normal((batch, size, size, 3),
                                                          dtype=np.float32))
                    y = runner.tensor(rng.integers(0, 1000, size=(batch,)).astype("int32"))
                    for mode in runner.modes:
                        def one(kind=kind, mode=mode, x=x, y=y, model_a=model_a,
                                model_b=model_b):
                            if kind == "infer":
                                fns = {"a": runner.predict(model_a, x, mode),
                                       "b": runner.predict(model_b, x, mode)}
                            else:
                                fns = {"a": runner.train(model_a, x, y, mode),
                                       "b": runner.train(model_b, x, y, mode)}
                            return _ab(fns, repeats, warmup, 0.25 if kind == "infer" else 0.01)

                        t0 = time.perf_counter()
                        what = f"{label_b} {kind} b{batch} {mode}"
                        r = attempt(what, one)
                        if r is not None:
                            result["models"].append({
                                "pair": f"{label_a} vs {label_b}", "kind": kind,
                                "batch": batch, "size": size, "mode": mode, **r})
                            print(f"[{backend}] {what}: {(r['ratio'] - 1) * 100:+.1f}% "
                                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
                            save()
                del model_a, model_b
                keras.backend.clear_session()
                gc.collect()
    result["notes"] = runner.notes
    save()
    return path


# ------------------------------------------------------------------ merge
def _best_layer(rows, ratio="ratio"):
    """Per shape, the mode with the lowest `ratio` (by default layer/floor)."""
    best = {}
    for r in rows:
        key = tuple(r["shape"])
        if ratio in r and (key not in best or r[ratio] < best[key][ratio]):
            best[key] = r
    return best


def _vs_layer(r, tf_value):
    """The SE layer against `keras.layers.Multiply` (and, on a best-mode row, whether
    that ratio is within TensorFlow's best)."""
    if "keras_multiply" not in r:
        return ""
    text = (f"{r['layer_vs_multiply_layer']:.2f}x ({r['layer_vs_multiply_layer_min']:.2f}-"
            f"{r['layer_vs_multiply_layer_max']:.2f})")
    if tf_value is not None:
        text += "; ok" if r["layer_vs_multiply_layer"] <= tf_value else f"; over {tf_value:.2f}x"
    return text


def merge(paths):
    runs = {}
    for p in paths:
        with open(p, encoding="utf-8") as f:
            run = json.load(f)
        runs[run["backend"]] = run
    rows = []
    tf_best = _best_layer(runs.get("tensorflow", {}).get("layer", []))
    tf_best_k = {shape: r["layer_vs_multiply_layer"] for shape, r in _best_layer(
        runs.get("tensorflow", {}).get("layer", []), "layer_vs_multiply_layer").items()}
    for backend, run in runs.items():
        best = _best_layer(run["layer"])
        for r in run["layer"]:
            shape = tuple(r["shape"])
            tf_ratio = tf_best.get(shape, {}).get("ratio")
            is_best = best[shape] is r
            rows.append({
                "backend": backend, "what": "layer vs x*g", "case": "x".join(map(str, shape)),
                "mode": r["mode"] + (" (best)" if is_best else ""),
                "a_ms": f"{r['a']['median_s'] * 1e3:.3f}", "b_ms": f"{r['b']['median_s'] * 1e3:.3f}",
                "result": f"{r['ratio']:.2f}x",
                "paired": f"{r['paired_min']:.2f}-{r['paired_max']:.2f}x",
                "n_ms": f"{r['native']['median_s'] * 1e3:.3f}" if "native" in r else "",
                "n_result": f"{r['native_ratio']:.2f}x" if "native" in r else "",
                "vs_native": f"{r['layer_vs_native']:.2f}x ({r['layer_vs_native_min']:.2f}-"
                             f"{r['layer_vs_native_max']:.2f})" if "native" in r else "",
                "vs_tf": "" if not is_best or tf_ratio is None else
                ("ok" if r["ratio"] <= tf_ratio * 1.0 else f"over TF's {tf_ratio:.2f}x"),
                "k_result": f"{r['keras_multiply_ratio']:.2f}x" if "keras_multiply" in r else "",
                "vs_k": _vs_layer(r, tf_best_k.get(shape) if is_best else None),
            })
        for r in run["models"]:
            rows.append({
                "backend": backend, "what": r["pair"],
                "case": f"{'inference' if r['kind'] == 'infer' else 'train step'} b{r['batch']} "
                        f"{r['size']}px",
                "mode": r["mode"],
                "a_ms": f"{r['a']['median_s'] * 1e3:.1f}", "b_ms": f"{r['b']['median_s'] * 1e3:.1f}",
                "result": f"{(r['ratio'] - 1) * 100:+.1f}%",
                "paired": f"{(r['paired_min'] - 1) * 100:+.1f}% .. {(r['paired_max'] - 1) * 100:+.1f}%",
                "n_ms": "", "n_result": "", "vs_native": "", "vs_tf": "", "k_result": "",
                "vs_k": "",
            })
    columns = [("backend", "backend"), ("what", "A vs B"), ("case", "case"), ("mode", "mode"),
               ("a_ms", "A median (ms)"), ("b_ms", "B median (ms)"), ("result", "B/A"),
               ("paired", "paired-ratio range"), ("n_ms", "native SE median (ms)"),
               ("n_result", "native SE/A"), ("vs_native", "layer/native SE (paired range)"),
               ("vs_tf", "layer ratio vs TensorFlow's"),
               ("k_result", "Multiply layer/A"),
               ("vs_k", "layer/Multiply layer (paired range; vs TensorFlow's best)")]
    failed = [f"- {b}: {f['what']}: {f['error']}" for b, run in runs.items() for f in run["failed"]]
    loads = ", ".join(f"{b} {run['machine'].get('loadavg_1_5_15')}" for b, run in runs.items())
    sections = [
        "Load average (1, 5, 15 min) when each backend's child started: " + loads + ". "
        "A load above the benchmark's own 1-2 means other work shared the cores: absolute "
        "times and spreads are inflated; the interleaved ratios are the figures to read.",
    ]
    if failed:
        sections.append("Modes that could not run:\n\n" + "\n".join(failed))
    info = dict(next(iter(runs.values()))["machine"]) if runs else machine_info()
    info["keras_backend"] = ", ".join(runs)
    write_results(
        "backends", "SE on every Keras backend: the layer and two models", rows, columns,
        data=runs, intro=__doc__.split("\n\n", 2)[2], sections=sections, info=info,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--quick", action="store_true",
                        help="10 repeats, 1 warm-up, smaller layer batches")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--size", type=int, default=224, help="inference image size")
    parser.add_argument("--train-size", type=int, default=224, help="training image size")
    parser.add_argument("--skip-layer", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--merge-only", action="store_true",
                        help="merge the existing results/backends_<backend>.json files")
    args = parser.parse_args(argv)
    if args.child:
        print(run_backend(args))
        return 0
    paths = []
    for backend in args.backends:
        path = os.path.join(RESULTS_DIR, f"backends_{backend}.json")
        if not args.merge_only:
            child_argv = [a for a in (argv if argv is not None else sys.argv[1:])
                          if a != "--merge-only"]
            env = child_env(KERAS_BACKEND=backend)
            code = subprocess.call([sys.executable, __file__, "--child", *child_argv], env=env)
            if code != 0:
                print(f"{backend}: the child exited with {code}; keeping what it wrote",
                      flush=True)
        if os.path.exists(path):
            paths.append(path)
    merge(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
