"""Training one branch of a search on a model of your own: `model.fit`.

The branch trains with the model's own compiled loss and metrics and a
fresh optimizer built from the compiled one's config, through `model.fit`,
so the user's callbacks (TensorBoard, CSVLogger, their own) run in every
branch. One fit "epoch" is one evaluation interval: at its end the
validation and test splits are evaluated with `model.evaluate` and their
`val_*` / `test_*` values are added to the epoch logs the user's callbacks
receive. A branch that starts at step k (late rewinding) continues a
learning-rate schedule from k.

Steps run in compiled calls of several steps (Keras's
`steps_per_execution`, on TensorFlow and JAX), one evaluation interval per
call, unless something must see every step (the engine's per-step hooks: late rewinding's θk,
Early-Bird draws, pruners acting during training; a callback of yours
with batch hooks) or a `tf.distribute` strategy trains. The training is the same step for step; what the long
calls cost is the resolution of divergence, which is then seen at the end
of the call in which the loss became NaN (`diverged_at`), not at its step.
A model compiled with its own `steps_per_execution` trains with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery.runner.errors import BranchFailedError, MonitorError
from keras_lottery.runner.inputs import SearchData
from keras_lottery.runner.trainer import Trainer


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


class FitTrainer(Trainer):
    """Trains one branch of a user's model with `model.fit`.

    State, evaluation records, divergence and throughput are the
    `Trainer` base's; this class adds how it trains: one `model.fit`
    epoch per evaluation interval.

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
        compiled: a dict the trainers of one run share (one model, one set
            of compile arguments; they train one after another). Each
            branch still starts from a fresh optimizer, but the run keeps
            one per learning-rate offset and resets its variables to their
            values as built, so the model is not compiled again and its
            traced (JAX: compiled) training and evaluation functions are
            reused instead of traced once per branch.

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
                 test_curves: bool = False, compiled: dict | None = None):
        super().__init__(model, tuple(data.evals), steps, eval_every, start=start,
                         checkpoint_every=checkpoint_every, monitor=monitor,
                         maximize=maximize, test_curves=test_curves)
        self.data, self.label = data, label
        self.callbacks, self.verbose = list(callbacks), verbose
        self.compiled_per_call = int(compile_args.get("steps_per_execution") or 1)
        self.distributed = scope is not None
        self._compiled = {} if compiled is None else compiled
        with scope() if scope is not None else contextlib.nullcontext():
            self.optimizer = self._fresh_optimizer(compile_args["optimizer"], start)
            if model.optimizer is not self.optimizer:
                model.compile(**{**compile_args, "optimizer": self.optimizer})
                self._compiled["train functions"] = {}  # traced for the previous compile

    def _fresh_optimizer(self, template: keras.optimizers.Optimizer,
                         start: int) -> keras.optimizers.Optimizer:
        """The run's optimizer for branches starting at `start`, its
        variables as built (the first time, a new one like `template`,
        the compiled optimizer)."""
        kept = self._compiled.get(("optimizer", start))
        if kept is not None and len(kept[0].variables) == len(kept[1]):
            optimizer, initial = kept
            for variable, value in zip(optimizer.variables, initial):
                variable.assign(value)
            return optimizer
        optimizer = fresh_optimizer(template, offset=start)
        optimizer.build(self.model.trainable_variables)
        initial = [keras.ops.convert_to_numpy(v) for v in optimizer.variables]
        self._compiled[("optimizer", start)] = (optimizer, initial)
        return optimizer

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
        named), as it is now; with the model's own `steps_per_execution`,
        by which Keras's evaluation iterates (the count training runs with
        would skip batches)."""
        saved = self.model.steps_per_execution
        self.model.steps_per_execution = self.compiled_per_call
        try:
            return self.data.evaluate(self.model, names)
        finally:
            self.model.steps_per_execution = saved

    def steps_per_call(self, at_step: Mapping[int, Any]) -> int:
        """The steps each compiled training call runs (`steps_per_execution`).

        Args:
            at_step: the engine's per-step hooks, by step.

        Returns:
            The model's own `steps_per_execution` if it was compiled with one
            above 1; else 1 where a hook or a callback's batch hooks must
            see every step, on PyTorch (whose Keras trainer runs one step
            per call) and under a `tf.distribute` strategy (where Keras
            3.15's multi-step loop fails on the search's input stream);
            else as many as evaluation intervals and the branch's length
            allow (an interval's).

        Raises:
            ValueError: for a model's own `steps_per_execution` that does
                not divide the evaluation interval and the hooks' steps.
        """
        span, own = self.steps - self.start, self.compiled_per_call
        if own > 1:
            off = sorted(k for k in at_step if (k - self.start) % own)
            if self.eval_every % own or span % own or off:
                raise ValueError(
                    f"The model was compiled with steps_per_execution={own}, so training sees "
                    f"every {own}th step only; it must divide eval_every={self.eval_every}, the "
                    f"branch's {span} steps and the steps the run acts at "
                    f"({off or 'none'}: rewind step, Early-Bird draws, pruner updates). "
                    "Compile it with a divisor of them, or without steps_per_execution.")
            return own
        if (at_step or keras.backend.backend() == "torch" or self.distributed
                or any(_has_batch_hooks(c) for c in self.callbacks)):
            return 1
        return math.gcd(self.eval_every, span)

    def _train(self, on_eval, on_checkpoint, at_step, on_progress) -> None:
        """One `model.fit` call, `steps_per_call` steps per compiled call;
        `on_progress` is unused (`model.fit` draws its own progress bar)."""
        every = self.eval_every
        with self._training_calls(self.steps_per_call(at_step)):
            self.model.fit(
                self.data.train.stream(self.step),
                steps_per_epoch=every,
                epochs=math.ceil((self.steps - self.start) / every),
                initial_epoch=(self.step - self.start) // every,
                callbacks=[_EngineCallback(self, on_eval, on_checkpoint, at_step),
                           *self.callbacks],
                shuffle=False,  # the stream is already in the search's (seeded) order
                verbose=1 if self.verbose == 1 and sys.stdout.isatty() else 0,
            )

    @contextlib.contextmanager
    def _training_calls(self, count: int) -> Iterator[None]:
        """The model trains `count` steps per call in the block, and as
        compiled after it. Keras builds its training function for the count
        it first sees, so the block swaps in the one of `count` (kept for
        the run's later branches until the model is compiled again) and
        puts the model's own back after."""
        saved = self.model.steps_per_execution, self.model.train_function
        if count == saved[0]:
            yield
            return
        functions = self._compiled.setdefault("train functions", {})
        self.model.steps_per_execution, self.model.train_function = count, functions.get(count)
        try:
            yield
        finally:
            functions[count] = self.model.train_function
            self.model.steps_per_execution, self.model.train_function = saved

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Keras failing to train or evaluate (data that does not fit the
        model...) becomes a `BranchFailedError` naming round and branch."""
        try:
            yield
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


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _has_batch_hooks(callback: keras.callbacks.Callback) -> bool:
    """Whether a callback defines batch hooks of its own (to be called at
    every step, which long compiled calls would not do)."""
    return any(getattr(type(callback), name, None) is not getattr(keras.callbacks.Callback, name)
               for name in _BATCH_HOOKS)


class _EngineCallback(keras.callbacks.Callback):
    """Counts steps, runs the engine's hooks, evaluates at each epoch end.

    It comes first in the callback list, so the user's callbacks see the
    `val_*` and `test_*` values it adds to the epoch logs.
    """

    def __init__(self, trainer: FitTrainer, on_eval, on_checkpoint, at_step):
        super().__init__()
        self.trainer, self.on_eval, self.on_checkpoint, self.at_step = (
            trainer, on_eval, on_checkpoint, at_step)
        self.began, self.began_step = 0.0, trainer.step

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.began_step = time.perf_counter(), self.trainer.step

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the epoch's index of the call's last step: a call of
        # `steps_per_execution` steps ends once.
        trainer = self.trainer
        loss = (logs or {}).get("loss")
        done = batch + 1 - (trainer.step - self.began_step)
        diverged = trainer.advance(done, None if loss is None else _float(loss))
        halt = any([hook() for hook in self.at_step.get(trainer.step, ())])
        if diverged or halt or trainer.step >= trainer.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        trainer.measure(trainer.step - self.began_step, time.perf_counter() - self.began)
        logs = logs if logs is not None else {}
        record = trainer.end_interval({k: _float(v) for k, v in logs.items()}, self.on_eval)
        logs.update({k: v for k, v in record.items() if k != "step" and not k.startswith("train_")})
        if trainer.diverged_at is not None:
            self.model.stop_training = True
        trainer.checkpoint(self.on_checkpoint, self.on_eval)
