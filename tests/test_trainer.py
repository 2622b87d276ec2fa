"""The trainer base (`runner.trainer`): state, records, divergence, throughput.

A scripted trainer stands in for the two real ones: its training loss and
its evaluation losses at each step are given, so the rules are checked
exactly. It needs Keras only (no TensorFlow): the base runs on any backend.
"""

import json
import math

import keras
import numpy as np
import pytest

from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.errors import MonitorError
from keras_lottery.runner.trainer import Trainer

NAN, INF = float("nan"), float("inf")


class Scripted(Trainer):
    """One weight moves by 1 every step; losses come from the script.

    Args:
        train_losses: step -> that step's training loss (default 1.0).
        eval_losses: (split, step) -> that split's loss (default 0.5).
        nan_weights_at: the step after which the weight is NaN.
    """

    def __init__(self, steps=8, eval_every=2, train_losses=None, eval_losses=None,
                 nan_weights_at=None, splits=("val", "test"), **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        super().__init__(model, splits, steps, eval_every, **kwargs)
        self.optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        self.optimizer.build(model.trainable_variables)
        self.train_losses, self.eval_losses = train_losses or {}, eval_losses or {}
        self.nan_weights_at = nan_weights_at

    def evaluate(self, names=None):
        return {f"{split}_{metric}": self.eval_losses.get((split, self.step), 0.5)
                if metric == "loss" else 0.75
                for split in self._schedule.splits if names is None or split in names
                for metric in ("loss", "accuracy")}

    def reseed(self, seed):
        raise NotImplementedError

    def _train(self, on_eval, on_checkpoint, at_step, on_progress):
        losses = []
        while self.step < self.steps:
            kernel, bias = self.model.layers[0].kernel, self.model.layers[0].bias
            self.optimizer.apply([keras.ops.ones(kernel.shape)], [kernel])
            broken = self.step + 1 == self.nan_weights_at
            bias.assign(keras.ops.full((1,), NAN) if broken else keras.ops.add(bias, 1.0))
            losses.append(self.train_losses.get(self.step + 1, 1.0))
            diverged = self.advance(1, float(np.mean(losses)))
            if diverged or self.step % self.eval_every == 0 or self.step == self.steps:
                self.end_interval({"loss": float(np.mean(losses)), "accuracy": 0.5}, on_eval)
                losses = []
                if self.diverged_at is not None:
                    return
                self.checkpoint(on_checkpoint, on_eval)


def _bias(trainer):
    return float(keras.ops.convert_to_numpy(trainer.model.layers[0].bias)[0])


def _snapshot_bias(snapshot):
    (value,) = [v for p, v in zip(snapshot.paths, snapshot.values) if p.endswith("bias")]
    return float(value[0])


# State -----------------------------------------------------------------------
def test_a_restored_checkpoint_continues_as_if_never_interrupted(tmp_path):
    whole = Scripted(checkpoint_every=4)
    states = []
    whole.run(on_checkpoint=states.append)
    assert [s.step for s in states] == [4]  # not at the end (8)
    states[0].save(tmp_path / "checkpoint.npz")

    resumed = Scripted(checkpoint_every=4)
    resumed.restore(BranchState.load(tmp_path / "checkpoint.npz"))
    assert resumed.step == 4 and _bias(resumed) == 4.0
    assert resumed.last_finite.step == 4 and _snapshot_bias(resumed.last_finite) == 4.0
    assert all(np.array_equal(keras.ops.convert_to_numpy(v), saved) for v, saved in
               zip(resumed.optimizer.variables, states[0].optimizer_values))
    history = resumed.run()
    assert json.dumps(history) == json.dumps(whole.history) and _bias(resumed) == 8.0
    assert np.array_equal(*(keras.ops.convert_to_numpy(t.model.layers[0].kernel)
                            for t in (whole, resumed)))  # the optimizer's momentum too
    assert [h["step"] for h in history] == [0, 2, 4, 6, 8]


def test_restore_copies_the_history():
    state = Scripted(steps=2).state()
    state.history.append({"step": 0})
    trainer = Scripted(steps=2)
    trainer.restore(state)
    trainer.history[0]["step"] = 99
    assert state.history == [{"step": 0}]


# Divergence --------------------------------------------------------------------
def test_the_first_non_finite_training_step_is_kept_and_training_stops_there():
    trainer = Scripted(steps=8, eval_every=4, train_losses={3: NAN, 4: INF})
    history = trainer.run()
    assert trainer.diverged_at == 3 and trainer.step == 3
    assert trainer.divergence == "the training loss became NaN or infinite (loss=nan)"
    assert [h["step"] for h in history] == [0, 3]  # the record at the diverged step
    assert trainer.last_finite.step == 0  # the last evaluation before it
    assert trainer.advance(1, INF) and trainer.diverged_at == 3  # kept
    assert trainer.divergence.endswith("(loss=nan)")


def test_once_diverged_later_records_leave_the_step_and_cause_alone():
    trainer = Scripted(steps=8, eval_every=2, eval_losses={("val", 4): NAN, ("val", 6): INF})
    trainer.run()
    assert trainer.diverged_at == 4 and "val_loss=nan" in trainer.divergence
    trainer.end_interval({"loss": INF})
    assert trainer.diverged_at == 4 and "val_loss=nan" in trainer.divergence
    assert trainer.last_finite.step == 2


@pytest.mark.parametrize("monitor, test_curves, expected", [
    ("val_loss", True, None),  # the test split never steers training...
    ("val_loss", False, None),  # ...whether or not it is evaluated every time
    ("test_loss", False, 4),  # unless early stopping follows it
])
def test_the_test_loss_counts_only_when_it_is_monitored(monitor, test_curves, expected):
    trainer = Scripted(eval_losses={("test", 4): NAN}, monitor=monitor, test_curves=test_curves)
    trainer.run()
    assert trainer.diverged_at == expected
    assert trainer.step == (8 if expected is None else 4)


def test_the_monitored_split_counts_for_any_monitored_metric():
    trainer = Scripted(eval_losses={("val", 2): INF}, monitor="val_accuracy", maximize=True)
    trainer.run()
    assert trainer.diverged_at == 2 and "val_loss=inf" in trainer.divergence


def test_non_finite_weights_count_though_every_loss_is_finite():
    trainer = Scripted(nan_weights_at=5)
    trainer.run()
    assert trainer.diverged_at == 6 and "weights became NaN" in trainer.divergence
    assert trainer.last_finite.step == 4 and _snapshot_bias(trainer.last_finite) == 4.0


def test_the_record_before_training_is_not_a_divergence():
    trainer = Scripted(steps=2)
    trainer.run()
    first = trainer.history[0]
    assert math.isnan(first["train_loss"]) and trainer.diverged_at is None


# Records ---------------------------------------------------------------------
def test_the_first_record_names_the_training_metrics_in_evaluation_order():
    trainer = Scripted(steps=2, splits=("val", "train_eval"), test_curves=True)
    trainer.run()
    assert list(trainer.history[0]) == ["step", "train_loss", "train_accuracy", "val_loss",
                                        "val_accuracy", "train_eval_loss",
                                        "train_eval_accuracy"]
    assert math.isnan(trainer.history[0]["train_accuracy"])


def test_a_monitor_no_record_has_is_named_with_every_key():
    with pytest.raises(MonitorError, match=r"monitor='val_auc'.*'test_loss'.*'val_loss'"):
        Scripted(monitor="val_auc").run()


def test_checkpoints_come_when_due_never_at_the_end_nor_after_divergence():
    states = []
    Scripted(steps=12, checkpoint_every=3).run(on_checkpoint=states.append)
    assert [s.step for s in states] == [4, 6, 10]  # the evaluations past each multiple
    states = []
    Scripted(steps=12, checkpoint_every=2, train_losses={7: NAN}).run(
        on_checkpoint=states.append)
    assert [s.step for s in states] == [2, 4, 6]


# Throughput ------------------------------------------------------------------
def test_throughput_leaves_out_the_first_interval():
    trainer = Scripted()
    trainer.measure(10, 100.0)  # tracing and compiling
    assert math.isnan(trainer.steps_per_second)
    trainer.measure(20, 1.0)
    trainer.measure(30, 4.0)
    assert trainer.steps_per_second == 10.0 and trainer.timed_steps == 50
