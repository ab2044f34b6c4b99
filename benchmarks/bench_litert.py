"""SE overhead in the LiteRT interpreter: XNNPACK, batch 1, float32, every conversion path.

    python benchmarks/bench_litert.py [--quick] [--pairs mobilenet ...] [--paths ...]
        [--threads 1 2] [--size 224] [--repeats N] [--no-before] [--skip-profile]

For each pair of models (A = the plain Keras model, B = its SE version built
with `init="standard"` so that the gates are not trivial):

- MobileNet against `keras_se.applications.SEMobileNet` (post_activation on
  `^conv_pw_\\d+_relu$`, the paper's SE-MobileNet);
- MobileNetV2 against the zoo's `SEMobileNetV2`;
- ResNet50 against `SEResNet50` (placement "residual");
- ResNet50 against `add_se_blocks(ResNet50, "post_activation")`;

and for each way a user turns a Keras model into a `.tflite` file (`PATHS`):

- `export_tflite`: `keras_se.export.export_tflite` (`keras-se export`), a
  SavedModel with a dynamic batch, then `TFLiteConverter.from_saved_model`;
- `from_keras_model`: `tf.lite.TFLiteConverter.from_keras_model(model)`, the
  model as built (dynamic batch);
- `from_keras_model_b1`: the same on the model called on a
  `keras.Input(batch_shape=(1, ...))` (static batch of 1);
- `keras_litert`: Keras's `model.export(path, format="litert")`;
- `keras_litert_b1`: the same with `input_signature` of batch 1;

it converts A and B, checks B's LiteRT outputs against Keras's (max absolute
difference on `keras_se.export.sample_inputs`, tolerance 1e-4), lists the
ops each SE block became (with the XNNPACK partitions: ops the delegate did
not take), and times A and B interleaved in one process (`_timing`) in the
LiteRT interpreter (`ai_edge_litert`, default XNNPACK delegate) with 1 and 2
threads at batch 1.

"B before" is the same SE model traced with the layer's graph as it was
before the export-friendly form (`before_call` below, a frozen copy of the old
`SqueezeExcite.call`), interleaved with A and B: the before/after record.

Clocks. With 1 thread the interpreter runs on the calling thread, so its
samples are that thread's CPU time (`time.thread_time`): time other
processes take on a shared core is not counted. With 2 threads they are wall
time (`time.perf_counter`); on a machine shared with other work these are
noisy, and the "min" columns (ratio of the fastest samples) are the
contention-free estimate.

The profile (`--skip-profile` to skip) times, for every SE site of SE-MobileNet
(the input shapes of its 13 SE layers), each op the SE block becomes in its
own small LiteRT graph (squeeze as `MEAN` or `AVERAGE_POOL_2D`, the two
`FULLY_CONNECTED` layers, `LOGISTIC`, the broadcast `MUL`, `RESHAPE`), and each
whole block as each path writes it, minus an empty graph's invoke time,
summed over the sites: where the SE overhead goes, op by op.

Results: `benchmarks/results/litert.json` and `litert.md`
(`litert_quick.*` with `--quick`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import io
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
from _timing import interleaved, machine_info, write_results  # noqa: E402
from keras import ops  # noqa: E402

import keras_se  # noqa: E402
import keras_se.layers  # noqa: E402
from keras_se import applications as se_apps  # noqa: E402
from keras_se import export as se_export  # noqa: E402

TARGET = 1.06  # issue 16: SE-MobileNet at most +6% over MobileNet on every path
ATOL = se_export.TFLITE_ATOL["none"]


# ------------------------------------------------------------------ models
def _mobilenet(size):
    return keras.applications.MobileNet(weights=None, input_shape=(size, size, 3), classifier_activation=None)


def _se_mobilenet(size):
    return se_apps.SEMobileNet(
        weights=None, input_shape=(size, size, 3), init="standard", classifier_activation=None
    )


def _mobilenet_v2(size):
    return keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), classifier_activation=None)


def _se_mobilenet_v2(size):
    return se_apps.SEMobileNetV2(
        weights=None, input_shape=(size, size, 3), init="standard", classifier_activation=None
    )


def _resnet50(size):
    return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classifier_activation=None)


def _se_resnet50(size):
    return se_apps.SEResNet50(
        weights=None,
        input_shape=(size, size, 3),
        placement="residual",
        init="standard",
        classifier_activation=None,
    )


def _resnet50_post_activation(size):
    return keras_se.add_se_blocks(_resnet50(size), "post_activation", init="standard")


PAIRS = {
    # key: (label A, builder A, label B, builder B)
    "mobilenet": ("MobileNet", _mobilenet, "SE-MobileNet", _se_mobilenet),
    "mobilenet_v2": ("MobileNetV2", _mobilenet_v2, "SE-MobileNetV2", _se_mobilenet_v2),
    "resnet50_residual": ("ResNet50", _resnet50, "SE-ResNet50 (residual)", _se_resnet50),
    "resnet50_post_activation": (
        "ResNet50",
        _resnet50,
        "ResNet50 + SE (post_activation)",
        _resnet50_post_activation,
    ),
}


def calibrate_batch_norm(model, x):
    """Sets every BatchNormalization's moving statistics to those of `x`.

    With `weights=None` the moving statistics are 0 and 1, and the activations
    of a deep network die out: MobileNet's logits no longer depend on the input,
    and a value check on them proves nothing. One pass in training mode with
    momentum 0 sets each layer's statistics to the batch's, as they flow.
    """
    layers = [
        layer for layer in _all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def prepare(model, seed=0):
    """Calibrated batch norms and random SE biases: a model whose outputs are informative."""
    randomize_se_biases(model, seed)
    calibrate_batch_norm(model, se_export.sample_inputs(model, batch_size=8, seed=seed + 10))
    return model


def randomize_se_biases(model, seed=0):
    """Gives every SE layer's biases small random values (they start at zero).

    The converter drops an all-zero bias, which would hide the bias add from
    the op lists and make the value check weaker than for a trained model.
    """
    rng = np.random.default_rng(seed)
    for layer in se_layers(model):
        for var in (layer.reduce_bias, layer.expand_bias):
            if var is not None:
                var.assign(rng.normal(0, 0.2, var.shape).astype("float32"))


def se_layers(model):
    return [layer for layer in _all_layers(model) if isinstance(layer, keras_se.SqueezeExcite)]


# ------------------------------------------------------------------ paths
def static_batch(model, batch=1):
    """`model` called on an input with a static batch size (a new Functional model)."""
    inp = keras.Input(batch_shape=(batch,) + tuple(model.inputs[0].shape[1:]))
    return keras.Model(inp, model(inp))


def _quiet():
    """Silences what the exporters print (saved artifact, endpoint signatures)."""
    return contextlib.redirect_stdout(io.StringIO())


def _export_tflite(model, tmp):
    path = os.path.join(tmp, "m.tflite")
    se_export.export_tflite(model, path, verify=False)
    with open(path, "rb") as f:
        return f.read()


def _from_keras_model(model, tmp):
    with _quiet():
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _from_keras_model_b1(model, tmp):
    return _from_keras_model(static_batch(model), tmp)


def _keras_litert(model, tmp, batch=None):
    path = os.path.join(tmp, "m.tflite")
    kwargs = {}
    if batch is not None:
        shape = (batch,) + tuple(model.inputs[0].shape[1:])
        kwargs["input_signature"] = [tf.TensorSpec(shape, tf.float32)]
    with _quiet():
        model.export(path, format="litert", verbose=False, **kwargs)
    with open(path, "rb") as f:
        return f.read()


def _keras_litert_b1(model, tmp):
    return _keras_litert(model, tmp, batch=1)


PATHS = {
    "export_tflite": ("keras_se.export_tflite (SavedModel, dynamic batch)", _export_tflite),
    "from_keras_model": ("TFLiteConverter.from_keras_model, dynamic batch", _from_keras_model),
    "from_keras_model_b1": (
        "TFLiteConverter.from_keras_model, static batch 1",
        _from_keras_model_b1,
    ),
    "keras_litert": ('model.export(format="litert"), dynamic batch', _keras_litert),
    "keras_litert_b1": ('model.export(format="litert"), input_signature batch 1', _keras_litert_b1),
}


def convert(model, path_key):
    """The `.tflite` bytes of `model` written the `path_key` way."""
    tmp = tempfile.mkdtemp(prefix="keras_se_litert_")
    try:
        return PATHS[path_key][1](model, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ before
def before_call(self, inputs, training=None):
    """`SqueezeExcite.call` as it was before the export-friendly form (frozen copy).

    The average squeeze was `_pooled_mean` (a whole-map `AvgPool`, then a
    reshape to `(N, C)`) when TensorFlow saw no GPU, the input was channels_last
    with static spatial sizes and the batch was not known to be 1, and
    `ops.mean` otherwise; the MLP ran on `(N, C)`; the gate was reshaped to
    `(N, 1, ..., 1, C)` for the multiply.
    """
    rank = len(inputs.shape)
    x = ops.cast(inputs, "float32")

    def squeeze(reduce):
        axes = self._spatial_axes(rank)
        window = tuple(x.shape[a] for a in axes)
        if (
            reduce == "avg"
            and x.shape[0] != 1
            and self.data_format == "channels_last"
            and None not in window
            and keras_se.layers.pooled_squeeze_enabled()
        ):
            pooled = tf.nn.avg_pool(x, window, strides=1, padding="VALID")
            return tf.reshape(pooled, (-1, self.channels))
        if reduce == "avg":
            return ops.mean(x, axis=axes)
        return ops.max(x, axis=axes)

    def mlp(d):
        h = ops.matmul(d, self.reduce_kernel)
        if self.reduce_bias is not None:
            h = h + self.reduce_bias
        h = self._activation_fn(h)
        z = ops.matmul(h, self.expand_kernel)
        if self.expand_bias is not None:
            z = z + self.expand_bias
        return z

    if self.squeeze == "avg":
        logits = mlp(squeeze("avg"))
    elif self.squeeze == "max":
        logits = mlp(squeeze("max"))
    else:
        logits = mlp(squeeze("avg")) + mlp(squeeze("max"))
    scale = _old_gate(self, logits)
    if self.data_format == "channels_last":
        shape = (-1,) + (1,) * (rank - 2) + (self.channels,)
    else:
        shape = (-1, self.channels) + (1,) * (rank - 2)
    return inputs * ops.reshape(ops.cast(scale, inputs.dtype), shape)


def _old_gate(self, logits):
    identity = self.init == "identity"
    if self.gate == "sigmoid":
        g = ops.sigmoid(logits)
        return 2.0 * g if identity else g
    if self.gate == "hard_sigmoid":
        g = ops.hard_sigmoid(logits)
        return 2.0 * g if identity else g
    if self.gate == "tanh":
        g = ops.tanh(logits)
        return 1.0 + g if identity else g
    return ops.relu(logits)


@contextlib.contextmanager
def traced_before():
    """Within it, `SqueezeExcite` layers trace the graph they traced before."""
    saved = keras_se.SqueezeExcite.call
    keras_se.SqueezeExcite.call = before_call
    try:
        yield
    finally:
        keras_se.SqueezeExcite.call = saved


# ------------------------------------------------------------------ interpreter
def interpreter(content, threads=1, delegate=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": threads}
    if not delegate:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=content, **kwargs)
    it.allocate_tensors()
    return it


def invoker(content, x, threads):
    """A callable that runs the flatbuffer once on `x` (batch 1) with XNNPACK."""
    it = interpreter(content, threads)
    detail = it.get_input_details()[0]
    if list(detail["shape"]) != list(x.shape):
        it.resize_tensor_input(detail["index"], list(x.shape))
        it.allocate_tensors()
    it.set_tensor(detail["index"], x)
    return it.invoke


def run(content, x):
    return se_export.run_tflite(content, x)


# ------------------------------------------------------------------ op lists
def graph(content):
    """The flatbuffer's ops in order: name, inputs/outputs (shapes, names)."""
    it = interpreter(content, delegate=False)
    nodes = []
    for op in it._get_ops_details():
        nodes.append(
            {
                "op": op["op_name"],
                "inputs": [int(t) for t in op["inputs"] if t >= 0],
                "outputs": [int(t) for t in op["outputs"]],
            }
        )
    tensors = {}
    for d in it.get_tensor_details():
        tensors[d["index"]] = {
            "name": d["name"],
            "shape": [int(s) for s in d["shape_signature"]],
        }
    return nodes, tensors


