"""Training one branch of a preset run: a custom `tf.distribute` loop.

One loop serves every strategy (default, Mirrored, MultiWorkerMirrored):
each step runs the model on the replica's share of the global batch under
`strategy.run`, averages the loss over the *global* batch, and lets the
Keras optimizer all-reduce the gradients. (`model.fit` is not used because
it fails under MultiWorkerMirroredStrategy in Keras 3.15.) Evaluation runs
locally on every worker over the full splits, so all workers see the same
numbers without communicating.

The presets' recipe lives here: softmax cross-entropy on integer labels,
argmax accuracy, the paper's optimizers and learning-rate schedules. A
model of your own trains through `FitTrainer` instead, with its own
compiled loss and metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

import keras
import numpy as np

from keras_lottery.compat import import_tensorflow
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.distribute import peer_failures_reported
from keras_lottery.runner.inputs import host_tensor
from keras_lottery.runner.presets import pipeline
from keras_lottery.runner.trainer import Trainer

tf = import_tensorflow("The presets' driver (find_ticket, keras-lottery run --preset)")


class _NoRetracingWarning(logging.Filter):
    """Every branch compiles a fresh step function (fresh optimizer) on
    purpose; TensorFlow's warning about repeated tracing is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_QUIET_RETRACING = _NoRetracingWarning()
# Examples per evaluation batch unless `eval_batch_size` says (the sums depend on it, in the
# last bits).
_EVAL_BATCH = 1000


