"""The paper's analyses, the Early-Bird rule (`analysis.early_bird_step`),
ticket transfer, scope comparison and the structured-sparsity report, each on
numbers that could fail."""

import os

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_lottery as kl
from conftest import tiny_config
from keras_lottery import analysis
from keras_lottery.runner import analyses as run_analysis, commands
from keras_lottery.files import read_npz
from keras_lottery.runner.rundir import RunDir
from keras_lottery.runner.presets.loop_trainer import LotterySchedule


def _masks(rng, density, shape=(40, 30)):
    return {"k": rng.random(shape) < density}


def test_overlap_of_identical_and_disjoint_masks():
    rng = np.random.default_rng(0)
    a = _masks(rng, 0.5)
    assert analysis.jaccard(a, a) == 1.0 and analysis.hamming(a, a) == 0.0
    assert analysis.jaccard(a, {"k": ~a["k"]}) == 0.0 and analysis.hamming(a, {"k": ~a["k"]}) == 1.0
    half = {"k": a["k"] & (rng.random(a["k"].shape) < 0.5)}
    assert analysis.jaccard(a, half) == pytest.approx(half["k"].sum() / a["k"].sum())


def test_weight_movement_split_sums_to_the_alive_weights():
    rng = np.random.default_rng(1)
    init, final = {"k": rng.normal(size=(40, 30))}, {"k": rng.normal(size=(40, 30))}
    mask = _masks(rng, 0.6)
    next_mask = {"k": mask["k"] & (rng.random((40, 30)) < 0.8)}
    moved = analysis.weight_movement(init, final, mask, next_mask)
    assert moved["survivors"].size + moved["pruned"].size == mask["k"].sum()
    assert moved["survivors"].size == next_mask["k"].sum()
    np.testing.assert_allclose(np.sort(moved["survivors"]),
                               np.sort(np.abs(final["k"] - init["k"])[next_mask["k"]]))


def test_early_bird_triggers_on_a_settling_sequence_and_not_on_noise():
    rng = np.random.default_rng(2)
    settled = _masks(rng, 0.8)
    sequence = [_masks(rng, 0.8) for _ in range(4)]  # early masks: unrelated
    for _ in range(6):  # then each draw differs from `settled` in ~2% of entries
        flip = rng.random(settled["k"].shape) < 0.02
        sequence.append({"k": settled["k"] ^ flip})
    steps = list(range(100, 100 * (len(sequence) + 1), 100))
    assert analysis.early_bird_step(sequence, steps, threshold=0.1, window=5) == 900
    noisy = [_masks(rng, 0.8) for _ in range(10)]  # ~32% of entries differ
    assert analysis.early_bird_step(noisy, steps, threshold=0.1, window=5) is None
    with pytest.raises(ValueError, match="window must be >= 2"):
        analysis.early_bird_step(noisy, steps, window=1)


def test_ticket_transfer_trains_the_source_mask_on_other_classes(tmp_path, fashion):
    import dataclasses

    source = kl.find_ticket(tiny_config(tmp_path, rounds=1, classes=(0, 1, 2, 3, 4)))
    assert source.rows[0]["sparsity_by_layer"]
    target = commands.transfer(source.run_dir, 1, "fashion_mnist", (5, 6, 7, 8, 9),
                               steps=60, verbose=0)
    src_masks = read_npz(os.path.join(source.run_dir, "round_01", "masks.npz"))
    tgt_masks = read_npz(os.path.join(target.run_dir, "round_01", "masks.npz"))
    assert all(np.array_equal(src_masks[k], tgt_masks[k]) for k in src_masks)
    src_rewind = RunDir.load(source.run_dir).rewind_point()
    tgt_rewind = RunDir.load(target.run_dir).rewind_point()
    assert all(np.array_equal(a, b) for a, b in zip(src_rewind.values, tgt_rewind.values))
    branches = sorted(r["branch"] for r in target.rows if r["round"] == 1)
    assert branches == ["random_prune", "random_reinit", "ticket"]
    assert RunDir.load(target.run_dir).data_info["num_classes"] == 5
    assert dataclasses.asdict(target.config)["classes"] == (5, 6, 7, 8, 9)


def test_compare_scopes_shares_the_dense_round(tmp_path, fashion, capsys):
    results = commands.compare_scopes(tiny_config(tmp_path, rounds=2, verbose=0))
    dense = {s: r.branch("ticket")[0] for s, r in results.items()}
    for key in ("val_loss", "test_accuracy"):
        assert [h.get(key) for h in dense["global"]["history"]] == [
            h.get(key) for h in dense["layerwise"]["history"]]
    masks = {s: read_npz(os.path.join(r.run_dir, "round_02", "masks.npz")) for s, r in results.items()}
    assert kl.mask_overlap(masks["global"], masks["layerwise"]) < 1.0
    layers = {s: r.branch("ticket")[2]["sparsity_by_layer"] for s, r in results.items()}
    assert layers["layerwise"]["fc1/kernel"] == pytest.approx(layers["layerwise"]["fc2/kernel"], abs=1e-3)
    assert layers["global"]["fc1/kernel"] != pytest.approx(layers["global"]["fc2/kernel"], abs=1e-3)
    assert "global: % remaining" in capsys.readouterr().out