def undelegated(content, threads=1):
    """Ops XNNPACK did not take, and the number of delegate partitions.

    After delegation the interpreter lists the original nodes and then one
    `DELEGATE` node per partition; an original node is delegated when its
    outputs are inside a partition: produced as a partition's output, or
    consumed only by delegated nodes.
    """
    it = interpreter(content, threads)
    details = it._get_ops_details()
    model_outputs = {int(d["index"]) for d in it.get_output_details()}
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    d_out = {int(t) for d in delegates for t in d["outputs"]}
    d_in = {int(t) for d in delegates for t in d["inputs"]}
    originals = [d for d in details if d["op_name"] != "DELEGATE"]
    consumers = collections.defaultdict(list)
    for i, d in enumerate(originals):
        for t in d["inputs"]:
            consumers[int(t)].append(i)
    outside = [False] * len(originals)
    for i in reversed(range(len(originals))):
        outs = [int(t) for t in originals[i]["outputs"]]
        if any(t in d_out for t in outs):
            continue
        if any(t in d_in or t in model_outputs for t in outs) or any(
            outside[j] for t in outs for j in consumers[t]
        ):
            outside[i] = True
        if not delegates:
            outside[i] = True
    return {
        "partitions": len(delegates),
        "not_delegated": collections.Counter(
            originals[i]["op_name"] for i in range(len(originals)) if outside[i]
        ),
    }


