"""The library on the current Keras backend (run under jax, torch and tensorflow)."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from helpers import compiled, digits, gradients, mlp

(X, Y), _, _ = digits()


class Net(keras.Model):
    """A subclassed model with get_config (so strip() and .keras can rebuild it)."""

    def __init__(self, units=16, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.fc = keras.layers.Dense(units, activation="relu", name="fc")
        self.out = keras.layers.Dense(10, name="out")

    def call(self, x):
        return self.out(self.fc(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _three_models():
    keras.utils.set_random_seed(1)
    sequential = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu", name="fc"),
                                   keras.layers.Dense(10, name="out")], name="seq")
    subclassed = Net(name="net")
    subclassed(X[:2])
    return {"sequential": sequential, "functional": mlp(1), "subclassed": subclassed}


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_prunable_masks_every_kind_of_model_in_place_with_the_same_predictions(kind):
    base = _three_models()[kind]
    expected = keras.ops.convert_to_numpy(base(X[:32]))
    classes = [type(l) for l in base.layers]
    model = kl.prunable(base)
    assert model is base and [type(l) for l in model.layers] == classes
    slots = kl.mask_slots(model)
    assert [s.key for s in slots] == (["fc1/kernel", "fc2/kernel", "output/kernel"]
                                      if kind == "functional" else ["fc/kernel", "out/kernel"])
    assert all(type(s.layer) is keras.layers.Dense and s.kernel is s.layer.kernel for s in slots)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(X[:32])), expected, rtol=1e-5, atol=1e-6)
    assert kl.sparsity(model) == 0.0


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_pruned_weights_are_exact_zeros_forward_and_get_exact_zero_gradient(kind):
    model = kl.prunable(_three_models()[kind])
    kl.prune_by_magnitude(model, fraction=0.5)
    masks = kl.get_masks(model)
    # Put garbage into the pruned kernel entries: the forward pass must not see it.
    before = keras.ops.convert_to_numpy(model(X[:32]))
    for slot in kl.mask_slots(model):
        m = keras.ops.convert_to_numpy(slot.mask)
        slot.kernel.assign(np.where(m != 0, keras.ops.convert_to_numpy(slot.kernel), 1e3).astype("float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(X[:32])), before)
    grads = dict(zip([v.path for v in model.trainable_variables], gradients(model, X[:32])))
    checked = 0
    for slot in kl.mask_slots(model):
        m = keras.ops.convert_to_numpy(slot.mask) == 0
        grad = grads[slot.kernel.path]
        assert m.any() and np.all(grad[m] == 0.0), slot.key
        assert np.any(grad[~m] != 0.0)
        checked += 1
    assert checked == len(masks)


def test_global_layerwise_and_random_pruning_counts():
    model = kl.prunable(mlp(0))
    kl.prune_by_magnitude(model, fraction=0.2)
    total = sum(m.size for m in kl.get_masks(model).values())
    assert round(kl.sparsity(model) * total) == round(0.2 * total)
    layerwise = kl.prunable(mlp(0))
    kl.prune_by_magnitude(layerwise, fraction=0.2, scope="layerwise", rates={"output": 0.1})
    by_layer = kl.sparsity_by_layer(layerwise)
    assert sorted(by_layer) == ["fc1/kernel", "fc2/kernel", "output/kernel"]
    assert by_layer["fc1/kernel"] == pytest.approx(0.2, abs=1e-3) and by_layer["output/kernel"] == pytest.approx(0.1, abs=1e-2)
    randomly = kl.prunable(mlp(0))
    kl.prune_randomly(randomly, fraction=0.2, seed=3)
    assert kl.sparsity(randomly) == pytest.approx(kl.sparsity(model), abs=1e-3)
    # Global magnitude pruning removes the smallest weights across layers.
    kernels = kl.get_kernels(kl.prunable(mlp(0)))
    threshold = np.quantile(np.abs(np.concatenate([k.ravel() for k in kernels.values()])), 0.2)
    for name, mask in kl.get_masks(model).items():
        assert np.all(np.abs(kernels[name][~mask]) <= threshold + 1e-7)


def test_rewind_callback_in_fit_restore_and_reinitialize():
    model = compiled(kl.prunable(mlp(0)))
    theta0 = kl.get_kernels(model)
    rewind = kl.RewindCallback(rewind_step=0)
    model.fit(X, Y, batch_size=60, epochs=1, callbacks=[rewind], verbose=0)
    trained = kl.get_kernels(model)
    assert not np.array_equal(trained["fc1/kernel"], theta0["fc1/kernel"])
    kl.prune_by_magnitude(model, fraction=0.2)
    masks = kl.get_masks(model)
    rewind.rewind(model)
    for name, kernel in kl.get_kernels(model).items():
        np.testing.assert_array_equal(kernel[masks[name]], theta0[name][masks[name]])
        assert np.all(kernel[~masks[name]] == 0)
    snapshot = kl.snapshot_weights(model)
    kl.reinitialize(model, seed=5)
    after = kl.get_kernels(model)
    assert not np.array_equal(after["fc1/kernel"], theta0["fc1/kernel"])
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)
    kl.restore_weights(model, snapshot)
    np.testing.assert_array_equal(kl.get_kernels(model)["fc1/kernel"], kl.get_kernels(model)["fc1/kernel"] * masks["fc1/kernel"])
    np.testing.assert_array_equal(kl.get_kernels(model)["fc2/kernel"][masks["fc2/kernel"]],
                                  theta0["fc2/kernel"][masks["fc2/kernel"]])
    # Training keeps pruned weights at exactly zero.
    model.fit(X, Y, batch_size=60, epochs=1, verbose=0)
    for name, kernel in kl.get_kernels(model).items():
        assert np.all(kernel[~masks[name]] == 0)


def test_strip_and_keras_round_trip_keep_masks_and_predictions(tmp_path):
    model = compiled(kl.prunable(mlp(0)))
    model.fit(X, Y, batch_size=60, epochs=1, verbose=0)
    kl.prune_by_magnitude(model, fraction=0.5)
    expected = keras.ops.convert_to_numpy(model(X[:64]))
    path = str(tmp_path / "masked.keras")
    model.save(path)
    loaded = kl.load_model(path)
    assert sorted(kl.get_masks(loaded)) == sorted(kl.get_masks(model)) and len(kl.get_masks(model)) == 3
    for name, mask in kl.get_masks(model).items():
        np.testing.assert_array_equal(kl.get_masks(loaded)[name], mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(X[:64])), expected, rtol=1e-6, atol=1e-6)
    unmasked = keras.models.load_model(path)  # plain Keras: no masks, pruned weights stored zeros
    assert not kl.mask_slots(unmasked)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(unmasked(X[:64])), expected, rtol=1e-6, atol=1e-6)
    plain = kl.strip(model)
    assert not kl.mask_slots(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(X[:64])), expected, rtol=1e-5, atol=1e-5)
    size = kl.save_ticket(model, str(tmp_path / "ticket.keras"))
    assert os.path.isfile(size.path) and size.zero_fraction > 0.4 and size.ratio > 1


def test_analyses_of_masks_and_weights():
    a = kl.prunable(mlp(0))
    kl.prune_by_magnitude(a, fraction=0.5)
    b = kl.prunable(mlp(0))
    kl.prune_randomly(b, fraction=0.5, seed=0)
    ma, mb = kl.get_masks(a), kl.get_masks(b)
    assert kl.analysis.jaccard(ma, ma) == 1.0
    assert 0 < kl.analysis.jaccard(ma, mb) < 1
    assert kl.analysis.hamming(ma, mb) > 0
    assert kl.mask_overlap(ma, ma) == 1.0
    dead = kl.analysis.dead_units(kl.get_kernels(a)["fc1/kernel"])
    assert set(dead) >= {"units", "dead"}
