"""The lottery search on models of your own, on real data that ships offline.

scikit-learn bundles small real datasets: handwritten digits (load_digits,
1797 8x8 images), breast-cancer diagnosis (load_breast_cancer, binary) and
diabetes progression (load_diabetes, regression).
"""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_lottery as kl
from keras_lottery.files import read_npz


def _split(x, y, seed=0):
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype("float32"), y[order]
    n = len(x)
    a, b = int(0.6 * n), int(0.8 * n)
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    return _split(data.data / 16.0, data.target)


@pytest.fixture(scope="module")
def diabetes():
    data = datasets.load_diabetes()
    return _split(data.data, data.target.astype("float32"))


@pytest.fixture(scope="module")
def cancer():
    data = datasets.load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return _split(x, data.target.astype("float32"))


def digits_mlp(units: int = 64):
    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(units, activation="relu"),
                                  keras.layers.Dense(10, name="out")])
        model.compile(keras.optimizers.Adam(2e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return build


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.epoch_logs = 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


def _search(tmp_path, build, **kwargs):
    return kl.LotterySearch(build, logdir=str(tmp_path / "runs"), verbose=0, **kwargs)


def test_digits_rounds_controls_and_a_user_callback_in_every_branch(tmp_path, digits):
    train, val, test = digits
    counter = BatchCounter()
    search = _search(tmp_path, digits_mlp(), rounds=2, rates={"out": 0.1},
                     controls=("random_reinit", "random_prune", "lr_rewind"), test_curves=True)
    result = search.fit(train, validation_data=val, test_data=test, steps=60, eval_every=20,
                        batch_size=32, callbacks=[counter])
    assert len(result.rows) == 1 + 2 * 4
    assert counter.batches == 9 * 60  # every batch of every branch
    assert all("val_loss" in logs and "test_accuracy" in logs for logs in counter.epoch_logs)
    tickets = {row["round"]: row for row in result.branch("ticket")}
    sizes = {"dense": 64 * 64, "out": 64 * 10}
    for r in (0, 1, 2):
        by_layer = tickets[r]["sparsity_by_layer"]
        assert len(by_layer) == 2 and "out/kernel" in by_layer
        assert tickets[r]["sparsity_by_layer"]["out/kernel"] == pytest.approx(1 - 0.9**r, abs=0.002)
        assert [h["step"] for h in tickets[r]["history"]] == [0, 20, 40, 60]
    remaining = 100 * (sizes["dense"] * 0.8**2 + sizes["out"] * 0.9**2) / sum(sizes.values())
    assert tickets[2]["percent_remaining"] == pytest.approx(remaining, abs=0.05)
    assert 0.6 < tickets[0]["test_accuracy_final"] <= 1.0  # it learned real digits
    assert "| test acc @ES |" in result.table()
    ticket = result.ticket(2)
    assert kl.sparsity(ticket) == pytest.approx(1 - tickets[2]["percent_remaining"] / 100)
    x = test[0][:32]
    np.testing.assert_allclose(ticket.predict(x, verbose=0),
                               kl.strip(ticket).predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    kl.save_ticket(ticket, str(tmp_path / "t.keras"))
    # The run's TensorBoard events hold the user's metrics per branch.
    events = EventAccumulator(glob.glob(f"{result.run_dir}/round_01/random_reinit/events*")[0])
    events.Reload()
    assert {"val/accuracy", "test/loss", "train/loss"} <= set(events.Tags()["tensors"])


def test_test_split_is_evaluated_at_early_stop_and_end_unless_test_curves(tmp_path, digits):
    train, val, test = digits
    counter = BatchCounter()
    runs = {}
    for curves in (False, True):
        search = _search(tmp_path / str(curves), digits_mlp(), rounds=1, checkpoint_every=40,
                         test_curves=curves)
        runs[curves] = search.fit(train, validation_data=val, test_data=test, steps=100,
                                  eval_every=20, batch_size=32,
                                  callbacks=[counter] if not curves else [])
    lazy, full = runs[False], runs[True]
    assert os.path.basename(lazy.run_dir) == os.path.basename(full.run_dir)  # not hashed
    for a, b in zip(lazy.rows, full.rows):
        assert a["early_stop_step"] == b["early_stop_step"]
        summary = {k: v for k, v in a.items() if k.endswith(("_at_early_stop", "_final"))}
        assert len(summary) == 12
        np.testing.assert_allclose([summary[k] for k in summary], [b[k] for k in summary],
                                   rtol=1e-6)
        assert all("test_loss" in h for h in b["history"])
        tested = [h["step"] for h in a["history"] if "test_loss" in h]
        assert a["early_stop_step"] in tested and tested[-1] == 100 and len(tested) <= 4
    assert all("val_loss" in logs for logs in counter.epoch_logs)


def test_eval_batch_size_is_part_of_the_run_only_when_set(tmp_path, digits):
    train, val, test = digits
    runs = {}
    for size in (None, 50):
        search = _search(tmp_path, digits_mlp(), rounds=1)
        runs[size] = search.fit(train, validation_data=val, test_data=test, steps=40,
                                eval_every=20, batch_size=32, eval_batch_size=size)
    default, by_50 = runs[None], runs[50]
    unset = _search(tmp_path, digits_mlp(), rounds=1).fit(
        train, validation_data=val, test_data=test, steps=40, eval_every=20, batch_size=32)
    assert unset.run_dir == default.run_dir != by_50.run_dir  # None: the old identity
    with open(os.path.join(by_50.run_dir, "config.json")) as f:
        assert json.load(f)["eval_batch_size"] == 50
    for a, b in zip(default.rows, by_50.rows):  # the same evaluation, batched otherwise
        assert a["early_stop_step"] == b["early_stop_step"]
        assert a["test_accuracy_final"] == b["test_accuracy_final"]
        np.testing.assert_allclose([h["val_loss"] for h in a["history"]],
                                   [h["val_loss"] for h in b["history"]], rtol=1e-5)


def test_regression_with_its_own_loss_metric_and_monitor(tmp_path, diabetes):
    train, val, test = diabetes

    def build():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((10,))
        hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
        model.compile(keras.optimizers.Adam(0.05), "mse", metrics=["mean_absolute_error"])
        return model

    search = _search(tmp_path, build, rounds=1, monitor="val_mean_absolute_error")
    result = search.fit(train, val, test, steps=80, eval_every=10, batch_size=16)
    for row in result.rows:
        history = row["history"]
        best = min(history, key=lambda h: (h["val_mean_absolute_error"], h["step"]))
        assert row["early_stop_step"] == best["step"]
    text = result.table()
    assert "test mean_absolute_error @ES" in text
    assert result.rows[0]["test_mean_absolute_error_final"] < 100  # targets span 25-346


def test_a_maximized_monitor_picks_the_best_auc(tmp_path, cancer):
    train, val, test = cancer

    def build():
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
        return model

    result = _search(tmp_path, build, rounds=0, monitor="val_auc").fit(
        train, val, test, steps=60, eval_every=10, batch_size=16)
    row = result.rows[0]
    best = max(row["history"], key=lambda h: (h["val_auc"], -h["step"]))
    assert row["early_stop_step"] == best["step"]
    assert row["val_auc_at_early_stop"] == max(h["val_auc"] for h in row["history"])


class DigitsNet(keras.Model):
    """A subclassed model (masked in place by `prunable`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(32, activation="relu", name="hidden")
        self.head = keras.layers.Dense(10, name="head")

    def call(self, x):
        return self.head(self.hidden(x))


def test_a_subclassed_model_that_is_not_built_yet(tmp_path, digits):
    train, val, _ = digits

    def build():
        keras.utils.set_random_seed(3)
        model = DigitsNet()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    result = _search(tmp_path, build, rounds=2, scope="layerwise").fit(
        train, val, steps=40, eval_every=20, batch_size=32)
    masks = read_npz(os.path.join(result.run_dir, "round_02", "masks.npz"))
    assert sorted(masks) == ["head/kernel", "hidden/kernel"]
    assert all(m.mean() == pytest.approx(0.64, abs=0.01) for m in masks.values())
    ticket = result.ticket(2)
    slots = kl.mask_slots(ticket)
    assert sorted(s.key for s in slots) == ["head/kernel", "hidden/kernel"]
    assert type(ticket.head) is keras.layers.Dense and type(ticket.hidden) is keras.layers.Dense
    for slot in slots:
        kernel, mask = (keras.ops.convert_to_numpy(v) for v in (slot.kernel, slot.mask))
        np.testing.assert_array_equal(mask != 0, masks[slot.key])
        assert np.all(kernel[mask == 0] == 0)
    # No test split: the table falls back to "-" and the round lines to the monitor.
    assert "| -" in result.table()


def two_input_model():
    keras.utils.set_random_seed(4)
    left, right = keras.Input((32,), name="left"), keras.Input((32,), name="right")
    merged = keras.layers.Concatenate()([keras.layers.Dense(16, activation="relu", name="fl")(left),
                                         keras.layers.Dense(16, activation="relu", name="fr")(right)])
    model = keras.Model([left, right], keras.layers.Dense(10, name="out")(merged))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _halves(split, batch=None):
    (x, y) = split
    data = ((x[:, :32], x[:, 32:]), y)
    if batch is None:
        return data
    return tf.data.Dataset.from_tensor_slices(data).shuffle(len(y), seed=0).batch(batch, drop_remainder=True)


def test_two_inputs_from_tf_data_and_from_numpy_give_the_same_kind_of_run(tmp_path, digits):
    train, val, test = digits
    from_tf = _search(tmp_path / "tf", two_input_model, rounds=1).fit(
        _halves(train, 32), _halves(val, 100), _halves(test, 100), steps=40, eval_every=20)
    from_np = _search(tmp_path / "np", two_input_model, rounds=1).fit(
        _halves(train), _halves(val), _halves(test), steps=40, eval_every=20, batch_size=32)
    for result in (from_tf, from_np):
        assert sorted(result.masks) == ["fl/kernel", "fr/kernel", "out/kernel"]
        assert result.branch()[1]["percent_remaining"] == pytest.approx(80.0, abs=0.1)
        assert result.rows[0]["test_accuracy_final"] > 0.3


def test_late_rewinding_oneshot_and_early_bird_on_a_model_of_your_own(tmp_path, digits):
    train, val, _ = digits
    result = _search(tmp_path, digits_mlp(), mode="oneshot", sparsities=(50, 20),
                     rewind_step=20, eb_every=10, eb_threshold=0.5, eb_window=2).fit(
        train, val, steps=60, eval_every=20, batch_size=32)
    rows = {row["round"]: row for row in result.branch()}
    assert rows[1]["percent_remaining"] == pytest.approx(50, abs=1)
    assert rows[2]["percent_remaining"] == pytest.approx(20, abs=1)
    assert rows[1]["start_step"] == rows[2]["start_step"] == 20
    assert [h["step"] for h in rows[1]["history"]] == [20, 40, 60]
    assert kl.WeightSnapshot.load(os.path.join(result.run_dir, "rewind.npz")).step == 20
    assert rows[0]["early_bird"]["step"] is not None


def test_an_edited_architecture_never_resumes_a_stale_run(tmp_path, digits):
    train, val, _ = digits
    first = _search(tmp_path, digits_mlp(64), rounds=1).fit(train, val, steps=20, eval_every=10,
                                                            batch_size=32)
    again = _search(tmp_path, digits_mlp(64), rounds=1).fit(train, val, steps=20, eval_every=10,
                                                            batch_size=32)
    edited = _search(tmp_path, digits_mlp(48), rounds=1).fit(train, val, steps=20, eval_every=10,
                                                             batch_size=32)
    assert again.run_dir == first.run_dir
    assert [r["val_loss_final"] for r in again.rows] == [r["val_loss_final"] for r in first.rows]
    assert [r["seconds"] for r in again.rows] == [r["seconds"] for r in first.rows]  # not retrained
    assert edited.run_dir != first.run_dir
    config = json.load(open(os.path.join(first.run_dir, "config.json")))
    assert config["model"].endswith("digits_mlp.<locals>.build") and config["architecture"]


def test_interrupted_branch_with_a_damaged_checkpoint_resumes_to_the_same_masks(tmp_path, digits):
    train, val, test = digits

    class Interrupt(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Interrupt.seen += 1
            if Interrupt.seen == 60 + 50:  # round 1, after its checkpoint at step 40
                raise KeyboardInterrupt

    def run(logdir, callbacks=()):
        search = kl.LotterySearch(digits_mlp(), rounds=2, controls=("random_reinit",),
                                  logdir=str(logdir), verbose=0, checkpoint_every=20)
        return search.fit(train, val, test, steps=60, eval_every=20, batch_size=32,
                          callbacks=list(callbacks))

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", [Interrupt()])
    (latest,) = glob.glob(f"{tmp_path}/killed/*/round_01/checkpoint.npz")
    assert glob.glob(f"{tmp_path}/killed/*/round_01/checkpoint.prev.npz")
    with open(latest, "r+b") as f:  # the newest checkpoint is damaged: resume from the one before
        f.seek(100)
        f.write(b"garbage!" * 8)
    with pytest.warns(UserWarning, match="checkpoint"):
        resumed = run(tmp_path / "killed")
    clean = run(tmp_path / "clean")
    assert [(r["round"], r["branch"]) for r in resumed.rows] == [
        (r["round"], r["branch"]) for r in clean.rows] and len(clean.rows) == 5
    for a, b in zip(resumed.rows, clean.rows):
        assert a["early_stop_step"] == b["early_stop_step"]
        np.testing.assert_allclose([h["val_loss"] for h in a["history"]],
                                   [h["val_loss"] for h in b["history"]], rtol=1e-5)
    for r in range(3):
        a = read_npz(f"{resumed.run_dir}/round_{r:02d}/masks.npz")
        b = read_npz(f"{clean.run_dir}/round_{r:02d}/masks.npz")
        # Automatic layer names differ between two builds in one process.
        assert len(a) == len(b) == 2, (sorted(a), sorted(b))
        assert [np.shape(u) for u in a.values()] == [np.shape(v) for v in b.values()]
        assert all(np.array_equal(u, v) for u, v in zip(a.values(), b.values()))


@pytest.mark.slow  # about 1-2 minutes on two loaded cores
def test_mirrored_strategy_gives_the_masks_of_one_device(tmp_path, digits):
    train, val, _ = digits
    one = _search(tmp_path / "one", digits_mlp(), rounds=1).fit(
        train, val, steps=40, eval_every=20, batch_size=32)
    two = _search(tmp_path / "two", digits_mlp(), rounds=1, strategy="mirrored").fit(
        train, val, steps=40, eval_every=20, batch_size=32)
    assert len(one.masks) == len(two.masks) == 2, (sorted(one.masks), sorted(two.masks))
    assert [m.shape for m in one.masks.values()] == [m.shape for m in two.masks.values()]
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in
                                        zip(one.masks.values(), two.masks.values())]))
    assert agreement >= 0.999


def test_report_and_export_of_a_run_on_your_own_model(tmp_path, digits, capsys):
    from keras_lottery.runner import commands

    train, val, test = digits
    result = _search(tmp_path, digits_mlp(), rounds=1).fit(train, val, test, steps=40,
                                                          eval_every=20, batch_size=32)
    commands.report(result.run_dir)
    out = capsys.readouterr().out
    assert "| test acc @ES |" in out and "analyses skipped" not in out
    assert os.path.exists(os.path.join(result.run_dir, "accuracy_vs_sparsity.png"))
    sizes = commands.export(result.run_dir, 1, str(tmp_path / "out"))
    assert os.path.exists(tmp_path / "out" / "ticket.keras") and sizes[0].zero_fraction > 0.15


# Faults: a clear error, nothing lost --------------------------------------

def test_a_model_without_prunable_layers_is_refused(tmp_path, digits):
    def build():
        model = keras.Sequential([keras.Input((64,)), keras.layers.BatchNormalization()])
        model.compile("adam", "mse")
        return model

    with pytest.raises(ValueError, match="has no prunable weight"):
        _search(tmp_path, build).fit(*digits[:2], steps=10, eval_every=5)


def test_an_uncompiled_model_and_bad_data_are_refused(tmp_path, digits):
    with pytest.raises(ValueError, match="is not compiled"):
        _search(tmp_path, lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])).fit(
            *digits[:2], steps=10, eval_every=5)
    with pytest.raises(ValueError, match="training data must be a tf.data.Dataset"):
        _search(tmp_path, digits_mlp()).fit([1, 2, 3, 4], digits[1], steps=10, eval_every=5)
    with pytest.raises(ValueError, match="needs validation_data"):
        _search(tmp_path, digits_mlp()).fit(digits[0], steps=10, eval_every=5)
    with pytest.raises(ValueError, match="pass a function that builds and compiles the model"):
        _search(tmp_path, digits_mlp()(), strategy="mirrored").fit(*digits[:2], steps=10,
                                                                   eval_every=5)


def test_a_monitor_that_evaluation_never_produces_names_the_keys(tmp_path, digits):
    with pytest.raises(kl.MonitorError, match=r"monitor='val_auc'.*Available: \['train_accuracy', 'train_loss', 'val_accuracy', 'val_loss'\]"):
        _search(tmp_path, digits_mlp(), monitor="val_auc").fit(*digits[:2], steps=10, eval_every=5)


def test_data_that_does_not_fit_names_round_branch_and_keeps_keras_message(tmp_path, digits):
    (x, y), (xv, yv), _ = digits
    with pytest.raises(kl.BranchFailedError, match=r"round 0, branch 'ticket' failed at step 0: .*64"):
        _search(tmp_path, digits_mlp()).fit((x[:, :60], y), (xv[:, :60], yv), steps=10,
                                            eval_every=5)


def _diverging(lr):
    def build():
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(lr), "mse")
        return model
    return build


def test_a_diverged_branch_is_recorded_and_the_run_goes_on(tmp_path, diabetes):
    train, val, _ = diabetes
    result = _search(tmp_path, _diverging(1e4), rounds=1, controls=("random_reinit",)).fit(
        train, val, steps=40, eval_every=10, batch_size=16)
    assert len(result.rows) == 3
    assert all(row["diverged"] for row in result.rows)
    row = result.rows[0]
    assert row["history"][-1]["step"] == row["diverged_at_step"] < 40
    assert "diverged at" in result.table()
    events = EventAccumulator(glob.glob(f"{result.run_dir}/round_00/events*")[0])
    events.Reload()
    assert "diverged" in events.Tags()["tensors"]
    assert all(np.isfinite(v).all() for v in kl.WeightSnapshot.load(
        f"{result.run_dir}/round_00/weights.npz").values)  # the last finite weights
    fine = _search(tmp_path, _diverging(1e-3), rounds=0).fit(train, val, steps=20, eval_every=10,
                                                             batch_size=16)
    assert "diverged" not in fine.rows[0]


def test_on_divergence_stop_stops_the_run_and_keeps_what_was_done(tmp_path, diabetes):
    train, val, _ = diabetes
    search = _search(tmp_path, _diverging(1e4), rounds=2, on_divergence="stop")
    with pytest.raises(kl.DivergedError, match=r"round 0, branch 'ticket'.*on_divergence='stop'"):
        search.fit(train, val, steps=40, eval_every=10, batch_size=16)
    (metrics,) = glob.glob(f"{tmp_path}/runs/*/round_00/metrics.json")
    assert json.load(open(metrics))["diverged"] is True
    assert not glob.glob(f"{tmp_path}/runs/*/round_01")


def test_damaged_masks_are_pruned_again(tmp_path, digits):
    train, val, _ = digits

    def run(callbacks=()):
        search = kl.LotterySearch(digits_mlp(), rounds=2, logdir=str(tmp_path / "runs"),
                                  verbose=0, checkpoint_every=20)
        return search.fit(train, val, steps=60, eval_every=20, batch_size=32,
                          callbacks=list(callbacks))

    clean = run()
    masks_path = os.path.join(clean.run_dir, "round_02", "masks.npz")
    expected = read_npz(masks_path)
    with open(masks_path, "r+b") as f:  # cut by a full disk
        f.truncate(os.path.getsize(masks_path) // 2)
    with pytest.warns(UserWarning, match="masks.npz"):
        rerun = run()
    assert all(np.array_equal(read_npz(masks_path)[k], expected[k]) for k in expected)
    assert rerun.rows[-1]["percent_remaining"] == clean.rows[-1]["percent_remaining"]


def test_a_model_instance_is_theta0_and_every_branch_gets_a_fresh_optimizer(tmp_path, digits):
    train, val, _ = digits
    instance = digits_mlp()()
    instance.fit(*train, epochs=1, batch_size=64, verbose=0)  # its current weights are θ0
    theta0 = [w.copy() for w in instance.get_weights()]

    class OptimizerSteps(keras.callbacks.Callback):
        at_begin = []

        def on_train_begin(self, logs=None):
            OptimizerSteps.at_begin.append(int(self.model.optimizer.iterations))

    result = _search(tmp_path, instance, rounds=2, controls=("random_reinit",)).fit(
        train, val, steps=40, eval_every=20, batch_size=32, callbacks=[OptimizerSteps()])
    assert OptimizerSteps.at_begin == [0] * 5  # dense + 2 rounds x (ticket, control)
    init = kl.WeightSnapshot.load(os.path.join(result.run_dir, "init.npz"))
    assert len(init.values) == len(theta0)
    assert all(np.array_equal(a, b) for a, b in zip(init.values, theta0))
    config = json.load(open(os.path.join(result.run_dir, "config.json")))
    assert config["model"] == "python:Sequential"


def test_unit_granularity_prunes_whole_units_of_your_own_model(tmp_path, digits):
    train, val, _ = digits
    result = _search(tmp_path, digits_mlp(), rounds=1, granularity="unit",
                     rates={"out": 0.0}).fit(train, val, steps=20, eval_every=10, batch_size=32)
    assert list(result.masks)[1] == "out/kernel"
    hidden, out = result.masks.values()
    columns = hidden.all(axis=0) | ~hidden.any(axis=0)  # each unit whole: kept or pruned
    assert columns.all() and 0 < (~hidden.any(axis=0)).sum() < 64
    assert out.all()
