"""keras_lottery.runner.engine: the rounds, what each prunes from and rewinds
to, the pruner's requests, resuming and divergence (backend independent).

The branches train with `StubTrainer`, which "trains" by scaling each
weight by a random factor per step: no data and no optimizer, so a run of
several rounds takes a fraction of a second, and the weights still move in
a way that changes their magnitude order, differently in each branch."""

import math
import os
import warnings

import numpy as np
import pytest

import keras_lottery as kl
from conftest import mlp
from keras_lottery.runner import engine as engine_lib
from keras_lottery.runner.branches import branch_seed
from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.engine import Engine, LotteryResult
from keras_lottery.runner.errors import DivergedError
from keras_lottery.runner.rundir import RunDir


class StubTrainer:
    """A `Trainer` that scales every weight by a random factor each step,
    drawn from (`seed`, step): each branch moves its weights its own way."""

    def __init__(self, model, start, steps, eval_every, seed, diverge_at=None):
        self.model, self.step, self.steps, self.eval_every = model, start, steps, eval_every
        self.data_seed = seed
        self.diverge_at = diverge_at
        self.diverged_at = self.divergence = self.last_finite = None
        self.steps_per_second = 1.0
        self.start_kernels = {s.key: np.array(s.kernel) for s in kl.mask_slots(model)}

    def _record(self):
        return {"step": self.step, "val_loss": 1.0 / (1 + self.step), "val_accuracy": self.step / 100}

    def run(self, on_eval, on_checkpoint, at_step, on_progress):
        history = [self._record()]
        while self.step < self.steps:
            self.step += 1
            rng = np.random.default_rng([self.data_seed, self.step])
            for weight in self.model.trainable_weights:
                factor = 1 + 0.5 * rng.standard_normal(tuple(weight.shape)).astype("float32")
                weight.assign(np.asarray(weight) * factor)
            stop = any([hook() for hook in at_step.get(self.step, [])])
            if self.step == self.diverge_at:
                self.diverged_at, self.divergence = self.step, "the loss became NaN or infinite"
                stop = True
            if stop or self.step % self.eval_every == 0 or self.step == self.steps:
                history.append(self._record())
                if on_eval is not None:
                    on_eval(history[-1])
            if stop:
                break
        return history

    def state(self):
        return BranchState(self.step, [], [], [])

    def restore(self, state):
        self.step = state.step

    def evaluate(self):
        return self._record()

    def reseed(self, seed):
        self.data_seed = seed

    def count_from(self, step):
        pass


class Run:
    """An engine over a run directory, recording every trainer it makes."""

    def __init__(self, tmp_path, diverge=None, **values):
        settings = dict(model="tests:mlp", data="python:data", steps=20, eval_every=10,
                        rounds=2, logdir=str(tmp_path), name="run", verbose=0)
        self.config = kl.LotteryConfig(**{**settings, **values})
        self.trainers, self.labels, self.diverge = [], [], diverge or {}
        self.model = kl.prunable(mlp(0))
        self.engine = Engine(self.config, self.model, self.make_trainer, RunDir.open(self.config),
                             metric=None)

    def make_trainer(self, start, label):
        trainer = StubTrainer(self.model, start, self.config.steps, self.config.eval_every,
                              len(self.trainers), self.diverge.get(label))
        self.trainers.append(trainer)
        self.labels.append(label)
        return trainer


def _masks(result, r):
    return RunDir.load(result.run_dir).masks(r)


