"""The lottery driver: rounds, one-shot, controls, early stopping, run dirs."""

import glob
import json
import os

import numpy as np
import pytest

import keras_lottery as kl
from conftest import tiny_config
from keras_lottery.files import read_npz
from keras_lottery.runner.early_stop import early_stop


def _by(result, branch):
    return {row["round"]: row for row in result.branch(branch)}


def test_iterative_rounds_controls_and_remaining_percentages(tmp_path, fashion_small):
    config = tiny_config(tmp_path, controls=("random_reinit", "random_prune", "lr_rewind"))
    result = kl.find_ticket(config, fashion_small)
    assert len(result.rows) == 1 + 2 * 4
    tickets = _by(result, "ticket")
    # fc layers lose 20% and the output layer 10% of what remains each round.
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "output": 100 * 10}
    for r in (0, 1, 2):
        expected = {k: n * (0.9 if k == "output" else 0.8) ** r for k, n in sizes.items()}
        remaining = 100 * sum(expected.values()) / sum(sizes.values())
        assert tickets[r]["percent_remaining"] == pytest.approx(remaining, abs=0.01)
        assert tickets[r]["sparsity_by_layer"]["output/kernel"] == pytest.approx(1 - 0.9**r, abs=0.002)
    for control in ("random_reinit", "random_prune", "lr_rewind"):
        rows = _by(result, control)
        assert sorted(rows) == [1, 2]
        for r in (1, 2):
            assert rows[r]["percent_remaining"] == pytest.approx(tickets[r]["percent_remaining"])
            assert rows[r]["sparsity_by_layer"] == pytest.approx(tickets[r]["sparsity_by_layer"])
    # Masks only shrink from round to round.
    run = result.run_dir
    masks = [read_npz(os.path.join(run, f"round_{r:02d}", "masks.npz")) for r in range(3)]
    for before, after in zip(masks, masks[1:]):
        assert all(not np.any(after[k] & ~before[k]) for k in before)
    assert all(np.array_equal(result.masks[k], masks[2][k]) for k in masks[2])


def test_random_prune_control_uses_a_different_mask_with_same_layer_counts(tmp_path, fashion_small):
    config = tiny_config(tmp_path, rounds=1, controls=("random_prune",))
    result = kl.find_ticket(config, fashion_small)
    ticket = read_npz(os.path.join(result.run_dir, "round_01", "masks.npz"))
    shuffled = kl.permuted_masks(ticket, seed=kl.runner.branches.branch_seed(config.seed, 1, 0))
    assert kl.mask_overlap(ticket, shuffled) < 0.8
    assert {k: int(v.sum()) for k, v in shuffled.items()} == {k: int(v.sum()) for k, v in ticket.items()}


def test_early_stop_is_the_step_of_minimum_validation_loss(tmp_path, fashion_small):
    result = kl.find_ticket(tiny_config(tmp_path, rounds=0, steps=100), fashion_small)
    row = result.rows[0]
    history = row["history"]
    assert [h["step"] for h in history] == [0, 20, 40, 60, 80, 100]
    best = min(history, key=lambda h: h["val_loss"])
    assert row["early_stop_step"] == best["step"]
    assert row["test_accuracy_at_early_stop"] == best["test_accuracy"]
    assert row["test_accuracy_final"] == history[-1]["test_accuracy"]
    assert 0.5 < row["test_accuracy_final"] <= 1.0  # it learned something real


def test_test_and_train_subset_are_evaluated_at_early_stop_and_end_unless_test_curves(
        tmp_path, fashion_small):
    lazy = kl.find_ticket(tiny_config(tmp_path / "lazy", rounds=1, steps=100,
                                      checkpoint_every=40), fashion_small)
    curves = kl.find_ticket(tiny_config(tmp_path / "curves", rounds=1, steps=100,
                                        checkpoint_every=40, test_curves=True), fashion_small)
    assert os.path.basename(lazy.run_dir) == os.path.basename(curves.run_dir)  # not hashed
    for a, b in zip(lazy.rows, curves.rows):
        summary = {k: v for k, v in a.items() if k.endswith(("_at_early_stop", "_final"))}
        assert summary == {k: b[k] for k in summary} and len(summary) == 16
        assert a["early_stop_step"] == b["early_stop_step"]
        assert all("test_accuracy" in h and "train_eval_loss" in h for h in b["history"])
        assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]
        tested = [h["step"] for h in a["history"] if "test_accuracy" in h]
        # the early-stop record, the last one, and the best at each checkpoint (40, 80)
        assert a["early_stop_step"] in tested and tested[-1] == 100 and len(tested) <= 4


