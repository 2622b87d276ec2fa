"""RewindCallback, restore_weights and reinitialize."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import compile_for_test, mlp, toy_data


def _values(model):
    return [w.numpy().copy() for w in kl.rewind.rewindable_weights(model)]


def test_rewind_restores_theta0_bit_for_bit_for_survivors():
    model = compile_for_test(kl.prunable(mlp()))
    theta0 = _values(model)
    x, y = toy_data()
    rewind = kl.RewindCallback()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[rewind])
    assert not np.array_equal(_values(model)[0], theta0[0])
    kl.prune_by_magnitude(model, 0.2)
    rewind.rewind(model)
    masks = kl.get_masks(model)
    kernel_ids = {id(w.kernels[0]): w.name for w in kl.masked_layer.masked_layers(model)}
    for weight, start in zip(kl.rewind.rewindable_weights(model), theta0):
        value = weight.numpy()
        if id(weight) in kernel_ids:
            mask = masks[kernel_ids[id(weight)]]
            assert np.array_equal(value[mask], start[mask])  # bitwise
            assert np.all(value[~mask] == 0)
        else:
            assert np.array_equal(value, start)
    assert kl.sparsity(model) == pytest.approx(0.2, abs=1e-3)


def test_snapshot_is_kept_across_rounds_and_excludes_masks():
    model = compile_for_test(kl.prunable(mlp()))
    x, y = toy_data()
    rewind = kl.RewindCallback()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[rewind])
    first = rewind.snapshot
    kl.prune_by_magnitude(model, 0.5)
    rewind.rewind(model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[rewind])
    assert rewind.snapshot is first
    assert not any("mask" in p for p in first.paths)
    assert len(first.values) == 6


def test_late_rewind_restores_theta_k():
    model = compile_for_test(kl.prunable(mlp()))
    x, y = toy_data(n=320)
    k = 7

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == k - 1 and not hasattr(self, "theta_k"):
                self.theta_k = _values(self.model)

    record, rewind = Record(), kl.RewindCallback(rewind_step=k)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[record, rewind])
    rewind.rewind(model)
    assert all(np.array_equal(a, b) for a, b in zip(_values(model), record.theta_k))
    assert rewind.snapshot.step == k


def test_late_rewind_counts_across_epochs():
    model = compile_for_test(kl.prunable(mlp()))
    x, y = toy_data(n=64)
    rewind = kl.RewindCallback(rewind_step=5)  # 2 batches per epoch: taken in epoch 3

    class Count(keras.callbacks.Callback):  # the weights after the 5th batch, counted here
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1
            if Count.batches == 5:
                self.after_5 = _values(self.model)

    count = Count()
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[count, rewind])
    assert count.batches == 6 and rewind.snapshot.step == 5
    rewind.rewind(model)
    assert all(np.array_equal(a, b) for a, b in zip(_values(model), count.after_5))


def test_training_shorter_than_rewind_step_is_an_error():
    model = compile_for_test(kl.prunable(mlp()))
    x, y = toy_data(n=64)
    with pytest.raises(ValueError, match="before rewind_step=50"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[kl.RewindCallback(50)])


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="Keras's torch backend refuses steps_per_execution > 1 itself")
def test_steps_per_execution_must_divide_rewind_step():
    model = kl.prunable(mlp())
    model.compile("adam", "mse", steps_per_execution=4)
    x, y = toy_data(n=64)
    with pytest.raises(ValueError, match="not a multiple of the model's steps_per_execution=4"):
        model.fit(x, keras.utils.to_categorical(y), epochs=1, verbose=0, callbacks=[kl.RewindCallback(6)])


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_bad_rewind_step(step):
    with pytest.raises(ValueError, match=r"rewind_step must be an integer >= 0. Received: rewind_step="):
        kl.RewindCallback(step)


def test_rewind_without_snapshot_is_an_error():
    with pytest.raises(ValueError, match="no snapshot yet"):
        kl.RewindCallback().rewind(kl.prunable(mlp()))


def test_snapshot_for_another_architecture_is_an_error():
    snap = kl.snapshot_weights(kl.prunable(mlp()))
    other = kl.prunable(mlp(inputs=7))
    with pytest.raises(ValueError, match=r"has shape \(20, 32\), but the model's .* has shape \(7, 32\)"):
        kl.restore_weights(other, snap)


def test_snapshot_file_lets_a_later_process_rewind(tmp_path):
    path = tmp_path / "theta0.npz"
    model = compile_for_test(kl.prunable(mlp()))
    theta0 = _values(model)
    x, y = toy_data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[kl.RewindCallback(path=path)])
    kl.prune_by_magnitude(model, 0.5)
    model.save(tmp_path / "pruned.keras")
    np.save(tmp_path / "theta0_fc2.npy", theta0[2])
    script = f"""
import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np, keras_lottery as kl
model = keras.models.load_model({str(tmp_path / 'pruned.keras')!r})
kl.RewindCallback(path={str(path)!r}).rewind(model)
mask = kl.get_masks(model)["fc2"]
kernel = model.get_layer("fc2").kernels[0].numpy()
start = np.load({str(tmp_path / 'theta0_fc2.npy')!r})
assert np.array_equal(kernel[mask], start[mask]) and np.all(kernel[~mask] == 0)
print("rewound", mask.mean())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rewound 0.5" in out.stdout
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_reinitialize_differs_from_theta0_keeps_masks_and_is_seeded():
    model = compile_for_test(kl.prunable(mlp()))
    theta0 = _values(model)
    kl.prune_by_magnitude(model, 0.5)
    masks = kl.get_masks(model)
    kl.reinitialize(model, seed=1)
    first = _values(model)
    kernels = kl.get_kernels(model)
    assert all(np.all(kernels[k][~masks[k]] == 0) for k in masks)
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)
    assert not np.array_equal(first[0], theta0[0] * masks["fc1"])
    # Same initializer family: Glorot uniform bounds and similar spread.
    limit = np.sqrt(6 / (20 + 32))
    assert np.abs(first[0]).max() <= limit
    assert np.std(first[0][masks["fc1"]]) == pytest.approx(np.std(theta0[0]), rel=0.25)
    assert np.all(first[1] == 0)  # biases: zeros initializer
    kl.reinitialize(model, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(_values(model), first))
    kl.reinitialize(model, seed=2)
    assert not np.array_equal(_values(model)[0], first[0])


def test_reinitialize_resets_batchnorm_statistics():
    base = keras.Sequential([keras.Input((20,)), keras.layers.Dense(8), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model = compile_for_test(kl.prunable(base))
    x, y = toy_data()
    model.fit(x, y, epochs=1, verbose=0)
    bn = model.layers[1]
    assert not np.allclose(bn.moving_mean.numpy(), 0)
    kl.reinitialize(model, seed=0)
    assert np.all(bn.moving_mean.numpy() == 0) and np.all(bn.moving_variance.numpy() == 1)
