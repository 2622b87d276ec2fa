"""Training one branch of a search on a model of your own: `model.fit`.

The branch trains with the model's own compiled loss and metrics and a
fresh optimizer built from the compiled one's config, through `model.fit`,
so the user's callbacks (TensorBoard, CSVLogger, their own) run in every
branch. One fit "epoch" is one evaluation interval: at its end the
validation and test splits are evaluated with `model.evaluate` and their
`val_*` / `test_*` values are added to the epoch logs the user's callbacks
receive. A branch that starts at step k (late rewinding) continues a
learning-rate schedule from k.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.rewind import WeightSnapshot
from keras_lottery.runner import divergence
from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.early_stop import is_finite
from keras_lottery.runner.errors import BranchFailedError, MonitorError
from keras_lottery.runner.evaluation import SplitSchedule
from keras_lottery.runner.inputs import SearchData


@keras.saving.register_keras_serializable(package="keras_lottery")
class OffsetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule read `offset` steps later.

    A branch that rewinds to step k starts a fresh optimizer (step 0) but
    continues the schedule from step k, as the dense run was there.

    Args:
        schedule: the compiled optimizer's schedule.
        offset: steps added to the optimizer's step.

    Example:
    >>> decay = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5)
    >>> float(OffsetSchedule(decay, 100)(0))
    0.05
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, offset: int):
        self.schedule, self.offset = schedule, int(offset)

    def __call__(self, step):
        return self.schedule(keras.ops.add(step, self.offset))

    def get_config(self) -> dict[str, Any]:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "offset": self.offset}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OffsetSchedule:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["offset"])


def fresh_optimizer(optimizer: keras.optimizers.Optimizer, offset: int = 0) -> keras.optimizers.Optimizer:
    """A new optimizer of the same class and config, at step 0.

    Args:
        optimizer: the compiled optimizer.
        offset: with a learning-rate schedule, continue it from this step.

    Returns:
        An unbuilt optimizer.
    """
    config = optimizer.get_config()
    rate = config.get("learning_rate")
    if isinstance(rate, dict):
        rate = keras.saving.deserialize_keras_object(rate)
        config["learning_rate"] = OffsetSchedule(rate, offset) if offset else rate
    return optimizer.__class__.from_config(config)


class FitTrainer:
    """Trains one branch of a user's model with `model.fit`.

    Args:
        model: the masked model, built under the strategy's scope.
        compile_args: the arguments the user compiled the model with
            (`compat.compile_arguments`); the branch recompiles with a
            fresh optimizer and the same loss and metrics.
        data: the search's data.
        steps: the global step the branch trains to.
        eval_every: steps between evaluations (one fit epoch).
        start: the global step the branch starts at.
        checkpoint_every: checkpoint interval in steps (0 = none).
        callbacks: the user's callbacks, run in every branch.
        label: `"round R, branch B"`, for error messages.
        monitor: the key early stopping follows (checked at the first
            evaluation).
        maximize: whether larger `monitor` values are better.
        test_curves: evaluate every split at every evaluation; by default
            the splits other than the monitored one are evaluated at the
            early-stop and last records only (`runner.evaluation`).
        verbose: 1 shows the Keras progress bar on a terminal.
        scope: the strategy's scope (a context manager factory).

    Example:
    >>> trainer = FitTrainer(model, compat.compile_arguments(user_model), data, steps=3000,
    ...                      eval_every=100)
    >>> history = trainer.run()
    """

    def __init__(self, model: keras.Model, compile_args: dict[str, Any], data: SearchData,
                 steps: int, eval_every: int, start: int = 0, checkpoint_every: int = 0,
                 callbacks: Sequence[keras.callbacks.Callback] = (), label: str = "",
                 monitor: str = "val_loss", verbose: int = 0,
                 scope: Callable[[], Any] | None = None, maximize: bool = False,
                 test_curves: bool = False):
        self.model, self.data, self.label, self.monitor = model, data, label, monitor
        self.steps, self.eval_every, self.checkpoint_every = steps, eval_every, checkpoint_every
        self.callbacks, self.verbose = list(callbacks), verbose
        self.start = self.step = start
        self.history: list[dict[str, float]] = []
        self.diverged_at: int | None = None
        self.divergence: str | None = None  # what became non-finite (divergence.cause)
        self.last_finite: WeightSnapshot | None = None
        self.train_seconds, self.timed_steps = 0.0, 0
        self._schedule = SplitSchedule(data.evals, monitor, maximize, every_time=test_curves)
        with scope() if scope is not None else contextlib.nullcontext():
            self.optimizer = fresh_optimizer(compile_args["optimizer"], offset=start)
            model.compile(**{**compile_args, "optimizer": self.optimizer})
            self.optimizer.build(model.trainable_variables)

    # Checkpoints ----------------------------------------------------------
    def state(self) -> BranchState:
        """A checkpoint of the branch at the current step."""
        return BranchState.capture(self.model, self.optimizer, self.step, self.history)

    def restore(self, state: BranchState) -> None:
        """Continues from a checkpoint taken by `state()`."""
        state.restore(self.model, self.optimizer)
        self.step, self.history = state.step, [dict(h) for h in state.history]
        self._schedule.restart(self.history, self.model, self.step)

    def reseed(self, seed: int) -> None:
        """Trains on the data order of `seed` from now on.

        Raises:
            ValueError: for training data that brings its own order (a
                `tf.data.Dataset`, `PyDataset` or generator).
        """
        train = self.data.train
        if train.kind not in ("arrays", "dataloader"):
            raise ValueError(
                "Training copies with different data orders needs training data whose order "
                "the search sets: NumPy arrays or a torch DataLoader. A tf.data.Dataset, "
                "PyDataset or generator brings its own order. Received: training data of "
                f"kind {train.kind!r}"
            )
        self.data = dataclasses.replace(self.data, train=dataclasses.replace(train, seed=seed))

    def evaluate(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """The model's metrics on every evaluation split (or on those
        named), as it is now."""
        return self.data.evaluate(self.model, names)

    def count_from(self, step: int) -> None:
        """Early stopping considers the evaluations from `step` on only
        (a branch whose masks change while it trains)."""
        self._schedule.from_step = step

    @property
    def steps_per_second(self) -> float:
        """Training throughput, leaving out the first interval (compilation)."""
        return self.timed_steps / self.train_seconds if self.train_seconds else float("nan")

    # Training -------------------------------------------------------------
    def run(self, on_eval=None, on_checkpoint=None, at_step=None, on_progress=None):
        """Trains to `steps`, evaluating every `eval_every` steps.

        Args:
            on_eval: called with each evaluation record.
            on_checkpoint: called with a `BranchState` about every
                `checkpoint_every` steps (at evaluations).
            at_step: step -> callables run when training reaches that
                step; one that returns True stops training there.
            on_progress: unused (`model.fit` draws its own progress bar).

        Returns:
            The evaluation history: one record per evaluation with `step`,
            `train_<metric>` (running means over the interval) and
            `<split>_<metric>` of every evaluation split.

        Raises:
            MonitorError: if the first evaluation lacks `monitor`.
            BranchFailedError: if Keras fails to train or evaluate (data
                that does not fit the model...), naming round and branch.
        """
        try:
            if not self.history:
                record = self._record({})
                if on_eval is not None:
                    on_eval(record)
            if self.step >= self.steps or self.diverged_at is not None:
                self._schedule.complete(self.history, self.model, self.evaluate, on_eval)
                return self.history
            every = self.eval_every
            engine = _EngineCallback(self, on_eval, on_checkpoint, at_step or {})
            self.model.fit(
                self.data.train.stream(self.step),
                steps_per_epoch=every,
                epochs=math.ceil((self.steps - self.start) / every),
                initial_epoch=(self.step - self.start) // every,
                callbacks=[engine, *self.callbacks],
                shuffle=False,  # the stream is already in the search's (seeded) order
                verbose=1 if self.verbose == 1 and sys.stdout.isatty() else 0,
            )
            self._schedule.complete(self.history, self.model, self.evaluate, on_eval)
        except MonitorError:
            raise
        except Exception as error:  # noqa: BLE001 - Keras raises many types
            message = " ".join(str(error).split()) or type(error).__name__
            summary = error_summary(str(error))
            first = f"{self.label} failed at step {self.step}: "
            if summary == message:
                raise BranchFailedError(f"{first}{type(error).__name__}: {message}") from error
            raise BranchFailedError(
                f"{first}{summary}\n{type(error).__name__}: {message}") from error
        return self.history

    def _record(self, train_logs: dict[str, Any]) -> dict[str, float]:
        record: dict[str, float] = {"step": self.step}
        record.update({f"train_{k}": _float(v) for k, v in train_logs.items()})
        evaluated = self.evaluate(self._schedule.each)
        if not self.history and self.monitor not in evaluated:  # name every key in the error
            evaluated.update(self.evaluate(self._schedule.lacking(evaluated)))
        if not train_logs:  # before training: the training keys, not yet measured
            names = {k.partition("_")[2] for k in evaluated} or {"loss"}
            record.update({f"train_{name}": float("nan") for name in sorted(names)})
        record.update(evaluated)
        if not self.history and self.monitor not in record:
            raise MonitorError(
                f"monitor={self.monitor!r} is not a key that evaluation produces. "
                f"Available: {sorted(k for k in record if k != 'step')}"
                + ("" if "val" in self.data.evals else
                   " (pass validation_data to get val_* keys)")
            )
        self.history.append(record)
        divergence.track(self, record, [k for k in ("train_loss", "val_loss", "test_loss")
                                        if k != "train_loss" or train_logs])
        self._schedule.track(record, self.model, self.step, self.last_finite)
        return record


def error_summary(message: str) -> str:
    """What went wrong, out of a TensorFlow graph error: its own message
    line(s), without the "Graph execution error" header, the "Detected at
    node" trace and the `[[{{node ...}}]]` tail; other messages whole, on
    one line.

    Args:
        message: `str(error)`.

    Returns:
        One line.

    Example:
    >>> error_summary("Graph execution error:\n\nDetected at node x defined at:\n"
    ...               "  File a.py\nlabel 12 is out of range\n\t [[{{node x}}]]")
    'label 12 is out of range'
    """
    if not message.startswith("Graph execution error"):
        return " ".join(message.split())
    kept = [line.strip() for line in message.splitlines()
            if line.strip() and not line[:1].isspace()
            and not line.startswith(("Graph execution error", "Detected at node", "[["))]
    text = " ".join(kept).split("[[", 1)[0].strip()
    return " ".join(text.split()) or " ".join(message.split())


def _float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(()))


class _EngineCallback(keras.callbacks.Callback):
    """Counts steps, runs the engine's hooks, evaluates at each epoch end.

    It comes first in the callback list, so the user's callbacks see the
    `val_*` and `test_*` values it adds to the epoch logs.
    """

    def __init__(self, trainer: FitTrainer, on_eval, on_checkpoint, at_step):
        super().__init__()
        self.trainer, self.on_eval, self.on_checkpoint, self.at_step = (
            trainer, on_eval, on_checkpoint, at_step)
        self.last_checkpoint = trainer.step // max(1, trainer.checkpoint_every or trainer.steps)
        self.began, self.began_step, self.first = 0.0, trainer.step, True

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.began_step = time.perf_counter(), self.trainer.step

    def on_train_batch_end(self, batch, logs=None):
        trainer = self.trainer
        trainer.step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not is_finite(_float(loss)) and trainer.diverged_at is None:
            trainer.diverged_at = trainer.step
            trainer.divergence = divergence.loss_cause(_float(loss))
            self.model.stop_training = True
        halt = any([hook() for hook in self.at_step.get(trainer.step, ())])
        if halt or trainer.step >= trainer.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        if not self.first:  # the first interval includes compiling the step
            trainer.train_seconds += time.perf_counter() - self.began
            trainer.timed_steps += trainer.step - self.began_step
        self.first = False
        logs = logs if logs is not None else {}
        record = trainer._record(dict(logs))
        logs.update({k: v for k, v in record.items() if k != "step" and not k.startswith("train_")})
        if self.on_eval is not None:
            self.on_eval(record)
        if trainer.diverged_at is not None:
            self.model.stop_training = True
            return
        every = trainer.checkpoint_every
        if every and self.on_checkpoint is not None and trainer.step < trainer.steps:
            if trainer.step // every > self.last_checkpoint:
                self.last_checkpoint = trainer.step // every
                trainer._schedule.complete_best(trainer.model, trainer.evaluate, self.on_eval)
                self.on_checkpoint(trainer.state())
