"""MaskedLayer and prunable(): wrapping, forward pass, gradients, config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from conftest import compile_for_test, mlp, toy_data

# (layer factory, input shape without batch, integer inputs?)
LAYERS = {
    "Dense": (lambda: keras.layers.Dense(6), (5,), False),
    "EinsumDense": (lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=6), (5,), False),
    "Conv1D": (lambda: keras.layers.Conv1D(4, 3), (9, 3), False),
    "Conv2D": (lambda: keras.layers.Conv2D(4, 3, groups=1), (8, 8, 2), False),
    "Conv3D": (lambda: keras.layers.Conv3D(2, 2), (5, 5, 5, 2), False),
    "Conv1DTranspose": (lambda: keras.layers.Conv1DTranspose(3, 3), (6, 2), False),
    "Conv2DTranspose": (lambda: keras.layers.Conv2DTranspose(3, 3, strides=2), (5, 5, 2), False),
    "Conv3DTranspose": (lambda: keras.layers.Conv3DTranspose(2, 2), (4, 4, 4, 2), False),
    "DepthwiseConv1D": (lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=2), (9, 3), False),
    "DepthwiseConv2D": (lambda: keras.layers.DepthwiseConv2D(3), (8, 8, 3), False),
    "SeparableConv1D": (lambda: keras.layers.SeparableConv1D(4, 3), (9, 3), False),
    "SeparableConv2D": (lambda: keras.layers.SeparableConv2D(4, 3), (8, 8, 3), False),
    "Embedding": (lambda: keras.layers.Embedding(30, 4), (7,), True),
}


def _inputs(shape, integer, seed=0):
    rng = np.random.default_rng(seed)
    if integer:
        return rng.integers(0, 30, size=(4, *shape))
    return rng.normal(size=(4, *shape)).astype("float32")


def _random_masks(wrapper, seed=0):
    rng = np.random.default_rng(seed)
    for mask in wrapper.masks:
        mask.assign((rng.random(mask.shape) < 0.5).astype("float32"))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_forward_equals_kernel_times_mask(name):
    factory, shape, integer = LAYERS[name]
    x = _inputs(shape, integer)
    wrapper = kl.MaskedLayer(factory())
    wrapper(x)
    assert len(wrapper.masks) == len(wrapper.kernel_names) >= 1
    for kernel, mask in zip(wrapper.kernels, wrapper.masks):
        assert mask.shape == kernel.shape and not mask.trainable
        assert np.all(keras.ops.convert_to_numpy(mask) == 1)
    _random_masks(wrapper)
    reference = wrapper.layer.__class__.from_config(wrapper.layer.get_config())
    reference.build_from_config(wrapper.layer.get_build_config())
    baked = dict(zip(map(id, wrapper.kernels), wrapper.masked_kernel_values()))
    reference.set_weights([baked.get(id(w), w.numpy()) for w in wrapper.layer.weights])
    np.testing.assert_allclose(wrapper(x), reference(x), atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in LAYERS if n != "Embedding") + ["Embedding"])
def test_pruned_weights_get_exactly_zero_gradient(name):
    factory, shape, integer = LAYERS[name]
    x = _inputs(shape, integer)
    wrapper = kl.MaskedLayer(factory())
    wrapper(x)
    _random_masks(wrapper, seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(wrapper(x)))
    grads = tape.gradient(loss, wrapper.kernels)
    for grad, mask in zip(grads, wrapper.masks):
        grad = tf.convert_to_tensor(grad).numpy()
        pruned = keras.ops.convert_to_numpy(mask) == 0
        assert np.all(grad[pruned] == 0)
        assert np.any(grad[~pruned] != 0)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_round_trip(name):
    factory, shape, integer = LAYERS[name]
    wrapper = kl.MaskedLayer(factory())
    config = wrapper.get_config()
    clone = kl.MaskedLayer.from_config(config)
    assert clone.get_config() == config
    assert clone.name == wrapper.name == wrapper.layer.name
    assert type(clone.layer) is type(wrapper.layer)
    assert keras.saving.get_registered_name(kl.MaskedLayer) == "keras_lottery>MaskedLayer"


def test_biases_and_normalization_are_never_masked():
    wrapper = kl.MaskedLayer(keras.layers.Dense(4))
    wrapper(np.ones((2, 3), "float32"))
    assert [m.path.split("/")[-1] for m in wrapper.masks] == ["kernel_mask"]
    for layer in (keras.layers.BatchNormalization(), keras.layers.LayerNormalization()):
        with pytest.raises(ValueError, match="can only wrap layers with prunable kernels"):
            kl.MaskedLayer(layer)


def test_lora_layers_are_rejected():
    layer = keras.layers.Dense(4)
    layer.build((None, 8))
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="LoRA-enabled or quantized"):
        kl.MaskedLayer(layer)


def test_prunable_sequential_keeps_weights_and_leaves_original_alone():
    base = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(8, name="a"), keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(3, name="b")]
    )
    x, _ = toy_data()
    model = kl.prunable(base)
    assert [type(l).__name__ for l in model.layers] == ["MaskedLayer", "BatchNormalization", "MaskedLayer"]
    assert [l.name for l in model.layers] == ["a", "bn", "b"]
    np.testing.assert_array_equal(model(x), base(x))
    kl.set_masks(model, {"a": np.zeros((20, 8))})
    assert np.all(base.get_layer("a").kernel.numpy() != 0)


def test_prunable_functional_with_nested_model_and_ignore():
    inner = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="inner_fc")], name="block")
    x_in = keras.Input((10,), dtype="int32")
    h = keras.layers.Embedding(50, 16, name="embedding")(x_in)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = inner(h)
    base = keras.Model(x_in, keras.layers.Dense(2, name="head")(h))
    model = kl.prunable(base, ignore=("embedding",))
    assert sorted(kl.get_masks(model)) == ["head", "inner_fc"]
    x = np.random.default_rng(0).integers(0, 50, size=(3, 10))
    np.testing.assert_array_equal(model(x), base(x))


def test_prunable_subclassed_model_is_wrapped_in_place():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fc = keras.layers.Dense(8, name="fc")
            self.blocks = [keras.layers.Dense(8, name="b0"), keras.layers.Dense(3, name="b1")]

        def call(self, x):
            x = self.fc(x)
            for block in self.blocks:
                x = block(x)
            return x

    net = Net()
    x, y = toy_data()
    before = net(x)
    assert kl.prunable(net) is net
    assert isinstance(net.fc, kl.MaskedLayer) and all(isinstance(b, kl.MaskedLayer) for b in net.blocks)
    np.testing.assert_array_equal(net(x), before)
    assert sorted(kl.get_masks(net)) == ["b0", "b1", "fc"]
    kl.prune_by_magnitude(net, 0.5)
    compile_for_test(net).fit(x, y, epochs=1, verbose=0)
    assert kl.sparsity(net) == pytest.approx(0.5, abs=1e-3)
    plain = kl.strip(net)
    assert not kl.masked_layer.masked_layers(plain)
    np.testing.assert_allclose(plain(x), net(x), atol=1e-6)


def test_unknown_ignore_name_lists_layers():
    with pytest.raises(ValueError, match=r"\['nope'\].*layers are: \[.*'fc1', 'fc2', 'out'\]"):
        kl.prunable(mlp(), ignore=("nope",))


def test_no_prunable_layer_is_an_error():
    base = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="no prunable layer"):
        kl.prunable(base)
    with pytest.raises(ValueError, match="no prunable layer"):
        kl.prunable(mlp(), ignore=("fc1", "fc2", "out"))


def test_prunable_twice_never_double_wraps():
    model = kl.prunable(mlp())
    kl.prune_by_magnitude(model, 0.5)
    again = kl.prunable(model)
    assert all(not isinstance(l.layer, kl.MaskedLayer) for l in kl.masked_layer.masked_layers(again))
    assert len(kl.masked_layer.masked_layers(again)) == 3
    assert kl.sparsity(again) == pytest.approx(kl.sparsity(model))


class _Affine(keras.layers.Layer):
    """A user's own layer: its kernel is a plain variable attribute."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="ones", name="bias")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.fixture
