"""Cross-check against TFMOT's prune_low_magnitude (needs the [tfmot] extra)."""

import keras
import numpy as np
import pytest

import keras_lottery as kl

# Trains with TFMOT at three sparsities (`pytest -m slow`; CI runs it).
pytestmark = pytest.mark.slow

tfmot = pytest.importorskip("tensorflow_model_optimization", reason="needs the [tfmot] extra")
tf_keras = pytest.importorskip("tf_keras", reason="needs the [tfmot] extra")


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
def test_layerwise_mask_equals_tfmot_constant_sparsity_mask(sparsity):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(64, 48)).astype("float32")
    tfmot_mask = _tfmot_mask(kernel, sparsity)
    ours = kl.layerwise_magnitude_masks({"dense": kernel}, None, sparsity)["dense"]
    assert tfmot_mask.mean() == pytest.approx(1 - sparsity, abs=1e-3)
    assert np.array_equal(ours, tfmot_mask)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
def test_prunable_model_pruned_layerwise_gets_tfmots_mask(sparsity):
    """The same through the model API: a Keras 3 model made prunable() in place."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(64, 48)).astype("float32")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, name="fc")])
    model.get_layer("fc").set_weights([kernel, np.zeros(48, "float32")])
    assert kl.prunable(model) is model
    masks = kl.prune_by_magnitude(model, sparsity, scope="layerwise")
    assert list(masks) == ["fc/kernel"]
    tfmot_mask = _tfmot_mask(kernel, sparsity)
    assert np.array_equal(masks["fc/kernel"], tfmot_mask)
    assert np.array_equal(kl.get_masks(model)["fc/kernel"], tfmot_mask)
    np.testing.assert_array_equal(kl.get_kernels(model)["fc/kernel"], kernel * tfmot_mask)


def _tfmot_mask(kernel, sparsity):
    """TFMOT's ConstantSparsity mask of one tf_keras Dense kernel."""
    layer = tf_keras.layers.Dense(kernel.shape[1])
    tf_model = tf_keras.Sequential([tf_keras.Input((kernel.shape[0],)), layer])
    layer.set_weights([kernel, np.zeros(kernel.shape[1], "float32")])
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(tf_model, pruning_schedule=schedule)
    wrapper = pruned.layers[0]
    wrapper.pruning_step.assign(0)
    pruned(np.ones((1, kernel.shape[0]), "float32"), training=True)  # TFMOT updates its mask here
    return [w for w in wrapper.weights if "mask" in w.name][0].numpy() != 0
