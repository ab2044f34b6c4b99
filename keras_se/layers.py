"""The Squeeze-and-Excitation layer."""

from __future__ import annotations

import contextlib
import math

import keras
from keras import ops

from keras_se._options import DATA_FORMATS, GATES, INITS, SQUEEZES
from keras_se.widths import bottleneck_width

#: The `SqueezeExcite` options that `add_se_blocks` and the SE zoo pass on to every
#: inserted layer (besides `ratio` and `init`, which they take as arguments).
SE_OPTIONS = (
    "units",
    "min_units",
    "divisor",
    "round_limit",
    "squeeze",
    "activation",
    "gate",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
)

_POOLED_SQUEEZE = {"forced": None, "detected": None}
# Training on TensorFlow takes the fused SE-block gradient (keras_se/_fused.py).
_FUSED_GRADIENT = True


def set_pooled_squeeze(enabled: bool | None) -> None:
    """Chooses how the average squeeze is traced on TensorFlow (see `SqueezeExcite`).

    `None` (the default) decides by the devices TensorFlow sees: the pooled squeeze
    on a CPU-only machine, `ops.mean` where there is an accelerator. `True` or
    `False` forces it, for instance to trace on a CPU machine the graph a GPU
    machine would get. It applies to layers traced afterwards and never changes
    values beyond float32 rounding.
    """
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"`enabled` must be True, False or None. Received: enabled={enabled!r}")
    _POOLED_SQUEEZE["forced"] = enabled


def pooled_squeeze_enabled() -> bool:
    """Whether the average squeeze is a whole-map pool (TensorFlow, no accelerator)."""
    if keras.backend.backend() != "tensorflow":
        return False
    if _POOLED_SQUEEZE["forced"] is not None:
        return _POOLED_SQUEEZE["forced"]
    if _POOLED_SQUEEZE["detected"] is None:
        import tensorflow as tf

        _POOLED_SQUEEZE["detected"] = all(
            d.device_type == "CPU" for d in tf.config.list_logical_devices()
        )
    return _POOLED_SQUEEZE["detected"]


@contextlib.contextmanager
def mean_squeeze():
    """Layers traced inside this block squeeze with `ops.mean`, on every device.

    For exports that another runtime reads: the CPU fast path (`_pooled_mean`, a
    whole-map average pool) becomes, in ONNX, an `AveragePool` with a fixed
    kernel behind an extra layout transpose, where `ops.mean` over the spatial
    axes becomes the `GlobalAveragePool` (or `ReduceMean`) that runtimes
    recognise. The values are equal up to float32 rounding. It changes only
    what is traced inside the block (Keras traces when it exports); it is not
    thread-safe.
    """
    previous = _POOLED_SQUEEZE["forced"]
    _POOLED_SQUEEZE["forced"] = False
    try:
        yield
    finally:
        _POOLED_SQUEEZE["forced"] = previous


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}. "
            f"Received: {name}={value!r}"
        )


def _pooled_mean(x, window, channels):
    """The spatial mean of a channels_last float32 TensorFlow tensor, fast on CPU.

    Forward: an average pool whose window is the whole map. oneDNN's pooling reads
    the tensor about twice as fast as TensorFlow's `Mean` over the middle axes,
    which made the squeeze cost more than the rescale that follows it
    (`benchmarks/bench_layer.py`, "before: ops.mean squeeze"). Backward: the
    mean's own gradient, `upstream / n` broadcast over the map, in place of
    oneDNN's `AvgPoolGrad`, which is slower than that broadcast. Values equal
    `ops.mean` up to float32 summation order (tests/test_layers.py).
    """
    import tensorflow as tf

    rank = len(x.shape)
    count = math.prod(window)
    gate_shape = (-1,) + (1,) * (rank - 2) + (channels,)

    @tf.custom_gradient
    def mean(inputs):
        pooled = tf.nn.avg_pool(inputs, window, strides=1, padding="VALID")

        def grad(upstream):
            return tf.broadcast_to(tf.reshape(upstream / count, gate_shape), tf.shape(inputs))

        return tf.reshape(pooled, (-1, channels)), grad

    return mean(x)


def _matmul(a, b):
    """`a @ b` for a 2-D `b`; an `a` of higher rank (TensorFlow only, see
    `SqueezeExcite.call`) is a broadcast `tf.matmul`, which the TFLite converter
    writes as one FULLY_CONNECTED that keeps the rank (`ops.matmul` would be a
    `tensordot`: reshapes around a MatMul)."""
    if len(a.shape) > 2:
        import tensorflow as tf

        return tf.matmul(a, b)
    return ops.matmul(a, b)


