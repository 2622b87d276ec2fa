"""When a branch has diverged: one rule for both trainers.

A branch diverges when, at an evaluation, a loss is NaN or infinite *or*
any weight is. The second matters: on TensorFlow's CPU kernels ReLU maps
NaN to 0, so one NaN in the training inputs makes every weight NaN after
one step while the loss stays finite (about ln(classes)). Both
`FitTrainer` and `LoopTrainer` call `cause` at every evaluation with the
weights they would keep as the last finite ones, and keep them only when
it returns None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from keras_lottery.rewind import WeightSnapshot, snapshot_weights
from keras_lottery.runner.early_stop import is_finite


def nonfinite_weights(snapshot: WeightSnapshot) -> list[str]:
    """The paths of the snapshot's weights holding a NaN or infinity.

    Args:
        snapshot: weights, e.g. `snapshot_weights(model)`.

    Returns:
        The variables' paths, in snapshot order.

    Example:
    >>> nonfinite_weights(WeightSnapshot(("a", "b"), (np.ones(2), np.array([np.nan]))))
    ['b']
    """
    return [path for path, value in zip(snapshot.paths, snapshot.values)
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all()]


def cause(record: Mapping[str, float], snapshot: WeightSnapshot,
          losses: Iterable[str]) -> str | None:
    """Why a branch has diverged at an evaluation, or None if it has not.

    Args:
        record: the evaluation record.
        snapshot: the model's weights at that evaluation.
        losses: the keys of `record` that must be finite (the losses
            measured at this evaluation).

    Returns:
        A sentence naming what became non-finite, or None.

    Example:
    >>> cause({"val_loss": float("nan")}, WeightSnapshot((), ()), ["val_loss"])
    'the loss became NaN or infinite (val_loss=nan)'
    """
    bad = {k: record[k] for k in losses if k in record and not is_finite(record[k])}
    if bad:
        return "the loss became NaN or infinite (" + ", ".join(
            f"{k}={v}" for k, v in bad.items()) + ")"
    weights = nonfinite_weights(snapshot)
    if weights:
        return (f"the weights became NaN or infinite ({len(weights)} of "
                f"{len(snapshot.values)} arrays, first {weights[0]!r}) while the loss stayed "
                "finite: look for NaN or infinite values in the training inputs or targets "
                "(TensorFlow's CPU ReLU turns NaN into 0, which hides them from the loss)")
    return None


def loss_cause(value: float) -> str:
    """The cause of a training step whose loss is not finite.

    Example:
    >>> loss_cause(float("inf"))
    'the training loss became NaN or infinite (loss=inf)'
    """
    return f"the training loss became NaN or infinite (loss={value})"


def track(trainer, record: Mapping[str, float], losses: Iterable[str]) -> None:
    """Applies the rule after an evaluation, for either trainer.

    Until the branch has diverged, checks `record` and the trainer's model
    weights: on the first divergence sets `trainer.diverged_at` (that step,
    kept) and `trainer.divergence` (its cause); otherwise the weights become
    `trainer.last_finite`.

    Args:
        trainer: a `FitTrainer` or `LoopTrainer` (`model`, `step`,
            `diverged_at`, `divergence`, `last_finite`).
        record: the evaluation record.
        losses: the keys of `record` measured at this evaluation.
    """
    if trainer.diverged_at is not None:
        return
    snapshot = snapshot_weights(trainer.model, step=trainer.step)
    trainer.divergence = cause(record, snapshot, losses)
    if trainer.divergence is not None:
        trainer.diverged_at = trainer.step
    else:
        trainer.last_finite = snapshot
