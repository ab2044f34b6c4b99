"""ONNX export on every backend, checked in ONNX Runtime."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import types
import warnings

import keras
import numpy as np

from keras_se.export._common import (
    ParityError,
    _max_diff,
    sample_inputs,
)

# `export_onnx` is Keras's `model.export(path, format="onnx")` plus the checks
# the other formats get. The converter depends on the Keras backend:
# TensorFlow: tf2onnx on the traced `tf.function` (opset 15 by default);
# JAX: jax2onnx; torch: `torch.onnx.export` (TorchScript with a dynamic batch).
# This section imports no TensorFlow itself.

ONNX_ATOL = 1e-4


class ExportError(ValueError):
    """The model cannot be written in the format: the converter lacks one of its ops.

    A `ValueError`: the model is the bad input, not the library. The message
    is one line naming the layer (where it can be found) and the op; the
    command line prints it and exits with code 2. No file is left behind.
    """


def onnx_requirements() -> list[str]:
    """The packages `export_onnx` needs on this backend that are not installed."""
    import importlib.util

    needed = ["onnx", "onnxruntime"]
    needed.append({"tensorflow": "tf2onnx", "jax": "jax2onnx"}.get(keras.backend.backend(), "onnx"))
    return [n for n in dict.fromkeys(needed) if importlib.util.find_spec(n) is None]


def _onnx_converter() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        try:
            import tf2onnx

            return f"tf2onnx {tf2onnx.__version__}"
        except ImportError:  # pragma: no cover - the test extra installs it
            return "tf2onnx"
    return {"jax": "jax2onnx", "torch": "torch.onnx"}.get(backend, backend)


def _onnx_input_signature(model):
    """One `keras.InputSpec` per input, batch `None`, named as the Keras input.

    Given explicitly so that a Functional model never called can be exported
    (Keras's default signature requires a call) and the ONNX input keeps the
    Keras input's name. None (Keras's own inference) for models without
    symbolic inputs or with several.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1:
        return None
    x = inputs[0]
    return [keras.InputSpec(shape=(None, *x.shape[1:]), dtype=x.dtype, name=x.name)]


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _layer_of_node(model, node_name: str):
    """The Keras layer whose name scope produced ONNX node `node_name`, or None.

    tf2onnx names nodes after the TensorFlow ops, whose name scopes are the
    (nested) model and layer names, sometimes with a `_1` suffix:
    `functional_1/resize_1/resize/ScaleAndTranslate`.
    """
    scope = {layer.name: layer for layer in getattr(model, "layers", [])}
    found = None
    for part in node_name.strip("/").split("/")[:-1]:
        layer = scope.get(part) or scope.get(re.sub(r"_\d+$", "", part))
        if layer is None:
            if found is not None:
                break
            continue
        found = layer
        if not getattr(layer, "layers", None):
            break
        scope = {sub.name: sub for sub in layer.layers}
    return found


def _unsupported_onnx_nodes(proto) -> list:
    """The nodes of `proto` whose op no ONNX schema (at the model's opset) defines.

    tf2onnx does not fail on a TensorFlow op it cannot translate: it logs an
    error and copies the op into the graph unchanged, which no runtime can
    load. Ops of local functions and of ONNX Runtime's `com.microsoft` domain
    count as known.
    """
    import onnx

    opsets = {o.domain or "": o.version for o in proto.opset_import}
    local = {(f.domain, f.name) for f in proto.functions}
    bad = []
    for node in proto.graph.node:
        domain = node.domain or ""
        if domain == "ai.onnx":
            domain = ""
        if (node.domain, node.op_type) in local or domain == "com.microsoft":
            continue
        version = opsets.get(domain)
        if version is None or not onnx.defs.has(node.op_type, version, domain):
            bad.append(node)
    return bad


def onnx_io(path: str) -> dict:
    """Names and shapes of the graph inputs and outputs of the ONNX file at `path`.

    Returns:
        `{"inputs": [(name, shape)], "outputs": [(name, shape)], "opset": int}`;
        a dynamic dimension is its symbol (a str), a fixed one an int.

    Example:

    >>> import os, tempfile, keras
    >>> from keras_se.export import export_onnx, onnx_io
    >>> model = keras.Sequential([keras.Input((8, 8, 3), name="image"), keras.layers.Conv2D(2, 3)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> export_onnx(model, path) <= 1e-4
    True
    >>> name, shape = onnx_io(path)["inputs"][0]
    >>> name, isinstance(shape[0], str), shape[1:]
    ('image', True, [8, 8, 3])
    """
    import onnx

    proto = onnx.load(path, load_external_data=False)
    return _onnx_io(proto)