def test_final_ticket_agreement_of_largest_weights():
    rng = np.random.default_rng(3)
    trained = {"a": rng.normal(size=(20, 10)), "b": rng.normal(size=(10, 4))}
    alive = {"a": rng.random((20, 10)) < 0.9, "b": np.ones((10, 4), bool)}
    # A final ticket made of each layer's largest alive weights agrees fully.
    top = {"a": np.abs(trained["a"]) * alive["a"] >= np.sort((np.abs(trained["a"]) * alive["a"]).ravel())[-50],
           "b": np.abs(trained["b"]) >= np.sort(np.abs(trained["b"]).ravel())[-8]}
    overall, layers = run_analysis._final_ticket_agreement(trained, alive, top)
    assert overall == 1.0 and layers == {"a": 1.0, "b": 1.0}
    # Swapping 10 of layer a's 50 for pruned weights: 40 shared of 60.
    swapped = top["a"].copy()
    swapped.ravel()[np.flatnonzero(top["a"])[:10]] = False
    swapped.ravel()[np.flatnonzero(~alive["a"])[:10]] = True
    overall, layers = run_analysis._final_ticket_agreement(trained, alive, {"a": swapped, "b": top["b"]})
    assert layers == {"a": pytest.approx(40 / 60), "b": 1.0}
    assert overall == pytest.approx((40 + 8) / (60 + 8))


def test_structure_report_compacts_dead_units_exactly():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((12,))
    h = keras.layers.Dense(16, activation="relu", name="fc1")(x_in)
    h = keras.layers.Dense(8, activation="relu", name="fc2")(h)
    model = kl.prunable(keras.Model(x_in, keras.layers.Dense(3, name="output")(h)))
    model.get_layer("fc1").bias.assign(np.linspace(-1, 1, 16))  # dead units output relu(bias)
    masks = kl.get_masks(model)
    masks["fc1/kernel"][:, :5] = False   # 5 fc1 units lose every input (their constant is folded)
    masks["fc2/kernel"][[6, 7], :] = False  # 2 more fc1 units feed nothing
    kl.set_masks(model, masks)
    report = run_analysis.structure_report(model)
    assert report["layers"]["fc1/kernel"] == {"units": 16, "dead": 5}
    compact = report["compacted"]
    assert compact["units_before"] == 24 and compact["units_after"] == 24 - 7
    assert compact["max_abs_diff"] < 1e-5
    assert compact["speedup"] > 0


def test_report_prints_every_analysis_and_logs_them(tmp_path, fashion_small, capsys):
    result = kl.find_ticket(tiny_config(tmp_path, rounds=2, eb_every=20), fashion_small)
    analyses = commands.report(result.run_dir)
    out = capsys.readouterr().out
    for section in ("train vs test accuracy", "mask stability", "per-layer sparsity",
                    "weight movement", "Early-Bird", "structured sparsity"):
        assert section in out, section
    assert [m["round"] for m in analyses["movement"]] == [0, 1]
    first = analyses["movement"][0]
    assert first["survivors"] + first["pruned"] == sum(784 * 300 + 300 * 100 + 1000 for _ in [0])
    # Stability against the final ticket (round 2): round 1's largest weights are
    # the final ticket by construction; round 0's agree far above chance, not fully.
    stability = analyses["stability"]
    assert analyses["final_round"] == 2 and [s["round"] for s in stability] == [0, 1]
    assert stability[1]["jaccard"] == pytest.approx(1.0, abs=1e-4)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in stability[1]["layers"].values())
    kept = 1 - result.branch("ticket")[2]["sparsity_by_layer"]["fc1/kernel"]
    chance = kept / (2 - kept)  # Jaccard of two random sets of the final ticket's size
    assert chance + 0.1 < stability[0]["layers"]["fc1/kernel"] < 0.999
    assert chance + 0.1 < stability[0]["jaccard"] < 0.999
    acc = EventAccumulator(os.path.join(result.run_dir, "analysis"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    for tag in ("weight_movement/survivors", "weight_movement/pruned",
                "mask_stability/jaccard_with_final_ticket", "mask_stability_by_layer/fc1/kernel",
                "train_vs_test/train_accuracy_at_early_stop", "train_vs_test/gap", "layer_sparsity/fc1/kernel"):
        assert tag in tags, tag
    assert os.path.exists(os.path.join(result.run_dir, "analyses.png"))
    with pytest.raises(ValueError, match=r"metric must be one of the run's test metrics "
                                         r"\['accuracy', 'loss'\]. Received: metric='auc'"):
        run_analysis.analyze(result.run_dir, metric="auc")


def test_warmup_schedule_and_dropout_presets():
    schedule = LotterySchedule(0.1, warmup_steps=10_000, milestones=(56_000, 84_000))
    assert float(schedule(0)) == pytest.approx(1e-5)
    assert float(schedule(4_999)) == pytest.approx(0.05)
    assert float(schedule(20_000)) == pytest.approx(0.1)
    assert float(schedule(60_000)) == pytest.approx(0.01)
    late = LotterySchedule(0.1, milestones=(1000,), offset=500)
    assert float(late(499)) == pytest.approx(0.1) and float(late(500)) == pytest.approx(0.01)
    config = kl.PresetConfig.from_preset("conv4_dropout")
    model = kl.models.build(config.model, (32, 32, 3), 10, dropout=config.dropout)
    assert sum(isinstance(l, keras.layers.Dropout) for l in model.layers) == 3
    assert (config.learning_rate, config.steps) == (2e-4, 75_000)
