"""What every trainer of a branch shares, whatever trains it.

A branch is trained by a `Trainer`: `FitTrainer` (`model.fit`, a model of
your own, any backend) or `LoopTrainer` (the presets' `tf.distribute`
loop). The base class holds the branch's state and its rules, once:

- the checkpointable state: `state()` and `restore()`;
- the evaluation records: `end_interval` builds each record (running
  training metrics, the splits the `SplitSchedule` evaluates), checks it
  for divergence and follows early stopping; `checkpoint` hands over the
  state when one is due;
- divergence (`runner.divergence`): `advance` checks the training loss
  as steps complete (each step, or each compiled call of several),
  `end_interval` the weights and the monitored loss;
  the first non-finite step is the one kept;
- throughput: `measure` and `steps_per_second`.

A subclass says only how it trains (`_train`: the step loop, or
`model.fit`), how it evaluates (`evaluate`) and how it reorders its data
(`reseed`); it calls `advance` as steps complete, `end_interval` at each
evaluation and `checkpoint` after it.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence

import keras

from keras_lottery.rewind import WeightSnapshot, snapshot_weights
from keras_lottery.runner import divergence
from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.early_stop import is_finite
from keras_lottery.runner.errors import MonitorError
from keras_lottery.runner.evaluation import SplitSchedule

Record = dict[str, float]
OnEval = Callable[[Record], None]
OnCheckpoint = Callable[[BranchState], None]
Hooks = Mapping[int, Sequence[Callable[[], bool | None]]]


class Trainer(abc.ABC):
    """Trains one branch from step `start` to `steps`, evaluating as it goes.

    Attributes:
        step: the global step training has reached.
        history: the evaluation records so far.
        diverged_at: the first step at which the branch was found
            diverged (`runner.divergence`), or None.
        divergence: what became non-finite then, in a sentence.
        last_finite: the weights at the last evaluation before that.
        optimizer: the branch's optimizer (set by the subclass).

    Args:
        model: the (masked) model.
        splits: the evaluation splits' names, in evaluation order.
        steps: the global step the branch trains to.
        eval_every: steps between evaluations.
        start: the global step the branch starts at.
        checkpoint_every: checkpoint interval in steps (0 = none).
        monitor: the key early stopping follows.
        maximize: whether larger `monitor` values are better.
        test_curves: evaluate every split at every evaluation
            (`runner.evaluation`).

    Example:
    >>> trainer = FitTrainer(model, compile_args, data, steps=3000, eval_every=100)
    >>> history = trainer.run(on_eval=print)
    >>> trainer.diverged_at is None
    True
    """

    optimizer: keras.optimizers.Optimizer

    def __init__(self, model: keras.Model, splits: Sequence[str], steps: int, eval_every: int,
                 start: int = 0, checkpoint_every: int = 0, monitor: str = "val_loss",
                 maximize: bool = False, test_curves: bool = False):
        self.model, self.monitor = model, monitor
        self.steps, self.eval_every, self.checkpoint_every = steps, eval_every, checkpoint_every
        self.start = self.step = start
        self.history: list[Record] = []
        self.diverged_at: int | None = None
        self.divergence: str | None = None
        self.last_finite: WeightSnapshot | None = None
        self.train_seconds, self.timed_steps = 0.0, 0
        self._timed_once = False  # the first interval (tracing, compiling) is not timed
        self._last_checkpoint = 0
        self._schedule = SplitSchedule(splits, monitor, maximize, every_time=test_curves)

    # What a subclass provides ---------------------------------------------
    @abc.abstractmethod
    def evaluate(self, names: tuple[str, ...] | None = None) -> Record:
        """The model's `<split>_<metric>` values on every evaluation split
        (or on those named), as it is now."""

    @abc.abstractmethod
    def reseed(self, seed: int) -> None:
        """Trains on the data order of `seed` from now on."""

    @abc.abstractmethod
    def _train(self, on_eval: OnEval | None, on_checkpoint: OnCheckpoint | None,
               at_step: Hooks, on_progress: Callable[[int, Record], None] | None) -> None:
        """Trains from `step` towards `steps`, calling `advance` as steps
        complete, `end_interval` and `checkpoint` at each evaluation, and
        stopping once the branch has diverged or a hook returned True."""

    def _failures(self) -> contextlib.AbstractContextManager:
        """Wraps a run: what an error in it becomes (nothing by default)."""
        return contextlib.nullcontext()

    # Running ----------------------------------------------------------------
    def run(self, on_eval: OnEval | None = None, on_checkpoint: OnCheckpoint | None = None,
            at_step: Hooks | None = None,
            on_progress: Callable[[int, Record], None] | None = None) -> list[Record]:
        """Trains to `steps`, evaluating every `eval_every` steps and at the
        start and the end.

        Args:
            on_eval: called with each evaluation record (and later with the
                values a record lacked, at its step).
            on_checkpoint: called with a `BranchState` about every
                `checkpoint_every` steps (at evaluations).
            at_step: step -> callables run when training reaches that step
                (the late-rewinding snapshot, Early-Bird mask draws); one
                that returns True stops training there.
            on_progress: called with the step and the running training
                metrics, where the trainer draws progress itself.

        Returns:
            The evaluation history: one record per evaluation with `step`,
            `train_<metric>` (running means since the previous evaluation)
            and `<split>_<metric>` of the splits evaluated.

        Raises:
            MonitorError: if the first evaluation lacks `monitor`.
        """
        with self._failures():
            if not self.history and self._evaluates_at_start():
                self.end_interval(None, on_eval)
            if self.step < self.steps and self.diverged_at is None:
                every = self.checkpoint_every
                self._last_checkpoint = self.step // every if every else 0
                self._train(on_eval, on_checkpoint, at_step or {}, on_progress)
            self._schedule.complete(self.history, self.model, self.evaluate, on_eval)
        return self.history

    def _evaluates_at_start(self) -> bool:
        """Whether a branch with no history is evaluated before training."""
        return True

    def advance(self, steps: int, loss: float | None) -> bool:
        """Training has completed `steps` more steps.

        Args:
            steps: how many.
            loss: the running mean of the training loss over the interval
                so far, or None if the trainer does not measure it.

        Returns:
            Whether the branch has now diverged (training stops): the loss
            is not finite. The first such step is kept as `diverged_at`.
        """
        self.step += steps
        if self.diverged_at is None and loss is not None and not is_finite(loss):
            self.diverged_at, self.divergence = self.step, divergence.loss_cause(loss)
        return self.diverged_at is not None

    def end_interval(self, train: Mapping[str, float] | None,
                     on_eval: OnEval | None = None) -> Record:
        """Evaluates at the current step and keeps the record.

        The record is checked for divergence (`runner.divergence`), followed
        by early stopping and given to `on_eval`.

        Args:
            train: the running means of the training metrics since the
                previous evaluation, by metric name (`loss`, ...); None
                before training (they are NaN then).
            on_eval: called with the record.

        Returns:
            The record: `step`, `train_<metric>`, `<split>_<metric>`.

        Raises:
            MonitorError: if the first record lacks `monitor`.
        """
        evaluated = self.evaluate(self._schedule.each)
        if not self.history and self.monitor not in evaluated:  # name every key in the error
            evaluated.update(self.evaluate(self._schedule.lacking(evaluated)))
        trained = train is not None
        if train is None:  # the names later records have, in their order
            names = [self._schedule.metric(key) for key in evaluated] or ["loss"]
            train = dict.fromkeys(names, float("nan"))
        record: Record = {"step": self.step, **{f"train_{k}": v for k, v in train.items()},
                          **evaluated}
        if not self.history and self.monitor not in record:
            raise MonitorError(
                f"monitor={self.monitor!r} is not a key that evaluation produces. "
                f"Available: {sorted(k for k in record if k != 'step')}"
                + ("" if "val" in self._schedule.splits else
                   " (pass validation_data to get val_* keys)")
            )
        self.history.append(record)
        self._check(record, trained)
        self._schedule.track(record, self.model, self.step, self.last_finite)
        if on_eval is not None:
            on_eval(record)
        return record

    def _check(self, record: Record, trained: bool) -> None:
        """The divergence rule at an evaluation: the first one found
        diverged is kept; until then the weights become `last_finite`."""
        if self.diverged_at is not None:
            return
        snapshot = snapshot_weights(self.model, step=self.step)
        losses = divergence.counted_losses(self._schedule.monitored, trained)
        self.divergence = divergence.cause(record, snapshot, losses)
        if self.divergence is not None:
            self.diverged_at = self.step
        else:
            self.last_finite = snapshot

    def checkpoint(self, on_checkpoint: OnCheckpoint | None,
                   on_eval: OnEval | None = None) -> None:
        """Hands a `BranchState` to `on_checkpoint` if one is due: at an
        evaluation, about every `checkpoint_every` steps, not at the end (a
        completed branch needs none) nor once the branch has diverged.

        The early-stop record is completed first (its weights are not part
        of the state); `on_eval` gets the values it lacked.
        """
        every = self.checkpoint_every
        if (not every or on_checkpoint is None or self.step >= self.steps
                or self.diverged_at is not None):
            return
        if self.step // every > self._last_checkpoint:
            self._last_checkpoint = self.step // every
            self._schedule.complete_best(self.model, self.evaluate, on_eval)
            on_checkpoint(self.state())

    # Checkpoints --------------------------------------------------------------
    def state(self) -> BranchState:
        """A checkpoint of the branch at the current step."""
        return BranchState.capture(self.model, self.optimizer, self.step, self.history)

    def restore(self, state: BranchState) -> None:
        """Continues from a checkpoint taken by `state()`.

        A checkpoint is only taken of a branch that has not diverged, at an
        evaluation: its weights are the last finite ones.
        """
        state.restore(self.model, self.optimizer)
        self.step, self.history = state.step, [dict(h) for h in state.history]
        self.last_finite = snapshot_weights(self.model, step=self.step)
        self._schedule.restart(self.history, self.model, self.step)

    def count_from(self, step: int) -> None:
        """Early stopping considers the evaluations from `step` on only
        (a branch whose masks change while it trains)."""
        self._schedule.from_step = step

    # Throughput ---------------------------------------------------------------
    def measure(self, steps: int, seconds: float) -> None:
        """Counts `steps` training steps that took `seconds` of wall time;
        the trainer's first interval (which traces and compiles the step)
        is left out."""
        if self._timed_once:
            self.train_seconds += seconds
            self.timed_steps += steps
        self._timed_once = True

    @property
    def steps_per_second(self) -> float:
        """Training throughput measured so far (NaN before two intervals)."""
        return self.timed_steps / self.train_seconds if self.train_seconds else float("nan")
