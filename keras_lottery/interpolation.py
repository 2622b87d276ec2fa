"""Linear mode connectivity: error along the line between two weight sets.

Frankle, Dziugaite, Roy & Carbin ("Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020) call a network *stable to SGD
noise* at rewind step k when two copies trained from θk with different
data orders end in minima joined by a linear path of no higher error.
`interpolation_curve` evaluates θ(α) = (1−α)·θ1 + α·θ2 at evenly spaced
α, under the model's masks (pruned weights stay zero), and `instability`
is the error barrier: the maximum error along the path minus the mean of
the two endpoints' errors.

Every weight is interpolated, non-trainable ones included: BatchNorm's
moving mean and variance are averaged like the kernels (the paper's
choice; recomputing the statistics at each α would measure another
path). Integer variables (counters, RNG states) cannot be averaged and
are taken from the nearer endpoint. The model's own weights are put back
afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from keras_lottery.pruning import get_masks, set_masks
from keras_lottery.rewind import WeightSnapshot, restore_weights, snapshot_weights

Evaluate = Callable[[keras.Model], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class InterpolationCurve:
    """Metrics along the linear path between two weight sets.

    Attributes:
        alphas: the interpolation coefficients, from 0 (θ1) to 1 (θ2).
        metrics: metric key -> one value per alpha. Every key ending in
            `accuracy` gets an `error` twin (`val_accuracy` ->
            `val_error`, `accuracy` -> `error`) equal to 1 − accuracy.
    """

    alphas: tuple[float, ...]
    metrics: dict[str, tuple[float, ...]]

    def to_dict(self) -> dict[str, Any]:
        """The curve as JSON-ready lists."""
        return {"alphas": list(self.alphas), "metrics": {k: list(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InterpolationCurve:
        """The curve written by `to_dict`."""
        return cls(tuple(values["alphas"]), {k: tuple(v) for k, v in values["metrics"].items()})


def _error_key(key: str) -> str:
    return key[: -len("accuracy")] + "error"


def _blend(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    if alpha == 0.0:
        return first
    if alpha == 1.0:
        return second
    if not np.issubdtype(first.dtype, np.floating):
        return first if alpha < 0.5 else second
    return ((1.0 - alpha) * first + alpha * second).astype(first.dtype)


def interpolate(first: WeightSnapshot, second: WeightSnapshot, alpha: float) -> WeightSnapshot:
    """The weights (1−α)·first + α·second (integer variables: nearer end).

    Args:
        first: θ1.
        second: θ2, of the same architecture.
        alpha: the coefficient; 0 gives `first` exactly, 1 `second`.

    Returns:
        A `WeightSnapshot`.

    Example:
    >>> mid = interpolate(snapshot_a, snapshot_b, 0.5)
    """
    if len(first.values) != len(second.values) or any(
            a.shape != b.shape for a, b in zip(first.values, second.values)):
        raise ValueError(
            "first and second must be snapshots of one architecture (same weights, same "
            f"shapes). Received: {len(first.values)} and {len(second.values)} weights with "
            f"shapes {[a.shape for a in first.values][:4]}... and "
            f"{[b.shape for b in second.values][:4]}..."
        )
    values = tuple(_blend(a, b, alpha) for a, b in zip(first.values, second.values))
    return WeightSnapshot(first.paths, values, first.step)


def interpolation_curve(model: keras.Model, first: WeightSnapshot, second: WeightSnapshot, *,
                        masks: Mapping[str, np.ndarray] | None = None, points: int = 30,
                        evaluate: Evaluate | None = None, data: Any = None,
                        batch_size: int | None = None) -> InterpolationCurve:
    """Evaluates the model along θ(α) = (1−α)·first + α·second.

    Args:
        model: a (masked) model of the snapshots' architecture; compiled
            if `evaluate` is not given.
        first: θ1, e.g. the first trained copy.
        second: θ2, the second copy.
        masks: masks to evaluate under (layer name -> mask); default the
            model's current masks. Pruned weights are zero at every α.
        points: number of evenly spaced α in [0, 1], endpoints included.
        evaluate: `evaluate(model) -> {key: value}`; default
            `model.evaluate(*data, batch_size=batch_size, return_dict=True)`.
        data: `(x, y)` (or anything `model.evaluate` takes as `x`) when
            `evaluate` is not given.
        batch_size: `model.evaluate`'s batch size.

    Returns:
        An `InterpolationCurve`. The model's weights and masks are
        restored afterwards.

    Example:
    >>> curve = interpolation_curve(model, copy1, copy2, data=(x_test, y_test))
    >>> instability(curve)  # error barrier, 0 for a stable pair
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2. Received: points={points!r}")
    if evaluate is None:
        if data is None:
            raise ValueError("Pass evaluate=fn(model) -> dict or data=(x, y). Received: neither")
        if not getattr(model, "compiled", False):
            raise ValueError("model.evaluate needs a compiled model; compile it or pass evaluate.")
        pair = tuple(data) if isinstance(data, (tuple, list)) else (data,)

        def evaluate(m: keras.Model) -> Mapping[str, float]:
            return m.evaluate(*pair, batch_size=batch_size, return_dict=True, verbose=0)

    saved, saved_masks = snapshot_weights(model), get_masks(model)
    alphas = tuple(float(a) for a in np.linspace(0.0, 1.0, points))
    metrics: dict[str, list[float]] = {}
    try:
        if masks is not None:
            set_masks(model, dict(masks))
        for alpha in alphas:
            restore_weights(model, interpolate(first, second, alpha))
            for key, value in evaluate(model).items():
                metrics.setdefault(key, []).append(float(np.asarray(value)))
                if key.endswith("accuracy"):
                    metrics.setdefault(_error_key(key), []).append(1.0 - float(np.asarray(value)))
    finally:
        set_masks(model, saved_masks)
        restore_weights(model, saved)
    return InterpolationCurve(alphas, {k: tuple(v) for k, v in metrics.items()})


def instability(curve: InterpolationCurve, key: str = "error") -> float:
    """The error barrier: max of `key` along the path − mean of its ends.

    Args:
        curve: from `interpolation_curve`.
        key: the metric (an error or a loss: lower is better), e.g.
            `"error"`, `"test_error"`, `"loss"`.

    Returns:
        The barrier, >= 0 (the maximum includes both ends); 0 when no
        point is worse than the worse end and the ends agree. Errors are
        fractions: 0.02 is 2 percentage points.

    Example:
    >>> curve = InterpolationCurve((0.0, 0.5, 1.0), {"error": (0.1, 0.3, 0.1)})
    >>> round(instability(curve), 6)
    0.2
    """
    if key not in curve.metrics:
        raise ValueError(f"key must be a metric of the curve, one of {sorted(curve.metrics)}. "
                         f"Received: key={key!r}")
    values = curve.metrics[key]
    return float(max(values) - (values[0] + values[-1]) / 2.0)
