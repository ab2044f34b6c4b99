"""BatchNormalization statistics: recalibration from data ("update_bn", PreciseBN).

A `BatchNormalization` layer normalises with the statistics of each batch
while training, and with its moving averages (`moving_mean`,
`moving_variance`) at inference. The moving averages can be wrong for the
weights a model ends with:

- a short run from scratch: with `momentum=0.999` (MobileNetV2, EfficientNet)
  a few hundred steps leave most of the initial values (mean 0, variance 1)
  in the averages, and the averages trail weights that kept changing;
- a retrofit: with a frozen backbone, a `BatchNormalization` after a trained
  SE block keeps the statistics of the un-gated features;
- weight averaging (SWA, EMA of weights), pruning, quantisation: the averaged
  or edited weights never produced the recorded statistics.

`recalibrate_batchnorm(model, data)` re-estimates every moving mean and
variance from training batches in one pass: each layer's statistics become
the mean and the (biased) variance of its inputs over all the examples seen,
with every earlier `BatchNormalization` normalising by its batch statistics
as in training, and every other layer (Dropout, noise, random augmentation
layers) in inference mode. No weight other than the moving statistics
changes. This is `torch.optim.swa_utils.update_bn` with exact population
statistics, as recommended by Wu and Johnson, *Rethinking "Batch" in
BatchNorm* (arXiv:2105.07576), section 3.

Keras only (`keras.ops`), so it runs on every backend; the model runs
eagerly, one batch at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import keras
import numpy as np
from keras import ops

__all__ = ["RecalibrationReport", "batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every `BatchNormalization` layer of `model`, nested models included, once each.

    Layers are found through `Model.layers`, depth first, so a
    `BatchNormalization` held inside a custom (non-`Model`) layer is not
    found.
    """
    found, seen = [], set()

    def visit(container):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            elif isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)

    visit(model)
    return found


@dataclasses.dataclass
class RecalibrationReport:
    """What `recalibrate_batchnorm` did.

    Attributes:
        layers: int, the `BatchNormalization` layers recalibrated.
        batches: int, the batches run through the model.
        examples: int, the examples in them.
        unused: list of str, names of `BatchNormalization` layers of the model
            that no batch reached (their statistics are left as they were).
        max_mean_shift: float, the largest change of a moving mean, in units
            of the new standard deviation (how stale the old statistics were).
        max_log_variance_ratio: float, the largest `|log(new var / old var)|`.
    """

    layers: int
    batches: int
    examples: int
    unused: list
    max_mean_shift: float
    max_log_variance_ratio: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Moments:
    """Running count, mean and sum of squared deviations per channel (Chan et al.)."""

    def __init__(self):
        self.count = 0.0
        self.mean = None
        self.m2 = None

    def add(self, count, mean, var):
        mean = np.asarray(mean, dtype="float64")
        m2 = np.asarray(var, dtype="float64") * count
        if self.mean is None:
            self.count, self.mean, self.m2 = float(count), mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    @property
    def variance(self):
        return self.m2 / self.count


def _batch_call(layer, moments):
    """A `call` for `layer` that normalises by the batch's moments and records them."""

    def call(inputs, training=None, mask=None):
        del training  # always the batch statistics, whatever the model is told
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        rank = len(x.shape)
        axis = layer.axis % rank
        axes = [i for i in range(rank) if i != axis]
        if mask is None:
            mean, var = ops.moments(x, axes=axes)
            count = int(np.prod([ops.shape(x)[i] for i in axes]))
        else:
            weights = ops.cast(ops.expand_dims(mask, -1), x.dtype)
            if axis != rank - 1:
                weights = ops.moveaxis(weights, -1, axis)
            weights = ops.broadcast_to(weights, ops.shape(x))
            total = ops.sum(weights, axis=axes)
            mean = ops.sum(x * weights, axis=axes) / ops.maximum(total, 1.0)
            shape = [1] * rank
            shape[axis] = -1
            var = ops.sum(((x - ops.reshape(mean, shape)) ** 2) * weights, axis=axes) / (
                ops.maximum(total, 1.0)
            )
            count = float(ops.convert_to_numpy(total).max())
        if count > 0:
            moments.add(count, ops.convert_to_numpy(mean), ops.convert_to_numpy(var))
        gamma = ops.cast(layer.gamma, x.dtype) if layer.scale else None
        beta = ops.cast(layer.beta, x.dtype) if layer.center else None
        out = ops.batch_normalization(
            x, mean, var, axis=axis, offset=beta, scale=gamma, epsilon=layer.epsilon
        )
        return ops.cast(out, layer.compute_dtype)

    return call