@keras.saving.register_keras_serializable(package="keras_lottery")
class LotterySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then step decay at milestones, optionally offset.

    Args:
        learning_rate: peak rate.
        warmup_steps: steps of linear warmup from 0 (0 = none).
        milestones: steps at which the rate is multiplied by `gamma`.
        gamma: decay factor.
        offset: added to the optimizer's step, so a branch that starts at
            step k (late rewinding) continues the schedule from k.

    Example:
    >>> schedule = LotterySchedule(0.1, warmup_steps=100, milestones=(1000,))
    >>> float(schedule(50)), float(schedule(2000))
    (0.051, 0.01)
    """

    def __init__(self, learning_rate: float, warmup_steps: int = 0,
                 milestones: tuple[int, ...] = (), gamma: float = 0.1, offset: int = 0):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.offset = int(offset)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + self.offset
        rate = tf.constant(self.learning_rate, tf.float32)
        for milestone in self.milestones:
            rate = tf.where(step >= milestone, rate * self.gamma, rate)
        if self.warmup_steps:
            rate *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "offset": self.offset,
        }


def make_optimizer(config: LotteryConfig, offset: int = 0) -> keras.optimizers.Optimizer:
    """A fresh optimizer for one branch, as the config describes."""
    schedule = LotterySchedule(
        config.learning_rate, config.warmup_steps, config.lr_milestones,
        config.lr_gamma, offset,
    )
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=decay)
    return keras.optimizers.Adam(schedule, weight_decay=decay)


@dataclasses.dataclass
class Splits:
    """Training and evaluation data of a run, as arrays.

    Attributes:
        x_train, y_train: the training split (uint8 images, labels).
        evals: split name -> (images, labels) evaluated every `eval_every`.
        stats: per-channel (mean, std) of the training images.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    evals: dict[str, tuple[np.ndarray, np.ndarray]]
    stats: tuple[np.ndarray, np.ndarray]
    _standardized: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _train: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    def train_tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The training images (uint8) and int64 labels as tensors, made
        once per run and shared by every branch's training stream; the
        images share the array's memory (`inputs.host_tensor`)."""
        if self._train is None:
            self._train = (host_tensor(self.x_train), tf.constant(self.y_train.astype("int64")))
        return self._train

    def standardized(self, name: str) -> tuple[tf.Tensor, tf.Tensor]:
        """The evaluation split `name` as one tensor of its uint8 images
        and one of int64 labels, made once per run (on first use), shared
        by every branch's trainer. The evaluation function standardizes
        each batch (`LoopTrainer._eval_split`): a float32 copy of the
        splits would hold four times their size."""
        if name not in self._standardized:
            x, y = self.evals[name]
            self._standardized[name] = (host_tensor(x), tf.constant(y.astype("int64")))
        return self._standardized[name]

    def stat_tensors(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """255, mean and std as tensors: passed to the evaluation function
        as arguments, not captured as constants, so that graph optimization
        cannot turn its division into a multiplication by the reciprocal;
        the images it standardizes are bit for bit the training pipeline's."""
        mean, std = self.stats  # float32 as the pipeline's graph converts them
        return (tf.constant(255.0), tf.constant(mean, tf.float32), tf.constant(std, tf.float32))

    @classmethod
    def from_dataset(cls, data, train_eval_examples: int) -> Splits:
        """Splits from a `keras_lottery.runner.presets.data.Dataset`; the train-eval subset
        is the first `train_eval_examples` training examples."""
        evals = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
        if train_eval_examples:
            n = min(train_eval_examples, len(data.x_train))
            evals["train_eval"] = (data.x_train[:n], data.y_train[:n])
        return cls(data.x_train, data.y_train, evals, pipeline.normalizer(data.x_train))


class LoopTrainer(Trainer):
    """Trains a model from step `start` to `end` with evaluation and hooks.

    State, evaluation records, divergence and throughput are the
    `Trainer` base's; this class adds how it trains: the traced step loop,
    run in chunks between evaluations and hooks.

    Args:
        model: the (masked) model, built under `strategy.scope()`.
        config: the run's config.
        strategy: a `tf.distribute.Strategy`.
        splits: the run's data.
        start: the global step the branch starts at (the learning-rate
            schedule continues from there).
        compiled: a dict the trainers of one run share (one model, one
            config): each branch still gets a fresh optimizer, but one
            whose variables are reset to their initial values, so that its
            traced step function (and the evaluation function) is reused
            instead of traced again, once per learning-rate offset.

    Example:
    >>> trainer = LoopTrainer(model, config, strategy, splits, start=0)
    >>> history = trainer.run(on_eval=print)
    """

    def __init__(self, model: keras.Model, config: LotteryConfig,
                 strategy: tf.distribute.Strategy, splits: Splits, start: int = 0,
                 compiled: dict | None = None):
        super().__init__(model, tuple(splits.evals), config.steps, config.eval_every,
                         start=start, checkpoint_every=config.checkpoint_every,
                         monitor=config.monitor, maximize=config.maximize,
                         test_curves=config.test_curves)
        self.config, self.strategy, self.splits = config, strategy, splits
        if _QUIET_RETRACING not in tf.get_logger().filters:
            tf.get_logger().addFilter(_QUIET_RETRACING)
        self._loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
        compiled = {} if compiled is None else compiled
        if start in compiled:  # a fresh optimizer: its state as built
            self.optimizer, self._train_fn, initial = compiled[start]
            for variable, value in zip(self.optimizer.variables, initial):
                variable.assign(value)
        else:
            with strategy.scope():
                self.optimizer = make_optimizer(config, offset=start)
                self.optimizer.build(model.trainable_variables)
            initial = [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables]
            self._train_fn = self._make_train_fn()
            compiled[start] = (self.optimizer, self._train_fn, initial)
        self._eval_fn = compiled.setdefault("eval", tf.function(self._eval_split))

    def _make_train_fn(self) -> Callable:
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        global_batch = self.config.batch_size

        def step_fn(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                per_example = self._loss(labels, logits)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
            return tf.reduce_sum(per_example), tf.reduce_sum(correct)

        @tf.function
        def train_fn(iterator, steps):
            """Up to `steps` steps; stops after the first whose loss makes
            the chunk's sum non-finite (`runner.divergence`). Returns the
            summed loss and hits and the number of steps done."""
            loss_sum, correct, done = tf.constant(0.0), tf.constant(0.0), tf.constant(0)
            for _ in tf.range(steps):
                loss, hits = strategy.run(step_fn, args=next(iterator))
                loss_sum += strategy.reduce("SUM", loss, axis=None)
                correct += strategy.reduce("SUM", hits, axis=None)
                done += 1
                if not tf.math.is_finite(loss_sum):
                    break
            return loss_sum, correct, done

        return train_fn

    def _eval_split(self, images, labels, scale, mean, std):
        """Summed loss and hits over a split of uint8 images, in batches of
        `eval_batch_size` (unset: `_EVAL_BATCH`), in one call: each batch
        standardized as the training pipeline does (`pipeline._standardize`,
        with `scale` = 255, `mean` and `std` as arguments: the same float32
        values), the sums added up in float64 batch by batch, as they would
        on the host."""
        size = self.config.eval_batch_size or _EVAL_BATCH
        loss, hits = tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)
        for start in tf.range(0, tf.shape(labels)[0], size):
            batch_labels = labels[start:start + size]
            batch = (tf.cast(images[start:start + size], tf.float32) / scale - mean) / std
            logits = self.model(batch, training=False)
            batch_loss = tf.reduce_sum(self._loss(batch_labels, logits))
            batch_hits = tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(logits, -1), batch_labels), tf.float32))
            loss += tf.cast(batch_loss, tf.float64)
            hits += tf.cast(batch_hits, tf.float64)
        return loss, hits

    def evaluate(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Loss and accuracy on every evaluation split (or on those named)."""
        results = {}
        for name in self.splits.evals:
            if names is None or name in names:
                results.update(self._evaluate_split(name))
        return results

    def _evaluate_split(self, name: str) -> dict[str, float]:
        images, labels = self.splits.standardized(name)
        loss, hits = self._eval_fn(images, labels, *self.splits.stat_tensors())
        count = int(labels.shape[0])
        return {f"{name}_loss": float(loss) / count, f"{name}_accuracy": float(hits) / count}

    def reseed(self, seed: int) -> None:
        """Trains on the pipeline order of `seed` from now on (it is built
        from `config.seed` when `run` starts)."""
        self.config = dataclasses.replace(self.config, seed=seed)

    def _failures(self) -> contextlib.AbstractContextManager:
        """A failure on another worker is reported as such
        (`distribute.peer_failures_reported`)."""
        return peer_failures_reported(self.strategy)

    def _evaluates_at_start(self) -> bool:
        """Evaluations fall on multiples of `eval_every`, the start too."""
        return self.step % self.eval_every == 0

    def _train(self, on_eval, on_checkpoint, at_step, on_progress) -> None:
        """The step loop, in chunks that end at evaluations and hooks (and,
        with `on_progress`, more often, to refresh the progress bar: it
        gets the step and the running training loss and accuracy)."""
        config = self.config
        end, every = self.steps, self.eval_every
        stops = set(range(every * (self.step // every + 1), end, every))
        stops.update(s for s in at_step if self.step < s < end)
        stops.add(end)
        if on_progress is not None:  # finer chunks only to refresh the bar
            stops.update(range(self.step + 1, end, max(1, every // 5)))
        batches = pipeline.train_batches(
            *self.splits.train_tensors(), config.batch_size, config.seed,
            start_step=self.step, augment=config.augment, stats=self.splits.stats,
        )
        iterator = iter(self.strategy.experimental_distribute_dataset(batches))
        loss_sum, hits, seen = 0.0, 0.0, 0
        for stop in sorted(stops):
            began = time.perf_counter()
            loss, correct, done = self._train_fn(iterator, tf.constant(stop - self.step))
            done = int(done)
            self.measure(done, time.perf_counter() - began)
            loss_sum, hits = loss_sum + float(loss), hits + float(correct)
            seen += done * config.batch_size
            diverged = self.advance(done, loss_sum / seen)
            halt = self.step == stop and any([hook() for hook in at_step.get(stop, ())])
            if on_progress is not None:
                on_progress(self.step, {"loss": loss_sum / seen, "accuracy": hits / seen})
            if stop % every == 0 or stop == end or halt or diverged:
                self.end_interval({"loss": loss_sum / seen, "accuracy": hits / seen}, on_eval)
                if self.diverged_at is not None:
                    return
                loss_sum, hits, seen = 0.0, 0.0, 0
                self.checkpoint(on_checkpoint, on_eval)
            if halt:
                return
