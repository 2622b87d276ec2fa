"""Dynamic sparse training (SET, RigL) on the current Keras backend.

Run under tensorflow, jax and torch (`.ci/run`). The last tests train a
small MLP on real digits with `model.fit` and a callback that does what the
engine does after each step: bring JAX's state back to the variables,
ask the pruner for the masks at its update steps and assign them.
"""

import math

import keras
import numpy as np
import pytest

import keras_lottery as kl
from helpers import digits, mlp
from keras_lottery import mask_math, pruners
from keras_lottery.gradients import loss_gradients
from keras_lottery.pruners import DURING_TRAINING, PruneRequest
from keras_lottery.pruning import _optimizer_slots

(X, Y), _, _ = digits()
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
SHAPES = {"fc1/kernel": (64, 32), "fc2/kernel": (32, 16), "output/kernel": (16, 10)}


def _request(model, fraction=0.9, seed=0, **kwargs):
    batches = lambda n: [(X[64 * i:64 * (i + 1)], Y[64 * i:64 * (i + 1)]) for i in range(n)]
    return PruneRequest(model, fraction, seed=seed, batches=batches, loss=LOSS, **kwargs)


def _counts(masks):
    return {k: int(np.count_nonzero(m)) for k, m in masks.items()}


def _trained_like(model, seed):
    """Puts random nonzero values into the active weights (as training would)."""
    rng = np.random.default_rng(seed)
    for slot in kl.mask_slots(model):
        mask = keras.ops.convert_to_numpy(slot.mask)
        slot.kernel.assign((rng.normal(size=mask.shape) * mask).astype("float32"))


# ERK and the schedule (pure) -------------------------------------------------
def test_erk_densities_match_a_hand_computation_and_sum_to_the_target():
    sizes = {k: math.prod(s) for k, s in SHAPES.items()}
    # raw_k = sum(shape) / prod(shape): 96/2048, 48/512, 26/160; sum(raw_k * n_k) = 96+48+26 = 170.
    # Density 0.1: 272 weights, eps = 272 / 170 = 1.6.
    d = mask_math.erk_densities(SHAPES, 0.1)
    assert list(d) == list(SHAPES)
    np.testing.assert_allclose(list(d.values()), [1.6 * 96 / 2048, 1.6 * 48 / 512, 1.6 * 26 / 160])
    np.testing.assert_allclose(list(d.values()), [0.075, 0.15, 0.26])
    assert sum(d[k] * sizes[k] for k in d) == pytest.approx(272)
    # Density 0.5: 1360 weights; eps = 8 would give the output layer 8 * 0.1625 = 1.3 > 1, so
    # it is dense (160) and 1200 go to the others: eps = 1200 / 144, 800 and 400 weights.
    d = mask_math.erk_densities(SHAPES, 0.5)
    np.testing.assert_allclose(list(d.values()), [800 / 2048, 400 / 512, 1.0])
    assert sum(d[k] * sizes[k] for k in d) == pytest.approx(1360)
    # A convolution's kernel dimensions count: (3, 3, 4, 8) has raw 18 / 288.
    d = mask_math.erk_densities({"conv": (3, 3, 4, 8), "dense": (8, 8)}, 0.25)
    eps = 0.25 * (288 + 64) / (18 + 16)
    np.testing.assert_allclose([d["conv"], d["dense"]], [eps * 18 / 288, eps * 16 / 64])
    assert mask_math.erk_densities(SHAPES, 1.0) == dict.fromkeys(SHAPES, 1.0)
    with pytest.raises(ValueError, match="density"):
        mask_math.erk_densities(SHAPES, 0.0)


def test_counts_from_densities_add_up_exactly():
    sizes = {k: math.prod(s) for k, s in SHAPES.items()}
    counts = mask_math.counts_from_densities(sizes, mask_math.erk_densities(SHAPES, 0.1), 272)
    # 153.6, 76.8, 41.6: floors 153, 76, 41; the two left over go to the largest fractions.
    assert counts == {"fc1/kernel": 154, "fc2/kernel": 77, "output/kernel": 41}
    for density in (0.02, 0.1, 0.37, 0.5, 0.9):
        total = round(density * sum(sizes.values()))
        counts = mask_math.counts_from_densities(
            sizes, mask_math.erk_densities(SHAPES, total / sum(sizes.values())), total)
        assert sum(counts.values()) == total and all(0 < counts[k] <= sizes[k] for k in sizes)


