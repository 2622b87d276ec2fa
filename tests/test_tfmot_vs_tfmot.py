"""keras_lottery.tfmot against TFMOT 0.8 itself (on tf_keras): schedules, masks, steps.

Needs the [tfmot] extra (tensorflow-model-optimization and tf_keras); skipped,
with the reason shown, where they are not installed.
"""

import keras
import numpy as np
import pytest

import keras_lottery as kl
import keras_lottery.tfmot as ours
import keras_lottery.tfmot.masks  # noqa: F401  (ours.masks)
from keras_lottery.tfmot.prune import layer_pruning

tfmot = pytest.importorskip("tensorflow_model_optimization", reason="needs the [tfmot] extra")
tf_keras = pytest.importorskip("tf_keras", reason="needs the [tfmot] extra")
import tensorflow as tf  # noqa: E402

from keras_lottery.tfmot.schedule import _POWF  # noqa: E402

TS, OS = tfmot.sparsity.keras, ours.sparsity.keras
STEPS = range(0, 3001)

SCHEDULES = [
    ("ConstantSparsity", dict(target_sparsity=0.37, begin_step=17, end_step=-1, frequency=23)),
    ("ConstantSparsity", dict(target_sparsity=0.9, begin_step=5, end_step=2011, frequency=100)),
    ("PolynomialDecay", dict(initial_sparsity=0.13, final_sparsity=0.87, begin_step=29,
                             end_step=2003, power=3, frequency=37)),
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=7,
                             end_step=1900, power=1, frequency=11)),
    ("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.95, begin_step=100,
                             end_step=101, power=3, frequency=1)),
]


@pytest.mark.parametrize("name, params", SCHEDULES)
def test_schedules_equal_tfmot_at_every_step(name, params):
    theirs, mine = getattr(TS, name)(**params), getattr(OS, name)(**params)
    outputs = [theirs(tf.constant(s, tf.int64)) for s in STEPS]  # TFMOT's int64 pruning_step
    should = np.array([bool(o[0]) for o in outputs])
    sparsity = np.array([o[1].numpy() for o in outputs], np.float32)
    got = [mine(s) for s in STEPS]
    assert [bool(g[0]) for g in got] == should.tolist()
    values = np.array([g[1] for g in got], np.float32)
    if _POWF is not None:
        assert np.array_equal(values, sparsity)  # bit for bit
    else:
        assert np.allclose(values, sparsity, rtol=2e-7, atol=0)
    assert should.sum() >= 2


def _tied(weights, threshold):
    return int(np.count_nonzero(np.abs(weights) == threshold))


def _layers(kind):
    if kind == "dense":
        return (lambda: tf_keras.layers.Dense(48), lambda: keras.layers.Dense(48), (64,))
    if kind == "dense_odd":
        return (lambda: tf_keras.layers.Dense(20), lambda: keras.layers.Dense(20), (31,))
    return (lambda: tf_keras.layers.Conv2D(16, 3), lambda: keras.layers.Conv2D(16, 3), (6, 6, 8))


def _both(kind, **params):
    """TFMOT's wrapper and our pruned layer on the same kernel shape."""
    make_theirs, make_ours, shape = _layers(kind)
    theirs = TS.prune_low_magnitude(tf_keras.Sequential([tf_keras.Input(shape), make_theirs()]),
                                    **{k: (getattr(TS, v[0])(**v[1]) if k == "pruning_schedule"
                                           else v) for k, v in params.items()})
    mine = OS.prune_low_magnitude(keras.Sequential([keras.Input(shape), make_ours()]),
                                  **{k: (getattr(OS, v[0])(**v[1]) if k == "pruning_schedule"
                                         else v) for k, v in params.items()})
    callback = OS.UpdatePruningStep()
    callback.set_model(mine)
    callback.on_train_begin()
    return theirs, mine, callback, np.ones((1, *shape), np.float32)


def _step_both(theirs, mine, callback, x, step, kernel):
    """Both at `step` with this kernel: TFMOT in its training call, ours in the callback."""
    wrapper = theirs.layers[0]
    wrapper.layer.kernel.assign(kernel)
    wrapper.pruning_step.assign(step - 1)
    theirs(x, training=True)  # TFMOT: step += 1, then its masks if the schedule says so
    slot = kl.mask_slots(mine)[0]
    slot.kernel.assign(kernel)
    layer_pruning(slot.layer).step = step - 1
    callback.on_train_batch_begin(0)
    _, mask, threshold = wrapper.pruning_vars[0]
    return (mask.numpy() != 0, float(threshold.numpy()),
            keras.ops.convert_to_numpy(slot.mask) != 0, layer_pruning(slot.layer).thresholds)


