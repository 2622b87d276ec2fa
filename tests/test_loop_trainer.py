"""The presets' trainer (`runner.presets.loop_trainer`): the traced step loop.

The rules it shares with `FitTrainer` are tested on the base
(tests/test_trainer.py); here, that the traced loop applies them: it stops
at the first non-finite step inside a chunk, catches NaN weights behind a
finite loss, continues from a checkpoint exactly and evaluates in batches of
`eval_batch_size`.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_lottery as kl

tf = pytest.importorskip("tensorflow")

from keras_lottery.runner.presets import pipeline  # noqa: E402
from keras_lottery.runner.presets.loop_trainer import LoopTrainer, Splits  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "backends"))
from helpers import BatchCentered  # noqa: E402

STATS = (np.zeros(1), np.ones(1))  # no standardization


def _config(tmp_path, **kwargs):
    return kl.PresetConfig.from_preset("lenet300", dataset="fashion_mnist", logdir=str(tmp_path),
                                        **{"batch_size": 8, **kwargs})


def _model(hidden=()):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(16, activation=activation) for activation in hidden]
    return kl.prunable(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                         *layers, keras.layers.Dense(10)]))


def _images(n=64):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, size=(n, 28, 28, 1)).astype("float32"),
            rng.integers(0, 10, size=n))


def _trainer(model, config, splits, **kwargs):
    return LoopTrainer(model, config, tf.distribute.get_strategy(), splits, **kwargs)


def test_the_loop_stops_at_the_first_non_finite_step_inside_an_interval(tmp_path):
    x, y = _images()
    config = _config(tmp_path, steps=16, eval_every=8)
    coded = np.ones_like(x) * np.arange(64, dtype="float32")[:, None, None, None]
    batches = pipeline.train_batches(coded, y, 8, config.seed, stats=STATS)
    order = [np.rint(batch[:, 0, 0, 0].numpy() * 255).astype(int) for batch, _ in batches.take(8)]
    example = order[2][0]  # in the third batch: step 3, between evaluations
    x[example, 4, 4, 0] = np.nan  # no ReLU in the model: the loss is NaN at once
    clean = np.delete(x, example, 0)[:16], np.delete(y, example, 0)[:16]
    splits = Splits(x, y, {"val": clean}, STATS)
    trainer = _trainer(_model(), config, splits)
    history = trainer.run()
    assert trainer.diverged_at == 3 and trainer.step == 3
    assert trainer.divergence == "the training loss became NaN or infinite (loss=nan)"
    assert [h["step"] for h in history] == [0, 3]
    assert trainer.last_finite.step == 0
    assert all(np.isfinite(v).all() for v in trainer.last_finite.values)


def test_the_loop_trainer_catches_nan_weights_with_a_finite_loss(tmp_path):
    x, y = _images()
    x[:, 0, 0, 0] = np.nan  # every batch
    splits = Splits(x, y, {"val": (x[:16] * 0, y[:16])}, STATS)
    trainer = _trainer(_model(hidden=("relu",)), _config(tmp_path, steps=4, eval_every=2),
                       splits)
    history = trainer.run()
    assert all(np.isfinite(h["val_loss"]) for h in history)  # the loss hides it
    assert trainer.diverged_at == 2 and "weights became NaN" in trainer.divergence
    assert all(np.isfinite(v).all() for v in trainer.last_finite.values)


def test_evaluation_runs_in_batches_of_eval_batch_size(tmp_path):
    x, y = _images(16)
    splits = Splits(x, y, {"val": (x, y)}, STATS)
    keras.utils.set_random_seed(0)
    model = kl.prunable(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                          BatchCentered(), keras.layers.Dense(10)]))
    losses = {size: _trainer(model, _config(tmp_path, eval_batch_size=size), splits)
              .evaluate(("val",))["val_loss"] for size in (4, None)}
    summed = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    by_4 = sum(float(summed(y[i:i + 4], model(x[i:i + 4] / 255))) for i in range(0, 16, 4)) / 16
    assert losses[4] == pytest.approx(by_4, rel=1e-5)
    assert abs(losses[None] - by_4) > 1e-3  # unset: 1,000 per batch, the split in one


def test_a_restored_checkpoint_trains_on_exactly_as_without_interruption(tmp_path):
    x, y = _images()
    splits = Splits(x, y, {"val": (x[:16], y[:16]), "test": (x[16:32], y[16:32])}, STATS)
    config = _config(tmp_path, steps=6, eval_every=2, checkpoint_every=2)
    model, compiled, states = _model(hidden=("relu",)), {}, []
    whole = _trainer(model, config, splits, compiled=compiled)
    whole.run(on_checkpoint=states.append)
    assert [s.step for s in states] == [2, 4]
    trained = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    resumed = _trainer(model, config, splits, compiled=compiled)
    resumed.restore(states[0])
    again = []
    history = resumed.run(on_checkpoint=again.append)
    assert [s.step for s in again] == [4]
    assert json.dumps(history) == json.dumps(whole.history)
    assert all(np.array_equal(keras.ops.convert_to_numpy(v), w)
               for v, w in zip(model.weights, trained))
    assert resumed.timed_steps == 2 and resumed.steps_per_second > 0  # the first chunk untimed