def _onnx_io(proto) -> dict:
    def dims(value):
        return [d.dim_param if d.HasField("dim_param") or not d.HasField("dim_value") else d.dim_value
                for d in value.type.tensor_type.shape.dim]

    initializers = {i.name for i in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "inputs": [(v.name, dims(v)) for v in proto.graph.input if v.name not in initializers],
        "outputs": [(v.name, dims(v)) for v in proto.graph.output],
        "opset": opset,
    }


def _name_batch_dimension(proto) -> bool:
    """Names the dynamic batch dimension `batch` (converters write `unk__18`, `s0`, ...).

    For a single-input model: the input's symbolic first dimension, and each output's
    (the batch a Keras model keeps), wherever they appear in the graph's signature.
    Returns whether anything was renamed.
    """
    graph = proto.graph

    def first_symbol(value):
        dims = value.type.tensor_type.shape.dim
        return dims[0].dim_param if dims and dims[0].dim_param else None

    if len(graph.input) != 1 or first_symbol(graph.input[0]) is None:
        return False
    symbols = {first_symbol(v) for v in (*graph.input, *graph.output)} - {None, "batch"}
    if not symbols:
        return False
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = "batch"
    return True


def _onnx_session(path: str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(path: str, inputs: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
    """Runs the ONNX file at `path` on `inputs` (one batch) in ONNX Runtime, on CPU.

    Returns:
        The list of outputs, in the graph's order.
    """
    session = _onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return [np.asarray(y) for y in session.run(None, {name: inputs})]


def _flat_outputs(outputs) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(y)) for y in keras.tree.flatten(outputs)]


def check_onnx(path: str, inputs: np.ndarray, expected, atol: float = ONNX_ATOL) -> float:
    """Runs the ONNX file at `path` in ONNX Runtime and compares it with `expected`.

    Args:
        path: the `.onnx` file.
        inputs: the check batch.
        expected: Keras's outputs on `inputs` (an array, or a list of arrays
            for a model with several outputs).
        atol: the tolerance. Defaults to `ONNX_ATOL`.

    Returns:
        The max absolute difference over all outputs.

    Raises:
        ParityError: when it is above `atol`, or the output count differs.
    """
    expected = _flat_outputs(expected)
    got = run_onnx(path, inputs)
    if len(got) != len(expected):
        raise ParityError(
            f"ONNX model {path} has {len(got)} outputs, the Keras model {len(expected)}"
        )
    diff = max(_max_diff(g, e) for g, e in zip(got, expected))
    if not diff <= atol:
        raise ParityError(
            f"ONNX model {path} differs from Keras by {diff:.3g} in ONNX Runtime "
            f"(tolerance {atol:g})"
        )
    return diff


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _tf2onnx_frees_its_copies():
    """Collects garbage before each of tf2onnx's graph copies.

    tf2onnx deep-copies the whole graph, weights included, before each of its
    optimizer passes (`tf2onnx.optimizer.optimize_graph`). The copies it drops
    hold reference cycles, which Python frees only at its rare full
    collections: exporting SE-ResNet50 peaked at 6.0 GiB of RSS and kept
    5.7 GiB afterwards. A collection before each copy, with the objects
    that existed before the export frozen (so that each collection scans only
    the converter's), keeps the peak at 3.0 GiB (1.9 GiB after) for about 1.3x
    the export time. A private patch of tf2onnx, undone on exit; without
    tf2onnx (other backends) it does nothing.
    """
    try:
        import tf2onnx.optimizer as optimizer
    except ImportError:
        yield
        return
    original = optimizer.copy

    def deepcopy(x, memo=None):
        gc.collect()
        return original.deepcopy(x, memo)

    gc.collect()
    gc.freeze()
    optimizer.copy = types.SimpleNamespace(deepcopy=deepcopy)
    try:
        yield
    finally:
        optimizer.copy = original
        gc.unfreeze()
        gc.collect()