POLY = ("PolynomialDecay", dict(initial_sparsity=0.05, final_sparsity=0.93, begin_step=2,
                                end_step=30, power=3, frequency=1))


@pytest.mark.parametrize("kind, params", [
    ("dense", {"pruning_schedule": POLY}),
    ("conv", {"pruning_schedule": POLY}),
    ("dense", {"pruning_schedule": POLY, "block_size": (4, 4), "block_pooling_type": "AVG"}),
    ("dense", {"pruning_schedule": POLY, "block_size": (2, 3), "block_pooling_type": "MAX"}),
    ("dense_odd", {"pruning_schedule": POLY, "block_size": (4, 4), "block_pooling_type": "AVG"}),
    ("dense_odd", {"pruning_schedule": POLY, "block_size": (2, 4), "block_pooling_type": "MAX"}),
])
def test_masks_equal_tfmot_after_each_pruning_step(kind, params):
    theirs, mine, callback, x = _both(kind, **params)
    rng = np.random.default_rng(0)
    shape = tuple(kl.mask_slots(mine)[0].kernel.shape)
    ties = compared = 0
    for step in range(1, 34):
        kernel = np.round(rng.normal(size=shape), 2).astype(np.float32)  # many ties
        tfmot_mask, tfmot_threshold, mask, thresholds = _step_both(theirs, mine, callback, x,
                                                                   step, kernel)
        assert np.array_equal(mask, tfmot_mask), f"step {step}"
        if step >= 2:  # the steps that prune (begin_step=2, frequency=1, to end_step=30)
            key = kl.mask_slots(mine)[0].key
            assert thresholds[key] == pytest.approx(tfmot_threshold)
            if params.get("block_size", (1, 1)) == (1, 1):
                ties += max(0, _tied(kernel, tfmot_threshold) - 1)
            compared += 1
    assert compared >= 29
    if params.get("block_size", (1, 1)) == (1, 1):
        print(f"{kind}: {compared} pruning steps, {ties} weights tied at the threshold, "
              "all kept by both")
        assert ties > 0  # the rounded weights did tie at the threshold


@pytest.mark.parametrize("kind, m_by_n", [("dense", (2, 4)), ("conv", (2, 4)), ("dense", (1, 4))])
def test_m_by_n_masks_equal_tfmot(kind, m_by_n):
    theirs, mine, callback, x = _both(kind, sparsity_m_by_n=m_by_n)
    rng = np.random.default_rng(1)
    shape = tuple(kl.mask_slots(mine)[0].kernel.shape)
    first = None
    for step in (1, 2, 3):  # set at step 1 only, then kept
        kernel = np.round(rng.normal(size=shape), 1).astype(np.float32)  # ties within groups
        tfmot_mask, _, mask, _ = _step_both(theirs, mine, callback, x, step, kernel)
        assert np.array_equal(mask, tfmot_mask), f"step {step}"
        first = mask if first is None else first
        assert np.array_equal(mask, first)


