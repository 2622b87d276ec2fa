"""Gradual magnitude pruning during training (Zhu & Gupta 2017).

One training from the rewind point, dense at first; every `frequency`
steps from `begin` to `end` (shares of the branch's steps) the smallest
weights are pruned so that each kernel's pruned share follows the
polynomial schedule `s(t) = s_f * (1 - (1 - p) ** power)`, `p` the
progress from begin to end, to the target `s_f` at `end`. This is
TFMOT's `PolynomialDecay` with `initial_sparsity=0`, the baseline
lottery-ticket papers compare tickets with (Renda et al. 2020).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruners.base import DURING_TRAINING, WEIGHTS, Pruner, PruneRequest, register, check_count


@dataclasses.dataclass(frozen=True)
class GradualOptions:
    """Options of gradual magnitude pruning.

    Attributes:
        begin: share of the branch's steps after which pruning starts.
        end: share of the branch's steps at which the target is reached;
            the rest of the training recovers at the final sparsity.
        frequency: steps between mask updates.
        power: exponent of the polynomial schedule (3 as Zhu & Gupta).
    """

    begin: float = 0.0
    end: float = 0.5
    frequency: int = 100
    power: float = 3.0

    def __post_init__(self):
        if not (isinstance(self.begin, (int, float)) and isinstance(self.end, (int, float))
                and 0 <= self.begin < self.end <= 1):
            raise ValueError(
                "gradual pruning needs 0 <= begin < end <= 1 (shares of the training steps). "
                f"Received: begin={self.begin!r}, end={self.end!r}"
            )
        check_count("frequency", self.frequency)
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)) \
                or self.power <= 0:
            raise ValueError(f"power must be a number > 0. Received: power={self.power!r}")


@register
class Gradual(Pruner):
    """Gradual magnitude pruning during one training (Zhu & Gupta 2017)."""

    name = "gradual"
    when = DURING_TRAINING
    needs = (WEIGHTS,)
    Options = GradualOptions

    def _window(self, start: int, end: int) -> tuple[int, int]:
        span = end - start
        return (start + int(round(self.options.begin * span)),
                start + max(1, int(round(self.options.end * span))))

    def update_steps(self, start: int, end: int) -> list[int]:
        first, last = self._window(start, end)
        steps = list(range(first + self.options.frequency, last, self.options.frequency))
        return [s for s in steps if start < s] + [last]

    def settled_from(self, start: int, end: int) -> int:
        return self._window(start, end)[1]

    def share(self, step: int, start: int, end: int) -> float:
        """The share of the target pruned after `step`: 0 before `begin`,
        1 from `end`, the polynomial in between."""
        first, last = self._window(start, end)
        progress = min(1.0, max(0.0, (step - first) / (last - first)))
        return 1.0 - (1.0 - progress) ** self.options.power

    def update(self, step: int, start: int, end: int,
               request: PruneRequest) -> dict[str, np.ndarray]:
        share = self.share(step, start, end)
        if not share:
            return request.masks_now()
        # Pruned weights are zero and so ranked first: the masks only shrink.
        return mask_math.magnitude_masks(
            request.kernels(), None, request.fraction * share,
            {k: rate * share for k, rate in request.rates.items()},
            scope=request.scope, granularity=request.granularity)