def test_cosine_drop_schedule_values_and_update_steps():
    rigl = pruners.get("rigl")
    assert (rigl.options.drop_fraction, rigl.options.update_every, rigl.options.end,
            rigl.options.distribution, rigl.options.decay) == (0.3, 100, 0.75, "erk", "cosine")
    # T_end = 750 of 1000 steps: updates every 100 steps up to it.
    assert rigl.update_steps(0, 1000) == [100, 200, 300, 400, 500, 600, 700]
    for t in (0, 100, 375, 700):
        assert rigl.drop_fraction(t, 0, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi * t / 750)))
    assert rigl.drop_fraction(375, 0, 1000) == pytest.approx(0.15)
    assert rigl.drop_fraction(750, 0, 1000) == 0.0 and rigl.drop_fraction(900, 0, 1000) == 0.0
    # A branch from a rewind step: the schedule counts from its start.
    assert rigl.update_steps(500, 1500) == [600, 700, 800, 900, 1000, 1100, 1200]
    assert rigl.drop_fraction(875, 500, 1500) == pytest.approx(0.15)
    assert rigl.settled_from(500, 1500) == 1200  # early stopping judges the final masks
    constant = pruners.get("set", {"decay": "constant", "end": 1.0, "update_every": 30})
    assert constant.update_steps(0, 90) == [30, 60]  # not after the last step
    assert constant.drop_fraction(60, 0, 90) == 0.3
    assert pruners.get("set").when == pruners.get("rigl").when == DURING_TRAINING
    with pytest.raises(ValueError, match="distribution"):
        pruners.get("set", {"distribution": "er"})
    with pytest.raises(ValueError, match="drop_fraction"):
        pruners.get("rigl", {"drop_fraction": 1.0})


def test_drop_and_grow_drops_the_smallest_and_never_regrows_them_by_default():
    w = np.array([0.5, -2.0, 3.0, 0.0, 0.0, 0.0])
    mask = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([9.0, 9.0, 9.0, 1.0, 2.0, 0.5])  # the dropped ones score highest
    new, dropped, grown = mask_math.drop_and_grow(w, mask, 2, scores)
    assert dropped.tolist() == [True, True, False, False, False, False]
    assert grown.tolist() == [False, False, False, True, True, False]
    assert new.sum() == 3
    # RigL's code lets them compete: both grow back, nothing changes.
    new, dropped, grown = mask_math.drop_and_grow(w, mask, 2, scores, regrow_dropped=True)
    assert new.tolist() == (mask == 1).tolist() and not dropped.any() and not grown.any()


# Start masks -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["set", "rigl"])
def test_start_masks_have_the_erk_or_uniform_counts_exactly(name):
    model = kl.prunable(mlp(0))
    erk = pruners.get(name).start_masks(_request(model, 0.9))
    assert _counts(erk) == {"fc1/kernel": 154, "fc2/kernel": 77, "output/kernel": 41}
    uniform = pruners.get(name, {"distribution": "uniform"}).start_masks(_request(model, 0.9))
    assert _counts(uniform) == {"fc1/kernel": 205, "fc2/kernel": 51, "output/kernel": 16}
    # A rate of its own (the output at half rate) stays out of the distribution.
    rated = pruners.get(name).start_masks(_request(model, 0.9, rates={"output/kernel": 0.45}))
    assert _counts(rated)["output/kernel"] == 160 - 72
    assert sum(_counts(rated).values()) - 88 == round(0.1 * (2048 + 512))
    dense_first = pruners.get(name, {"dense_first": True}).start_masks(_request(model, 0.5))
    assert _counts(dense_first)["fc1/kernel"] == 2048
    assert _counts(dense_first)["fc2/kernel"] + _counts(dense_first)["output/kernel"] == 336
    # Seeded: the same seed draws the same masks, another seed others.
    again = pruners.get(name).start_masks(_request(model, 0.9))
    other = pruners.get(name).start_masks(_request(model, 0.9, seed=1))
    assert all(np.array_equal(erk[k], again[k]) for k in erk)
    assert not all(np.array_equal(erk[k], other[k]) for k in erk)


def test_start_masks_refuse_structured_granularity_and_rigl_without_gradients():
    model = kl.prunable(mlp(0))
    for granularity in ("unit", "2:4"):
        with pytest.raises(ValueError, match="single weights"):
            pruners.get("set").start_masks(_request(model, 0.5, granularity=granularity))
    with pytest.raises(ValueError, match="no batches and no loss"):
        pruners.get("rigl").start_masks(PruneRequest(model, 0.5))
    kl.set_masks(model, pruners.get("rigl").start_masks(_request(model, 0.5)))
    with pytest.raises(ValueError, match="no loss"):
        pruners.get("rigl").update(100, 0, 1000, PruneRequest(model, 0.5, batches=lambda n: []))