def registry(monkeypatch):
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(kl.masked_layer, "PRUNABLE_KERNELS", dict(kl.masked_layer.PRUNABLE_KERNELS))


def test_unregistered_custom_layer_is_rejected_with_a_hint(registry):
    with pytest.raises(ValueError, match="register_prunable"):
        kl.MaskedLayer(_Affine(3))


def test_registered_custom_layer_is_masked_with_zero_gradient_for_pruned(registry):
    kl.register_prunable(_Affine, ["kernel"])
    x = _inputs((5,), False)
    wrapper = kl.MaskedLayer(_Affine(3, name="affine"))
    wrapper(x)
    assert wrapper.kernel_names == ("kernel",) and wrapper.kernels[0] is wrapper.layer.kernel
    assert [m.path for m in wrapper.masks] == ["affine/kernel_mask"]
    _random_masks(wrapper, seed=2)
    mask = keras.ops.convert_to_numpy(wrapper.masks[0])
    kernel, bias = (w.numpy() for w in wrapper.layer.weights)
    np.testing.assert_allclose(wrapper(x), x @ (kernel * mask) + bias, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(wrapper(x)))
    grad = tape.gradient(loss, wrapper.kernels[0]).numpy()
    assert np.all(grad[mask == 0] == 0) and np.any(grad[mask != 0] != 0)


