"""Which splits each evaluation of a branch covers.

A branch's metrics read the test split (and a preset's training subset)
at two records only: the early-stop one (best `monitor` value) and the
last one. So by default only the monitored split (validation) is evaluated
every `eval_every` steps; the weights of the best record so far are kept in
memory, and the other splits are evaluated once for them and once for the
final weights. The metrics are the same as with every split evaluated every
time (`test_curves=True`, which also gives per-step test curves in
TensorBoard), at a fraction of the work.

A branch resumed from a checkpoint has lost the weights kept in memory, so
before each checkpoint the best record so far is completed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from keras_lottery.rewind import WeightSnapshot, rewindable_weights, snapshot_weights
from keras_lottery.runner.early_stop import is_finite

Record = dict[str, float]
Evaluate = Callable[[tuple[str, ...]], Record]  # split names -> their `<split>_<metric>` values


def monitored_split(monitor: str, splits: Sequence[str]) -> str | None:
    """The split whose key `monitor` is, or None.

    Example:
    >>> monitored_split("val_loss", ["val", "test", "train_eval"])
    'val'
    """
    matches = [name for name in splits if monitor.startswith(f"{name}_")]
    return max(matches, key=len) if matches else None


class SplitSchedule:
    """The splits evaluated every time, and the early-stop record's others.

    Args:
        splits: every evaluation split's name, in evaluation order.
        monitor: the key early stopping follows.
        maximize: whether larger `monitor` values are better.
        every_time: evaluate every split at every evaluation
            (`test_curves`).

    Example:
    >>> schedule = SplitSchedule(["val", "test"], "val_loss", maximize=False)
    >>> schedule.each
    ('val',)
    """

    def __init__(self, splits: Sequence[str], monitor: str, maximize: bool,
                 every_time: bool = False):
        self.splits = tuple(splits)
        self.monitored = monitored_split(monitor, self.splits)
        self.each = self.splits if every_time or self.monitored is None else (self.monitored,)
        self.monitor, self.maximize = monitor, maximize
        self.from_step = 0  # earlier records are not candidates (`count_from`)
        self.best: Record | None = None  # the record early stopping would pick so far
        self._weights: WeightSnapshot | None = None  # its weights, while it lacks splits

    def metric(self, key: str) -> str:
        """The metric a record's key names, without its split.

        Example:
        >>> SplitSchedule(["val", "train_eval"], "val_loss", False).metric("train_eval_loss")
        'loss'
        """
        split = monitored_split(key, self.splits)
        return key[len(split) + 1:] if split is not None else key

    def lacking(self, record: Record) -> tuple[str, ...]:
        """The splits `record` has no values of."""
        return tuple(name for name in self.splits if f"{name}_loss" not in record)

    def track(self, record: Record, model: keras.Model, step: int,
              weights: WeightSnapshot | None = None) -> None:
        """Follows a new record (as `early_stop` picks: the first best finite
        value); keeps the model's weights if it becomes the best and lacks
        splits. `weights`: a snapshot of them already taken, if any."""
        value = record.get(self.monitor)
        if not is_finite(value) or record["step"] < self.from_step:
            return
        sign = -1.0 if self.maximize else 1.0
        if self.best is not None and not sign * value < sign * self.best[self.monitor]:
            return
        self.best, lacking = record, self.lacking(record)
        if lacking and (weights is None or weights.step != record["step"]):
            here = record["step"] == step  # else (a resumed history) its weights are gone
            weights = snapshot_weights(model, step=step) if here else None
        self._weights = weights if lacking else None

    def restart(self, history: Sequence[Record], model: keras.Model, step: int) -> None:
        """Follows a history restored from a checkpoint."""
        self.best = self._weights = None
        for record in history:
            self.track(record, model, step)

    def complete(self, history: Sequence[Record], model: keras.Model, evaluate: Evaluate,
                 on_eval: Callable[[Record], None] | None) -> None:
        """Evaluates what the last record lacks (on the weights now) and what
        the early-stop record lacks (on its weights)."""
        if history and self.lacking(history[-1]):
            self._fill(history[-1], evaluate, on_eval)
        self.complete_best(model, evaluate, on_eval)

    def complete_best(self, model: keras.Model, evaluate: Evaluate,
                      on_eval: Callable[[Record], None] | None) -> None:
        """Evaluates what the early-stop record lacks, on its weights, and
        puts the weights now back."""
        if self.best is None or self._weights is None or not self.lacking(self.best):
            return
        variables = rewindable_weights(model)
        now = [keras.ops.convert_to_numpy(v) for v in variables]
        for variable, value in zip(variables, self._weights.values):
            variable.assign(value)
        try:
            self._fill(self.best, evaluate, on_eval)
        finally:
            for variable, value in zip(variables, now):
                variable.assign(value)
        self._weights = None

    def _fill(self, record: Record, evaluate: Evaluate, on_eval) -> None:
        """Adds the splits `record` lacks; `on_eval` gets them at its step."""
        values = evaluate(self.lacking(record))
        record.update(values)
        if on_eval is not None:
            on_eval({"step": record["step"], **values})
