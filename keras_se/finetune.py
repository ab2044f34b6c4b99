"""Fine-tuning retrofitted models: resumable training, distributed, with records.

The standard first phase of transfer learning after `add_se_blocks`: freeze
the pretrained backbone, train only the new SE blocks and a new classifier
head (`freeze_backbone`, `add_classifier_head`: `keras_se.transfer`, re-exported
here), then optionally unfreeze everything at a lower learning rate.
`finetune` runs `model.fit` with Keras's `BackupAndRestore`, so
an interrupted run (Ctrl-C, `kill -9`, a preempted machine) continues from the
last completed epoch when it is started again with the same `backup_dir`, and
it keeps the complete history across such restarts.

It runs on every Keras backend: the data are `tf.data` datasets, which Keras
feeds to TensorFlow, JAX and PyTorch alike (TensorFlow must be installed).

Distribution (`keras_se.distribute`): `finetune(..., strategy="mirrored")` trains
with `tf.distribute.MirroredStrategy` over every GPU (or every logical CPU device
when there is no GPU) on TensorFlow, and with `keras.distribution.DataParallel`
over every local device on JAX; `strategy="multiworker"` with
`tf.distribute.MultiWorkerMirroredStrategy`, configured by the `TF_CONFIG`
environment variable (TensorFlow only). PyTorch trains on one device. Build the
model inside the strategy's scope by passing a function that returns it instead
of the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_se._files import read_json, write_json
from keras_se._options import FREEZE_MODES, SCHEDULES  # noqa: F401  (re-exported)
from keras_se.batchnorm import recalibrate_batchnorm  # noqa: F401  (re-exported)
from keras_se.distribute import (  # noqa: F401  (STRATEGIES, is_chief: re-exported)
    STRATEGIES,
    built_in_scope,
    is_chief,
    make_strategy,
    strategy_name,
)
from keras_se.transfer import (  # noqa: F401  (re-exported: the fine-tuning toolbox)
    add_classifier_head,
    count_params,
    default_head,
    freeze_backbone,
    leaf_layers,
    replace_head,
    set_batchnorm_momentum,
    unfreeze,
)

if TYPE_CHECKING:  # annotations only: TensorFlow is imported by tf.data's user
    import tensorflow as tf


_STATE_FILE = "finetune_state.json"
_BACKUP_SUBDIR = "backup"


# --------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------
def make_deterministic(seed: int = 0) -> None:
    """Seeds every generator and makes training reproducible, bit for bit, on this machine.

    `keras.utils.set_random_seed(seed)` alone fixes the random draws, but not
    the order in which threads add up a reduction, nor the order in which
    `tf.data`'s parallel map hands out examples; a short run from scratch can
    then end anywhere in a wide range. This also turns on
    `tf.config.experimental.enable_op_determinism()` (TensorFlow feeds the
    data on every backend), `torch.use_deterministic_algorithms(True)` on
    PyTorch, and `--xla_gpu_deterministic_ops` for JAX on GPU (in `XLA_FLAGS`:
    it takes effect only if JAX has not started its devices yet; JAX on CPU is
    deterministic already). It is process-wide and cannot be turned off again.
    May cost speed (the data pipeline keeps its order; no cost measured on a
    3-epoch MobileNetV2 run on CPU: 37-41 s against 37 s); the same command on
    another CPU or GPU model may still differ in the last bits.
    """
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's rule
        torch.use_deterministic_algorithms(True)
    elif backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()


class _EpochLog(keras.callbacks.Callback):
    """Records every finished epoch's logs in the state file (survives restarts)."""

    def __init__(self, state_path, state):
        super().__init__()
        self.state_path = state_path
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        entry = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        self.state.setdefault("epochs", {})[str(epoch + 1)] = entry
        write_json(self.state_path, self.state)


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` did.

    Attributes:
        model: the trained model.
        history: dict of lists, every epoch of the run including those done
            before a restart; `history["epoch"]` holds the 1-based epoch
            numbers.
        initial_epoch: the number of epochs already done when this call
            started (non-zero after a resume).
        before: validation metrics before training (`{"loss": ...,
            "accuracy": ...}`), or None without validation data.
        after: validation metrics after training, or None.
        params: `count_params(model)` under the freezing used.
        strategy: the strategy's class name.
        num_replicas: replicas in sync.
        seconds: wall time of this call's training.
        recalibration: with `recalibrate_bn`, `RecalibrationReport.to_dict()`
            of the recalibration after training; None otherwise.
        last_epoch: the validation metrics of the last epoch (before any
            recalibration), or None; `after` is the saved model's.
        backend: the Keras backend that trained (`keras.backend.backend()`).
    """

    model: keras.Model
    history: dict[str, list]
    initial_epoch: int
    before: dict[str, float] | None
    after: dict[str, float] | None
    params: dict[str, int]
    strategy: str
    num_replicas: int
    seconds: float
    recalibration: dict | None = None
    last_epoch: dict[str, float] | None = None
    backend: str = dataclasses.field(default_factory=lambda: keras.backend.backend())

    def metrics(self) -> dict[str, Any]:
        """A JSON-able summary (what the CLI writes to `metrics.json`)."""
        return {
            "recalibration": self.recalibration,
            "last_epoch": self.last_epoch,
            "epochs": len(self.history.get("epoch", [])),
            "initial_epoch": self.initial_epoch,
            "resumed": self.initial_epoch > 0,
            "before": self.before,
            "after": self.after,
            "params": self.params,
            "backend": self.backend,
            "strategy": self.strategy,
            "num_replicas": self.num_replicas,
            "train_seconds": round(self.seconds, 2),
        }


def _loss_from_logits(model):
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", None)
    if isinstance(last, keras.layers.Softmax) or name == "softmax":
        return False
    if isinstance(last, keras.layers.Activation) and name == "softmax":
        return False
    return True


def _evaluate(model, data, steps):
    logs = model.evaluate(data, steps=steps, verbose=0, return_dict=True)
    return {k: float(v) for k, v in logs.items()}


def finetune(
    model: keras.Model | Callable[[], keras.Model],
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None = None,
    *,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    freeze: str = "backbone",
    head: Sequence[str] | None = None,
    strategy: str | Any | None = None,
    backup_dir: str | None = None,
    evaluate_before: bool = True,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    jit_compile: bool | None = None,
    recalibrate_bn: bool = False,
    recalibration_data: tf.data.Dataset | None = None,
) -> FinetuneResult:
    """Fine-tunes a classifier with sparse labels; resumable.

    The model is compiled with Adam (AdamW with `weight_decay`), sparse
    categorical cross-entropy and accuracy, then trained with
    `model.fit`. With `backup_dir`, Keras's `BackupAndRestore` saves the
    weights, the optimizer state and the epoch after every epoch; calling
    `finetune` again with the same `backup_dir` (after Ctrl-C, `kill -9`,
    ...) continues from the last finished epoch, and the returned history
    still covers every epoch.

    Args:
        model: the model (a classifier with `num_classes` outputs), or a
            function returning it: needed with a distribution strategy, so
            that its variables are created in the strategy's scope.
        train_data: `tf.data.Dataset` of `(images, labels)` batches.
        validation_data: the same for validation, or None. Defaults to
            `None`.
        epochs: int, the total number of epochs (including those done
            before a restart). Defaults to `5`.
        learning_rate: float, the peak learning rate. Defaults to `1e-3`.
        schedule: `"cosine"` (decay to 0 over all epochs) or `"constant"`.
            Defaults to `"cosine"`.
        weight_decay: float; non-zero uses AdamW. Defaults to `0.0`.
        freeze: `"backbone"` (`freeze_backbone`: train only the SE layers
            and the head) or `"none"` (train everything). Defaults to
            `"backbone"`.
        head: the head layers for `freeze_backbone`. Defaults to `None`
            (`default_head`).
        strategy: None or `"default"`, `"mirrored"`, `"multiworker"` (see
            `keras_se.distribute.make_strategy`: what each is on each
            backend), or what `make_strategy` returns (on TensorFlow, any
            `tf.distribute.Strategy`). Defaults to `None`.
        backup_dir: directory for the resumable state, or None (no resume).
            Defaults to `None`.
        evaluate_before: bool, evaluate on the validation data before
            training (once; not again on resume). Defaults to `True`.
        steps_per_epoch: int or None (the whole dataset). Defaults to
            `None`.
        validation_steps: int or None. Defaults to `None`.
        callbacks: extra Keras callbacks. Defaults to `()`.
        verbose: passed to `fit`. Defaults to `"auto"`.
        jit_compile: bool, XLA-compile the train step, or None for the
            backend's usual way: compiled on JAX (`jax.jit`), not on
            TensorFlow (XLA is slow to compile on CPU) nor on PyTorch
            (eager). Defaults to `None`.
        recalibrate_bn: bool, after training re-estimate every
            BatchNormalization's moving statistics from
            `recalibration_data` (`keras_se.batchnorm.recalibrate_batchnorm`);
            `after` is then measured on the recalibrated model. Defaults to
            `False`.
        recalibration_data: batches for the recalibration (the training
            images without augmentation, ideally), or None for `train_data`
            (`steps_per_epoch` batches of it when that is set). Defaults to
            `None`.

    Returns:
        A `FinetuneResult`.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int. Received: epochs={epochs!r}")
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0 or not math.isfinite(
        learning_rate
    ):
        raise ValueError(
            f"`learning_rate` must be a positive number. Received: learning_rate={learning_rate!r}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(
            f"`schedule` must be one of {', '.join(repr(s) for s in SCHEDULES)}. "
            f"Received: schedule={schedule!r}"
        )
    if freeze not in FREEZE_MODES:
        raise ValueError(
            f"`freeze` must be one of {', '.join(repr(f) for f in FREEZE_MODES)}. "
            f"Received: freeze={freeze!r}"
        )
    if strategy is None or isinstance(strategy, str):
        strategy = make_strategy(strategy or "default")
    if jit_compile is None:
        jit_compile = keras.backend.backend() == "jax"
    if isinstance(model, keras.Model):
        if not built_in_scope(strategy, model):
            raise ValueError(
                "With a distribution strategy, pass a function that builds the model, so "
                "that its variables are created in the strategy's scope. "
                f"Received: model={model.name!r} (built outside the scope)"
            )
        build = lambda: model  # noqa: E731
    elif callable(model):
        build = model
    else:
        raise TypeError(
            "`model` must be a keras.Model or a function returning one. "
            f"Received: model of type {type(model).__name__}"
        )

    state_path = state = None
    if backup_dir is not None:
        os.makedirs(backup_dir, exist_ok=True)
        state_path = os.path.join(backup_dir, _STATE_FILE)
        state = read_json(state_path, {}) or {}
    backup = os.path.join(backup_dir, _BACKUP_SUBDIR) if backup_dir else None
    done = 0
    if backup:
        meta = read_json(os.path.join(backup, "training_metadata.json"), {}) or {}
        done = int(meta.get("epoch", 0))
    if state is not None and done == 0:
        state.pop("epochs", None)  # nothing was backed up: start the record afresh

    # A tf.distribute strategy is captured by the model built in its scope; Keras's
    # JAX distribution is read by `fit` too, so its scope covers the whole run.
    covers = getattr(strategy, "covers_training", False)
    with strategy.scope() if covers else contextlib.nullcontext():
        with contextlib.nullcontext() if covers else strategy.scope():
            model = build()
            if freeze == "backbone":
                freeze_backbone(model, head=head)
            steps_total = epochs * (steps_per_epoch or _cardinality(train_data))
            if schedule == "cosine" and steps_total:
                lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps_total)
            else:
                lr = learning_rate
            if weight_decay:
                optimizer = keras.optimizers.AdamW(lr, weight_decay=weight_decay)
            else:
                optimizer = keras.optimizers.Adam(lr)
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=_loss_from_logits(model)),
                metrics=["accuracy"],
                jit_compile=jit_compile,
            )
            # Creating the optimizer's variables now, not in the first traced
            # step, halves the first step's tracing time (TensorFlow retraces a
            # function that creates variables).
            model.optimizer.build(model.trainable_variables)

        before = None
        if validation_data is not None and evaluate_before:
            if state is not None and "before" in state:
                before = state["before"]
            else:
                before = _evaluate(model, validation_data, validation_steps)
                if state is not None:
                    state["before"] = before
                    write_json(state_path, state)

        cbs = list(callbacks)
        if backup:
            # The epoch's record is written before its backup: a kill between the
            # two repeats that epoch on resume and overwrites the record.
            cbs = [
                _EpochLog(state_path, state),
                # The backup outlives `fit`: a failure after training (saving,
                # export) then resumes with nothing left to train. Remove
                # `backup_dir` once the results are safe.
                keras.callbacks.BackupAndRestore(
                    backup, double_checkpoint=True, delete_checkpoint=False
                ),
            ] + cbs
        start = time.time()
        fit = model.fit(
            train_data,
            validation_data=validation_data,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            callbacks=cbs,
            verbose=verbose,
            shuffle=False,
        )
        seconds = time.time() - start

        if state is not None:
            epochs_log = state.get("epochs", {})
            numbers = sorted(int(k) for k in epochs_log)
            history = {"epoch": numbers}
            for n in numbers:
                for key, value in epochs_log[str(n)].items():
                    history.setdefault(key, []).append(value)
        else:
            history = {"epoch": list(range(1, len(fit.history.get("loss", [])) + 1))}
            history.update({k: [float(x) for x in v] for k, v in fit.history.items()})
        history = {k: v for k, v in history.items() if k == "epoch" or len(v) == len(history["epoch"])}
        after = None
        if validation_data is not None:
            if history.get("val_loss"):
                after = {"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}
            else:
                after = _evaluate(model, validation_data, validation_steps)
        last_epoch, recalibration = after, None
        if recalibrate_bn:
            from keras_se.batchnorm import recalibrate_batchnorm

            if recalibration_data is None:
                report = recalibrate_batchnorm(model, train_data, steps=steps_per_epoch)
            else:
                report = recalibrate_batchnorm(model, recalibration_data)
            recalibration = report.to_dict()
            if validation_data is not None:
                after = _evaluate(model, validation_data, validation_steps)
        return FinetuneResult(
            model=model,
            history=history,
            initial_epoch=done,
            before=before,
            after=after,
            params=count_params(model),
            strategy=strategy_name(strategy),
            num_replicas=int(strategy.num_replicas_in_sync),
            seconds=seconds,
            recalibration=recalibration,
            last_epoch=last_epoch,
        )


def _cardinality(dataset):
    """Batches in a finite `tf.data` dataset (or a sized iterable); 0 when unknown."""
    if hasattr(dataset, "cardinality"):
        n = int(dataset.cardinality())
    else:
        try:
            n = len(dataset)
        except TypeError:
            n = 0
    return n if n > 0 else 0


# --------------------------------------------------------------------------
# Records.
# --------------------------------------------------------------------------
def plot_history(history: dict[str, list], path: str, *, title: str | None = None) -> str:
    """Writes loss and accuracy curves (train and validation) to a PNG.

    Uses matplotlib's Agg canvas directly: no display, no change to the
    global pyplot backend.

    Args:
        history: a `FinetuneResult.history` (or `History.history`) dict.
        path: the PNG path.
        title: an optional figure title.

    Returns:
        `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(history.get("loss", []))
    epochs = history.get("epoch") or list(range(1, n + 1))
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (metric, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, style, name in ((metric, "-o", "train"), (f"val_{metric}", "-s", "validation")):
            if history.get(key):
                ax.plot(epochs[: len(history[key])], history[key], style, label=name, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if metric == "accuracy":
            ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_records(result: FinetuneResult, out_dir: str, extra: dict | None = None) -> dict[str, str]:
    """Writes `history.json`, `metrics.json` and `curves.png` into `out_dir`.

    Args:
        result: a `FinetuneResult`.
        out_dir: an existing directory.
        extra: more keys for `metrics.json` (the run's settings, say).

    Returns:
        The written paths by name.
    """
    paths = {
        "history": os.path.join(out_dir, "history.json"),
        "metrics": os.path.join(out_dir, "metrics.json"),
        "curves": os.path.join(out_dir, "curves.png"),
    }
    write_json(paths["history"], result.history)
    metrics = result.metrics()
    if extra:
        metrics.update(extra)
    write_json(paths["metrics"], metrics)
    plot_history(result.history, paths["curves"], title=(extra or {}).get("model"))
    return paths
