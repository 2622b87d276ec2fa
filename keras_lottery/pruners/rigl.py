"""Rigging the Lottery during training (Evci et al. 2020).

As SET (`keras_lottery/pruners/sparse_evolutionary.py`: a random sparse
start at ERK or uniform densities; every `update_every` steps until `end` each kernel
drops its `drop_fraction` smallest-magnitude active weights), but the
weights that grow are the inactive ones where the loss's gradient is
largest in magnitude: the dense gradient with respect to `kernel * mask`
at every position (`keras_lottery.gradients.loss_gradients`) on
`grad_batches` training batches (RigL uses the current batch's). Grown
weights start at zero, with zero optimizer slots.

Defaults are the paper's: `drop_fraction=0.3` with cosine decay
`f(t) = 0.3 / 2 * (1 + cos(pi * t / T_end))`, `update_every=100`,
`end=0.75`, ERK densities. One difference, on purpose: a weight dropped at
an update does not grow back at the same update (the paper's Algorithm 1
and its code let it, where it then keeps its value; `regrow_dropped=True`
does that).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lottery.gradients import loss_gradients
from keras_lottery.pruners.base import GRADIENTS, WEIGHTS, PruneRequest, register, check_count
from keras_lottery.pruners.sparse_evolutionary import DynamicSparse, DynamicSparseOptions


@dataclasses.dataclass(frozen=True)
class RigLOptions(DynamicSparseOptions):
    """SET's options, and:

    Attributes:
        grad_batches: training batches the growth gradient is averaged
            over (1: RigL's current batch).
    """

    grad_batches: int = 1

    def __post_init__(self):
        super().__post_init__()
        check_count("grad_batches", self.grad_batches)


@register
class RigL(DynamicSparse):
    """RigL: drop the smallest, grow where |gradient| is largest (Evci et al. 2020)."""

    name = "rigl"
    needs = (WEIGHTS, GRADIENTS)
    Options = RigLOptions

    def _check_inputs(self, request: PruneRequest) -> None:
        missing = [name for name in ("batches", "loss") if getattr(request, name) is None]
        if missing:
            raise ValueError(
                f"pruner 'rigl' grows weights by the loss's gradient and needs the request's "
                f"training batches and loss; this request has no {' and no '.join(missing)}. "
                "Pass PruneRequest(..., batches=lambda n: [(x, y), ...], loss=loss).")

    def grow_scores(self, step: int, request: PruneRequest) -> dict[str, np.ndarray]:
        """|dL/d(kernel * mask)| on `grad_batches` batches, at every position."""
        self._check_inputs(request)
        batches = list(request.batches(self.options.grad_batches))
        return {key: np.abs(g) for key, g in loss_gradients(request.model, request.loss,
                                                             batches).items()}