def _convert_onnx(model, path, opset):
    """`model.export(path, format="onnx")`, quiet, with the squeeze traced as a mean."""
    from keras_se.layers import mean_squeeze

    logger = logging.getLogger("tf2onnx")
    handler, level, propagate = _Records(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        with mean_squeeze(), _tf2onnx_frees_its_copies(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(
                path,
                format="onnx",
                verbose=False,
                input_signature=_onnx_input_signature(model),
                opset_version=opset,
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return handler.records


def _unsupported_message(model, nodes, opset) -> str:
    where = []
    for node in nodes:
        layer = _layer_of_node(model, node.name)
        what = f"layer {layer.name!r} ({type(layer).__name__})" if layer is not None else (
            f"node {node.name!r}"
        )
        where.append(f"{what} computes {node.op_type}")
    first = where[0]
    more = f" (and {len(where) - 1} more: {'; '.join(where[1:4])}{' ...' if len(where) > 4 else ''})" if len(where) > 1 else ""
    return (
        f"`model` cannot be exported to ONNX: {first}, which {_onnx_converter()} cannot "
        f"convert to an ONNX op (opset {opset}){more}. Remove or replace that layer. "
        f"Received: model={model.name!r}"
    )


def export_onnx(
    model: keras.Model,
    path: str,
    *,
    verify: bool = True,
    inputs: np.ndarray | None = None,
    atol: float = ONNX_ATOL,
    opset: int | None = None,
) -> float | None:
    """Exports `model` to an ONNX file and checks it in ONNX Runtime.

    Built on Keras's `model.export(path, format="onnx")` (tf2onnx on the
    TensorFlow backend, jax2onnx on JAX, `torch.onnx` on torch). The file
    has a dynamic batch dimension and the Keras input's name. `SqueezeExcite`
    layers are traced with `ops.mean` (`keras_se.layers.mean_squeeze`), so
    each SE block's squeeze is a `GlobalAveragePool` or `ReduceMean`. The file
    appears at `path` only once it is written, checked and (with `verify`)
    matched in ONNX Runtime: on any error no file is left.

    Args:
        model: a Keras model with one input.
        path: the `.onnx` file to write (replaced if it exists).
        verify: bool, run the file in ONNX Runtime (CPU) and compare with
            Keras. Defaults to `True`.
        inputs: the check batch, or None for `sample_inputs(model)`.
        atol: the tolerance. Defaults to `ONNX_ATOL`.
        opset: the ONNX opset, or None for the converter's default (15 with
            tf2onnx 1.17). Defaults to `None`.

    Returns:
        The max absolute difference, or None without `verify`.

    Raises:
        ExportError: a layer computes an op the converter cannot translate
            (a `ValueError`; the message names the layer).
        ParityError: the outputs differ from Keras's by more than `atol`.
    """
    import onnx

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"`path`'s directory does not exist: {directory}. Received: path={path!r}")
    if verify and inputs is None:
        inputs = sample_inputs(model)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.partial{os.getpid()}")
    try:
        try:
            _convert_onnx(model, tmp, opset)
        except Exception as e:
            if keras.backend.backend() == "tensorflow" or isinstance(e, ExportError):
                raise
            # jax2onnx and torch.onnx raise on an op they lack.
            if isinstance(e, NotImplementedError) or "Unsupported" in type(e).__name__:
                line = " ".join(str(e).split())[:300]
                raise ExportError(
                    f"`model` cannot be exported to ONNX: {_onnx_converter()} failed: "
                    f"{type(e).__name__}: {line}. Received: model={model.name!r}"
                ) from e
            raise
        proto = onnx.load(tmp, load_external_data=False)
        if _name_batch_dimension(proto):
            onnx.save(proto, tmp)
        io = _onnx_io(proto)
        bad = _unsupported_onnx_nodes(proto)
        if bad:
            raise ExportError(_unsupported_message(model, bad, io["opset"]))
        signature = _onnx_input_signature(model)
        if signature is not None:
            (name, shape), = io["inputs"]
            if name != signature[0].name or not isinstance(shape[0], str):
                raise RuntimeError(
                    f"the ONNX input is {name!r} with shape {shape}; expected "
                    f"{signature[0].name!r} with a dynamic batch dimension"
                )
        del proto
        diff = None
        if verify:
            expected = model(inputs, training=False)
            diff = check_onnx(tmp, inputs, expected, atol)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return diff
