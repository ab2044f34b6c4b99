"""A NumPy SqueezeExcite, the reference the layer tests compare against (float64)."""

import math

import keras
import numpy as np


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _weights(layer):
    def get(v):
        return None if v is None else _np(v).astype("float64")

    return (
        get(layer.reduce_kernel),
        get(layer.reduce_bias),
        get(layer.expand_kernel),
        get(layer.expand_bias),
    )


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


#: The bottleneck activations, by Keras name, in NumPy.
ACTIVATIONS_NP = {
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "silu": lambda z: z * _sigmoid(z),
    "swish": lambda z: z * _sigmoid(z),
    "hard_silu": lambda z: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
    "hard_swish": lambda z: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
    "gelu": lambda z: 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))),
    "linear": lambda z: z,
}


def _activation_name(activation):
    if activation is None or isinstance(activation, str):
        return activation or "linear"
    return activation.__name__


def gate_np(z, gate, identity):
    if gate == "sigmoid":
        g = 1.0 / (1.0 + np.exp(-z))
        return 2.0 * g if identity else g
    if gate == "hard_sigmoid":  # keras: relu6(x + 3) / 6
        g = np.clip(z + 3.0, 0.0, 6.0) / 6.0
        return 2.0 * g if identity else g
    if gate == "tanh":
        return 1.0 + np.tanh(z) if identity else np.tanh(z)
    return np.maximum(z, 0.0)


def se_reference(x, layer):
    """NumPy SE with the layer's weights: returns (output, gate of shape (batch, C))."""
    x = np.asarray(x, "float64")
    wr, br, we, be = _weights(layer)
    rank = x.ndim
    if layer.data_format == "channels_last":
        axes = tuple(range(1, rank - 1))
    else:
        axes = tuple(range(2, rank))

    def mlp(d):
        h = d @ wr + (0.0 if br is None else br)
        h = ACTIVATIONS_NP[_activation_name(layer.activation)](h)
        return h @ we + (0.0 if be is None else be)

    if layer.squeeze == "avg":
        logits = mlp(x.mean(axis=axes))
    elif layer.squeeze == "max":
        logits = mlp(x.max(axis=axes))
    else:
        logits = mlp(x.mean(axis=axes)) + mlp(x.max(axis=axes))
    gate = gate_np(logits, layer.gate, layer.init == "identity")
    if layer.data_format == "channels_last":
        scale = gate.reshape((gate.shape[0],) + (1,) * (rank - 2) + (gate.shape[1],))
    else:
        scale = gate.reshape(gate.shape + (1,) * (rank - 2))
    return x * scale, gate
