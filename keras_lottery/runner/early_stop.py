"""The paper's early-stopping criterion, on any monitored evaluation key.

Frankle & Carbin (2019, Section 2) compare networks at the iteration of
minimum validation loss. A search on a model of your own may follow another
key (`val_auc`, `val_mean_absolute_error`); non-finite values (a diverged
branch) never count as the best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def is_finite(value) -> bool:
    """Whether `value` is a finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def early_stop(history: Sequence[dict[str, float]], monitor: str = "val_loss",
               maximize: bool = False, from_step: int = 0) -> dict[str, float]:
    """The early-stopping summary of one branch's evaluation history.

    Args:
        history: evaluation records, each with `step` and metric keys.
        monitor: the key to follow.
        maximize: whether larger values of `monitor` are better.
        from_step: only records from this step on count (a network pruned
            while it trains is judged once its masks are final); all count
            when none of those is finite.

    Returns:
        `early_stop_step` (the step of the best finite `monitor` value, the
        first on ties; the first record's step if none is finite) and every
        key at that step (`*_at_early_stop`) and at the end (`*_final`).

    Example:
    >>> early_stop([{"step": 0, "val_loss": 2.0}, {"step": 100, "val_loss": 1.0}])
    {'early_stop_step': 100, 'val_loss_at_early_stop': 1.0, 'val_loss_final': 1.0}
    """
    finite = [h for h in history if is_finite(h.get(monitor))]
    finite = [h for h in finite if h["step"] >= from_step] or finite
    sign = -1.0 if maximize else 1.0
    best = min(finite, key=lambda h: (sign * h[monitor], h["step"])) if finite else history[0]
    summary: dict[str, float] = {"early_stop_step": int(best["step"])}
    for key in history[-1]:
        if key != "step":
            summary[f"{key}_at_early_stop"] = best.get(key, float("nan"))
            summary[f"{key}_final"] = history[-1][key]
    return summary