# Updates ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["set", "rigl"])
def test_updates_keep_every_layers_count_and_grown_weights_are_zero(name):
    model = kl.prunable(mlp(0))
    pruner = pruners.get(name)
    request = _request(model, 0.8)
    kl.set_masks(model, pruner.start_masks(request))
    counts = _counts(kl.get_masks(model))
    changed = 0
    for i, step in enumerate(pruner.update_steps(0, 1000)):
        _trained_like(model, seed=i)
        before = kl.get_masks(model)
        kernels = kl.get_kernels(model)
        new = pruner.update(step, 0, 1000, request)
        assert _counts(new) == counts
        for key, mask in new.items():
            dropped, grown = before[key] & ~mask, mask & ~before[key]
            n = int(np.floor(pruner.drop_fraction(step, 0, 1000) * counts[key]))
            assert dropped.sum() == grown.sum() == n
            # The dropped are the n smallest |w| among the active weights.
            if n:
                active = np.abs(kernels[key][before[key]])
                assert np.abs(kernels[key][dropped]).max() <= np.sort(active)[n - 1]
            changed += int(grown.sum())
        kl.set_masks(model, new)
        for key, kernel in kl.get_kernels(model).items():
            grown = new[key] & ~before[key]
            assert np.all(kernel[grown] == 0) and np.all(kernel[~new[key]] == 0)
            np.testing.assert_array_equal(kernel[new[key] & before[key]],
                                          kernels[key][new[key] & before[key]])
    assert changed > 0
    assert _counts(kl.get_masks(model)) == counts


