"""What every pruning method is: when it acts, what it needs, which masks it makes.

A `Pruner` is one method (magnitude IMP, gradual magnitude pruning, SNIP,
RigL...). It declares *when* it acts:

- `BETWEEN_ROUNDS`: from trained weights, after a training (IMP; one-shot
  magnitude pruning of the trained dense network);
- `AT_INIT`: once, at the rewind point (θ0), before its single training
  (SNIP, GraSP, SynFlow, random pruning...);
- `DURING_TRAINING`: while the network trains, at update steps it chooses
  (gradual magnitude pruning, SET, RigL);

and *what it needs* (`WEIGHTS`, `GRADIENTS` of the training loss on a few
batches, or a `DATA_FREE` forward pass). The engine asks it for masks
through a `PruneRequest`; a pruner never assigns them itself, so the same
method serves the lottery search, Early-Bird and a user's own loop.

A new method is one module with one `@register`-ed subclass, imported in
`keras_lottery/pruners/__init__.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import keras
import numpy as np

from keras_lottery import mask_math
from keras_lottery.pruning import get_kernels, get_masks

BETWEEN_ROUNDS = "between_rounds"
AT_INIT = "at_init"
DURING_TRAINING = "during_training"
WHEN = (BETWEEN_ROUNDS, AT_INIT, DURING_TRAINING)

WEIGHTS = "weights"
GRADIENTS = "gradients"
DATA_FREE = "data_free"

Batches = Callable[[int], list[tuple[Any, Any]]]
"""n -> n batches `(x, y)` of the training data, in the run's order."""


@dataclasses.dataclass
class PruneRequest:
    """What a pruner is asked to do: masks for `model` at a target.

    Attributes:
        model: a model made `prunable()`, holding the weights to score and
            the current masks.
        fraction: share of the remaining weights to prune (pooled with
            `scope="global"`, per kernel with `"layerwise"`), in [0, 1).
            For a `DURING_TRAINING` pruner: the share pruned by the end of
            its schedule.
        rates: mask key -> own share, overriding `fraction` for that
            kernel (the paper prunes output layers at half rate).
        scope: `"global"` or `"layerwise"`.
        granularity: `"weight"`, `"unit"` or `"N:M"`.
        seed: the request's seed (random choices).
        batches: training batches, for pruners that need `GRADIENTS`
            (None where the caller has none).
        loss: `(y_true, y_pred) -> scalar`, the training loss, for pruners
            that need `GRADIENTS`.
    """

    model: keras.Model
    fraction: float
    rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    scope: str = "global"
    granularity: str = "weight"
    seed: int = 0
    batches: Batches | None = None
    loss: Callable[[Any, Any], Any] | None = None

    def masks_now(self) -> dict[str, np.ndarray]:
        """The model's current masks."""
        return get_masks(self.model)

    def kernels(self) -> dict[str, np.ndarray]:
        """The model's prunable kernels (pruned entries are zero)."""
        return get_kernels(self.model)


def check_count(name: str, value: object) -> None:
    """Raises ValueError unless the option `name` is an integer >= 1.

    Example:
    >>> check_count("frequency", 100)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A method without options."""


class Pruner:
    """Base class of pruning methods.

    Subclasses set `name`, `when` and `needs`, and give either `scores`
    (larger = kept; the base class turns them into masks at the request's
    scope, rates and granularity) or `masks` itself. A `DURING_TRAINING`
    pruner also gives `start_masks`, `update_steps`, `update` and
    `settled_from`.

    Options are a frozen dataclass `Options` on the subclass, with one
    default per field; `Pruner(options)` checks the names and builds it.

    Args:
        options: option name -> value (unknown names raise ValueError).

    Example:
    >>> pruner = get("magnitude")
    >>> masks = pruner.masks(PruneRequest(model, fraction=0.2))
    """

    name: ClassVar[str] = ""
    when: ClassVar[str] = BETWEEN_ROUNDS
    needs: ClassVar[tuple[str, ...]] = (WEIGHTS,)
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Mapping[str, Any] | None = None):
        options = dict(options or {})
        fields = {f.name for f in dataclasses.fields(self.Options)}
        unknown = sorted(set(options).difference(fields))
        if unknown:
            raise ValueError(
                f"pruner {self.name!r} has no option {unknown[0]!r}. Accepted: "
                f"{sorted(fields) or 'none'}. Received: pruner_options={options!r}"
            )
        self.options = self.Options(**options)

    # Masks from scores -----------------------------------------------------
    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        """Mask key -> one score per weight; the lowest are pruned."""
        raise NotImplementedError(f"pruner {self.name!r} defines masks() instead of scores()")

    def masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        """The new masks for the request (only shrinking the current ones).

        Args:
            request: the model, the target share and how to reach it.

        Returns:
            Mask key -> boolean mask, for every masked weight.
        """
        return masks_from_scores(self.scores(request), request)

    # During training ---------------------------------------------------------
    def start_masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        """The masks a `DURING_TRAINING` branch starts under (default: the
        current ones)."""
        return request.masks_now()

    def update_steps(self, start: int, end: int) -> list[int]:
        """The steps in (start, end] after which `update` runs."""
        return []

    def update(self, step: int, start: int, end: int,
               request: PruneRequest) -> dict[str, np.ndarray]:
        """The masks after training step `step` of a branch from `start` to
        `end`, from the model's weights then."""
        raise NotImplementedError(f"pruner {self.name!r} does not act during training")

    def settled_from(self, start: int, end: int) -> int:
        """The first step from which the masks have their final sparsity:
        early stopping only considers evaluations from there."""
        return start