def se_matcher(model):
    names = [layer.name for layer in se_layers(model)]
    if not names:
        return lambda name: False
    pattern = re.compile(r"(^|[/;])(" + "|".join(map(re.escape, names)) + r")(_\d+)?/")
    return lambda name: bool(pattern.search(name))


def se_ops(content, model):
    """The ops whose outputs lie under an SE layer's name scope, and one block's sequence."""
    nodes, tensors = graph(content)
    is_se = se_matcher(model)
    counts = collections.Counter()
    blocks = collections.OrderedDict()
    for n in nodes:
        names = [tensors[t]["name"] for t in n["outputs"]]
        if any(is_se(name) for name in names):
            counts[n["op"]] += 1
            layer = next(m for m in (re.search(r"([\w.]+_se)(_\d+)?/", nm) for nm in names) if m)
            blocks.setdefault(layer.group(1), []).append(
                f"{n['op']}{tuple(tensors[n['outputs'][0]]['shape'])}"
            )
    first = next(iter(blocks.values()), [])
    return {"counts": counts, "first_block": first, "n_blocks": len(blocks), "total": len(nodes)}


# ------------------------------------------------------------------ profile
def _tflite_of(fn, specs):
    concrete = tf.function(fn).get_concrete_function(*specs)
    with _quiet():
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()


