"""Instability analysis (linear mode connectivity) and rewind_step="auto",
on scikit-learn's bundled real digits (1797 8x8 images)."""

import glob
import json
import os

import keras
import numpy as np
import pytest
from sklearn import datasets

import keras_lottery as kl
from keras_lottery.interpolation import (
    InterpolationCurve,
    instability,
    interpolate,
    interpolation_curve,
)
from keras_lottery.runner.instability import choose


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(data.data))
    x, y = (data.data[order] / 16.0).astype("float32"), data.target[order]
    return (x[:1100], y[:1100]), (x[1100:1450], y[1100:1450]), (x[1450:], y[1450:])


def digits_mlp():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(10, name="out")])
    model.compile(keras.optimizers.SGD(0.3, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _train_copy(model, theta0, train, seed, epochs=3):
    kl.restore_weights(model, theta0)
    model.compile(keras.optimizers.SGD(0.3, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    order = np.random.default_rng(seed).permutation(len(train[0]))
    model.fit(train[0][order], train[1][order], batch_size=32, epochs=epochs, shuffle=False,
              verbose=0)
    return kl.snapshot_weights(model)


@pytest.fixture(scope="module")
def copies(digits):
    train, _, _ = digits
    model = kl.prunable(digits_mlp())
    kl.prune_by_magnitude(model, 0.5)
    theta0 = kl.snapshot_weights(model)
    return model, _train_copy(model, theta0, train, 1), _train_copy(model, theta0, train, 2)


def test_endpoints_reproduce_each_copys_own_evaluation_and_weights_come_back(digits, copies):
    _, _, test = digits
    model, first, second = copies
    before = kl.snapshot_weights(model)
    masks = kl.get_masks(model)
    curve = interpolation_curve(model, first, second, data=test, points=5, batch_size=128)
    assert curve.alphas == (0.0, 0.25, 0.5, 0.75, 1.0)
    for snapshot, index in ((first, 0), (second, -1)):
        kl.restore_weights(model, snapshot)
        own = model.evaluate(*test, batch_size=128, return_dict=True, verbose=0)
        assert curve.metrics["accuracy"][index] == pytest.approx(own["accuracy"], abs=1e-7)
        assert curve.metrics["loss"][index] == pytest.approx(own["loss"], rel=1e-6)
        assert curve.metrics["error"][index] == pytest.approx(1 - own["accuracy"], abs=1e-7)
    kl.restore_weights(model, before)
    curve_again = interpolation_curve(model, first, second, data=test, points=5, batch_size=128)
    after = kl.snapshot_weights(model)
    assert all(np.array_equal(a, b) for a, b in zip(before.values, after.values))
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)
    assert curve_again.metrics["loss"] == curve.metrics["loss"]


def test_pruned_weights_stay_zero_along_the_path(copies):
    model, first, second = copies
    seen = []

    def evaluate(m):
        slots = kl.mask_slots(m)
        assert len(slots) == 2
        for slot in slots:
            kernel, mask = np.asarray(slot.kernel), np.asarray(slot.mask)
            assert (mask == 0).any()
            seen.append(float(np.abs(kernel * (1 - mask)).max()))
        return {"accuracy": 0.5}

    interpolation_curve(model, first, second, evaluate=evaluate, points=4)
    assert seen and max(seen) == 0.0


def test_identical_copies_have_instability_zero(digits, copies):
    _, _, test = digits
    model, first, _ = copies
    curve = interpolation_curve(model, first, first, data=test, points=7, batch_size=128)
    assert instability(curve) == 0.0
    assert len(set(curve.metrics["error"])) == 1


def test_copies_trained_on_different_data_orders_have_a_positive_barrier(digits, copies):
    _, _, test = digits
    model, first, second = copies
    curve = interpolation_curve(model, first, second, data=test, points=11, batch_size=128)
    assert instability(curve) > 0.01, curve.metrics["error"]
    assert instability(curve, "loss") > 0


def test_instability_and_interpolate_refuse_bad_input(copies):
    curve = InterpolationCurve((0.0, 0.5, 1.0), {"error": (0.1, 0.3, 0.2)})
    assert instability(curve) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="Received: key='test_error'"):
        instability(curve, "test_error")
    model, first, _ = copies
    other = kl.snapshot_weights(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="one architecture"):
        interpolate(first, other, 0.5)
    with pytest.raises(ValueError, match="Received: points=1"):
        interpolation_curve(model, first, first, data=(np.zeros((2, 64)), np.zeros(2)), points=1)


def test_auto_picks_the_smallest_stable_candidate():
    assert choose([(0, 9.0), (100, 1.5), (500, 0.2), (250, 2.5)], 2.0)["rewind_step"] == 100
    assert choose([(500, 0.2), (0, 2.0)], 2.0)["rewind_step"] == 0  # <= threshold is stable
    none = choose([(0, 9.0), (100, 4.0), (500, 4.0)], 2.0)
    assert none["rewind_step"] == 100 and not none["stable"]
    with pytest.raises(ValueError, match="Received: \\[\\]"):
        choose([], 2.0)


def _auto_search(logdir, digits, callbacks=()):
    train, val, test = digits
    search = kl.LotterySearch(digits_mlp, rounds=1, rewind_step="auto", rewind_candidates=(0, 20),
                              stability_points=5, logdir=str(logdir), verbose=0,
                              checkpoint_every=20)
    return search.fit(train, val, test, steps=60, eval_every=20, batch_size=32,
                      callbacks=list(callbacks))


def test_auto_rewind_of_a_search_resumes_an_interrupted_copy_to_the_same_result(tmp_path, digits):
    class Interrupt(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Interrupt.seen += 1
            if Interrupt.seen == 60 + 50:  # copy 1 of k=0, after its checkpoint at step 40
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _auto_search(tmp_path / "killed", digits, [Interrupt()])
    assert glob.glob(f"{tmp_path}/killed/*/round_00/instability_k0_copy1/checkpoint.npz")
    resumed = _auto_search(tmp_path / "killed", digits)
    clean = _auto_search(tmp_path / "clean", digits)
    for result in (resumed, clean):
        record = json.load(open(os.path.join(result.run_dir, "rewind_auto.json")))
        assert record["rewind_step"] in (0, 20) and record["split"] == "val"
        assert result.branch("ticket")[1]["start_step"] == record["rewind_step"]
        saved = json.load(open(os.path.join(result.run_dir, "result.json")))
        assert saved["rewind_auto"]["rewind_step"] == record["rewind_step"]
    a = json.load(open(glob.glob(f"{resumed.run_dir}/round_00/instability_k0.json")[0]))
    b = json.load(open(glob.glob(f"{clean.run_dir}/round_00/instability_k0.json")[0]))
    assert a["seeds"] == b["seeds"] and a["seeds"][0] != a["seeds"][1]
    for key, values in b["curve"]["metrics"].items():
        np.testing.assert_allclose(a["curve"]["metrics"][key], values, rtol=1e-5, atol=1e-6)
    assert glob.glob(f"{clean.run_dir}/instability/events.out.tfevents.*")


def test_search_instability_adds_branches_to_an_existing_run_of_your_own_model(tmp_path, digits):
    train, val, test = digits
    search = kl.LotterySearch(digits_mlp, rounds=1, prune_fraction=0.5, logdir=str(tmp_path),
                              verbose=0)
    arguments = dict(steps=40, eval_every=20, batch_size=32)
    with pytest.raises(ValueError, match=r"has completed rounds \[\]. Run fit\(\)"):
        search.instability(train, val, test, round=1, rewind_steps=[0], **arguments)
    assert not glob.glob(f"{tmp_path}/*/round_*")  # nothing trained, no run started
    result = search.fit(train, val, test, **arguments)
    with pytest.raises(ValueError, match=r"completed rounds \[0, 1\].*round=2"):
        search.instability(train, val, test, round=2, rewind_steps=[0], **arguments)
    measured = search.instability(train, val, test, round=1, rewind_steps=[0, 20], points=4,
                                  **arguments)
    assert [m["rewind_step"] for m in measured] == [0, 20]
    for m in measured:
        assert m["round"] == 1 and m["percent_remaining"] == pytest.approx(50, abs=1)
        assert set(m["instability"]) == {"val", "test"}
        assert len(m["curve"]["alphas"]) == 4
        copy1 = json.load(open(f"{result.run_dir}/round_01/instability_k{m['rewind_step']}"
                               "_copy1/metrics.json"))
        assert copy1["start_step"] == m["rewind_step"]
    # Stored: asked again, the results are read back, not retrained.
    weights = f"{result.run_dir}/round_01/instability_k0_copy1/weights.npz"
    stamp = os.stat(weights).st_mtime_ns
    again = search.instability(train, val, test, round=1, rewind_steps=[0], **arguments)
    assert again[0]["curve"] == measured[0]["curve"] and os.stat(weights).st_mtime_ns == stamp
    # A damaged copy is detected and trained again, to the same curve.
    with open(weights, "wb") as f:
        f.write(b"not an npz")
    os.remove(f"{result.run_dir}/round_01/instability_k0.json")
    with pytest.warns(UserWarning, match="instability_k0_copy1"):
        rebuilt = search.instability(train, val, test, round=1, rewind_steps=[0], points=4,
                                      **arguments)
    assert kl.rewind.WeightSnapshot.load(weights).step == arguments["steps"]
    for key, values in measured[0]["curve"]["metrics"].items():
        np.testing.assert_allclose(rebuilt[0]["curve"]["metrics"][key], values, rtol=1e-5,
                                   atol=1e-6)
    # The run itself is unchanged: the copies are not rows of its table.
    rerun = kl.LotterySearch(digits_mlp, rounds=1, prune_fraction=0.5, logdir=str(tmp_path),
                             verbose=0).fit(train, val, test, **arguments)
    assert rerun.table() == result.table()
    assert [r["branch"] for r in rerun.rows] == ["ticket", "ticket"]


@pytest.mark.slow  # about 1-2 minutes on two loaded cores
def test_preset_instability_of_a_moved_run_adds_its_branches_there(tmp_path, fashion):
    import shutil

    from conftest import tiny_config
    from keras_lottery.runner.presets import preset_instability
    from keras_lottery.runner.presets import find_ticket

    result = find_ticket(tiny_config(tmp_path, rounds=1))
    moved = str(tmp_path / "elsewhere" / "my_run")
    shutil.move(result.run_dir, moved)
    stamp = os.stat(f"{moved}/round_01/metrics.json").st_mtime_ns
    measured = preset_instability(moved, 1, [0, 20], points=3)
    assert [m["rewind_step"] for m in measured] == [0, 20]
    assert measured[0]["percent_remaining"] == pytest.approx(result.rows[-1]["percent_remaining"])
    assert set(measured[0]["instability"]) == {"val", "test", "train_eval"}
    for k in (0, 20):
        assert os.path.exists(f"{moved}/round_01/instability_k{k}.json")
        assert os.path.exists(f"{moved}/round_01/instability_k{k}_copy2/weights.npz")
    assert os.stat(f"{moved}/round_01/metrics.json").st_mtime_ns == stamp  # not retrained
    assert not os.path.exists(result.run_dir)  # nothing recreated where the run was made