def _pruned(model, masks, weights, fraction):
    """What magnitude pruning `fraction` more of `masks` gives on `weights`."""
    kl.set_masks(model, masks)
    kl.restore_weights(model, weights)
    return kl.prune_by_magnitude(model, fraction)


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# Rounds -------------------------------------------------------------------------
def test_iterative_rounds_prune_the_previous_rounds_trained_weights(tmp_path):
    run = Run(tmp_path, controls=("random_reinit",))
    result = run.engine.run()
    assert [(r["round"], r["branch"]) for r in result.rows] == [
        (0, "ticket"), (1, "ticket"), (1, "random_reinit"), (2, "ticket"), (2, "random_reinit")]
    assert run.labels == ["round 0, branch 'ticket'", "round 1, branch 'ticket'",
                          "round 1, branch 'random_reinit'", "round 2, branch 'ticket'",
                          "round 2, branch 'random_reinit'"]
    assert [round(r["percent_remaining"], 1) for r in result.branch()] == [100.0, 80.0, 64.0]
    assert [r["training_steps"] for r in result.rows] == [20, 40, 40, 60, 60]
    assert [r["early_stop_step"] for r in result.rows] == [20] * 5  # val_loss falls to the end
    assert result.metric == "accuracy" and _same(result.masks, _masks(result, 2))
    run_dir = RunDir.load(result.run_dir)
    model = kl.prunable(mlp(0))
    for r in (1, 2):
        expected = _pruned(model, _masks(result, r - 1), run_dir.weights(r - 1), 0.2)
        assert _same(_masks(result, r), expected), r
    theta0 = run_dir.initialization()
    kl.set_masks(model, _masks(result, 2))
    kl.restore_weights(model, theta0)
    rewound = {s.key: np.array(s.kernel) for s in kl.mask_slots(model)}
    assert _same(run.trainers[3].start_kernels, rewound)  # round 2's ticket starts at θ0


def test_oneshot_rounds_prune_the_dense_weights_to_each_target(tmp_path):
    run = Run(tmp_path, mode="oneshot", sparsities=(50, 20))
    result = run.engine.run()
    assert [round(r["percent_remaining"], 1) for r in result.branch()] == [100.0, 50.0, 20.0]
    assert [r["training_steps"] for r in result.rows] == [20, 40, 40]
    dense = RunDir.load(result.run_dir).weights(0)
    model = kl.prunable(mlp(0))
    ones = {k: np.ones_like(m) for k, m in _masks(result, 0).items()}
    for r, fraction in ((1, 0.5), (2, 0.8)):
        assert _same(_masks(result, r), _pruned(model, ones, dense, fraction)), r


def test_late_rewinding_starts_later_rounds_at_the_rewind_point(tmp_path):
    run = Run(tmp_path, rewind_step=5, rounds=1, controls=("random_prune",))
    result = run.engine.run()
    assert [r["start_step"] for r in result.rows] == [0, 5, 5]
    rewind = RunDir.load(result.run_dir).rewind_point()
    assert rewind.step == 5
    assert [r["history"][0]["step"] for r in result.rows] == [0, 5, 5]
    model = kl.prunable(mlp(0))
    kl.set_masks(model, _masks(result, 1))
    kl.restore_weights(model, rewind)
    assert _same(run.trainers[1].start_kernels, {s.key: np.array(s.kernel) for s in kl.mask_slots(model)})


def test_the_pruners_request_of_each_round(tmp_path):
    iterative = Run(tmp_path / "i", rates={"out": 0.1}).engine
    assert [iterative.request(r).fraction for r in (1, 2, 3)] == [0.2, 0.2, 0.2]
    assert iterative.request(2).rates == {"out/kernel": 0.1}
    assert iterative.request(2).seed == branch_seed(0, 2) != iterative.request(1).seed
    assert iterative.request(2, seed=5).seed == 5
    oneshot = Run(tmp_path / "o", mode="oneshot", sparsities=(50, 20), rates={"out": 0.1},
                  seed=3).engine
    for r, target in ((1, 0.5), (2, 0.2)):
        request = oneshot.request(r)
        assert request.fraction == pytest.approx(1 - target)
        rounds = math.log(target) / math.log(0.8)  # the rounds iterative pruning needs
        assert request.rates["out/kernel"] == pytest.approx(1 - 0.9 ** rounds)
        assert request.seed == branch_seed(3, r)
        assert (request.scope, request.granularity) == ("global", "weight")


