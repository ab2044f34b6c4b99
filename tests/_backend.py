"""Backend-neutral test helpers: gradients of a model's output on any Keras backend.

Keras has no public backend-neutral gradient call (`model.fit` hides it); the core
tests that need gradients of a few weights (the SE blocks of a large model) use
`gradients`, which calls each backend's own autodiff. TensorFlow, JAX and PyTorch
are imported only on their own backend.
"""

import keras
import numpy as np


def gradients(model, x, variables, loss_fn):
    """Gradients of `loss_fn(model(x, training=False))` with respect to `variables`.

    Args:
        model: a Keras model.
        x: a NumPy input batch.
        variables: Keras variables of `model` (trainable ones).
        loss_fn: maps the model's output (a backend tensor) to a scalar with
            `keras.ops`.

    Returns:
        `(outputs, grads)`: the model's outputs and one gradient per variable,
        as NumPy arrays.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            y = model(x, training=False)
            loss = loss_fn(y)
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        trainable = model.trainable_variables
        index = {id(v): i for i, v in enumerate(trainable)}
        positions = [index[id(v)] for v in variables]
        values = [v.value for v in trainable]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(chosen):
            full = list(values)
            for i, value in zip(positions, chosen):
                full[i] = value
            y, _ = model.stateless_call(full, non_trainable, x, training=False)
            return loss_fn(y), y

        # Compiled as one program: op by op, JAX compiles every op of a fresh model
        # for its shapes (a DenseNet121's first eager call: 20 s, jitted: 3 s).
        step = jax.jit(jax.value_and_grad(loss_of, has_aux=True))
        (_, y), grads = step([values[i] for i in positions])
    elif backend == "torch":
        import torch

        y = model(x, training=False)
        grads = torch.autograd.grad(loss_fn(y), [v.value for v in variables], allow_unused=True)
    else:  # pragma: no cover - the suite runs on the three backends above
        raise NotImplementedError(backend)
    to_np = keras.ops.convert_to_numpy
    return to_np(y), [None if g is None else np.asarray(to_np(g)) for g in grads]


def forward(model, x):
    """`model(x, training=False)` as NumPy; on JAX compiled as one program.

    Op by op, JAX compiles every op of a model for its shapes the first time it
    runs (a DenseNet121's first eager call: 20 s; compiled whole: 3 s).
    """
    if keras.backend.backend() == "jax":
        import jax

        def call(trainable, non_trainable, inputs):
            return model.stateless_call(trainable, non_trainable, inputs, training=False)[0]

        y = jax.jit(call)([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables], x)
    else:
        y = model(x, training=False)
    return np.asarray(keras.ops.convert_to_numpy(y))