def test_early_stop_summary_on_a_known_history():
    history = [
        {"step": 0, "val_loss": 2.0, "test_accuracy": 0.1},
        {"step": 100, "val_loss": 0.5, "test_accuracy": 0.8},
        {"step": 200, "val_loss": 0.5, "test_accuracy": 0.85},
        {"step": 300, "val_loss": 0.7, "test_accuracy": 0.86},
    ]
    summary = early_stop(history)
    assert summary["early_stop_step"] == 100
    assert summary["test_accuracy_at_early_stop"] == 0.8
    assert summary["test_accuracy_final"] == 0.86


def test_oneshot_prunes_the_dense_weights_to_each_target(tmp_path, fashion_small):
    config = tiny_config(tmp_path, mode="oneshot", sparsities=(50, 20), controls=("random_reinit",))
    result = kl.find_ticket(config, fashion_small)
    tickets = _by(result, "ticket")
    assert sorted(tickets) == [0, 1, 2]
    for r, target in ((1, 50), (2, 20)):
        layers = tickets[r]["sparsity_by_layer"]
        assert 1 - layers["fc1/kernel"] == pytest.approx(target / 100, abs=1e-3)
        # the output layer gets the sparsity iterative pruning would give it
        rounds = np.log(target / 100) / np.log(0.8)
        assert 1 - layers["output/kernel"] == pytest.approx(0.9**rounds, abs=2e-3)
    # Both one-shot masks come from the same dense weights: the 20% mask is
    # inside the 50% mask (magnitude order of one set of weights).
    m50 = read_npz(os.path.join(result.run_dir, "round_01", "masks.npz"))
    m20 = read_npz(os.path.join(result.run_dir, "round_02", "masks.npz"))
    assert all(not np.any(m20[k] & ~m50[k]) for k in m50)
    assert sorted(_by(result, "random_reinit")) == [1, 2]


def test_late_rewinding_starts_later_rounds_at_the_rewind_step(tmp_path, fashion_small):
    config = tiny_config(tmp_path, rounds=1, rewind_step=20, controls=("random_reinit",))
    result = kl.find_ticket(config, fashion_small)
    snapshot = kl.WeightSnapshot.load(os.path.join(result.run_dir, "rewind.npz"))
    # θk is what 20 counted training steps give: the dense round of a run
    # that trains 20 steps in all ends with these weights.
    short = kl.find_ticket(tiny_config(tmp_path, rounds=0, steps=20), fashion_small)
    trained = kl.WeightSnapshot.load(os.path.join(short.run_dir, "round_00", "weights.npz"))
    assert snapshot.step == 20 and len(snapshot.values) == len(trained.values)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot.values, trained.values))
    for row in result.rows:
        first_step = row["history"][0]["step"]
        assert first_step == (0 if row["round"] == 0 else 20)


def test_rerun_reuses_completed_branches_and_extends_rounds(tmp_path, fashion_small):
    first = kl.find_ticket(tiny_config(tmp_path, rounds=1), fashion_small)
    metrics = os.path.join(first.run_dir, "round_01", "metrics.json")
    stamp = os.stat(metrics).st_mtime_ns
    again = kl.find_ticket(tiny_config(tmp_path, rounds=2, controls=("random_reinit",)), fashion_small)
    assert again.run_dir == first.run_dir
    assert os.stat(metrics).st_mtime_ns == stamp  # round 1's ticket was not retrained
    assert sorted(r["round"] for r in again.branch("ticket")) == [0, 1, 2]
    assert json.load(open(os.path.join(again.run_dir, "config.json")))["rounds"] == 2


def test_config_mismatch_in_an_existing_directory_is_an_error(tmp_path, fashion_small):
    kl.find_ticket(tiny_config(tmp_path, rounds=0, name="mine"), fashion_small)
    with pytest.raises(ValueError, match=r"holds a different configuration.*'learning_rate': \(0.0012, 0.01\)"):
        kl.find_ticket(tiny_config(tmp_path, rounds=0, name="mine", learning_rate=0.01), fashion_small)


def test_no_partial_files_are_left_behind(tmp_path, fashion_small):
    result = kl.find_ticket(tiny_config(tmp_path, rounds=1, checkpoint_every=20), fashion_small)
    leftovers = glob.glob(os.path.join(result.run_dir, "**", "*.tmp"), recursive=True,
                          include_hidden=True)
    leftovers += glob.glob(os.path.join(result.run_dir, "**", "checkpoint*.npz"), recursive=True)
    leftovers += glob.glob(os.path.join(result.run_dir, "lock"))
    assert leftovers == []


def test_unknown_rates_layer_fails_before_training(tmp_path, fashion_small):
    with pytest.raises(ValueError, match=r"rates names 'fc9'.*Masked layers: \['fc1', 'fc2', 'output'\]"):
        kl.find_ticket(tiny_config(tmp_path, rates={"fc9": 0.1}), fashion_small)


