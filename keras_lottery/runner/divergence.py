"""When a branch has diverged: one rule for every trainer.

A branch diverges at the first training step whose loss is NaN or
infinite (the running mean of the interval, checked after every step), or
at the first evaluation where the monitored split's loss is, or any weight
is. The first such step is kept (`Trainer.diverged_at`) and training stops
there; the weights of the last evaluation before it are kept as the last
finite ones.

Which losses count (`counted_losses`): the training loss and the loss of
the split early stopping monitors (`val_loss` by default), the losses
that steer training. The test split's never counts: it must not change
what a branch trains to, and whether it is evaluated at every evaluation
(`test_curves`) must not change the outcome either.

The weights matter as well as the losses: on TensorFlow's CPU kernels ReLU
maps NaN to 0, so one NaN in the training inputs makes every weight NaN
after one step while the loss stays finite (about ln(classes)).
`runner.trainer.Trainer` applies the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from keras_lottery.rewind import WeightSnapshot
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
        losses: the keys of `record` that must be finite
            (`counted_losses`).

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


def counted_losses(monitored_split: str | None, trained: bool) -> list[str]:
    """The keys of an evaluation record that must be finite.

    Args:
        monitored_split: the split early stopping monitors
            (`evaluation.monitored_split`), or None.
        trained: whether the record has measured training metrics (not
            the record before training).

    Returns:
        `train_loss` (if trained) and `<monitored_split>_loss`.

    Example:
    >>> counted_losses("val", trained=True)
    ['train_loss', 'val_loss']
    """
    return (["train_loss"] if trained else []) + (
        [f"{monitored_split}_loss"] if monitored_split is not None else [])