def _batches(data, batch_size, steps) -> Iterator:
    if hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        cardinality = getattr(data, "cardinality", None)
        if steps is None and cardinality is not None and int(cardinality()) == -1:
            raise ValueError(
                "`data` is an infinite dataset (repeated); pass `steps`. Received: steps=None"
            )
        iterator = data.as_numpy_iterator()
    elif isinstance(data, np.ndarray) or hasattr(data, "shape"):
        array = np.asarray(data)
        iterator = (array[i : i + batch_size] for i in range(0, len(array), batch_size))
    elif isinstance(data, Iterable):
        iterator = iter(data)
    else:
        raise TypeError(
            "`data` must be a tf.data.Dataset, an iterable of batches or an array of inputs. "
            f"Received: data of type {type(data).__name__}"
        )
    for step, batch in enumerate(iterator):
        if steps is not None and step >= steps:
            return
        if isinstance(batch, dict):
            yield batch
        elif isinstance(batch, (tuple, list)):
            yield batch[0]  # (x, y) or (x, y, sample_weight)
        else:
            yield batch


def recalibrate_batchnorm(
    model: keras.Model,
    data,
    *,
    steps: int | None = None,
    batch_size: int = 32,
) -> RecalibrationReport:
    """Re-estimates every `BatchNormalization`'s moving mean and variance from `data`, in place.

    One pass over `data` (or its first `steps` batches): the model runs in
    inference mode except that every `BatchNormalization` normalises by the
    statistics of the batch (as in training) and records them. Each layer's
    `moving_mean` and `moving_variance` then become the mean and the biased
    variance of its inputs over every example seen (batches weighted by their
    size), exactly as if computed over the whole set at once. Frozen
    (`trainable=False`) layers and layers of nested models are recalibrated
    too; gamma, beta, every other weight, `momentum` and the trainable flags
    are left as they were. Masks are honoured.

    Use the training data, without augmentation if the model will see
    un-augmented images, with batches as large as in training (the
    statistics of a layer are measured with earlier layers normalised by
    batch statistics).

    Args:
        model: a Keras model (Functional, Sequential or nested).
        data: a `tf.data.Dataset` or any iterable of batches (`x`, `(x, y)`
            or `(x, y, sample_weight)`), or an array of inputs (cut into
            batches of `batch_size`).
        steps: int or None, the number of batches to use; None for all of
            `data` (which must then be finite). Defaults to `None`.
        batch_size: int, for array `data` only. Defaults to `32`.

    Returns:
        A `RecalibrationReport`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_se.batchnorm import recalibrate_batchnorm
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, (256, 4)).astype("float32")
    >>> report = recalibrate_batchnorm(model, x, batch_size=64)
    >>> report.batches, report.examples
    (4, 256)
    >>> bn = model.layers[0]
    >>> bool(np.allclose(bn.moving_mean.numpy(), x.mean(0), atol=1e-5))
    True
    >>> bool(np.allclose(bn.moving_variance.numpy(), x.var(0), rtol=1e-4))
    True

    Reference:
        Izmailov et al., *Averaging Weights Leads to Wider Optima and Better
        Generalization* (arXiv:1803.05407), "update_bn"; Wu and Johnson,
        *Rethinking "Batch" in BatchNorm* (arXiv:2105.07576), PreciseBN.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model of type {type(model).__name__}"
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"`steps` must be a positive int or None. Received: steps={steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    layers = batchnorm_layers(model)
    moments = {id(layer): _Moments() for layer in layers}
    batches = examples = 0
    patched = []
    try:
        for layer in layers:
            # An instance attribute shadows the class's `call` for this layer only;
            # `Layer.__call__` looks `self.call` up at every call.
            layer.call = _batch_call(layer, moments[id(layer)])
            patched.append(layer)
        for x in _batches(data, batch_size, steps):
            model(x, training=False)
            batches += 1
            first = x if not isinstance(x, dict) else next(iter(x.values()))
            examples += int(ops.shape(first)[0]) if hasattr(first, "shape") else len(first)
    finally:
        for layer in patched:
            del layer.call
    if batches == 0:
        raise ValueError("`data` holds no batch. Received: an empty `data`")
    unused, shift, ratio = [], 0.0, 0.0
    for layer in layers:
        m = moments[id(layer)]
        if m.mean is None:
            unused.append(layer.name)
            continue
        var = np.maximum(m.variance, 0.0)
        old_mean = np.asarray(ops.convert_to_numpy(layer.moving_mean), dtype="float64")
        old_var = np.asarray(ops.convert_to_numpy(layer.moving_variance), dtype="float64")
        eps = float(layer.epsilon)
        shift = max(shift, float(np.max(np.abs(m.mean - old_mean) / np.sqrt(var + eps))))
        ratio = max(ratio, float(np.max(np.abs(np.log((var + eps) / (old_var + eps))))))
        layer.moving_mean.assign(m.mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
    return RecalibrationReport(
        layers=len(layers) - len(unused),
        batches=batches,
        examples=examples,
        unused=unused,
        max_mean_shift=shift,
        max_log_variance_ratio=ratio,
    )
