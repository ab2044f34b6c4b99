"""keras_se._keras_compat: each private Keras access, pinned (run at the Keras floor too)."""

import keras
import numpy as np
import pytest

from keras_se import _keras_compat as compat

pytestmark = pytest.mark.core


def _functional():
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.ReLU(name="relu")(x)
    return keras.Model(inp, x, name="f")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


class _FunctionalSubclass(keras.Model):
    """A Functional subclass, as keras-hub's backbones are."""

    def __init__(self, **kwargs):
        inp = keras.Input((4,))
        super().__init__(inp, keras.layers.Dense(2, name="d")(inp), **kwargs)


def test_is_functional():
    assert compat.is_functional(_functional())
    assert compat.is_functional(_FunctionalSubclass())
    assert not compat.is_functional(_Subclassed())
    assert not compat.is_functional(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    assert not compat.is_functional(keras.layers.Dense(2))


def test_graph_nodes_and_producers():
    model = _functional()
    by_depth = compat.nodes_by_depth(model)
    ops = {n.operation.name for nodes in by_depth.values() for n in nodes if n.operation}
    assert {"conv", "relu"} <= ops
    made = compat.producer(model.outputs[0])
    assert made[0].name == "relu" and made[1] in made[0]._inbound_nodes
    assert compat.producing_layer_name(model.inputs[0]) == "image"
    assert compat.producer(keras.ops.ones((2,))) is None  # a concrete tensor has no history


def test_sequential_graph_and_input_name():
    seq = keras.Sequential([keras.Input((4,), name="x_in"), keras.layers.Dense(2, name="d")])
    assert compat.is_functional(compat.sequential_graph(seq))
    assert compat.graph_of(seq) is compat.sequential_graph(seq)
    assert compat.input_layer_name(seq) == "x_in"
    assert compat.sequential_graph(keras.Sequential([keras.layers.Dense(2)])) is None


def test_flatten_layers_reaches_into_custom_layers():
    class Wrapper(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(2, name="inner")

        def call(self, x):
            return self.inner(x)

    inp = keras.Input((4,))
    model = keras.Model(inp, Wrapper(name="wrapper")(inp))
    names = {layer.name for layer in compat.flatten_layers(model)}
    assert {"wrapper", "inner"} <= names


def test_run_through_graph_calls_each_operation():
    model = _functional()
    seen = []

    def operation_fn(op):
        seen.append(op.name)
        return op

    x = np.ones((1, 8, 8, 3), "float32")
    out = compat.run_through_graph(model, keras.ops.convert_to_tensor(x), operation_fn)
    assert seen == ["conv", "relu"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)
