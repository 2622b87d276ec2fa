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
        frozen = [s.key for s in slots if not s.kernel.trainable]
        if frozen:
            raise ValueError(f"masked weights {frozen} are not trainable: no gradient "
                             "scores them.")
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
        y_pred, _ = model.stateless_call(trainable_values, non_trainable, x, training=training)
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