@keras.saving.register_keras_serializable(package="keras_se")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation block (Hu et al., 2018).

    Recalibrates the channels of its input: it squeezes each channel to one
    number by global pooling over every spatial axis, passes the channel
    descriptor through a bottleneck MLP (`C -> units -> C`), gates the result
    and multiplies the input by that per-channel gate.

    With the defaults it is exactly the paper's block: average squeeze,
    `units = C // 16`, ReLU, sigmoid, biases on; it adds
    `2 * C * units + units + C` parameters (C=64: 580).

    The squeeze, the MLP and the gate always run in float32, also under the
    `mixed_float16` and `mixed_bfloat16` policies (the layer's variables are
    not autocast); only the final multiply runs in the input's dtype, and the
    output keeps the input's dtype.

    `init="identity"` makes the layer an exact identity at initialisation, so
    that it can be inserted into a trained network without changing what it
    computes (see `keras_se.add_se_blocks`). It does two things, both kept in
    the config: the expansion kernel and bias start at zero, so the gate's
    pre-activation is exactly 0; and the gate is rescaled to be exactly 1 at
    0, as in NFNets: `2 * sigmoid(z)`, `2 * hard_sigmoid(z)` or
    `1 + tanh(z)`, each with range (0, 2). The reduction kernel keeps its
    random initialisation, so the bottleneck is active and the first training
    step gives the expansion a non-zero gradient. The `"relu"` gate is 0 at 0
    with zero gradient there, so it cannot start as an identity: that
    combination raises a `ValueError`.

    Args:
        ratio: int, the reduction ratio r. The bottleneck width is
            `C // ratio`. Defaults to `16`.
        units: int or None, sets the bottleneck width explicitly, overriding
            `ratio`. Defaults to `None`.
        min_units: int, lower bound of the bottleneck width. Defaults to `1`.
        divisor: int, the width is rounded to a multiple of it
            (`make_divisible`). Defaults to `1`.
        round_limit: float in [0, 1), `make_divisible`'s rule with a
            `divisor`: the width is raised by `divisor` when rounding took
            it below `round_limit * C / ratio`. Defaults to `0.9` (the
            MobileNet channel rule); timm's SE blocks use `divisor=8,
            round_limit=0.0`, which gives their widths exactly.
        squeeze: `"avg"` (the paper), `"max"`, or `"avg_max"` (CBAM's
            channel attention: the same MLP on both descriptors, summed before
            the gate). Defaults to `"avg"`.
        activation: the bottleneck non-linearity, any Keras activation.
            Defaults to `"relu"`.
        gate: `"sigmoid"`, `"hard_sigmoid"`, `"tanh"` or `"relu"` (the
            paper's Table 12, plus MobileNetV3's hard sigmoid). Defaults to
            `"sigmoid"`.
        init: `"standard"` (the paper's) or `"identity"` (see above).
            Defaults to `"standard"`.
        use_bias: bool, whether the two dense maps have biases. Defaults to
            `True`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        kernel_initializer: initializer of both kernels (the expansion's is
            zeros under `init="identity"`). Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of both kernels.
        bias_regularizer: optional regularizer of both biases.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Input shape:
        A tensor of rank 3, 4 or 5: `(batch, *spatial, channels)` with
        `channels_last`, `(batch, channels, *spatial)` with `channels_first`.

    Output shape:
        The input's shape.

    Example:

    >>> import numpy as np
    >>> import keras_se
    >>> x = np.random.rand(2, 8, 8, 64).astype("float32")
    >>> layer = keras_se.SqueezeExcite(ratio=16)
    >>> tuple(layer(x).shape)
    (2, 8, 8, 64)
    >>> layer.count_params()
    580
    >>> tuple(layer.excitation(x).shape)
    (2, 64)

    Reference:
        - [Hu et al., 2018, Squeeze-and-Excitation Networks](
            https://arxiv.org/abs/1709.01507)
        - [Woo et al., 2018, CBAM](https://arxiv.org/abs/1807.06521) for
            `squeeze="avg_max"`.
    """

    def __init__(
        self,
        ratio: int = 16,
        units: int | None = None,
        min_units: int = 1,
        divisor: int = 1,
        round_limit: float = 0.9,
        squeeze: str = "avg",
        activation="relu",
        gate: str = "sigmoid",
        init: str = "standard",
        use_bias: bool = True,
        data_format: str | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        # The squeeze and gate are computed in float32 on purpose: the
        # variables must not be cast to a float16 compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        _check_positive_int("ratio", ratio)
        _check_positive_int("units", units, allow_none=True)
        _check_positive_int("min_units", min_units)
        _check_positive_int("divisor", divisor)
        if (
            isinstance(round_limit, bool)
            or not isinstance(round_limit, (int, float))
            or not 0 <= round_limit < 1
        ):
            raise ValueError(
                f"`round_limit` must be a number in [0, 1). Received: round_limit={round_limit!r}"
            )
        _check_choice("squeeze", squeeze, SQUEEZES)
        _check_choice("gate", gate, GATES)
        _check_choice("init", init, INITS)
        if init == "identity" and gate == "relu":
            raise ValueError(
                "`init='identity'` needs a gate that is 1 at some point with a "
                "non-zero gradient there; `gate='relu'` is 0 at 0 with zero "
                "gradient. Use gate 'sigmoid', 'hard_sigmoid' or 'tanh', or "
                "init='standard'. Received: gate='relu', init='identity'"
            )
        if data_format is None:
            data_format = keras.config.image_data_format()
        _check_choice("data_format", data_format, DATA_FORMATS)
        try:
            self._activation_fn = keras.activations.get(activation)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "`activation` must be a Keras activation name or a callable. "
                f"Received: activation={activation!r}"
            ) from e
        self.ratio = ratio
        self.units = units
        self.min_units = min_units
        self.divisor = divisor
        self.round_limit = float(round_limit)
        self.squeeze = squeeze
        self.activation = activation
        self.gate = gate
        self.init = init
        self.use_bias = use_bias
        self.data_format = data_format
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.supports_masking = False

    # ------------------------------------------------------------------ build
    def _channel_axis(self, rank):
        return rank - 1 if self.data_format == "channels_last" else 1

    def _spatial_axes(self, rank):
        if self.data_format == "channels_last":
            return tuple(range(1, rank - 1))
        return tuple(range(2, rank))

    def bottleneck_units(self, channels: int) -> int:
        """The bottleneck width for `channels` input channels (`bottleneck_width`)."""
        return bottleneck_width(
            channels, self.ratio, self.units, self.min_units, self.divisor, self.round_limit
        )

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 3:
            raise ValueError(
                "SqueezeExcite expects an input of rank 3, 4 or 5 "
                "(batch, spatial axes, channels). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        channels = input_shape[self._channel_axis(rank)]
        if channels is None:
            raise ValueError(
                "SqueezeExcite needs the channel dimension to be known at "
                f"build time (data_format={self.data_format!r}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.channels = channels
        units = self.bottleneck_units(channels)
        self.reduce_kernel = self.add_weight(
            name="reduce_kernel",
            shape=(channels, units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )
        expand_init = "zeros" if self.init == "identity" else self.kernel_initializer
        self.expand_kernel = self.add_weight(
            name="expand_kernel",
            shape=(units, channels),
            initializer=expand_init,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )
        if self.use_bias:
            self.reduce_bias = self.add_weight(
                name="reduce_bias",
                shape=(units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                dtype="float32",
                autocast=False,
            )
            self.expand_bias = self.add_weight(
                name="expand_bias",
                shape=(channels,),
                initializer="zeros" if self.init == "identity" else self.bias_initializer,
                regularizer=self.bias_regularizer,
                dtype="float32",
                autocast=False,
            )
        else:
            self.reduce_bias = None
            self.expand_bias = None
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={self._channel_axis(rank): channels}
        )

    # ------------------------------------------------------------------- call
    def _mlp(self, descriptor):
        hidden = _matmul(descriptor, self.reduce_kernel)
        if self.reduce_bias is not None:
            hidden = hidden + self.reduce_bias
        hidden = self._activation_fn(hidden)
        logits = _matmul(hidden, self.expand_kernel)
        if self.expand_bias is not None:
            logits = logits + self.expand_bias
        return logits

    def _gate(self, logits):
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

    def excitation(self, inputs):
        """The per-channel gate for `inputs`, shape `(batch, channels)`.

        Computed in float32, the values that `call` multiplies the input by.
        """
        inputs = ops.convert_to_tensor(inputs)
        if not self.built:
            self.build(inputs.shape)
        return self._excite(ops.cast(inputs, "float32"))

    def _excite(self, x, training=None, keepdims=False):
        """The gate of float32 `x`: `(batch, channels)`, or with `keepdims`
        `(batch, 1, ..., 1, channels)` (channels_last only)."""
        if self.squeeze == "avg":
            logits = self._mlp(self._squeeze(x, "avg", training, keepdims))
        elif self.squeeze == "max":
            logits = self._mlp(self._squeeze(x, "max", training, keepdims))
        else:
            logits = self._mlp(self._squeeze(x, "avg", training, keepdims)) + self._mlp(
                self._squeeze(x, "max", training, keepdims)
            )
        return self._gate(logits)

    def _squeeze(self, x, reduce, training=None, keepdims=False):
        """Global average or max over the spatial axes: `(batch, channels)`.

        On TensorFlow with only CPUs, channels_last and static spatial sizes,
        the average is a pooling op whose window is the whole map
        (`_pooled_mean`) for a static batch above 1, and in training for an
        unknown batch (`tf.data` batches). Elsewhere it is `ops.mean` /
        `ops.max`: on GPUs, other backends, channels_first, unknown sizes,
        for the max; for a static batch of 1, where oneDNN's fixed cost per
        pooling call outweighs its faster read on small maps
        (`benchmarks/bench_models.py`, MobileNet at batch 1); and for an
        unknown batch outside training, the trace that every export takes
        (SavedModel, `TFLiteConverter.from_keras_model`,
        `model.export(format="litert")`), so that each writes the same
        `MEAN`, the squeeze LiteRT's XNNPACK runs fastest
        (`benchmarks/bench_litert.py`).
        """
        rank = len(x.shape)
        axes = self._spatial_axes(rank)
        window = tuple(x.shape[a] for a in axes)
        batch = x.shape[0]
        if (
            reduce == "avg"
            and not keepdims
            # First: off TensorFlow the batch may be a symbolic dimension (JAX's
            # export), which cannot be compared with 1.
            and pooled_squeeze_enabled()
            and ((batch is None and training) or (batch is not None and batch > 1))
            and self.data_format == "channels_last"
            and None not in window
        ):
            return _pooled_mean(x, window, self.channels)
        if reduce == "avg":
            return ops.mean(x, axis=axes, keepdims=keepdims)
        return ops.max(x, axis=axes, keepdims=keepdims)

    def call(self, inputs, training=None):
        if keras.backend.backend() == "torch":
            from keras_se import _torch_block

            if isinstance(inputs, _torch_block.torch.Tensor):
                # Keras's per-op dispatch is a third of the block's eager time.
                return _torch_block.se_block(self, inputs)
        rank = len(inputs.shape)
        if (
            training
            and _FUSED_GRADIENT
            and self.squeeze == "avg"
            and self.data_format == "channels_last"
            and None not in inputs.shape[1:]
            and keras.backend.backend() == "tensorflow"
        ):
            # One custom gradient for the whole block (keras_se/_fused.py).
            from keras_se import _fused

            pool = inputs.shape[0] != 1 and pooled_squeeze_enabled()
            return _fused.se_block(self, inputs, pool=pool)
        x = ops.cast(inputs, "float32")
        if (
            inputs.shape[0] is None
            and not training
            and self.data_format == "channels_last"
            and keras.backend.backend() == "tensorflow"
        ):
            # An unknown batch outside training: the trace of every export.
            # The descriptor keeps its rank, `(batch, 1, ..., 1, channels)`,
            # through the MLP and the gate, so that the TFLite converter
            # writes MEAN, FULLY_CONNECTED x2, LOGISTIC, MUL with no RESHAPE:
            # the ops it writes for a static batch of 1.
            scale = self._excite(x, training, keepdims=True)
        elif inputs.shape[0] == 1 and self.data_format == "channels_last":
            # A static batch of 1: the `(1, channels)` gate broadcasts against
            # `(1, ..., channels)` as it is; one op less per block in graph mode.
            scale = self._excite(x, training)
        else:
            scale = self._excite(x, training)
            if self.data_format == "channels_last":
                shape = (-1,) + (1,) * (rank - 2) + (self.channels,)
            else:
                shape = (-1, self.channels) + (1,) * (rank - 2)
            scale = ops.reshape(scale, shape)
        return inputs * ops.cast(scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "units": self.units,
                "min_units": self.min_units,
                "divisor": self.divisor,
                "round_limit": self.round_limit,
                "squeeze": self.squeeze,
                "activation": keras.activations.serialize(self._activation_fn)
                if not isinstance(self.activation, str)
                else self.activation,
                "gate": self.gate,
                "init": self.init,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