PRUNERS: dict[str, type[Pruner]] = {}
"""Pruner name -> class; `pruner=...` and `--pruner` take these names."""


def register(cls: type[Pruner]) -> type[Pruner]:
    """Registers a `Pruner` subclass under its `name` (a class decorator).

    Raises:
        ValueError: for a name already taken, or a bad `when` / `needs`.
    """
    if not cls.name or cls.name in PRUNERS:
        raise ValueError(f"A pruner needs a new name. Received: {cls.name!r}; "
                         f"taken: {sorted(PRUNERS)}")
    if cls.when not in WHEN:
        raise ValueError(f"{cls.__name__}.when must be one of {list(WHEN)}. "
                         f"Received: {cls.when!r}")
    unknown = set(cls.needs).difference((WEIGHTS, GRADIENTS, DATA_FREE))
    if unknown:
        raise ValueError(f"{cls.__name__}.needs names unknown inputs {sorted(unknown)}. "
                         f"Accepted: {[WEIGHTS, GRADIENTS, DATA_FREE]}")
    PRUNERS[cls.name] = cls
    return cls


def get(name: str, options: Mapping[str, Any] | None = None) -> Pruner:
    """The registered pruner `name`, with `options`.

    Example:
    >>> get("gradual", {"power": 1}).options.power
    1
    """
    if name not in PRUNERS:
        raise ValueError(f"pruner must be one of {sorted(PRUNERS)}. Received: pruner={name!r}")
    return PRUNERS[name](options)


def describe() -> dict[str, str]:
    """Pruner name -> the first line of its docstring (for help texts)."""
    return {name: (cls.__doc__ or "").strip().splitlines()[0].rstrip(".")
            for name, cls in PRUNERS.items()}


def masks_from_scores(scores: Mapping[str, np.ndarray],
                      request: PruneRequest) -> dict[str, np.ndarray]:
    """Prunes the lowest-scored remaining weights, as magnitude pruning
    prunes the smallest: same scope, rates, granularity and exact counts.

    Scores are replaced by their global rank first, so signed scores
    (GraSP's) order correctly and ranks are comparable across kernels.

    Args:
        scores: mask key -> scores of the kernel's shape (larger = kept).
        request: the target (`fraction`, `rates`, `scope`, `granularity`).

    Returns:
        Mask key -> boolean mask, for every masked weight.
    """
    current = request.masks_now()
    missing = sorted(set(current).difference(scores))
    if missing:
        raise ValueError(f"scores lack the masked weights {missing}.")
    return masks_by_rank({k: scores[k] for k in current}, current, request.fraction,
                         request.rates, request.scope, request.granularity)


def masks_by_rank(scores: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray],
                  fraction: float, rates: Mapping[str, float], scope: str,
                  granularity: str) -> dict[str, np.ndarray]:
    """Prunes `fraction` (or a kernel's own rate) of the `current` masks'
    remaining weights, the lowest-ranked by `scores` first.

    Args:
        scores: mask key -> scores (larger = kept), replaced by their ranks.
        current: mask key -> the masks pruning starts from.
        fraction, rates, scope, granularity: as in `PruneRequest`.

    Returns:
        Mask key -> boolean mask.

    Raises:
        EmptiedKernelError: when a kernel would lose every weight, saying
            why (layer collapse; kernels no gradient reaches) and what to do.
    """
    try:
        return mask_math.magnitude_masks(ranks(scores), current, fraction, dict(rates),
                                         scope=scope, granularity=granularity)
    except mask_math.EmptiedKernelError as error:
        top = max(float(np.max(v)) for v in scores.values())
        unscored = [k for k in error.keys if np.max(scores[k]) <= 1e-6 * top]
        why = (f" The scores of {unscored} are about 0 or below: no gradient reaches "
               "them (attention queries and keys get none from an input whose tokens are "
               "alike, as SynFlow's is)." if unscored else "")
        raise mask_math.EmptiedKernelError(error.keys, (
            "Their scores rank below every other kernel's (layer collapse, Tanaka et al. "
            f"2020).{why} With scope='layerwise' each kernel keeps its share.")) from None


def ranks(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores replaced by their rank among all of them, 1 for the lowest.

    Example:
    >>> {k: v.tolist() for k, v in ranks({"a": np.array([-2.0, 5.0]),
    ...                                   "b": np.array([0.5])}).items()}
    {'a': [1.0, 3.0], 'b': [2.0]}
    """
    flat = np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in scores.values()])
    if not np.isfinite(flat).all():
        raise ValueError("pruning scores contain NaN or infinity.")
    order = np.empty(flat.size, np.float64)
    order[np.argsort(flat, kind="stable")] = np.arange(1, flat.size + 1, dtype=np.float64)
    out, offset = {}, 0
    for key, value in scores.items():
        size = np.size(value)
        out[key] = order[offset:offset + size].reshape(np.shape(value))
        offset += size
    return out
