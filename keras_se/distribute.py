"""Distribution strategies for `keras_se.finetune.finetune`, on each Keras backend.

| strategy | TensorFlow | JAX | PyTorch |
| --- | --- | --- | --- |
| `"default"` | no distribution | no distribution | no distribution |
| `"mirrored"` | `tf.distribute.MirroredStrategy` over every GPU (or every logical CPU device when there is no GPU) | `keras.distribution.DataParallel` over every local device | not available |
| `"multiworker"` | `tf.distribute.MultiWorkerMirroredStrategy`, configured by `TF_CONFIG` | not available | not available |

Keras distributes training on TensorFlow (`tf.distribute`) and on JAX
(`keras.distribution`); it has no distribution API for PyTorch. Multi-process JAX
training (`keras.distribution.initialize`) is not wired here. `make_strategy` raises a
`ValueError` that names the backend for a strategy it cannot give. TensorFlow is
imported only on the TensorFlow backend.
"""

from __future__ import annotations

import contextlib
import json
import os

import keras

from keras_se._options import STRATEGIES

#: The strategies each backend offers (see the module docstring).
BACKEND_STRATEGIES = {
    "tensorflow": ("default", "mirrored", "multiworker"),
    "jax": ("default", "mirrored"),
    "torch": ("default",),
}


class NoDistribution:
    """The `"default"` strategy off TensorFlow: one replica, an empty scope."""

    num_replicas_in_sync = 1
    #: Whether `finetune` must stay in `scope()` for training too, not only while it
    #: builds and compiles the model (as for `tf.distribute` strategies).
    covers_training = False

    def scope(self):
        return contextlib.nullcontext()


class DataParallel:
    """`strategy="mirrored"` on JAX: `keras.distribution.DataParallel` over every local device.

    Variables are replicated and each batch is split over the devices (its size must
    be a multiple of `num_replicas_in_sync`). On a CPU-only machine there is one
    device unless XLA is told to make more
    (`XLA_FLAGS=--xla_force_host_platform_device_count=N` before JAX starts).
    """

    covers_training = True  # Keras's JAX trainer reads the distribution in `fit`

    def __init__(self, devices=None):
        devices = list(devices or keras.distribution.list_devices())
        self.distribution = keras.distribution.DataParallel(devices=devices)
        self.devices = devices
        self.num_replicas_in_sync = len(devices)

    def scope(self):
        return self.distribution.scope()


def _patch_multiworker_reduce(strategy):
    """Works around keras-team/keras#20585 (Keras 3 fit under MultiWorkerMirroredStrategy).

    Keras 3's TF trainer calls `strategy.reduce` on a whole `(x, y)` batch to
    build the model symbolically, and with `axis=0` on scalar metric values;
    `MultiWorkerMirroredStrategy` reduces only single values across workers
    and rejects a reduction axis on scalars. This reduces leaf by leaf and
    drops the axis for scalars: the same numbers, on every worker.
    """
    import tensorflow as tf

    original = strategy.reduce

    def reduce(reduce_op, value, axis=None):
        def one(v):
            a = axis
            if a is not None:
                local = strategy.experimental_local_results(v)[0]
                if getattr(local.shape, "rank", None) == 0:
                    a = None
            return original(reduce_op, v, axis=a)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce
    return strategy


def make_strategy(name: str = "default", backend: str | None = None):
    """Creates the strategy `name` for the Keras backend.

    Args:
        name: `"default"` (no distribution), `"mirrored"` (TensorFlow:
            `MirroredStrategy` over every GPU, or over every logical CPU device
            when there is no GPU; JAX: `DataParallel` over every local device)
            or `"multiworker"` (TensorFlow only: `MultiWorkerMirroredStrategy`
            configured by `TF_CONFIG`; create it before any other TensorFlow
            work in the process).
        backend: the Keras backend, or None for `keras.backend.backend()`.
            Defaults to `None`.

    Returns:
        A `tf.distribute.Strategy` on TensorFlow; a `NoDistribution` or
        `DataParallel` elsewhere. Each has `scope()` and
        `num_replicas_in_sync`.

    Raises:
        ValueError: for an unknown name, or one the backend does not offer.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(repr(s) for s in STRATEGIES)}. "
            f"Received: strategy={name!r}"
        )
    backend = backend or keras.backend.backend()
    offered = BACKEND_STRATEGIES.get(backend, ("default",))
    if name not in offered:
        why = (
            "Keras has no distribution API for PyTorch"
            if backend == "torch"
            else "multi-process training is wired for TensorFlow only"
        )
        raise ValueError(
            f"`strategy={name!r}` is not available on the {backend} backend ({why}); "
            f"it offers {', '.join(repr(s) for s in offered)}; `mirrored` runs on "
            f"TensorFlow and JAX, `multiworker` on TensorFlow. Received: strategy={name!r}"
        )
    if backend == "jax":
        return DataParallel() if name == "mirrored" else NoDistribution()
    if backend != "tensorflow":
        return NoDistribution()
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            cluster = json.loads(tf_config)
            cluster["cluster"]["worker"], cluster["task"]["index"]  # noqa: B018
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                "`strategy='multiworker'` needs TF_CONFIG to be JSON with "
                '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}. '
                f"Received: TF_CONFIG={tf_config!r}"
            ) from e
    return _patch_multiworker_reduce(tf.distribute.MultiWorkerMirroredStrategy())


def is_distributed(strategy) -> bool:
    """Whether `strategy` is more than the backend's default (no distribution)."""
    if isinstance(strategy, NoDistribution):
        return False
    if isinstance(strategy, DataParallel):
        return True
    import tensorflow as tf

    return not isinstance(strategy, type(tf.distribute.get_strategy()))


def built_in_scope(strategy, model: keras.Model) -> bool:
    """Whether `model`'s variables were created in `strategy`'s scope (True without one).

    On JAX the variables' placement cannot be told after the fact: a built model is
    taken as built outside a `DataParallel`.
    """
    if not is_distributed(strategy) or not model.weights:
        return True
    if isinstance(strategy, DataParallel):
        return False
    return bool(strategy.extended.variable_created_in_scope(model.weights[0].value))


def is_chief(strategy=None) -> bool:
    """Whether this process writes the results: True unless it is a non-chief worker."""
    resolver = getattr(getattr(strategy, "cluster_resolver", None), "task_type", None)
    if strategy is None or resolver is None:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task = tf_config.get("task", {})
        task_type, task_id = task.get("type"), task.get("index", 0)
        cluster = tf_config.get("cluster", {})
    else:
        task_type = strategy.cluster_resolver.task_type
        task_id = strategy.cluster_resolver.task_id
        cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def strategy_name(strategy) -> str:
    """The public class name of a strategy (MultiWorkerMirroredStrategy's class is
    CollectiveAllReduceStrategy; `DataParallel` is Keras's)."""
    if isinstance(strategy, (NoDistribution, DataParallel)):
        return type(strategy).__name__
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return type(strategy).__name__.lstrip("_")