def _linear_model():
    """y = x . w (6 inputs, 1 output, no bias): dL/dw_i of (y - x.w)^2 is -2 r x_i."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, use_bias=False, name="lin")])
    return kl.prunable(model)


def test_rigl_grows_where_the_gradient_is_largest_and_set_at_random():
    model = _linear_model()
    key = kl.mask_slots(model)[0].key
    x = np.array([[1.0, 2.0, 3.0, 5.0, 9.0, 4.0]], "float32")
    y = np.array([[10.0]], "float32")
    mask = np.array([1, 1, 1, 0, 0, 0], bool)[:, None]
    kl.set_masks(model, {key: mask})
    kl.mask_slots(model)[0].kernel.assign(np.array([[0.5], [-2.0], [3.0], [0], [0], [0]], "float32"))
    # Residual r = 10 - (0.5 - 4 + 9) = 4.5: the gradient is -9 x, largest |.| at x = 9, then 5.
    request = PruneRequest(model, 0.5, batches=lambda n: [(x, y)] * n,
                           loss=keras.losses.MeanSquaredError())
    grads = loss_gradients(model, request.loss, [(x, y)])[key]
    np.testing.assert_allclose(grads[:, 0], -9.0 * x[0], rtol=1e-5)
    options = {"drop_fraction": 0.5, "decay": "constant"}  # floor(0.5 * 3) = 1 per update
    rigl = pruners.get("rigl", options).update(100, 0, 1000, request)[key][:, 0]
    # Dropped: the smallest |w| (0.5, position 0); grown: position 4 (x = 9), not 3 (x = 5).
    assert rigl.tolist() == [False, True, True, False, True, False]
    rigl2 = pruners.get("rigl", {**options, "drop_fraction": 0.7}).update(
        100, 0, 1000, request)[key][:, 0]
    assert rigl2.tolist() == [False, False, True, True, True, False]  # 2 dropped, x = 9 and 5 grown
    # SET ignores the gradient: over seeds, every inactive position grows sometimes.
    grown = {int(np.flatnonzero(pruners.get("set", options).update(
        100, 0, 1000, PruneRequest(model, 0.5, seed=seed))[key][:, 0] & ~mask[:, 0])[0])
        for seed in range(20)}
    assert grown == {3, 4, 5}


def test_set_grows_seeded_at_random_and_elsewhere_than_rigl():
    model = kl.prunable(mlp(0))
    kl.set_masks(model, pruners.get("rigl").start_masks(_request(model, 0.9)))
    _trained_like(model, seed=0)
    before = kl.get_masks(model)
    set_masks = pruners.get("set").update(100, 0, 1000, _request(model, 0.9))
    assert all(np.array_equal(set_masks[k], m)
               for k, m in pruners.get("set").update(100, 0, 1000, _request(model, 0.9)).items())
    other_seed = pruners.get("set").update(100, 0, 1000, _request(model, 0.9, seed=5))
    rigl_masks = pruners.get("rigl").update(100, 0, 1000, _request(model, 0.9))
    grads = loss_gradients(model, LOSS, _request(model).batches(1))
    for key in before:
        set_grown, rigl_grown = set_masks[key] & ~before[key], rigl_masks[key] & ~before[key]
        assert set_grown.sum() == rigl_grown.sum() > 0
        assert not np.array_equal(set_grown, rigl_grown)
        assert not np.array_equal(set_grown, other_seed[key] & ~before[key])
        # RigL's grown weights are the inactive ones of largest |gradient|; SET's are not.
        inactive = np.abs(grads[key][~before[key]])
        threshold = np.sort(inactive)[-int(rigl_grown.sum())]
        assert np.abs(grads[key][rigl_grown]).min() >= threshold
        assert np.abs(grads[key][set_grown]).mean() < np.abs(grads[key][rigl_grown]).mean()


# During a real fit -----------------------------------------------------------
class DynamicSparseCallback(keras.callbacks.Callback):
    """What the engine does after each step: sync JAX's state, check that the
    pruned weights are exact zeros, and at the pruner's update steps assign
    its masks. It holds the model itself, as the engine does: Keras's
    `Callback.model` would sync JAX's state on its own."""

    def __init__(self, model, pruner, request, total):
        super().__init__()
        self.net = model
        self.pruner, self.request, self.total = pruner, request, total
        self.updates = set(pruner.update_steps(0, total))
        self.step = 0
        self.counts, self.changed, self.checked, self.updated = None, 0, 0, 0
        self.slots_checked = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        sync = getattr(self.net, "jax_state_sync", None)
        if sync is not None:
            sync()
        masks, kernels = kl.get_masks(self.net), kl.get_kernels(self.net)
        for key, mask in masks.items():
            assert np.all(kernels[key][~mask] == 0), (self.step, key)
        if self.counts is None:
            self.counts, self.last = _counts(masks), masks
        # The masks change at the updates only, and the trainer trains under the assigned ones.
        assert all(np.array_equal(masks[k], self.last[k]) for k in masks), self.step
        assert _counts(masks) == self.counts, self.step
        self.checked += 1
        if self.step in self.updates:
            new = self.pruner.update(self.step, 0, self.total, self.request)
            self.changed += sum(int(np.count_nonzero(new[k] & ~masks[k])) for k in new)
            kl.set_masks(self.net, new)
            self.last = kl.get_masks(self.net)
            self.updated += 1
            # Grown weights are zero at the moment they grow, and so are their optimizer slots.
            for slot in kl.mask_slots(self.net):
                grown = new[slot.key] & ~masks[slot.key]
                for variable in [slot.kernel, *_optimizer_slots(self.net, slot.kernel)]:
                    assert np.all(keras.ops.convert_to_numpy(variable)[grown] == 0), slot.key
                self.slots_checked += 1


@pytest.mark.parametrize("name", ["set", "rigl"])
def test_masks_stay_exact_zero_between_updates_during_fit(name):
    model = kl.prunable(mlp(0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=LOSS, metrics=["accuracy"])
    pruner = pruners.get(name, {"update_every": 10})
    request = _request(model, 0.8, seed=3)
    kl.set_masks(model, pruner.start_masks(request))
    expected = _counts(kl.get_masks(model))
    total = 2 * math.ceil(len(X) / 40)  # 2 epochs of 30 steps
    callback = DynamicSparseCallback(model, pruner, request, total)
    history = model.fit(X, Y, batch_size=40, epochs=2, verbose=0, shuffle=False,
                        callbacks=[callback])
    assert callback.checked == total and callback.updated == len(pruner.update_steps(0, total)) == 4
    assert callback.changed > 0 and callback.counts == expected
    assert callback.slots_checked == 4 * 3
    assert _optimizer_slots(model, kl.mask_slots(model)[0].kernel)  # Adam's m and v were checked
    masks, kernels = kl.get_masks(model), kl.get_kernels(model)
    assert _counts(masks) == expected
    assert all(np.all(kernels[k][~m] == 0) for k, m in masks.items())
    assert kl.sparsity(model) == pytest.approx(1 - sum(expected.values()) / 2720)
    assert history.history["loss"][-1] < history.history["loss"][0]
