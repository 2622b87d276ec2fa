"""Magnitude pruning at initialization: the smallest weights of θ0.

The rewind point's own magnitudes, pruned once to the target before the
single training: the control that tells how much of a lottery ticket's
mask the training that found it contributed (Frankle et al., ICLR 2021).
"""

from __future__ import annotations

import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruners.base import AT_INIT, WEIGHTS, Pruner, PruneRequest, register


@register
class MagnitudeInit(Pruner):
    """The smallest weights at initialization (θ0), pruned once."""

    name = "magnitude_init"
    when = AT_INIT
    needs = (WEIGHTS,)

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        return {key: np.abs(w) for key, w in request.kernels().items()}

    def masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        return mask_math.magnitude_masks(
            request.kernels(), request.masks_now(), request.fraction, dict(request.rates),
            scope=request.scope, granularity=request.granularity)