def _feed(content, threads, seed=0):
    it = interpreter(content, threads)
    rng = np.random.default_rng(seed)
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.uniform(0, 1, d["shape"]).astype("float32"))
    return it.invoke


def site_graphs(layer, shape, batch_none):
    """Small graphs for one SE site: each op the block becomes, and the whole block.

    `shape` is the site's input shape without the batch; `batch_none` traces
    with a dynamic batch (as `export_tflite` does) rather than a static 1.
    Returns name -> (function, input specs).
    """
    n = None if batch_none else 1
    h, w, c = shape
    u = layer.reduce_kernel.shape[1]
    k1 = tf.constant(layer.reduce_kernel.numpy())
    k2 = tf.constant(layer.expand_kernel.numpy())
    b1 = tf.constant(layer.reduce_bias.numpy())
    b2 = tf.constant(layer.expand_bias.numpy())
    x_spec = tf.TensorSpec((n, h, w, c))
    d_spec = tf.TensorSpec((n, c))
    g_spec = tf.TensorSpec((n, 1, 1, c))

    def mlp(d):
        return tf.matmul(tf.nn.relu(tf.matmul(d, k1) + b1), k2) + b2

    def block_with(layer_call):
        return lambda x: layer_call(layer, x)

    graphs = {
        "empty": (lambda t: t + 1.0, [tf.TensorSpec((n, 1))]),
        "MEAN (N, C)": (lambda x: tf.reduce_mean(x, [1, 2]), [x_spec]),
        "MEAN keepdims": (lambda x: tf.reduce_mean(x, [1, 2], keepdims=True), [x_spec]),
        "AVERAGE_POOL_2D": (lambda x: tf.nn.avg_pool(x, (h, w), 1, "VALID"), [x_spec]),
        "FULLY_CONNECTED x2": (mlp, [d_spec]),
        "LOGISTIC": (tf.sigmoid, [d_spec]),
        "RESHAPE": (lambda d: tf.reshape(d, (-1, 1, 1, c)), [d_spec]),
        "MUL (broadcast)": (lambda x, g: x * g, [x_spec, g_spec]),
        "block before": (block_with(before_call), [x_spec]),
        "block now": (block_with(keras_se.SqueezeExcite.call), [x_spec]),
    }
    del u
    return graphs


