"""Random pruning at initialization: the baseline every pruning-at-init
method must beat (Frankle et al., ICLR 2021; Liu et al., ICLR 2022).

Layer-wise, each kernel loses exactly its share (`fraction`, or its own
rate) of its remaining weights, uniformly at random (`mask_math.random_masks`).
Global, the share is drawn uniformly at random from all remaining weights
pooled, so each kernel loses the share in expectation and the total count
is exact. With `granularity="unit"` whole units are drawn, with `"N:M"`
weights within the pattern. The request's seed decides the draw.
"""

from __future__ import annotations

import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruners.base import AT_INIT, Pruner, PruneRequest, register


@register
class RandomInit(Pruner):
    """Random pruning at initialization, seeded (the baseline)."""

    name = "random"
    when = AT_INIT
    needs = ()

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(request.seed)
        unit = mask_math.parse_granularity(request.granularity)[0] == "unit"
        out = {}
        for key, mask in request.masks_now().items():
            shape = np.shape(mask)
            out[key] = (np.broadcast_to(rng.random(shape[-1:]), shape) if unit
                        else rng.random(shape))
        return out

    def masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        if request.scope == "layerwise" and request.granularity == "weight":
            return mask_math.random_masks(request.masks_now(), request.fraction, request.seed,
                                          dict(request.rates))
        return super().masks(request)