def test_fit_prunes_at_tfmot_steps():
    """Same data, same initial weights, 17 batches: the masks come from the same
    steps (5, 10, 15) so each layer ends at TFMOT's sparsity."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17 * 16, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=len(x))
    schedule = dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100,
                    frequency=5)
    t_model = tf_keras.Sequential([tf_keras.Input((20,)), tf_keras.layers.Dense(32),
                                   tf_keras.layers.Dense(3)])
    t_pruned = TS.prune_low_magnitude(t_model, pruning_schedule=TS.PolynomialDecay(**schedule))
    t_pruned.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t_pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TS.UpdatePruningStep()])
    m_pruned = OS.prune_low_magnitude(keras.Sequential([keras.Input((20,)), keras.layers.Dense(32),
                                                        keras.layers.Dense(3)]),
                                      pruning_schedule=OS.PolynomialDecay(**schedule))
    m_pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m_pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[OS.UpdatePruningStep()])
    t_sparsity = [1 - float(np.mean(w.pruning_vars[0][1].numpy())) for w in t_pruned.layers]
    assert [int(w.pruning_step.numpy()) for w in t_pruned.layers] == [17, 17]
    assert {layer_pruning(s.layer).step for s in kl.mask_slots(m_pruned)} == {17}
    assert list(kl.sparsity_by_layer(m_pruned).values()) == pytest.approx(t_sparsity, abs=1e-6)
    expected = OS.PolynomialDecay(**schedule)(15)[1]
    assert t_sparsity[0] == pytest.approx(expected, abs=1 / 640)


def test_no_callback_error_matches_tfmot():
    t_pruned = TS.prune_low_magnitude(tf_keras.Sequential([tf_keras.Input((4,)),
                                                           tf_keras.layers.Dense(2)]))
    t_pruned.compile("sgd", "mse")
    x, y = np.ones((8, 4), np.float32), np.ones((8, 2), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError) as tfmot_error:
        t_pruned.fit(x, y, verbose=0)
    m_pruned = OS.prune_low_magnitude(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    m_pruned.compile("sgd", "mse")
    with pytest.raises(RuntimeError) as our_error:
        m_pruned.fit(x, y, verbose=0)
    assert "requires the UpdatePruningStep callback" in str(tfmot_error.value)
    assert "requires the UpdatePruningStep callback" in str(our_error.value)


def _pruned_weights_between_updates(framework):
    """Trains 20 steps (Adam, learning rate 0.05) at 60%, masks updated at
    steps 1, 6, 11, 16, and
    measures the pruned weights of the first layer: their share nonzero in
    the variable after an optimizer step, the share of them that come back
    (mask 0 -> 1) at the next mask update, and their gradient."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=320)
    lib, api = (tf_keras, TS) if framework == "tfmot" else (keras, OS)
    lib.utils.set_random_seed(0)
    model = lib.Sequential([lib.Input((20,)), lib.layers.Dense(32, activation="relu"),
                            lib.layers.Dense(3)])
    pruned = api.prune_low_magnitude(model, pruning_schedule=api.ConstantSparsity(
        0.6, begin_step=1, frequency=5))
    pruned.compile(lib.optimizers.Adam(5e-2),
                   lib.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen, masks = [], []

    class Probe(lib.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if framework == "tfmot":
                wrapper = pruned.layers[0]
                kernel, mask = wrapper.layer.kernel.numpy(), wrapper.pruning_vars[0][1].numpy()
            else:
                slot = kl.mask_slots(pruned)[0]
                kernel = keras.ops.convert_to_numpy(slot.kernel)
                mask = keras.ops.convert_to_numpy(slot.mask)
            seen.append(float(np.mean(kernel[mask == 0] != 0)))
            masks.append(mask != 0)

    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0,
               callbacks=[api.UpdatePruningStep(), Probe()])
    with tf.GradientTape() as tape:
        loss = lib.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y[:64], pruned(x[:64], training=False))
    if framework == "tfmot":
        wrapper = pruned.layers[0]
        kernel, mask = wrapper.layer.kernel, wrapper.pruning_vars[0][1].numpy()
    else:
        slot = kl.mask_slots(pruned)[0]
        kernel, mask = slot.kernel.value, keras.ops.convert_to_numpy(slot.mask)
    gradient = tape.gradient(loss, kernel).numpy()
    regrown = [float(np.mean(after[~before])) for before, after in zip(masks[4::5], masks[5::5])]
    return (np.mean(seen), float(np.mean(gradient[mask == 0] != 0)), float(
        np.abs(gradient[mask == 0]).mean() / np.abs(gradient[mask != 0]).mean()),
        float(np.mean(regrown)))


def test_pruned_weights_between_mask_updates_tfmot_vs_ours():
    """The measured difference of the migration table (docs/tfmot.md)."""
    tfmot_nonzero, tfmot_grad, tfmot_ratio, tfmot_back = _pruned_weights_between_updates("tfmot")
    our_nonzero, our_grad, _, our_back = _pruned_weights_between_updates("ours")
    print(f"pruned weights nonzero after an optimizer step: TFMOT {tfmot_nonzero:.3f}, ours "
          f"{our_nonzero:.3f}; with a nonzero gradient: TFMOT {tfmot_grad:.3f} (mean |grad| "
          f"{tfmot_ratio:.2f}x the kept weights'), ours {our_grad:.3f}; back at the next "
          f"mask update: TFMOT {tfmot_back:.3f}, ours {our_back:.3f}")
    assert tfmot_nonzero > 0.5 and tfmot_grad > 0.5  # TFMOT: dense gradient, re-zeroed next call
    assert tfmot_back > 0  # and pruned weights can come back at the next mask update
    assert our_nonzero == 0.0 and our_grad == 0.0 and our_back == 0.0  # ours: exact zeros


