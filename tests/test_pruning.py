"""Model-level pruning helpers: counts, compounding, optimizer state, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from conftest import compile_for_test, mlp, toy_data


def _trained(seed=0, optimizer="adam"):
    model = compile_for_test(kl.prunable(mlp(seed)), optimizer)
    x, y = toy_data()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, x, y


def test_global_and_layerwise_counts_are_exact():
    model, _, _ = _trained()
    sizes = {k: v.size for k, v in kl.get_masks(model).items()}
    total = sum(sizes.values())
    kl.prune_by_magnitude(model, 0.2)
    kept = {k: int(v.sum()) for k, v in kl.get_masks(model).items()}
    assert sum(kept.values()) == total - round(0.2 * total)
    assert kl.sparsity(model) == pytest.approx(round(0.2 * total) / total)

    model, _, _ = _trained()
    kl.prune_by_magnitude(model, 0.2, scope="layerwise", rates={"out": 0.1})
    kept = {k: int(v.sum()) for k, v in kl.get_masks(model).items()}
    assert sorted(kept) == sorted(sizes) == ["fc1/kernel", "fc2/kernel", "out/kernel"]
    assert kept == {k: n - round((0.1 if k == "out/kernel" else 0.2) * n) for k, n in sizes.items()}
    assert kl.sparsity_by_layer(model)["out/kernel"] == pytest.approx(round(0.1 * 48) / 48)


def test_global_prunes_by_one_threshold_across_layers():
    model, _, _ = _trained()
    kl.prune_by_magnitude(model, 0.5)
    masks, kernels = kl.get_masks(model), kl.get_kernels(model)
    survivors = np.concatenate([np.abs(kernels[k][masks[k]]) for k in masks])
    assert survivors.min() > 0
    assert len(set(np.round(list(kl.sparsity_by_layer(model).values()), 3))) > 1


def test_three_rounds_of_twenty_percent_leave_51_2_percent():
    model, x, y = _trained()
    for _ in range(3):
        kl.prune_by_magnitude(model, 0.2, scope="layerwise")
        model.fit(x, y, epochs=1, verbose=0)
    for key, mask in kl.get_masks(model).items():
        assert abs(mask.mean() - 0.512) <= 1.5 / mask.size, key


def test_pruned_weights_zero_in_variables_gradients_and_optimizer_state():
    model, x, y = _trained()
    kl.prune_by_magnitude(model, 0.6)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    masks, kernels = kl.get_masks(model), kl.get_kernels(model)
    for key in masks:
        assert np.all(kernels[key][~masks[key]] == 0), key
        assert np.any(kernels[key][masks[key]] != 0), key
    [fc1] = [s for s in kl.mask_slots(model) if s.key == "fc1/kernel"]
    assert fc1.layer is model.get_layer("fc1") and fc1.kernel is fc1.layer.kernel
    slots = kl.pruning._optimizer_slots(model, fc1.kernel)
    assert [s.name.rsplit("_", 1)[-1] for s in slots] == ["momentum", "velocity"]
    for slot in slots:
        assert np.all(slot.numpy()[~masks["fc1/kernel"]] == 0)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grad = tape.gradient(loss, fc1.kernel).numpy()
    assert np.all(grad[~masks["fc1/kernel"]] == 0) and np.any(grad[masks["fc1/kernel"]] != 0)


def test_sgd_with_momentum_and_weight_decay_keeps_pruned_at_zero():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2)
    model, x, y = _trained(optimizer=optimizer)
    kl.prune_by_magnitude(model, 0.5)
    model.fit(x, y, epochs=2, verbose=0)
    masks, kernels = kl.get_masks(model), kl.get_kernels(model)
    assert all(np.all(kernels[k][~masks[k]] == 0) for k in masks)


def test_prune_randomly_counts_and_ignore():
    model, _, _ = _trained()
    before = kl.get_masks(model)
    after = kl.prune_randomly(model, 0.5, seed=1, ignore=("out",))
    assert np.array_equal(after["out/kernel"], before["out/kernel"])
    assert int(after["fc1/kernel"].sum()) == 320
    assert kl.get_masks(model)["fc1/kernel"].sum() == 320
    # A mask key works in ignore like the layer name.
    again = kl.prune_randomly(model, 0.5, seed=2, ignore=("out/kernel",))
    assert np.array_equal(again["out/kernel"], before["out/kernel"])
    assert int(again["fc1/kernel"].sum()) == 160


def test_set_masks_round_trip_and_errors():
    model, _, _ = _trained()
    target = {k: np.random.default_rng(0).random(v.shape) < 0.3 for k, v in kl.get_masks(model).items()}
    kl.set_masks(model, target)
    assert all(np.array_equal(kl.get_masks(model)[k], target[k]) for k in target)
    with pytest.raises(ValueError, match=r"Mask 'fc1/kernel' must have the kernel's shape \(20, 32\). Received: shape \(32, 20\)"):
        kl.set_masks(model, {"fc1/kernel": np.ones((32, 20))})
    with pytest.raises(ValueError, match=r"unknown weights \['fc9'\]. Accepted keys: \['fc1/kernel', 'fc2/kernel', 'out/kernel'\]"):
        kl.set_masks(model, {"fc9": np.ones((2, 2))})
    # set_masks takes mask keys, not layer names.
    with pytest.raises(ValueError, match=r"unknown weights \['fc1'\]"):
        kl.set_masks(model, {"fc1": np.ones((20, 32))})


def test_bad_arguments_name_value_and_accepted():
    model, _, _ = _trained()
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\). Received: fraction=1.5"):
        kl.prune_by_magnitude(model, 1.5)
    with pytest.raises(ValueError, match=r"scope must be one of \('global', 'layerwise'\). Received: scope='local'"):
        kl.prune_by_magnitude(model, 0.2, scope="local")
    with pytest.raises(ValueError, match=r"rates names 'dense_9'.*Masked layers: \['fc1', 'fc2', 'out'\]; keys: \['fc1/kernel', 'fc2/kernel', 'out/kernel'\]"):
        kl.prune_by_magnitude(model, 0.2, rates={"dense_9": 0.1})
    with pytest.raises(ValueError, match="has no masked weights. Make it prunable"):
        kl.sparsity(mlp())


def test_separable_conv_masks_are_keyed_per_kernel():
    base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.SeparableConv2D(4, 3, name="sep")])
    model = kl.prunable(base)
    assert sorted(kl.get_masks(model)) == ["sep/depthwise_kernel", "sep/pointwise_kernel"]
    masks = kl.prune_by_magnitude(model, 0.5, scope="layerwise", rates={"sep": 0.25})
    assert masks["sep/depthwise_kernel"].sum() == 27 - round(0.25 * 27)
    assert masks["sep/pointwise_kernel"].sum() == 12 - 3
    masks = kl.prune_by_magnitude(model, 0.1, scope="layerwise", rates={"sep/pointwise_kernel": 0.5})
    assert masks["sep/pointwise_kernel"].sum() == 9 - round(0.5 * 9)
    assert masks["sep/depthwise_kernel"].sum() == 20 - round(0.1 * 20)
