"""Distribution strategies for `keras_se.finetune.finetune` (TensorFlow).

`make_strategy("mirrored")` trains with `tf.distribute.MirroredStrategy` over every
GPU (or every logical CPU device when there is no GPU); `"multiworker"` with
`tf.distribute.MultiWorkerMirroredStrategy`, configured by `TF_CONFIG`.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")


def _patch_multiworker_reduce(strategy):
    """Works around keras-team/keras#20585 (Keras 3 fit under MultiWorkerMirroredStrategy).

    Keras 3's TF trainer calls `strategy.reduce` on a whole `(x, y)` batch to
    build the model symbolically, and with `axis=0` on scalar metric values;
    `MultiWorkerMirroredStrategy` reduces only single values across workers
    and rejects a reduction axis on scalars. This reduces leaf by leaf and
    drops the axis for scalars: the same numbers, on every worker.
    """
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


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Creates the `tf.distribute` strategy `name`.

    Args:
        name: `"default"` (no distribution), `"mirrored"`
            (`MirroredStrategy` over every GPU, or over every logical CPU
            device when there is no GPU) or `"multiworker"`
            (`MultiWorkerMirroredStrategy` configured by `TF_CONFIG`; create
            it before any other TensorFlow work in the process).

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(repr(s) for s in STRATEGIES)}. "
            f"Received: strategy={name!r}"
        )
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


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
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
    CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return type(strategy).__name__.lstrip("_")
