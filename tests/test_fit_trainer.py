"""The search's trainer (`runner.fit_trainer`): one `model.fit` per branch.

The rules it shares with `LoopTrainer` are tested on the base
(tests/test_trainer.py); here, that `model.fit` applies them: training
stops at the first non-finite batch, the user's callbacks see the same
keys every epoch, a checkpoint continues exactly, a fresh optimizer
continues a learning-rate schedule, and steps run in long compiled calls
(`steps_per_execution`) where nothing must see every step.
"""

import contextlib
import json

import keras
import numpy as np
import pytest

from keras_lottery import compat
from keras_lottery.runner.fit_trainer import FitTrainer, fresh_optimizer
from keras_lottery.runner.inputs import SearchData

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 4)).astype("float32")
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]


def _model(rate=0.01, hidden=True, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(8, activation="relu")] if hidden else []
    model = keras.Sequential([keras.Input((4,)), *layers, keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(rate, momentum=0.9), "mse",
                  steps_per_execution=steps_per_execution)
    return model


def _trainer(model, steps=12, eval_every=4, test=(X[64:], Y[64:]), **kwargs):
    data = SearchData.of((X[:64], Y[:64]), (X[64:80], Y[64:80]), test, batch_size=16)
    return FitTrainer(model, compat.compile_arguments(model), data, steps=steps,
                      eval_every=eval_every, **kwargs)


class Batches(keras.callbacks.Callback):
    """Keeps the running loss of every batch and the keys of every epoch."""

    def __init__(self):
        super().__init__()
        self.losses, self.epoch_keys = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_keys.append(sorted(logs))


def test_training_stops_at_the_first_non_finite_batch():
    seen = Batches()
    trainer = _trainer(_model(rate=1e4), steps=40, eval_every=10, callbacks=[seen])
    history = trainer.run()
    first = next(i for i, loss in enumerate(seen.losses, 1) if not np.isfinite(loss))
    assert trainer.diverged_at == first == trainer.step == len(seen.losses) < 40
    assert history[-1]["step"] == first and "training loss" in trainer.divergence
    assert trainer.last_finite.step == history[-2]["step"]


def test_a_non_finite_test_loss_is_not_a_divergence():
    x_test = X[64:].copy()
    x_test[0, 0] = np.nan  # no ReLU: the test loss is NaN
    trainer = _trainer(_model(hidden=False), test=(x_test, Y[64:]), test_curves=True)
    history = trainer.run()
    assert trainer.diverged_at is None and trainer.step == 12
    assert all(np.isnan(h["test_loss"]) and np.isfinite(h["val_loss"]) for h in history)


def test_user_callbacks_see_the_same_keys_every_epoch_checkpoints_or_not():
    seen = Batches()
    _trainer(_model(), checkpoint_every=4, callbacks=[seen]).run(on_checkpoint=lambda s: None)
    assert seen.epoch_keys == [["loss", "val_loss"]] * 3  # test_* filled at checkpoints too


def test_a_restored_checkpoint_trains_on_exactly_as_without_interruption():
    model, states = _model(), []
    whole = _trainer(model, checkpoint_every=4)
    whole.run(on_checkpoint=states.append)
    assert [s.step for s in states] == [4, 8]
    trained = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    resumed = _trainer(model, checkpoint_every=4)
    resumed.restore(states[0])
    again = []
    history = resumed.run(on_checkpoint=again.append)
    assert [s.step for s in again] == [8]
    assert json.dumps(history) == json.dumps(whole.history)
    assert all(np.array_equal(keras.ops.convert_to_numpy(v), w)
               for v, w in zip(model.weights, trained))


def test_a_fresh_optimizer_continues_the_schedule_from_its_offset():
    decay = keras.optimizers.schedules.PiecewiseConstantDecay([5], [0.1, 0.01])
    optimizer = fresh_optimizer(keras.optimizers.SGD(decay, momentum=0.5), offset=10)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    assert int(optimizer.iterations) == 0 and optimizer.momentum == 0.5
    assert np.isclose(float(optimizer.learning_rate), 0.01)
    assert np.isclose(float(fresh_optimizer(optimizer).learning_rate), 0.01)  # offset kept


class EpochEnds(keras.callbacks.Callback):
    """Sees epochs only (no batch hooks): the trainer may run long calls."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(epoch)


# Keras's PyTorch trainer runs one step per call.
LONG_CALLS = keras.backend.backend() != "torch"
long_calls_only = pytest.mark.skipif(not LONG_CALLS, reason="Keras's torch trainer runs one "
                                     "step per call (the TensorFlow and JAX suites have it)")


def test_steps_run_in_calls_of_an_interval_unless_something_must_see_each_step():
    def per_call(n):
        return n if LONG_CALLS else 1

    assert _trainer(_model(), steps=12, eval_every=4).steps_per_call({}) == per_call(4)
    assert _trainer(_model(), steps=10, eval_every=4).steps_per_call({}) == per_call(2)
    assert _trainer(_model(), start=3, steps=15, eval_every=4).steps_per_call({}) == per_call(4)
    assert _trainer(_model()).steps_per_call({5: [print]}) == 1  # an engine hook at step 5
    assert _trainer(_model(), callbacks=[Batches()]).steps_per_call({}) == 1
    assert _trainer(_model(), callbacks=[EpochEnds()]).steps_per_call({}) == per_call(4)
    # under a tf.distribute strategy's scope, Keras's multi-step loop fails on the stream
    assert _trainer(_model(), scope=contextlib.nullcontext).steps_per_call({}) == 1


@long_calls_only
def test_a_models_own_steps_per_execution_is_kept_if_it_divides_the_run():
    assert _trainer(_model(steps_per_execution=2)).steps_per_call({4: [print]}) == 2
    with pytest.raises(ValueError, match=r"compiled with steps_per_execution=3.*eval_every=4"):
        _trainer(_model(steps_per_execution=3)).steps_per_call({})
    with pytest.raises(ValueError, match=r"steps the run acts at \(\[5\]"):
        _trainer(_model(steps_per_execution=2)).steps_per_call({5: [print]})


@long_calls_only
def test_long_calls_train_exactly_as_step_by_step_and_count_every_step():
    histories = []
    for callbacks, per_call in (([], 1), ([Batches()], 1), ([], 2)):
        trainer = _trainer(_model(steps_per_execution=per_call), steps=12, eval_every=4,
                           callbacks=callbacks)
        histories.append(trainer.run())
        assert trainer.step == 12 and [h["step"] for h in histories[-1]] == [0, 4, 8, 12]
    long_calls, step_by_step, own = (json.dumps(h) for h in histories)  # NaN == NaN
    assert long_calls == step_by_step == own


@long_calls_only
def test_in_long_calls_divergence_is_seen_at_the_end_of_its_call():
    exact = _trainer(_model(rate=1e4), steps=40, eval_every=10, callbacks=[Batches()])
    exact.run()
    chunked = _trainer(_model(rate=1e4), steps=40, eval_every=10)
    assert chunked.steps_per_call({}) == 10
    chunked.run()
    assert chunked.diverged_at == 10 * -(-exact.diverged_at // 10)  # the call's end
    assert "training loss" in chunked.divergence
    assert chunked.last_finite.step == exact.last_finite.step


@long_calls_only
def test_evaluation_sees_every_batch_while_training_runs_long_calls():
    # Keras's evaluation iterates by the model's steps_per_execution: the
    # training's count would have it skip batches (here, 2 of 3 on JAX).
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]
    data = SearchData.of((x[:128], y[:128]), (x[128:], y[128:]), None, batch_size=16)
    histories = []
    for callbacks in ([], [Batches()]):
        model = _model()
        trainer = FitTrainer(model, compat.compile_arguments(model), data, steps=8,
                             eval_every=4, callbacks=callbacks)
        histories.append(json.dumps(trainer.run()))
        assert model.steps_per_execution == 1  # as compiled, after the branch
    assert histories[0] == histories[1]


def test_the_trainers_of_a_run_share_one_optimizer_per_offset_and_train_as_fresh_ones():
    """Branches of one run reuse the optimizer (its variables reset as
    built) and the traced functions: a second branch from the same weights
    trains exactly as the first (a fresh optimizer); a branch at another
    offset gets its own optimizer and compiles the model again."""
    model, compiled = _model(rate=0.05), {}
    initial = [np.array(w) for w in model.get_weights()]
    histories, optimizers = [], []
    for start in (0, 0, 4, 0):
        model.set_weights(initial)
        trainer = _trainer(model, steps=12, start=start, compiled=compiled)
        optimizers.append(trainer.optimizer)
        histories.append(json.dumps(trainer.run()))
        assert int(trainer.optimizer.iterations) == 12 - start
    first, again, offset, back = histories
    assert again == first  # the reset optimizer is as good as a fresh one
    assert offset != first  # another start: another schedule and stream position
    assert back == first  # back at offset 0 after the model was compiled for offset 4
    assert optimizers[0] is optimizers[1] is optimizers[3] is not optimizers[2]
    assert model.optimizer is optimizers[3]
    if LONG_CALLS:  # the interval's training function, traced once since the last compile
        assert set(compiled["train functions"]) == {4}
