"""The search's trainer (`runner.fit_trainer`): one `model.fit` per branch.

The rules it shares with `LoopTrainer` are tested on the base
(tests/test_trainer.py); here, that `model.fit` applies them: training
stops at the first non-finite batch, the user's callbacks see the same
keys every epoch, a checkpoint continues exactly, a fresh optimizer
continues a learning-rate schedule.
"""

import json

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.runner.fit_trainer import FitTrainer, fresh_optimizer
from keras_lottery.runner.inputs import SearchData

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 4)).astype("float32")
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]


def _model(rate=0.01, hidden=True):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(8, activation="relu")] if hidden else []
    model = keras.Sequential([keras.Input((4,)), *layers, keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(rate, momentum=0.9), "mse")
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
