"""`SqueezeExcite.call` in PyTorch's own ops, for concrete tensors on the torch backend.

Keras's op dispatch costs PyTorch's eager mode about 20 us an op (tensor conversion,
dtype promotion, the symbolic-input check), some nine ops a block: the layer took
0.43 ms where the same maths in torch's ops takes 0.27 ms (8x7x7x2048, 2 cores;
`benchmarks/bench_backends.py`, "layer vs native"). This is that maths, option for
option; the layer's tests check it against their NumPy reference on the torch backend.
Imported only on that backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Bottleneck activations given by name, in torch's own ops; any other (a callable, a
# Keras activation torch lacks) goes through Keras.
_ACTIVATIONS = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
    "hard_swish": F.hardswish,
    "hard_silu": F.hardswish,
    "linear": None,
    None: None,
}
_GATES = {
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def _dense(x, kernel, bias):
    if bias is None:
        return x @ kernel.value
    return torch.addmm(bias.value, x, kernel.value)


def _squeeze(x: torch.Tensor, how: str, layer, axes) -> torch.Tensor:
    """The average (`how="avg"`) or maximum over the spatial axes: `(batch, channels)`.

    A 4-D channels-last map is pooled with a whole-map window through its NCHW view
    (no copy), which torch's channels-last pooling kernels read in place: 1.5x-3x
    faster than `mean`/`amax` over axes (1, 2) on a CPU (avg 8x56x56x256: 0.30 vs
    0.46 ms; 8x7x7x2048: 0.035 vs 0.069 ms; max 0.47 vs 0.76 ms; the layer 11-24%
    faster in eager mode). Other ranks and
    channels-first maps are faster with `mean`/`amax` (`benchmarks/bench_squeeze_backends.py`).
    """
    if x.dim() == 4 and layer.data_format == "channels_last":
        nchw = x.permute(0, 3, 1, 2)
        pool = F.avg_pool2d if how == "avg" else F.max_pool2d
        return pool(nchw, tuple(nchw.shape[2:])).flatten(1)
    return x.mean(dim=axes) if how == "avg" else x.amax(dim=axes)


def se_block(layer, inputs: torch.Tensor) -> torch.Tensor:
    """The output of `layer` (a built `SqueezeExcite`) for a torch tensor."""
    x = inputs if inputs.dtype == torch.float32 else inputs.float()
    rank = x.dim()
    axes = layer._spatial_axes(rank)
    name = layer.activation if isinstance(layer.activation, str) or layer.activation is None else ""
    activation = _ACTIVATIONS[name] if name in _ACTIVATIONS else layer._activation_fn

    def mlp(descriptor):
        hidden = _dense(descriptor, layer.reduce_kernel, layer.reduce_bias)
        if activation is not None:
            hidden = activation(hidden)
        return _dense(hidden, layer.expand_kernel, layer.expand_bias)

    if layer.squeeze in ("avg", "max"):
        logits = mlp(_squeeze(x, layer.squeeze, layer, axes))
    else:
        logits = mlp(_squeeze(x, "avg", layer, axes)) + mlp(_squeeze(x, "max", layer, axes))
    gate = _GATES[layer.gate](logits)
    if layer.init == "identity":
        gate = 1.0 + gate if layer.gate == "tanh" else 2.0 * gate
    if layer.data_format == "channels_last":
        shape = (-1,) + (1,) * (rank - 2) + (layer.channels,)
    else:
        shape = (-1, layer.channels) + (1,) * (rank - 2)
    return inputs * gate.reshape(shape).to(inputs.dtype)
