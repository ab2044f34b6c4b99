"""One custom gradient for the whole SE block (TensorFlow only, training only).

`SqueezeExcite.call` routes here in training on TensorFlow for the average
squeeze of a channels_last input with static spatial sizes. The forward pass
computes what the layer computes; the backward pass replaces autodiff's chain
(the rescale's two products, a `Sum` over the map, the mean's broadcast and an
`AddN` of the two input gradients) with:

    t = dy * x                       one product, in the input's dtype
    ds = sum of t over the map       a whole-map pooling op (CPU) or a reduction
    dm, dW = MLP and gate backward   on (batch, channels): autodiff, tiny
    dx = dy * s + dm / n             one multiply-add, the mean's gradient
                                     broadcast inside it, never materialised

so the full-size tensors are read and written fewer times. Values equal the
autodiff gradients up to float32 summation order (tests/test_fused.py).
"""

from __future__ import annotations

import math

import tensorflow as tf


def _map_sum(t, window, channels, pool):
    """Sum of float32 `t` over its spatial axes (channels_last): `(batch, channels)`."""
    if pool:
        pooled = tf.nn.avg_pool(t, window, strides=1, padding="VALID")
        return tf.reshape(pooled, (-1, channels)) * float(math.prod(window))
    return tf.reduce_sum(t, axis=list(range(1, len(t.shape) - 1)))


def se_block(layer, inputs, pool: bool):
    """`layer(inputs)` (average squeeze, channels_last) with the fused gradient.

    Args:
        layer: a built `SqueezeExcite` with `squeeze="avg"`,
            `data_format="channels_last"`.
        inputs: the input tensor, static spatial sizes.
        pool: bool, squeeze (and sum) with a whole-map average pool, as the
            layer does on CPU-only TensorFlow; a reduction otherwise.

    Returns:
        The rescaled input, in its dtype.
    """
    rank = len(inputs.shape)
    window = tuple(int(d) for d in inputs.shape[1:-1])
    channels = layer.channels
    count = float(math.prod(window))
    gate_shape = (-1,) + (1,) * (rank - 2) + (channels,)
    weights = [tf.convert_to_tensor(layer.reduce_kernel), tf.convert_to_tensor(layer.expand_kernel)]
    if layer.reduce_bias is not None:
        weights += [tf.convert_to_tensor(layer.reduce_bias), tf.convert_to_tensor(layer.expand_bias)]

    def excite(m, w):
        hidden = tf.matmul(m, w[0])
        if len(w) > 2:
            hidden = hidden + w[2]
        hidden = layer._activation_fn(hidden)
        logits = tf.matmul(hidden, w[1])
        if len(w) > 2:
            logits = logits + w[3]
        return layer._gate(logits)

    @tf.custom_gradient
    def block(x, *w):
        xf = tf.cast(x, tf.float32)
        if pool:
            m = tf.reshape(tf.nn.avg_pool(xf, window, strides=1, padding="VALID"), (-1, channels))
        else:
            m = tf.reduce_mean(xf, axis=list(range(1, rank - 1)))
        with tf.GradientTape() as tape:
            tape.watch(m)
            tape.watch(w)
            s = tf.convert_to_tensor(excite(m, w))
        scale = tf.reshape(tf.cast(s, x.dtype), gate_shape)
        y = x * scale

        def grad(dy):
            t = tf.cast(dy * x, tf.float32)
            ds = _map_sum(t, window, channels, pool)
            grads = tape.gradient(s, [m, *w], output_gradients=ds)
            dm = tf.reshape(grads[0] / count, gate_shape)
            dx = dy * scale + tf.cast(dm, x.dtype)
            return [dx, *grads[1:]]

        return y, grad

    return block(inputs, *weights)
