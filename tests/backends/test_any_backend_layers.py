"""Every layer and model kind, in place, on the current backend: pruned weights
are exactly zero forward and in their gradient, masks key by unique path,
`.keras` keeps masks and predictions, `strip` predicts the same."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from helpers import gradients
from zoo import LAYER_KINDS, MODEL_KINDS, Encoder


def _built(factory, x):
    keras.utils.set_random_seed(0)
    model = factory()
    model(x)
    return model


def _assign_random_masks(model, seed):
    """Masks assigned to the mask variables only: the weights under them
    stay nonzero, so only the forward pass can hide them."""
    rng = np.random.default_rng(seed)
    for slot in kl.mask_slots(model):
        slot.mask.assign((rng.random(tuple(slot.mask.shape)) < 0.5).astype("float32"))


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_weight_matrix_of_the_layer_is_masked_and_nothing_else(kind):
    factory, x = LAYER_KINDS[kind]
    model = kl.prunable(_built(factory, x))
    rows = kl.inventory(model).rows
    assert not [r for r in rows if r.status in ("unknown layer", "prunable")]
    masked = [r for r in rows if r.pruned]
    # Every kernel, recurrent kernel, embedding and projection; no bias or norm.
    assert masked and all(r.path.rsplit("/", 1)[-1] in (
        "kernel", "recurrent_kernel", "embeddings", "depthwise_kernel", "pointwise_kernel")
        for r in masked)
    assert all(not r.pruned for r in rows if r.path.endswith(("bias", "gamma", "beta")))
    if kind in ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "Bidirectional"):
        assert any(r.path.endswith("recurrent_kernel") for r in masked)
    if kind == "MultiHeadAttention":
        assert len([r for r in masked if "multi_head_attention" in r.path]) == 4
    keys = [s.key for s in kl.mask_slots(model)]
    assert len(keys) == len(set(keys)) == len(masked)


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_pruned_weights_are_exactly_zero_forward_and_in_their_gradient(kind):
    factory, x = LAYER_KINDS[kind]
    model = kl.prunable(_built(factory, x))
    _assign_random_masks(model, seed=1)
    masked_out = _np(model(x))
    slots = kl.mask_slots(model)
    grads = dict(zip(map(id, model.trainable_variables), gradients(model, x)))
    for slot in slots:
        grad, mask = grads[id(slot.kernel)], _np(slot.mask)
        assert np.all(grad[mask == 0] == 0), slot.key
        assert np.any(grad[mask != 0] != 0), slot.key
    # The same network with the pruned weights stored as zeros, masks all ones.
    for slot in slots:
        slot.kernel.assign(_np(slot.kernel) * _np(slot.mask))
        slot.mask.assign(np.ones(tuple(slot.mask.shape), "float32"))
    np.testing.assert_allclose(masked_out, _np(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_prunable_keeps_the_model_and_its_predictions(kind):
    factory, x = MODEL_KINDS[kind]
    base = _built(factory, x)
    classes = [type(layer) for layer in base.layers]
    expected = _np(base(x))
    model = kl.prunable(base)
    assert model is base and [type(layer) for layer in model.layers] == classes
    np.testing.assert_allclose(_np(model(x)), expected, rtol=1e-6)
    assert kl.prunable(model) is model and len(kl.mask_slots(model)) == len(
        {id(s.kernel) for s in kl.mask_slots(model)})


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_keras_file_keeps_masks_and_predictions_and_strip_predicts_the_same(kind, tmp_path):
    factory, x = MODEL_KINDS[kind]
    model = kl.prunable(_built(factory, x))
    kl.prune_by_magnitude(model, 0.6, scope="layerwise")
    expected, masks = _np(model(x)), kl.get_masks(model)
    model.save(tmp_path / "masked.keras")
    again = kl.load_model(tmp_path / "masked.keras")
    assert sorted(kl.get_masks(again)) == sorted(masks)
    assert all(np.array_equal(kl.get_masks(again)[k], m) for k, m in masks.items())
    np.testing.assert_allclose(_np(again(x)), expected, rtol=1e-5, atol=1e-6)
    plain_keras = keras.saving.load_model(tmp_path / "masked.keras")
    assert not kl.mask_slots(plain_keras)
    np.testing.assert_allclose(_np(plain_keras(x)), expected, rtol=1e-5, atol=1e-6)
    plain = kl.strip(model)
    assert not kl.mask_slots(plain) and kl.mask_slots(model)
    np.testing.assert_allclose(_np(plain(x)), expected, rtol=1e-5, atol=1e-6)
    zeros = sum(int(np.sum(m == 0)) for m in masks.values())
    assert sum(int(np.sum(_np(w) == 0)) for w in plain.weights) >= zeros


def test_same_named_nested_layers_get_their_own_masks_and_are_all_pruned():
    factory, x = MODEL_KINDS["subclassed"]
    model = kl.prunable(_built(factory, x))
    slots = kl.mask_slots(model)
    # 2 blocks x (4 attention projections + ff) + head: 11 kernels, 11 keys.
    assert len(slots) == len({s.key for s in slots}) == 11
    kl.prune_by_magnitude(model, 0.5, scope="layerwise")
    for slot in slots:
        assert abs(float(np.mean(_np(slot.kernel) == 0)) - 0.5) < 0.02, slot.key
    assert all(abs(v - 0.5) < 0.02 for v in kl.sparsity_by_layer(model).values())


def test_rates_by_layer_name_reach_every_layer_of_that_name():
    factory, x = MODEL_KINDS["subclassed"]
    model = kl.prunable(_built(factory, x))
    kl.prune_by_magnitude(model, 0.5, scope="layerwise", rates={"ff": 0.0})
    by_key = kl.sparsity_by_layer(model)
    ff = [k for k in by_key if k.split("/")[-2] == "ff"]
    assert len(ff) == 2 and all(by_key[k] == 0.0 for k in ff)


def test_a_custom_layer_that_declares_its_weights_is_pruned_without_registration():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 4), name="w")

        def call(self, x):
            return keras.ops.matmul(x, self.w)

        def get_prunable_weights(self):
            return [self.w]

    model = keras.Sequential([keras.Input((5,)), Scale()])
    model(_np(keras.ops.ones((2, 5))))
    kl.prunable(model)
    assert [s.key.rsplit("/", 1)[-1] for s in kl.mask_slots(model)] == ["w"]
    kl.set_masks(model, {kl.mask_slots(model)[0].key: np.zeros((5, 4))})
    assert np.all(_np(model(np.ones((2, 5), "float32"))) == 0)


def test_an_unknown_layer_with_a_weight_matrix_is_named_in_a_warning():
    class Mine(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 4), name="w")
            self.b = self.add_weight(shape=(4,), name="b")

        def call(self, x):
            return keras.ops.matmul(x, self.w) + self.b

    model = keras.Sequential([keras.Input((5,)), Mine(name="mine"), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match=r"Not pruned: \['.*mine/w'\].*register_prunable\(Mine"):
        kl.prunable(model)
    statuses = {r.path.rsplit("/", 2)[-2:][1]: r.status for r in kl.inventory(model).rows
                if "mine" in r.path}
    assert statuses == {"w": "unknown layer", "b": "not a matrix"}
    assert "NOT PRUNED: unknown layer" in str(kl.inventory(model))


def test_registering_a_wrong_weight_name_fails_clearly():
    class Mine(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 4), name="w")

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    with pytest.raises(ValueError, match="defines as a function, not a weight"):
        kl.register_prunable(Mine, "call")
    kl.register_prunable(Mine, "kernel")
    try:
        model = keras.Sequential([keras.Input((5,)), Mine(name="mine")])
        with pytest.raises(ValueError, match=r"has no variable of that name.*weights are \['w'\]"):
            kl.prunable(model)
    finally:
        del kl.PRUNABLE_KERNELS[Mine]


def test_masks_survive_a_clone_by_key():
    factory, x = MODEL_KINDS["functional_ops"]
    model = kl.prunable(_built(factory, x))
    kl.prune_by_magnitude(model, 0.5)
    clone = kl.prunable(keras.models.clone_model(model))
    assert sorted(kl.get_masks(clone)) == sorted(kl.get_masks(model))


def test_a_subclassed_model_rebuilt_from_config_loads_masks(tmp_path):
    model = kl.prunable(_built(lambda: Encoder(name="enc"), MODEL_KINDS["subclassed"][1]))
    kl.prune_randomly(model, 0.3, seed=0)
    model.save(tmp_path / "enc.keras")
    again = kl.load_model(tmp_path / "enc.keras")
    assert isinstance(again, Encoder)
    assert all(np.array_equal(kl.get_masks(again)[k], v) for k, v in kl.get_masks(model).items())


def test_layers_masked_one_by_one_are_keyed_by_the_model_and_saved(tmp_path):
    """Masks held by layers masked before the model existed (TFMOT's way)."""
    layers = [keras.layers.Dense(6, name="one"), keras.layers.Dense(3, name="two")]
    for layer in layers:
        layer.build((None, 5 if layer.name == "one" else 6))
        kl.prunable(layer)
    model = keras.Sequential([keras.Input((5,)), *layers], name="late")
    assert [s.key for s in kl.mask_slots(model)] == ["one/kernel", "two/kernel"]
    kl.prune_randomly(model, 0.5, seed=0)
    model.save(tmp_path / "late.keras")
    again = kl.load_model(tmp_path / "late.keras")
    assert all(np.array_equal(kl.get_masks(again)[k], v) for k, v in kl.get_masks(model).items())
