"""SNIP at initialization (Lee, Ajanthan & Torr, ICLR 2019).

Each weight's connection sensitivity is `|g ⊙ w|`: `g` the gradient of
the training loss with respect to the effective weight on a few batches
(one as the paper), `w` the weight at the rewind point. The least
sensitive are pruned once, to the target, before the single training.
Equivalently `|dL/dc|` for a multiplicative gate `c` on each connection at
`c = 1`, which is how the paper and its reference code take it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lottery.gradients import loss_gradients
from keras_lottery.pruners.base import AT_INIT, GRADIENTS, Pruner, PruneRequest, register


def check_batches(value: object) -> None:
    """Raises ValueError unless `value` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"batches must be an integer >= 1. Received: batches={value!r}")


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


@dataclasses.dataclass(frozen=True)
class SnipOptions:
    """Options of SNIP.

    Attributes:
        batches: training batches the gradient is averaged over (1 as the
            paper).
    """

    batches: int = 1

    def __post_init__(self):
        check_batches(self.batches)


@register
class Snip(Pruner):
    """SNIP at initialization: prune the smallest |gradient x weight| (Lee et al. 2019)."""

    name = "snip"
    when = AT_INIT
    needs = (GRADIENTS,)
    Options = SnipOptions

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        batches, loss = training_data(request, self.name, self.options.batches)
        grads = loss_gradients(request.model, loss, batches)
        kernels = request.kernels()
        return {key: np.abs(grads[key].astype(np.float64) * kernels[key]) for key in grads}
