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
    wrapper = model.get_layer("fc1")
    assert wrapper.compute_dtype == "float16"
    assert wrapper.kernels[0].dtype == wrapper.masks[0].dtype == "float32"
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
    for wrapper in kl.masked_layer.masked_layers(model):
        masks = [v.numpy() for v in wrapper.masks[0].value.values]
        kernels = [v.numpy() for v in wrapper.kernels[0].value.values]
        assert len(masks) == 2 and np.array_equal(masks[0], masks[1])
        assert np.array_equal(kernels[0], kernels[1])
        for kernel in kernels:
            assert np.all(kernel[masks[0] == 0] == 0)
    # Rewinding restores every replica.
    rewind.rewind(model)
    first = model.get_layer("fc1")
    for replica in first.kernels[0].value.values:
        expected = rewind.snapshot.values[0] * first.masks[0].value.values[0].numpy()
        assert np.array_equal(replica.numpy(), expected)
