"""Magnitude pruning between rounds: the lottery ticket's own criterion.

The smallest-magnitude remaining weights of the trained network are pruned
(Frankle & Carbin 2019; Han et al. 2015). With iterative rounds this is
IMP; pruned once from the trained dense network, one-shot pruning.
"""

from __future__ import annotations

import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruners.base import BETWEEN_ROUNDS, WEIGHTS, Pruner, PruneRequest, register


@register
class Magnitude(Pruner):
    """The smallest trained weights, between rounds (IMP; the default)."""

    name = "magnitude"
    when = BETWEEN_ROUNDS
    needs = (WEIGHTS,)

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        return {key: np.abs(w) for key, w in request.kernels().items()}

    def masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        return mask_math.magnitude_masks(
            request.kernels(), request.masks_now(), request.fraction, dict(request.rates),
            scope=request.scope, granularity=request.granularity)