def profile_sites(model, threads, repeats, batch_none, log):
    """Per-op LiteRT time of the SE blocks of `model`, summed over its sites (us)."""
    sites = collections.Counter()
    layer_of = {}
    for layer in se_layers(model):
        shape = tuple(int(s) for s in layer.input.shape[1:])
        sites[shape] += 1
        layer_of.setdefault(shape, layer)
    totals = collections.Counter()
    per_site = []
    op_lists = {}
    for shape, count in sites.items():
        graphs = site_graphs(layer_of[shape], shape, batch_none)
        fns, contents = {}, {}
        for name, (fn, specs) in graphs.items():
            contents[name] = _tflite_of(fn, specs)
            fns[name] = _feed(contents[name], threads)
            op_lists.setdefault(name, [n["op"] for n in graph(contents[name])[0]])
        timed = interleaved(
            fns,
            repeats=repeats,
            warmup=2,
            min_sample_s=0.005,
            clock=time.thread_time if threads == 1 else time.perf_counter,
        )
        empty = timed["empty"].median
        row = {"shape": shape, "sites": count}
        for name, stats in timed.items():
            if name == "empty":
                continue
            us = max(0.0, (stats.median - empty) * 1e6)
            row[name] = us
            totals[name] += us * count
        per_site.append(row)
        log(f"  profile {shape} x{count}: " + ", ".join(
            f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)))
    return {"totals_us": dict(totals), "per_site": per_site, "op_lists": op_lists}