def test_prunable_wraps_registered_custom_layers_and_saves(registry, tmp_path):
    kl.register_prunable(_Affine, "kernel")
    base = keras.Sequential([keras.Input((20,)), _Affine(8, name="affine"), keras.layers.Dense(3, name="out")])
    model = kl.prunable(base)
    assert [type(l).__name__ for l in model.layers] == ["MaskedLayer", "MaskedLayer"]
    x, _ = toy_data(n=8)
    np.testing.assert_array_equal(model(x), base(x))
    kl.set_masks(model, {"affine": np.zeros((20, 8))})
    assert kl.sparsity_by_layer(model)["affine"] == 1.0
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", custom_objects={"_Affine": _Affine})
    assert kl.get_masks(loaded)["affine"].sum() == 0
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_registered_names_apply_to_subclasses_unless_they_register_their_own(registry):
    class Dual(_Affine):
        def build(self, input_shape):
            super().build(input_shape)
            self.gate = self.add_weight(shape=(input_shape[-1], self.units), name="gate")

    kl.register_prunable(_Affine, ("kernel",))
    assert kl.masked_layer.kernel_names(Dual(2)) == ("kernel",)
    kl.register_prunable(Dual, ("kernel", "gate"))
    assert kl.masked_layer.kernel_names(Dual(2)) == ("kernel", "gate")
    assert kl.masked_layer.kernel_names(_Affine(2)) == ("kernel",)
    wrapper = kl.MaskedLayer(Dual(2, name="dual"))
    wrapper(np.ones((1, 3), "float32"))
    assert wrapper.mask_keys() == ["dual/kernel", "dual/gate"]


def test_registered_name_that_is_not_a_variable_fails_at_build(registry):
    kl.register_prunable(_Affine, "units")
    wrapper = kl.MaskedLayer(_Affine(2))
    with pytest.raises(ValueError, match="must be keras.Variable.*Received: units=2"):
        wrapper(np.ones((1, 3), "float32"))


@pytest.mark.parametrize(
    "layer_class, names, error, match",
    [
        (keras.layers.Dense(2), "kernel", TypeError, "Received: layer_class=<Dense"),
        (int, "kernel", TypeError, "Received: layer_class=<class 'int'>"),
        (kl.MaskedLayer, "kernel", ValueError, "Received: layer_class=MaskedLayer"),
        (_Affine, [], ValueError, r"Received: kernel_names=\[\]"),
        (_Affine, ["kernel", "kernel"], ValueError, "each once"),
        (_Affine, ["kernel", 3], TypeError, r"Received: kernel_names=\['kernel', 3\]"),
        (_Affine, 3, TypeError, "Received: kernel_names=3"),
        (_Affine, "my kernel", ValueError, "identifiers. Received: kernel_names='my kernel'"),
    ],
)
def test_register_prunable_validates_its_arguments(registry, layer_class, names, error, match):
    with pytest.raises(error, match=match):
        kl.register_prunable(layer_class, names)
    assert _Affine not in kl.masked_layer.PRUNABLE_KERNELS
