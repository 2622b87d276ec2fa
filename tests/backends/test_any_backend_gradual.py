"""Gradual magnitude pruning in the lottery search, on the current backend:
exact targets, exact zeros while it trains, the schedule, resume, the table."""

import glob
import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from helpers import build_model, digits
from keras_lottery import pruners
from keras_lottery.files import read_npz

TRAIN, VAL, TEST = digits()
FIT = dict(steps=60, eval_every=20, batch_size=60)
OPTIONS = {"begin": 0.0, "end": 0.5, "frequency": 10}


class ZerosWatch(keras.callbacks.Callback):
    """After every batch: pruned weights are exactly zero, masks only shrink
    within a branch (unless `shrinking=False`), and the count kept is recorded."""

    def __init__(self, shrinking=True):
        super().__init__()
        self.kept, self.violations, self._last, self.shrinking = [], 0, None, shrinking

    def on_train_begin(self, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        model = self.model  # on JAX, reading it syncs the variables
        masks = kl.get_masks(model)
        kernels = {k: keras.ops.convert_to_numpy(v)
                   for k, v in zip(masks, (s.kernel for s in kl.masking.mask_slots(model)))}
        for key, mask in masks.items():
            if np.any(kernels[key][~mask] != 0):
                self.violations += 1
            if self.shrinking and self._last is not None and np.any(mask & ~self._last[key]):
                self.violations += 1  # a pruned weight came back
        self._last = masks
        self.kept.append(sum(int(m.sum()) for m in masks.values()))


def _search(logdir, **overrides):
    settings = dict(mode="gradual", sparsities=(50, 20), scope="layerwise",
                    pruner_options=OPTIONS, controls=("random_reinit",), logdir=str(logdir),
                    verbose=0, checkpoint_every=20)
    return kl.LotterySearch(build_model, **{**settings, **overrides})


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    watch = ZerosWatch()
    result = _search(tmp_path_factory.mktemp("gradual")).fit(
        TRAIN, VAL, TEST, callbacks=[watch], **FIT)
    return result, watch


def test_each_target_is_reached_exactly_per_layer(watched):
    result, _ = watched
    for row, target in zip(result.branch("ticket")[1:], (0.5, 0.8)):
        masks = read_npz(os.path.join(result.run_dir, f"round_{row['round']:02d}", "masks.npz"))
        for key, mask in masks.items():
            assert mask.size - int(mask.sum()) == round(target * mask.size), key
            assert row["sparsity_by_layer"][key] == 1 - mask.sum() / mask.size


def test_pruned_weights_are_exact_zeros_at_every_step_and_masks_only_shrink(watched):
    _, watch = watched
    assert watch.violations == 0
    per_branch = FIT["steps"]
    # The dense round, then round 1's network, pruned from 100% at step 0
    # to 50% by step 30, constant afterwards.
    round1 = watch.kept[per_branch:2 * per_branch]
    assert round1[0] == watch.kept[0]  # nothing pruned after the first step
    assert all(a >= b for a, b in zip(round1, round1[1:]))
    assert round1[29] == round1[-1] < round1[28]  # the target at step 30, not before
    assert len(set(round1[:30])) >= 3  # several updates on the way


def test_the_schedule_is_the_polynomial_of_zhu_and_gupta():
    pruner = pruners.get("gradual", {"begin": 0.1, "end": 0.6, "frequency": 100})
    assert pruner.update_steps(0, 2000)[:2] == [300, 400]
    assert pruner.update_steps(0, 2000)[-1] == 1200 == pruner.settled_from(0, 2000)
    assert pruner.share(200, 0, 2000) == 0.0
    assert pruner.share(700, 0, 2000) == pytest.approx(1 - 0.5 ** 3)
    assert pruner.share(1200, 0, 2000) == pruner.share(1900, 0, 2000) == 1.0


def test_early_stopping_judges_the_network_once_it_is_at_its_target(watched):
    result, _ = watched
    settled = FIT["steps"] * OPTIONS["end"]
    for row in result.branch("ticket")[1:]:
        assert row["early_stop_step"] >= settled


def test_controls_train_the_final_masks_and_the_table_shows_the_cost(watched):
    result, _ = watched
    for r in (1, 2):
        (control,) = [row for row in result.rows
                      if row["round"] == r and row["branch"] == "random_reinit"]
        (ticket,) = [row for row in result.rows if row["round"] == r and row["branch"] == "ticket"]
        assert control["sparsity_by_layer"] == ticket["sparsity_by_layer"]
    assert [row["training_steps"] for row in result.branch("ticket")] == [60, 60, 60]
    table = result.table()
    assert "| gradual " in table and "train steps" in table


def test_an_interrupted_gradual_branch_resumes_to_the_same_masks(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Interrupt.seen += 1
            if Interrupt.seen == 60 + 25:  # round 1, mid-schedule, after its step-20 checkpoint
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "killed", sparsities=(20,)).fit(TRAIN, VAL, TEST,
                                                           callbacks=[Interrupt()], **FIT)
    assert glob.glob(f"{tmp_path}/killed/*/round_01/ticket/checkpoint.npz") or glob.glob(
        f"{tmp_path}/killed/*/round_01/checkpoint.npz")
    resumed = _search(tmp_path / "killed", sparsities=(20,)).fit(TRAIN, VAL, TEST, **FIT)
    clean = _search(tmp_path / "clean", sparsities=(20,)).fit(TRAIN, VAL, TEST, **FIT)
    a = read_npz(os.path.join(resumed.run_dir, "round_01", "masks.npz"))
    b = read_npz(os.path.join(clean.run_dir, "round_01", "masks.npz"))
    assert all(np.array_equal(u, v) for u, v in zip(a.values(), b.values()))
    np.testing.assert_allclose([h["val_loss"] for h in resumed.branch("ticket")[1]["history"]],
                               [h["val_loss"] for h in clean.branch("ticket")[1]["history"]],
                               rtol=1e-5)


def test_a_gradual_run_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="mode='gradual' needs sparsities"):
        kl.LotterySearch(build_model, mode="gradual")
    with pytest.raises(ValueError, match=r"pruner 'gradual' prunes while the network trains.*"
                                         r"mode in \['gradual'\]"):
        kl.LotterySearch(build_model, pruner="gradual")
    with pytest.raises(ValueError, match="pruner 'gradual' has no option 'stop'"):
        kl.LotterySearch(build_model, mode="gradual", sparsities=(50,),
                         pruner_options={"stop": 1})
    with pytest.raises(ValueError, match="eb_every goes with a pruner of trained weights"):
        kl.LotterySearch(build_model, mode="gradual", sparsities=(50,), eb_every=10)


@pytest.mark.parametrize("pruner", ["set", "rigl"])
def test_dynamic_sparse_training_in_the_search_keeps_its_counts_and_zeros(tmp_path, pruner):
    watch = ZerosWatch(shrinking=False)
    result = _search(tmp_path, pruner=pruner, sparsities=(20,), controls=(),
                     pruner_options={"update_every": 10}).fit(
        TRAIN, VAL, TEST, callbacks=[watch], **FIT)
    # Dense round, then the sparse network: the same number of connections
    # throughout (80% of the kernels pruned), moved at the updates.
    sparse = watch.kept[FIT["steps"]:]
    total = sum(int(np.prod(m.shape)) for m in kl.get_masks(result.ticket(1)).values())
    assert watch.violations == 0
    assert len(set(sparse)) == 1 and abs(sparse[0] - 0.2 * total) <= 3, set(sparse)
    ticket = result.branch("ticket")[1]
    assert ticket["percent_remaining"] == pytest.approx(20, abs=0.5)
    assert ticket["early_stop_step"] >= 40  # judged from its last update (step 40 of 60)
    assert np.isfinite(ticket["test_accuracy_at_early_stop"])
    assert f"| {pruner} " in result.table()