# ------------------------------------------------------------------ main
def _fmt_ops(counter):
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 1 warm-up, 1 thread")
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--paths", nargs="*", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--threads", nargs="*", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--no-before", action="store_true", help="do not time B before")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--profile-repeats", type=int, default=None)
    parser.add_argument("--name", default=None, help="result file stem (default litert)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    threads_list = args.threads or ([1] if args.quick else [1, 2])
    name = args.name or ("litert_quick" if args.quick else "litert")
    started = time.perf_counter()
    rows, ops_rows, data = [], [], {"pairs": [], "profile": {}}

    def log(msg):
        print(msg, flush=True)

    def write():
        info = machine_info()
        write_results(
            name,
            "SE overhead in LiteRT (XNNPACK, batch 1, float32), every conversion path",
            rows,
            COLUMNS,
            data={
                "repeats": repeats,
                "warmup": warmup,
                "size": args.size,
                "threads": threads_list,
                "elapsed_s": round(time.perf_counter() - started, 1),
                **data,
            },
            intro=intro(repeats, warmup, args.size),
            sections=[ops_section(ops_rows), profile_section(data["profile"])],
            info=info,
        )

    for key in args.pairs:
        label_a, build_a, label_b, build_b = PAIRS[key]
        model_a, model_b = prepare(build_a(args.size)), prepare(build_b(args.size))
        x = se_export.sample_inputs(model_b, batch_size=1)
        x_check = se_export.sample_inputs(model_b, batch_size=2, seed=1)
        expected = np.asarray(model_b(x_check, training=False))
        contents = {}
        for path in args.paths:
            t0 = time.perf_counter()
            contents[(path, "a")] = convert(model_a, path)
            contents[(path, "b")] = convert(model_b, path)
            if not args.no_before:
                with traced_before():
                    contents[(path, "before")] = convert(model_b, path)
            entry = {"pair": key, "path": path, "sizes_bytes": {}}
            for which in ("b", "before"):
                if (path, which) not in contents:
                    continue
                content = contents[(path, which)]
                diff = max(
                    float(np.max(np.abs(run(content, x_check[i : i + 1]) - expected[i : i + 1])))
                    for i in range(len(x_check))
                )
                info_ops = se_ops(content, model_b)
                dele = undelegated(content)
                entry[which] = {
                    "max_abs_diff": diff,
                    "se_op_counts": dict(info_ops["counts"]),
                    "se_ops_total": sum(info_ops["counts"].values()),
                    "se_blocks": info_ops["n_blocks"],
                    "first_block": info_ops["first_block"],
                    "ops_total": info_ops["total"],
                    "partitions": dele["partitions"],
                    "not_delegated": dict(dele["not_delegated"]),
                }
                ops_rows.append(
                    {
                        "pair": label_b,
                        "path": path,
                        "which": "B" if which == "b" else "B before",
                        "block": " → ".join(info_ops["first_block"]),
                        "se_ops": f"{sum(info_ops['counts'].values())} "
                        f"({_fmt_ops(info_ops['counts'])})",
                        "partitions": dele["partitions"],
                        "not_delegated": _fmt_ops(dele["not_delegated"]) or "none",
                        "diff": f"{diff:.1e}",
                    }
                )
            dele_a = undelegated(contents[(path, "a")])
            entry["a"] = {
                "partitions": dele_a["partitions"],
                "not_delegated": dict(dele_a["not_delegated"]),
            }
            for which in ("a", "b", "before"):
                if (path, which) in contents:
                    entry["sizes_bytes"][which] = len(contents[(path, which)])
            data["pairs"].append(entry)
            log(f"{key} {path}: converted in {time.perf_counter() - t0:.0f} s; "
                f"B diff {entry['b']['max_abs_diff']:.2e}; B SE ops {entry['b']['se_op_counts']}; "
                f"partitions A {entry['a']['partitions']} B {entry['b']['partitions']}")
        for threads in threads_list:
            clock = time.thread_time if threads == 1 else time.perf_counter
            fns = {}
            for (path, which), content in contents.items():
                fns[f"{path}|{which}"] = invoker(content, x, threads)
            t0 = time.perf_counter()
            timed = interleaved(
                fns, repeats=repeats, warmup=warmup, min_sample_s=0.05, clock=clock
            )
            for path in args.paths:
                a = timed[f"{path}|a"]
                b = timed[f"{path}|b"]
                before = timed.get(f"{path}|before")
                paired = sorted(bs / as_ for as_, bs in zip(a.samples, b.samples))
                row = {
                    "pair": f"{label_a} vs {label_b}",
                    "path": path,
                    "threads": threads,
                    "clock": "CPU" if threads == 1 else "wall",
                    "a_ms": f"{a.median * 1e3:.2f}",
                    "b_ms": f"{b.median * 1e3:.2f}",
                    "overhead": f"{(b.median / a.median - 1) * 100:+.1f}%",
                    "overhead_min": f"{(b.min / a.min - 1) * 100:+.1f}%",
                    "paired": f"{(paired[len(paired) // 2] - 1) * 100:+.1f}%",
                    "before": "" if before is None
                    else f"{(before.median / a.median - 1) * 100:+.1f}%",
                    "before_min": "" if before is None
                    else f"{(before.min / a.min - 1) * 100:+.1f}%",
                    "met": ("yes" if b.median / a.median <= TARGET else "no")
                    if key == "mobilenet" else "",
                }
                rows.append(row)
                data["pairs"].append(
                    {
                        "pair": key,
                        "path": path,
                        "threads": threads,
                        "a": a.to_dict(),
                        "b": b.to_dict(),
                        "before": None if before is None else before.to_dict(),
                        "ratio": b.median / a.median,
                        "ratio_min": b.min / a.min,
                        "before_ratio": None if before is None else before.median / a.median,
                    }
                )
                log(str(row))
            log(f"  timed in {time.perf_counter() - t0:.0f} s")
            write()
        if key == "mobilenet" and not args.skip_profile:
            for threads in threads_list:
                for batch_none in (True, False):
                    label = f"{threads} thread(s), {'dynamic batch' if batch_none else 'batch 1'}"
                    log(f"profile SE-MobileNet, {label}")
                    prof = profile_sites(
                        model_b, threads, args.profile_repeats or repeats, batch_none, log
                    )
                    a_us = np.median(
                        [
                            r["a"]["median_s"]
                            for r in data["pairs"]
                            if r.get("threads") == threads and r["pair"] == key
                        ]
                    ) * 1e6
                    prof["a_us"] = float(a_us)
                    data["profile"][label] = prof
                    write()
        del model_a, model_b, contents
        keras.backend.clear_session()
        gc.collect()
    write()
    log(f"total {time.perf_counter() - started:.0f} s")


COLUMNS = [
    ("pair", "A vs B"),
    ("path", "conversion path"),
    ("threads", "threads"),
    ("clock", "clock"),
    ("a_ms", "A (ms)"),
    ("b_ms", "B (ms)"),
    ("overhead", "B/A - 1"),
    ("overhead_min", "B/A - 1 (min)"),
    ("paired", "paired median"),
    ("before", "B before / A - 1"),
    ("before_min", "before (min)"),
    ("met", "≤ +6%"),
]


def intro(repeats, warmup, size):
    paths = "\n".join(f"- `{k}`: {v[0]}" for k, v in PATHS.items())
    return (
        f"A = the plain Keras model, B = the same with SE (`init=\"standard\"`, SE biases "
        f"set to small random values), weights=None, float32, {size} px, batch 1, run by "
        "the LiteRT interpreter (`ai_edge_litert`) with its default XNNPACK delegate. "
        f"A, B and B before interleaved in one process, {repeats} repeats after {warmup} "
        "warm-up round(s), median; \"(min)\" = the ratio of the fastest samples, the "
        "estimate least disturbed by other work on the machine. 1 thread: CPU time of the "
        "calling thread (`time.thread_time`); 2 threads: wall time. \"B before\": the SE "
        "model traced with the layer's graph before the export-friendly form. Conversion "
        f"paths:\n\n{paths}\n\nCommand: `python benchmarks/bench_litert.py`."
    )


def ops_section(ops_rows):
    if not ops_rows:
        return ""
    from _timing import markdown_table

    return "## What each SE block becomes\n\n" + markdown_table(
        ops_rows,
        [
            ("pair", "B"),
            ("path", "path"),
            ("which", "trace"),
            ("block", "first SE block's ops (output shape; -1 = dynamic batch)"),
            ("se_ops", "SE ops in the model"),
            ("partitions", "XNNPACK partitions"),
            ("not_delegated", "ops not delegated"),
            ("diff", "max |LiteRT - Keras|"),
        ],
    )


def profile_section(profile):
    if not profile:
        return ""
    parts = [
        "## Profile: SE-MobileNet's SE ops, op by op\n\n"
        "Each op in its own LiteRT graph at the shape of each of the 13 SE sites, minus an "
        "empty graph's invoke time, summed over the sites (microseconds per image); "
        "\"block\" = one whole SE block as traced (before / now). Percentages are of "
        "MobileNet's own time in the same thread setting."
    ]
    for label, prof in profile.items():
        a_us = prof["a_us"]
        items = ", ".join(
            f"{k} {v:.0f} us ({v / a_us * 100:.1f}%)" for k, v in prof["totals_us"].items()
        )
        parts.append(f"- {label}: {items}")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