# Resuming -------------------------------------------------------------------------
def test_a_finished_run_is_read_back_and_more_rounds_extend_it(tmp_path):
    first = Run(tmp_path, controls=("random_reinit",)).engine.run()
    again = Run(tmp_path, controls=("random_reinit",))
    result = again.engine.run()
    assert again.trainers == []  # nothing trained again
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(result.rows) == strip(first.rows)
    more = Run(tmp_path, controls=("random_reinit",), rounds=3)
    extended = more.engine.run()
    assert more.labels == ["round 3, branch 'ticket'", "round 3, branch 'random_reinit'"]
    assert round(extended.branch()[-1]["percent_remaining"], 1) == 51.2


def test_lost_trained_weights_are_trained_again_with_a_warning(tmp_path):
    Run(tmp_path).engine.run()
    path = os.path.join(tmp_path, "run", "round_01", "weights.npz")
    os.remove(path)
    again = Run(tmp_path)
    with pytest.warns(UserWarning, match=rf"Round 1, branch 'ticket' is complete but its trained "
                                         rf"weights {path} are missing: the branch trains again"):
        again.engine.run()
    assert again.labels == ["round 1, branch 'ticket'"] and os.path.exists(path)


# Divergence -----------------------------------------------------------------------
def test_a_diverged_branch_is_recorded_and_the_run_goes_on(tmp_path):
    run = Run(tmp_path, rounds=1, controls=("random_reinit",),
              diverge={"round 1, branch 'random_reinit'": 12})
    rows = run.engine.run().rows
    assert [r.get("diverged", False) for r in rows] == [False, False, True]
    assert (rows[2]["diverged_at_step"], rows[2]["diverged_cause"]) == (
        12, "the loss became NaN or infinite")


def test_on_divergence_stop_raises_after_saving_the_round(tmp_path):
    run = Run(tmp_path, on_divergence="stop", diverge={"round 1, branch 'ticket'": 7})
    with pytest.raises(DivergedError, match=r"^round 1, branch 'ticket': the loss became NaN or "
                                            r"infinite at step 7; the run stops there "
                                            r"\(on_divergence='stop'\)\. Everything before is saved"):
        run.engine.run()
    assert len(run.labels) == 2  # round 2 never started
    assert RunDir.load(run.engine.run_dir.path).metrics(1)["diverged"] is True


# Dense weights at a step, results, labels ---------------------------------------------
def test_weights_at_a_step_are_trained_once_and_stored(tmp_path):
    run = Run(tmp_path)
    assert run.engine.weights_at(0) is run.engine.theta0
    first = run.engine.weights_at(7)
    assert first.step == 7 and run.labels == ["dense weights at step 7"]
    assert run.trainers[0].step == 7  # stopped there
    again = Run(tmp_path)
    stored = again.engine.weights_at(7)
    assert again.labels == [] and all(np.array_equal(a, b) for a, b in zip(stored.values, first.values))


def test_a_result_without_a_builder_says_how_to_rebuild_its_ticket(tmp_path):
    result = Run(tmp_path, rounds=1, controls=("random_prune",)).engine.run()
    assert [r["round"] for r in result.branch("random_prune")] == [1]
    assert "random_prune" in result.table()
    bare = LotteryResult(result.config, result.run_dir, result.rows, result.masks)
    with pytest.raises(ValueError, match=r"no model builder \(LotteryResult.build\).*load_ticket"):
        bare.ticket()
    bare.build = lambda: kl.prunable(mlp(0))
    ticket = bare.ticket()
    assert _same(kl.get_masks(ticket), result.masks)


@pytest.mark.parametrize("key, label", [("test_accuracy_at_early_stop", "test acc"),
                                        ("val_mean_absolute_error_at_early_stop",
                                         "val mean_absolute_error")])
def test_round_lines_label_the_metric_briefly(key, label):
    assert engine_lib._label(key) == label


def test_the_round_lines_of_a_verbose_run(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Run(tmp_path, rounds=1, controls=("random_reinit",), verbose=2).engine.run()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "round 0/1  100.0% remaining  early-stop 20  val loss 0.048"
    assert lines[1] == "round 1/1  80.0% remaining  early-stop 20  val loss 0.048 (dense 0.048)"
    assert lines[2].split() == ["random_reinit", "early-stop", "20", "val", "loss", "0.048"]
