"""The one door to Keras internals.

keras-se reads a Functional model's graph (nodes, the layer that made a tensor), which
Keras 3 has no public API for. Every private access lives here, each with a line on
the public API that is missing, so that a Keras upgrade breaks this file only. The
rest of the package calls these functions. `tests/test_keras_compat.py` pins each of
them against the lowest and the newest Keras that `setup.py` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras

try:
    # Missing public API: `keras.Model(inputs, outputs)` returns an instance of this
    # class, but Keras exports no name for it, so "is this a graph model" has no
    # public test. `keras.models.clone_model` dispatches on the same class.
    from keras.src.models.functional import Functional as _Functional
except ImportError:  # pragma: no cover - a Keras that moved the module
    _Functional = None


def is_functional(model: Any) -> bool:
    """Whether `model` is a Functional model: `keras.Model(inputs, outputs)` or a
    subclass of Functional (keras-hub's backbones and tasks), not a subclassed
    `keras.Model` that defines its own `call()`, and not a Sequential model."""
    if isinstance(model, keras.Sequential):
        return False
    if _Functional is not None:
        return isinstance(model, _Functional)
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def sequential_graph(model: keras.Sequential):
    """The Functional graph a built Sequential model runs, or None before it is built.

    Missing public API: a Sequential model does not expose its graph.
    """
    return getattr(model, "_functional", None)


def graph_of(model):
    """The Functional graph behind `model`: itself, or a Sequential's inner one."""
    if isinstance(model, keras.Sequential):
        return sequential_graph(model)
    return model


def nodes_by_depth(model) -> dict[int, list]:
    """`{depth: [node, ...]}` of a Functional graph, depth 0 at the outputs.

    Missing public API: the nodes of a Functional model.
    """
    return graph_of(model)._nodes_by_depth


def producer(tensor) -> tuple[Any, Any] | None:
    """`(operation, node)` that made the symbolic `tensor`, or None for a graph input.

    Missing public API: a `KerasTensor` does not name the layer call that made it.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    operation, node_index, _ = history
    return operation, operation._inbound_nodes[node_index]


def keras_history(tensor) -> tuple[Any, int, int]:
    """`(operation, call index, output index)` that made the symbolic `tensor`.

    Missing public API: as for `producer`.
    """
    operation, node_index, tensor_index = tensor._keras_history
    return operation, node_index, tensor_index


def call_output(operation, call_index: int, output_index: int = 0):
    """The symbolic output `output_index` of `operation`'s `call_index`-th call.

    Missing public API: a layer called several times exposes only its first call's
    output (`layer.output`).
    """
    return operation._inbound_nodes[call_index].output_tensors[output_index]


def call_count(operation) -> int:
    """How many times `operation` was called in Functional graphs.

    Missing public API: as for `call_output`.
    """
    return len(operation._inbound_nodes)


def producing_layer_name(tensor) -> str | None:
    """The name of the layer (an `InputLayer` for an input) that made `tensor`."""
    made = producer(tensor)
    return made[0].name if made is not None else None


def input_layer_name(model) -> str | None:
    """The name of a Sequential model's `InputLayer`, or None when it has none.

    Missing public API: `Sequential.layers` leaves the `InputLayer` out.
    """
    first = model._layers[0] if getattr(model, "_layers", None) else None
    if isinstance(first, keras.layers.InputLayer):
        return first.name
    return None


def flatten_layers(model) -> Iterator[keras.layers.Layer]:
    """Every layer tracked by `model` at any depth (inside custom layers too), not itself.

    Missing public API: `Model.layers` lists only the top level, and a layer's own
    sub-layers are reachable only through private tracking.
    """
    return model._flatten_layers(include_self=False)


def run_through_graph(model, inputs, operation_fn: Callable) -> Any:
    """Calls a Functional graph's operations on `inputs`, each through `operation_fn(op)`.

    The walk `Functional.call` and `keras.models.clone_model` do. Missing public API:
    `clone_model(call_function=...)` gives the same hook but copies the layers.
    """
    return graph_of(model)._run_through_graph(inputs, operation_fn=operation_fn)


def keras_hub_timm_resnet_converter():
    """keras-hub's converter of timm ResNet checkpoints (`convert_weights`, `convert_head`).

    Missing public API: keras-hub converts timm checkpoints only inside
    `from_preset("hf://timm/...")`, which refuses SE-ResNet checkpoints.
    """
    from keras_hub.src.utils.timm import convert_resnet

    return convert_resnet
