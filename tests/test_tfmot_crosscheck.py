"""Cross-check against TFMOT's prune_low_magnitude (needs the [tfmot] extra)."""

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
    layer = tf_keras.layers.Dense(48)
    tf_model = tf_keras.Sequential([tf_keras.Input((64,)), layer])
    layer.set_weights([kernel, np.zeros(48, "float32")])
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(tf_model, pruning_schedule=schedule)
    wrapper = pruned.layers[0]
    wrapper.pruning_step.assign(0)
    pruned(np.ones((1, 64), "float32"), training=True)  # TFMOT updates its mask here
    tfmot_mask = [w for w in wrapper.weights if "mask" in w.name][0].numpy() != 0

    ours = kl.layerwise_magnitude_masks({"dense": kernel}, None, sparsity)["dense"]
    assert tfmot_mask.mean() == pytest.approx(1 - sparsity, abs=1e-3)
    assert np.array_equal(ours, tfmot_mask)
