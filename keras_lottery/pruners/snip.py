"""SNIP at initialization (Lee, Ajanthan & Torr, ICLR 2019).

Each weight's connection sensitivity is `|g ⊙ w|`: `g` the gradient of
the training loss with respect to the effective weight on a few batches
(one as the paper), `w` the weight at the rewind point. The least
sensitive are pruned once, to the target, before the single training.
Equivalently `|dL/dc|` for a multiplicative gate `c` on each connection at
`c = 1`, which is how the paper and its reference code take it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import keras
import numpy as np

from keras_lottery.gradients import loss_gradients
from keras_lottery.pruners.base import AT_INIT, GRADIENTS, Pruner, PruneRequest, register, check_count


def check_batches(value: object) -> None:
    """Raises ValueError unless the `batches` option is an integer >= 1."""
    check_count("batches", value)


def training_data(request: PruneRequest, pruner: str, n: int):
    """`n` training batches and the loss of the request, or a clear error."""
    missing = [name for name in ("batches", "loss") if getattr(request, name) is None]
    if missing:
        raise ValueError(
            f"pruner {pruner!r} scores weights by gradients of the training loss, so its "
            f"PruneRequest needs `batches` (n -> n (x, y) batches) and `loss` "
            f"((y_true, y_pred) -> scalar). Received: {', '.join(missing)} = None")
    batches = list(request.batches(n))
    if not batches:
        raise ValueError(f"pruner {pruner!r} got no batch from request.batches({n}).")
    return batches, request.loss


def check_training(value: object) -> None:
    """Raises ValueError unless `value` is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"training must be True or False. Received: training={value!r}")


@contextlib.contextmanager
def state_kept(model: keras.Model) -> Iterator[None]:
    """Restores the model's non-trainable weights (batch normalization's moving
    statistics) after the block: scoring in training mode must not move θ0's."""
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_weights]
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)


@dataclasses.dataclass(frozen=True)
class SnipOptions:
    """Options of SNIP.

    Attributes:
        batches: training batches the gradient is averaged over (1 as the
            paper).
        training: call the model in training mode (dropout on, batch
            normalization on the batch's statistics; the moving statistics
            are restored afterwards). Default: inference mode.
    """

    batches: int = 1
    training: bool = False

    def __post_init__(self):
        check_batches(self.batches)
        check_training(self.training)


@register
class Snip(Pruner):
    """SNIP at initialization: prune the smallest |gradient x weight| (Lee et al. 2019)."""

    name = "snip"
    when = AT_INIT
    needs = (GRADIENTS,)
    Options = SnipOptions

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        batches, loss = training_data(request, self.name, self.options.batches)
        with state_kept(request.model):
            grads = loss_gradients(request.model, loss, batches, training=self.options.training)
        kernels = request.kernels()
        return {key: np.abs(grads[key].astype(np.float64) * kernels[key]) for key in grads}
