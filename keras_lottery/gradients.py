"""Gradients of a loss with respect to a model's masked weights, on any backend.

Keras 3 has no backend-independent gradient call, so this module holds the
three: `tf.GradientTape` on TensorFlow, `jax.grad` over `stateless_call` on
JAX, `torch.autograd.grad` on PyTorch. Pruners that score weights by their
gradients (SNIP, GraSP, RigL) call `loss_gradients`.

The gradient is taken with respect to each weight's *effective* value,
`kernel * mask`, at every position, pruned ones included: the masks are set
to ones for the computation (pruned weights are zero in their variables, so
the network computes the same function) and restored afterwards. That is
the dense gradient RigL grows connections by, and at a dense mask SNIP's
`dL/dc = dL/dw * w` follows from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.masking import MaskSlot, mask_slots

Loss = Callable[[Any, Any], Any]
"""(y_true, y_pred) -> a scalar loss."""


@contextlib.contextmanager
def masks_opened(model: keras.Model) -> Iterator[list[MaskSlot]]:
    """Sets every mask of `model` to ones for the block, then restores them.

    Pruned weights are zero in their variables, so the model computes the
    same outputs; only the gradient reaches the pruned positions.

    Yields:
        The model's mask slots.
    """
    slots = mask_slots(model)
    saved = [keras.ops.convert_to_numpy(s.mask) for s in slots]
    try:
        for slot in slots:
            slot.mask.assign(np.ones(tuple(slot.mask.shape), slot.mask.dtype))
        yield slots
    finally:
        for slot, value in zip(slots, saved):
            slot.mask.assign(value)


def loss_gradients(model: keras.Model, loss: Loss, batches: Iterable[tuple[Any, Any]],
                   training: bool = False) -> dict[str, np.ndarray]:
    """The gradient of the mean loss over `batches`, per masked weight.

    Args:
        model: a model made `prunable()`.
        loss: `(y_true, y_pred) -> scalar`, e.g. a `keras.losses.Loss`.
        batches: `(x, y)` pairs.
        training: call the model in training mode (dropout, batch
            statistics); the default calls it in inference mode, so the
            scores do not depend on dropout's draw.

    Returns:
        Mask key -> gradient of the kernel's shape (float32), taken with
        respect to the effective weight `kernel * mask` at every position.

    Raises:
        ValueError: for no batches, or a masked weight that is not
            trainable.

    Example:
    >>> grads = loss_gradients(model, keras.losses.SparseCategoricalCrossentropy(),
    ...                        [(x[:60], y[:60])])
    """
    batches = list(batches)
    if not batches:
        raise ValueError("loss_gradients needs at least one (x, y) batch. Received: none")
    with masks_opened(model) as slots:
        _check_trainable(slots)
        kernels = [s.kernel for s in slots]
        total = [np.zeros(tuple(k.shape), np.float32) for k in kernels]
        for x, y in batches:
            for i, g in enumerate(_BACKENDS[keras.backend.backend()](model, loss, x, y,
                                                                    kernels, training)):
                total[i] += g
    return {s.key: g / len(batches) for s, g in zip(slots, total)}


def _tensorflow(model, loss, x, y, kernels, training) -> list[np.ndarray]:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=training))
    grads = tape.gradient(value, [k.value for k in kernels])
    return [_numpy(g, k) for g, k in zip(grads, kernels)]


def _jax(model, loss, x, y, kernels, training) -> list[np.ndarray]:
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}

    def value(trainable_values):
        y_pred, _ = model.stateless_call(trainable_values, non_trainable, x,
                                         **compat.training_keywords(model, training))
        return loss(y, y_pred)

    grads = jax.grad(value)(trainable)
    return [_numpy(grads[position[id(k)]], k) for k in kernels]


def _torch(model, loss, x, y, kernels, training) -> list[np.ndarray]:
    import torch

    value = loss(y, model(x, training=training))
    grads = torch.autograd.grad(value, [k.value for k in kernels], allow_unused=True)
    return [_numpy(g, k) for g, k in zip(grads, kernels)]


def _numpy(gradient: Any, kernel: keras.Variable) -> np.ndarray:
    """A gradient as float32 NumPy; None (the kernel is unused) as zeros."""
    if gradient is None:
        return np.zeros(tuple(kernel.shape), np.float32)
    if hasattr(gradient, "detach"):  # torch
        gradient = gradient.detach().cpu()
    return np.asarray(keras.ops.convert_to_numpy(gradient), np.float32)


_BACKENDS = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}


# Second order and full precision ---------------------------------------------
# GraSP scores weights by a Hessian-gradient product, SynFlow by the gradient
# of the network's summed output; both below keep the masks-opened convention
# of `loss_gradients` (derivatives with respect to the effective weight
# `kernel * mask` at every position) and return float64 NumPy arrays of what
# the backend computed in the kernels' own dtype (float64 for a model built
# in float64), not a float32 copy.


def hessian_gradient_product(model: keras.Model, loss: Loss,
                             batches: Iterable[tuple[Any, Any]],
                             vector: dict[str, np.ndarray] | None = None,
                             training: bool = False) -> dict[str, np.ndarray]:
    """`H v` per masked weight: `H` the Hessian of the mean loss over
    `batches` with respect to the masked (effective) weights, `v` by default
    the gradient `g` of that loss (GraSP's `Hg`).

    The Hessian is the block of the masked kernels only (biases and other
    weights held fixed), as GraSP takes it. Per backend: nested
    `tf.GradientTape`s on TensorFlow, `jax.jvp` of `jax.grad` over
    `stateless_call` on JAX, a double `torch.autograd.grad` on PyTorch.

    Args:
        model: a model made `prunable()`.
        loss: `(y_true, y_pred) -> scalar`.
        batches: `(x, y)` pairs; `H` is the mean of their Hessians.
        vector: mask key -> direction of the kernel's shape; None for the
            gradient of the mean loss over `batches` (`loss_gradients`).
        training: call the model in training mode (default: inference).

    Returns:
        Mask key -> `H v` of the kernel's shape (float64).

    Raises:
        ValueError: for no batches, a masked weight that is not trainable,
            or a `vector` lacking a masked weight.

    Example:
    >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> hg = hessian_gradient_product(model, loss, [(x[:60], y[:60])])
    """
    batches = list(batches)
    if not batches:
        raise ValueError("hessian_gradient_product needs at least one (x, y) batch. "
                         "Received: none")
    if vector is None:
        vector = loss_gradients(model, loss, batches, training=training)
    with masks_opened(model) as slots:
        _check_trainable(slots)
        missing = [s.key for s in slots if s.key not in vector]
        if missing:
            raise ValueError(f"vector lacks the masked weights {missing}.")
        kernels = [s.kernel for s in slots]
        direction = [np.asarray(vector[s.key], _dtype(s.kernel)).reshape(tuple(s.kernel.shape))
                     for s in slots]
        total = [np.zeros(tuple(k.shape), np.float64) for k in kernels]
        for x, y in batches:
            products = _HVP_BACKENDS[keras.backend.backend()](model, loss, x, y, kernels,
                                                              direction, training)
            for i, product in enumerate(products):
                total[i] += product
    return {s.key: t / len(batches) for s, t in zip(slots, total)}


def objective_gradients(model: keras.Model, objective: Callable[[Any], Any], inputs: Any,
                        training: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """A scalar function of the model's outputs and its gradient per masked
    weight, in the kernels' own precision.

    SynFlow calls it with `objective` = the sum of all outputs.

    Args:
        model: a model made `prunable()`.
        objective: outputs (the model's output structure) -> scalar.
        inputs: what the model is called on.
        training: call the model in training mode (default: inference).

    Returns:
        The objective's value (a float) and mask key -> its gradient with
        respect to the effective weight at every position (float64).

    Raises:
        ValueError: for a masked weight that is not trainable.
    """
    with masks_opened(model) as slots:
        _check_trainable(slots)
        kernels = [s.kernel for s in slots]
        value, grads = _OBJECTIVE_BACKENDS[keras.backend.backend()](model, objective, inputs,
                                                                    kernels, training)
    return value, {s.key: g for s, g in zip(slots, grads)}


def _check_trainable(slots: list[MaskSlot]) -> None:
    frozen = [s.key for s in slots if not s.kernel.trainable]
    if frozen:
        raise ValueError(f"masked weights {frozen} are not trainable: no gradient scores them.")


def _dtype(kernel: keras.Variable) -> str:
    return keras.backend.standardize_dtype(kernel.dtype)


def _exact(value: Any, kernel: keras.Variable) -> np.ndarray:
    """A derivative as float64 NumPy (computed in the kernel's dtype); None
    (the kernel does not reach the output) as zeros."""
    if value is None:
        return np.zeros(tuple(kernel.shape), np.float64)
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
    return np.asarray(keras.ops.convert_to_numpy(value), np.float64)


def _tensorflow_hvp(model, loss, x, y, kernels, direction, training) -> list[np.ndarray]:
    import tensorflow as tf

    values = [k.value for k in kernels]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss(y, model(x, training=training))
        grads = inner.gradient(value, values)
        dots = [tf.reduce_sum(g * tf.cast(v, g.dtype)) for g, v in zip(grads, direction)
                if g is not None]
        dot = tf.add_n(dots) if dots else None
    products = (outer.gradient(dot, values) if dot is not None else [None] * len(values))
    return [_exact(p, k) for p, k in zip(products, kernels)]


def _jax_hvp(model, loss, x, y, kernels, direction, training) -> list[np.ndarray]:
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    where = [index[id(k)] for k in kernels]

    def value(kernel_values):
        values = list(trainable)
        for i, kernel_value in zip(where, kernel_values):
            values[i] = kernel_value
        y_pred, _ = model.stateless_call(values, non_trainable, x, **compat.training_keywords(model, training))
        return loss(y, y_pred)

    primals = [trainable[i] for i in where]
    tangents = [jax.numpy.asarray(v, p.dtype) for v, p in zip(direction, primals)]
    _, products = jax.jvp(jax.grad(value), (primals,), (tangents,))
    return [_exact(p, k) for p, k in zip(products, kernels)]


def _torch_hvp(model, loss, x, y, kernels, direction, training) -> list[np.ndarray]:
    import torch

    values = [k.value for k in kernels]
    value = loss(y, model(x, training=training))
    grads = torch.autograd.grad(value, values, create_graph=True, allow_unused=True)
    dot = None
    for g, v in zip(grads, direction):
        if g is not None:
            term = (g * torch.as_tensor(v, dtype=g.dtype, device=g.device)).sum()
            dot = term if dot is None else dot + term
    if dot is None or not dot.requires_grad:  # the gradient does not depend on the kernels
        return [_exact(None, k) for k in kernels]
    products = torch.autograd.grad(dot, values, allow_unused=True)
    return [_exact(p, k) for p, k in zip(products, kernels)]


def _tensorflow_objective(model, objective, inputs, kernels, training):
    import tensorflow as tf

    values = [k.value for k in kernels]
    with tf.GradientTape() as tape:
        value = objective(model(inputs, training=training))
    grads = tape.gradient(value, values)
    return float(value), [_exact(g, k) for g, k in zip(grads, kernels)]


def _jax_objective(model, objective, inputs, kernels, training):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}

    def value(trainable_values):
        outputs, _ = model.stateless_call(trainable_values, non_trainable, inputs,
                                          **compat.training_keywords(model, training))
        return objective(outputs)

    result, grads = jax.value_and_grad(value)(trainable)
    return float(result), [_exact(grads[index[id(k)]], k) for k in kernels]


def _torch_objective(model, objective, inputs, kernels, training):
    import torch

    value = objective(model(inputs, training=training))
    grads = torch.autograd.grad(value, [k.value for k in kernels], allow_unused=True)
    return float(value.detach().cpu()), [_exact(g, k) for g, k in zip(grads, kernels)]


_HVP_BACKENDS = {"tensorflow": _tensorflow_hvp, "jax": _jax_hvp, "torch": _torch_hvp}
_OBJECTIVE_BACKENDS = {"tensorflow": _tensorflow_objective, "jax": _jax_objective,
                       "torch": _torch_objective}
