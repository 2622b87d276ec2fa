"""Sparse Evolutionary Training during training (Mocanu et al. 2018).

The network trains sparse from its first step: the masks start at the
target sparsity, at random, with each kernel's density from the
Erdős–Rényi-Kernel distribution (`distribution="erk"`, the default) or
the same for every kernel (`"uniform"`). Every `update_every` steps,
until `end` (a share of the branch's steps), each kernel drops its
`drop_fraction` smallest-magnitude active weights and grows as many
inactive ones at random; grown weights start at zero (they are zero in
their variables while pruned) with zero optimizer slots. Each kernel
keeps its number of active weights at every update, so the sparsity is
the target's from the first step (`settled_from` is the branch's start).

The defaults are RigL's (Evci et al. 2020), under which that paper
compares SET with RigL: `drop_fraction=0.3` decayed by a cosine to 0 at
`end=0.75` of the training, `update_every=100` steps. Mocanu et al.'s
own schedule (a constant 0.3, after every epoch) is
`{"decay": "constant", "update_every": <steps per epoch>, "end": 1.0}`.

`DynamicSparse` is the part SET and RigL share; they differ only in the
score by which inactive weights grow (`grow_scores`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruners.base import DURING_TRAINING, WEIGHTS, Pruner, PruneRequest, register, check_count

DISTRIBUTIONS = ("erk", "uniform")
DECAYS = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class DynamicSparseOptions:
    """Options of dynamic sparse training (SET, RigL).

    Attributes:
        drop_fraction: share of each kernel's active weights dropped (and
            as many grown) at the first update (RigL's alpha, 0.3).
        decay: `"cosine"` (RigL: `alpha / 2 * (1 + cos(pi * t / T_end))`)
            or `"constant"` (SET's own).
        update_every: steps between mask updates (RigL's Delta T, 100).
        end: share of the branch's steps after which the masks stop
            changing (RigL's T_end, 0.75).
        distribution: the kernels' densities, `"erk"` (Erdős–Rényi-Kernel)
            or `"uniform"` (every kernel at the target).
        dense_first: keep the first masked kernel dense, out of the
            target's count (RigL does with `"uniform"`, and with `"erk"` at
            99% sparsity only).
        regrow_dropped: let a weight dropped at an update grow back at the
            same update (RigL's code); by default only weights inactive
            before the update grow.
    """

    drop_fraction: float = 0.3
    decay: str = "cosine"
    update_every: int = 100
    end: float = 0.75
    distribution: str = "erk"
    dense_first: bool = False
    regrow_dropped: bool = False

    def __post_init__(self):
        if not _number(self.drop_fraction) or not 0 < self.drop_fraction < 1:
            raise ValueError(f"drop_fraction must be a number in (0, 1). Received: "
                             f"drop_fraction={self.drop_fraction!r}")
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {list(DECAYS)}. Received: "
                             f"decay={self.decay!r}")
        check_count("update_every", self.update_every)
        if not _number(self.end) or not 0 < self.end <= 1:
            raise ValueError(f"end must be a share of the training steps in (0, 1]. "
                             f"Received: end={self.end!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}. Received: "
                             f"distribution={self.distribution!r}")
        for name in ("dense_first", "regrow_dropped"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False. Received: "
                                 f"{name}={getattr(self, name)!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


class DynamicSparse(Pruner):
    """What SET and RigL share: random sparse start, drop by magnitude,
    grow by `grow_scores`, the same count per kernel at every update."""

    when = DURING_TRAINING
    Options = DynamicSparseOptions

    # The schedule ------------------------------------------------------------
    def _t_end(self, start: int, end: int) -> int:
        return max(1, int(round(self.options.end * (end - start))))

    def update_steps(self, start: int, end: int) -> list[int]:
        """Every `update_every` steps after `start`, up to `end` of the
        branch, before its last step (a change there would not train)."""
        last = start + self._t_end(start, end)
        return [s for s in range(start + self.options.update_every, last + 1,
                                 self.options.update_every) if s < end]

    def drop_fraction(self, step: int, start: int, end: int) -> float:
        """The share of each kernel's active weights dropped after `step`."""
        t, t_end = step - start, self._t_end(start, end)
        if t >= t_end:
            return 0.0
        if self.options.decay == "constant":
            return float(self.options.drop_fraction)
        return mask_math.cosine_drop_fraction(t, t_end, self.options.drop_fraction)

    def settled_from(self, start: int, end: int) -> int:
        """The last update: the sparsity is constant from the start, but
        the connections change until then, and early stopping judges the
        network its masks end as (a record's weights are evaluated under
        the masks of the end)."""
        steps = self.update_steps(start, end)
        return steps[-1] if steps else start

    # The masks ---------------------------------------------------------------
    def _check(self, request: PruneRequest) -> None:
        if request.granularity != "weight":
            raise ValueError(
                f"pruner {self.name!r} drops and grows single weights; it has no "
                f"{request.granularity!r} granularity (whole units or an N:M pattern would "
                "need their own grow rule). Use granularity='weight'. Received: "
                f"granularity={request.granularity!r}")
        if request.scope not in mask_math.SCOPES:
            raise ValueError(f"scope must be one of {list(mask_math.SCOPES)}. Received: "
                             f"scope={request.scope!r}")

    def kept_counts(self, request: PruneRequest) -> dict[str, int]:
        """Mask key -> number of active weights during the training
        (`mask_math.sparse_counts`).

        A key of `request.rates` keeps `1 - rate` of its currently active
        weights and stays out of the distribution (as RigL's custom
        sparsities), and so does the first kernel with `dense_first`; the
        others keep `1 - fraction` of their active weights together,
        spread by `distribution`. (`request.scope` has no say: the
        distribution decides the kernels' shares.)
        """
        rates = dict(request.rates)
        if self.options.dense_first:
            rates = {next(iter(request.masks_now())): 0.0, **rates}
        return mask_math.sparse_counts(request.masks_now(), request.fraction, rates,
                                       self.options.distribution)

    def start_masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        """Random masks at the kernels' counts (`kept_counts`), drawn among
        the currently active weights first (so a dense start is uniformly
        random), seeded by `request.seed`."""
        self._check(request)
        self._check_inputs(request)
        current = request.masks_now()
        rng = np.random.default_rng(request.seed)
        masks = {}
        for key, count in self.kept_counts(request).items():
            flat = current[key].reshape(-1)
            order = np.concatenate([rng.permutation(np.flatnonzero(flat)),
                                    rng.permutation(np.flatnonzero(~flat))])
            mask = np.zeros(flat.size, bool)
            mask[order[:count]] = True
            masks[key] = mask.reshape(current[key].shape)
        return masks

    def update(self, step: int, start: int, end: int,
               request: PruneRequest) -> dict[str, np.ndarray]:
        """Each kernel drops `floor(drop_fraction * active)` weights of
        smallest magnitude and grows as many by `grow_scores`."""
        self._check(request)
        masks = request.masks_now()
        fraction = self.drop_fraction(step, start, end)
        if fraction == 0:
            return masks
        kernels = request.kernels()
        scores = self.grow_scores(step, request)
        new = {}
        for key, mask in masks.items():
            n = int(np.floor(fraction * np.count_nonzero(mask)))
            new[key] = mask_math.drop_and_grow(kernels[key], mask, n, scores[key],
                                               self.options.regrow_dropped)[0]
        return new

    # What SET and RigL differ in ---------------------------------------------
    def _check_inputs(self, request: PruneRequest) -> None:
        """Raises if the request lacks what `grow_scores` needs."""

    def grow_scores(self, step: int, request: PruneRequest) -> Mapping[str, np.ndarray]:
        """Mask key -> one score per weight; inactive weights of highest
        score grow."""
        raise NotImplementedError


@register
class SET(DynamicSparse):
    """Sparse Evolutionary Training: drop the smallest, grow at random (Mocanu et al. 2018)."""

    name = "set"
    needs = (WEIGHTS,)

    def grow_scores(self, step: int, request: PruneRequest) -> dict[str, np.ndarray]:
        """Uniform random numbers, seeded by the request's seed, the step and
        the kernel's position: the same run grows the same weights."""
        masks = request.masks_now()
        return {key: np.random.default_rng([request.seed, step, i]).random(mask.shape)
                for i, (key, mask) in enumerate(masks.items())}