def test_partial_blocks_where_tfmot_scores_other_blocks_than_it_masks():
    """A kernel whose rows are not a multiple of the block height with 2 or
    more rows of padding: TFMOT's SAME pooling puts half the padding before
    the first row, so it scores blocks offset from the ones it masks; ours
    scores and masks the same blocks. (Where the padding is 0 or 1 row the
    masks are equal: test_masks_equal_tfmot_after_each_pruning_step.)"""
    t_model = TS.prune_low_magnitude(
        tf_keras.Sequential([tf_keras.Input((30,)), tf_keras.layers.Dense(20)]),
        pruning_schedule=TS.ConstantSparsity(0.5, 0, frequency=1), block_size=(4, 4))
    kernel = np.random.default_rng(0).normal(size=(30, 20)).astype(np.float32)
    wrapper = t_model.layers[0]
    wrapper.layer.kernel.assign(kernel)
    wrapper.pruning_step.assign(0)
    t_model(np.ones((1, 30), np.float32), training=True)
    tfmot_mask = wrapper.pruning_vars[0][1].numpy()
    ours_mask, _ = ours.masks.block_mask(kernel, np.float32(0.5), (4, 4))
    score = np.abs(np.pad(kernel, ((0, 2), (0, 0)))).reshape(8, 4, 5, 4).mean(axis=(1, 3))
    expected = score >= np.sort(score.ravel())[::-1][19]  # the 20 best of 40 aligned blocks
    assert np.array_equal(ours_mask, np.kron(expected, np.ones((4, 4)))[:30].astype(bool))
    differing = int(np.count_nonzero(tfmot_mask.astype(bool) != ours_mask))
    print(f"(30, 20) kernel, 4x4 blocks: {differing} of 600 mask entries differ from TFMOT's")
    assert differing > 0


def test_polynomial_decay_with_end_step_at_begin_step():
    """TFMOT divides 0 by 0 there (a NaN sparsity at its one pruning step);
    ours jumps to final_sparsity at begin_step."""
    params = dict(initial_sparsity=0.5, final_sparsity=0.9, begin_step=10, end_step=10,
                  frequency=1)
    theirs, mine = TS.PolynomialDecay(**params), OS.PolynomialDecay(**params)
    assert np.isnan(theirs(tf.constant(10, tf.int64))[1].numpy())
    assert mine(10) == (True, np.float32(0.9)) and not mine(11)[0]
    assert mine(9)[1] == theirs(tf.constant(9, tf.int64))[1].numpy()


def test_a_pruned_lstm_layer_gets_tfmots_masks():
    """prune_low_magnitude(LSTM(...)), a layer whose prunable weights are its
    cell's: TFMOT prunes kernel and recurrent kernel; so does ours, with the
    same masks for the same weights."""
    schedule = dict(target_sparsity=0.6, begin_step=0, frequency=1)
    theirs = tf_keras.Sequential([tf_keras.Input((5, 4)), TS.prune_low_magnitude(
        tf_keras.layers.LSTM(6), pruning_schedule=TS.ConstantSparsity(**schedule))])
    lstm = keras.layers.LSTM(6)
    mine = keras.Sequential([keras.Input((5, 4)), OS.prune_low_magnitude(
        lstm, pruning_schedule=OS.ConstantSparsity(**schedule))])
    wrapper = theirs.layers[0]
    rng = np.random.default_rng(0)
    kernels = {}
    for name in ("kernel", "recurrent_kernel"):
        value = rng.normal(size=tuple(getattr(lstm.cell, name).shape)).astype(np.float32)
        getattr(wrapper.layer.cell, name).assign(value)
        getattr(lstm.cell, name).assign(value)
        kernels[name] = value
    wrapper.pruning_step.assign(0)
    theirs(np.ones((1, 5, 4), np.float32), training=True)  # step 1: TFMOT prunes
    callback = OS.UpdatePruningStep()
    callback.set_model(mine)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)  # step 1: ours
    tfmot_masks = {weight.name.split("/")[-1].split(":")[0]: mask.numpy() != 0
                   for weight, mask, _ in wrapper.pruning_vars}
    ours_masks = {slot.key.split("/")[-1]: keras.ops.convert_to_numpy(slot.mask) != 0
                  for slot in kl.mask_slots(mine)}
    assert sorted(tfmot_masks) == sorted(ours_masks) == ["kernel", "recurrent_kernel"]
    for name in ours_masks:
        assert np.array_equal(ours_masks[name], tfmot_masks[name]), name
        assert 1 - ours_masks[name].mean() == pytest.approx(0.6, abs=0.01)
