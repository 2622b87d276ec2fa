"""Mixed precision and MirroredStrategy (two logical CPUs) with masks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from keras_lottery.runner.distribute import make_strategy
from conftest import compile_for_test, mlp, toy_data


def test_mixed_float16_trains_with_masks_intact():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = kl.prunable(mlp())
    layer = model.get_layer("fc1")
    assert type(layer) is keras.layers.Dense and layer.compute_dtype == "float16"
    slots = kl.mask_slots(model)
    assert [s.key for s in slots] == ["fc1/kernel", "fc2/kernel", "out/kernel"]
    assert slots[0].layer is layer and slots[0].kernel is layer.kernel
    assert all(s.kernel.dtype == s.mask.dtype == "float32" for s in slots)
    kl.prune_by_magnitude(model, 0.5)
    masks = kl.get_masks(model)
    x, y = toy_data()
    history = compile_for_test(model).fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)
    kernels = kl.get_kernels(model)
    assert all(np.all(kernels[k][~masks[k]] == 0) for k in masks)
    hidden = keras.Model(model.input, model.get_layer("fc1").output)
    assert hidden(x).dtype == "float16"


def test_mirrored_strategy_fit_keeps_masks_identical_on_replicas():
    assert len(tf.config.list_logical_devices("CPU")) == 2, "conftest splits the CPU in two"
    strategy = make_strategy("mirrored")  # the process's one MirroredStrategy
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = compile_for_test(kl.prunable(mlp()))
    x, y = toy_data()
    rewind = kl.RewindCallback()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[rewind])
    kl.prune_by_magnitude(model, 0.5)
    rewind.rewind(model)
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[rewind])
    assert np.isfinite(history.history["loss"]).all()
    assert kl.sparsity(model) == pytest.approx(0.5, abs=1e-3)
    slots = kl.mask_slots(model)
    assert len(slots) == 3
    for slot in slots:
        masks = [v.numpy() for v in slot.mask.value.values]
        kernels = [v.numpy() for v in slot.kernel.value.values]
        assert len(masks) == 2 and np.array_equal(masks[0], masks[1])
        assert np.array_equal(kernels[0], kernels[1])
        for kernel in kernels:
            assert np.all(kernel[masks[0] == 0] == 0)
    # Rewinding restores every replica.
    rewind.rewind(model)
    first = slots[0]
    assert first.key == "fc1/kernel" and rewind.snapshot.paths[0] == first.kernel.path
    replicas = first.kernel.value.values
    assert len(replicas) == 2
    for replica in replicas:
        expected = rewind.snapshot.values[0] * first.mask.value.values[0].numpy()
        assert np.array_equal(replica.numpy(), expected)
