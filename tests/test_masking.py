"""prunable() and mask slots: masks in place, forward pass, gradients, saving."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from conftest import compile_for_test, mlp, toy_data
from keras_lottery import masking
from keras_lottery import prunable_registry as PRUNABLE_WEIGHTS

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
    "SimpleRNN": (lambda: keras.layers.SimpleRNN(3), (5, 4), False),
    "LSTM": (lambda: keras.layers.LSTM(3), (5, 4), False),
    "GRU": (lambda: keras.layers.GRU(3), (5, 4), False),
    "ConvLSTM1D": (lambda: keras.layers.ConvLSTM1D(2, 3), (3, 6, 2), False),
}

# The weights prunable() masks in each layer type, by name.
KERNEL_NAMES = {
    **{name: ["kernel"] for name in LAYERS},
    "SeparableConv1D": ["depthwise_kernel", "pointwise_kernel"],
    "SeparableConv2D": ["depthwise_kernel", "pointwise_kernel"],
    "Embedding": ["embeddings"],
    **{name: ["kernel", "recurrent_kernel"] for name in ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D")},
}


def _inputs(shape, integer, seed=0):
    rng = np.random.default_rng(seed)
    if integer:
        return rng.integers(0, 30, size=(4, *shape))
    return rng.normal(size=(4, *shape)).astype("float32")


def _tiny_model(name):
    """A functional model of one layer of type `name`, and an input batch."""
    factory, shape, integer = LAYERS[name]
    inputs = keras.Input(shape, dtype="int32" if integer else "float32")
    layer = factory()
    return keras.Model(inputs, layer(inputs)), layer, _inputs(shape, integer)


def _random_masks(model, seed=0):
    """Random 0/1 masks assigned to the mask variables only (kernels left dense)."""
    rng = np.random.default_rng(seed)
    for slot in kl.mask_slots(model):
        slot.mask.assign((rng.random(slot.mask.shape) < 0.5).astype("float32"))


def _unmasked(model):
    """The model's weights without its masks, in model order."""
    masks = masking.masks_of(model)
    return [w for w in model.weights if id(w) not in masks]


def _same(variables, others):
    """Whether two lists hold the very same variables, in order."""
    return len(variables) == len(others) and all(a is b for a, b in zip(variables, others))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_forward_equals_kernel_times_mask(name):
    model, layer, x = _tiny_model(name)
    assert kl.prunable(model) is model
    slots = kl.mask_slots(model)
    assert [s.kernel.name for s in slots] == KERNEL_NAMES[name]
    prefix = f"{layer.name}/{layer.cell.name}" if hasattr(layer, "cell") else layer.name
    assert [s.key for s in slots] == [f"{prefix}/{n}" for n in KERNEL_NAMES[name]]
    assert all(s.layer is layer or s.layer is getattr(layer, "cell", None) for s in slots)
    for slot in slots:
        assert slot.mask.shape == slot.kernel.shape and not slot.mask.trainable
        assert np.all(keras.ops.convert_to_numpy(slot.mask) == 1)
        assert vars(slot.layer)[slot.attribute] is slot.kernel
    _random_masks(model)
    reference = layer.__class__.from_config(layer.get_config())
    reference.build_from_config(layer.get_build_config())
    baked = {id(s.kernel): keras.ops.convert_to_numpy(s.kernel) * keras.ops.convert_to_numpy(s.mask)
             for s in slots}
    reference.set_weights([baked.get(id(w), keras.ops.convert_to_numpy(w)) for w in layer.weights])
    np.testing.assert_allclose(model(x), reference(x), atol=1e-6)
    # The swap is undone after the call: the layer stores its variables again.
    assert all(vars(s.layer)[s.attribute] is s.kernel for s in slots)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_pruned_weights_get_exactly_zero_gradient(name):
    model, _, x = _tiny_model(name)
    kl.prunable(model)
    _random_masks(model, seed=1)
    slots = kl.mask_slots(model)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    grads = tape.gradient(loss, [s.kernel for s in slots])
    assert len(grads) == len(slots) >= 1
    for grad, slot in zip(grads, slots):
        grad = tf.convert_to_tensor(grad).numpy()
        pruned = keras.ops.convert_to_numpy(slot.mask) == 0
        assert np.all(grad[pruned] == 0)
        assert np.any(grad[~pruned] != 0)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_prunable_keeps_the_layer_and_a_saved_model_restores_its_masks(name, tmp_path):
    model, layer, x = _tiny_model(name)
    config, weights = layer.get_config(), list(model.weights)
    kl.prunable(model)
    # No layer is replaced or reconfigured: same object, class, name, config, weights.
    assert model.layers[-1] is layer and type(layer).__name__ == name
    assert layer.get_config() == config
    assert _same(_unmasked(model), weights)
    assert len(model.weights) == len(weights) + len(kl.mask_slots(model))
    rng = np.random.default_rng(3)
    kl.set_masks(model, {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()})
    model.save(tmp_path / "m.keras")
    loaded = kl.load_model(tmp_path / "m.keras")
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert list(kl.get_masks(loaded)) == list(kl.get_masks(model))
    for key, mask in kl.get_masks(model).items():
        np.testing.assert_array_equal(kl.get_masks(loaded)[key], mask)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    # Plain Keras loads the same file without masks, pruned weights stored as zeros.
    plain = keras.saving.load_model(tmp_path / "m.keras")
    assert not kl.mask_slots(plain)
    assert len(plain.weights) == len(weights)
    for key, kernel in kl.get_kernels(model).items():
        stored = next(w for w in plain.weights if w.path == key)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(stored), kernel)
        assert np.all(kernel[~kl.get_masks(model)[key]] == 0)
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)


def test_biases_and_normalization_are_never_masked():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="fc"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.LayerNormalization(name="ln")], name="seq")
    kl.prunable(model)
    assert [s.key for s in kl.mask_slots(model)] == ["fc/kernel"]
    assert [s.mask.path.split("/")[-1] for s in kl.mask_slots(model)] == ["fc_kernel_mask"]
    statuses = {row.path: row.status for row in kl.inventory(model).rows}
    assert statuses.pop("seq/fc/kernel") == "pruned"
    assert statuses and all(status in ("not a matrix", "not a kernel") for status in statuses.values())
    for layer in (keras.layers.BatchNormalization(), keras.layers.LayerNormalization()):
        with pytest.raises(ValueError, match="has no prunable weight"):
            kl.prunable(keras.Sequential([keras.Input((4,)), layer]))


def test_lora_layers_are_rejected():
    layer = keras.layers.Dense(4, name="lora")
    layer.build((None, 8))
    layer.enable_lora(2)
    model = keras.Sequential([keras.Input((8,)), layer])
    with pytest.raises(ValueError, match="LoRA-enabled or quantized.*Received: layer='lora'"):
        kl.prunable(model)
    assert not kl.mask_slots(model)


def test_quantized_layers_are_rejected():
    layer = keras.layers.Dense(4, name="q")
    layer.build((None, 8))
    layer.quantize("int8")
    model = keras.Sequential([keras.Input((8,)), layer])
    with pytest.raises(ValueError, match="LoRA-enabled or quantized.*Received: layer='q'"):
        kl.prunable(model)
    assert not kl.mask_slots(model)


def test_unbuilt_model_is_an_error():
    with pytest.raises(ValueError, match="needs a built model.*unbuilt Sequential"):
        kl.prunable(keras.Sequential([keras.layers.Dense(3)]))


def test_prunable_sequential_keeps_layers_and_weights_in_place():
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(8, name="a"), keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(3, name="b")]
    )
    x, _ = toy_data()
    before, layers, weights = model(x), list(model.layers), list(model.weights)
    assert kl.prunable(model) is model
    assert [type(l).__name__ for l in model.layers] == ["Dense", "BatchNormalization", "Dense"]
    assert [l.name for l in model.layers] == ["a", "bn", "b"]
    assert all(new is old for new, old in zip(model.layers, layers)) and len(model.layers) == 3
    assert _same(_unmasked(model), weights)
    assert [s.key for s in kl.mask_slots(model)] == ["a/kernel", "b/kernel"]
    np.testing.assert_array_equal(model(x), before)
    kl.set_masks(model, {"a/kernel": np.zeros((20, 8))})
    assert np.all(model.get_layer("a").kernel.numpy() == 0)
    assert np.all(model.get_layer("b").kernel.numpy() != 0)


def test_prunable_functional_with_nested_model_and_ignore():
    inner = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="inner_fc")], name="block")
    x_in = keras.Input((10,), dtype="int32")
    h = keras.layers.Embedding(50, 16, name="embedding")(x_in)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = inner(h)
    model = keras.Model(x_in, keras.layers.Dense(2, name="head")(h))
    x = np.random.default_rng(0).integers(0, 50, size=(3, 10))
    before = model(x)
    assert kl.prunable(model, ignore=("embedding",)) is model
    assert sorted(kl.get_masks(model)) == ["block/inner_fc/kernel", "head/kernel"]
    assert isinstance(model.get_layer("block").get_layer("inner_fc"), keras.layers.Dense)
    statuses = {row.path: row.status for row in kl.inventory(model, ignore=("embedding",)).rows}
    assert statuses["embedding/embeddings"] == "ignored"
    np.testing.assert_array_equal(model(x), before)
    # A weight path works in ignore too.
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="p"),
                              keras.layers.Dense(2, name="q")], name="s")
    kl.prunable(other, ignore=("q/kernel",))
    assert list(kl.get_masks(other)) == ["p/kernel"]


def test_prunable_subclassed_model_is_masked_in_place():
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

    net = Net(name="net")
    x, y = toy_data()
    before = net(x)
    fc, blocks = net.fc, list(net.blocks)
    assert kl.prunable(net) is net
    assert net.fc is fc and type(net.fc) is keras.layers.Dense
    assert all(b is old and type(b) is keras.layers.Dense for b, old in zip(net.blocks, blocks))
    np.testing.assert_array_equal(net(x), before)
    assert sorted(kl.get_masks(net)) == ["b0/kernel", "b1/kernel", "fc/kernel"]
    kl.prune_by_magnitude(net, 0.5)
    compile_for_test(net).fit(x, y, epochs=1, verbose=0)
    assert kl.sparsity(net) == pytest.approx(0.5, abs=1e-3)
    for slot in kl.mask_slots(net):  # training left the pruned weights at zero
        assert np.all(keras.ops.convert_to_numpy(slot.kernel)[keras.ops.convert_to_numpy(slot.mask) == 0] == 0)
    plain = kl.strip(net)
    assert not kl.mask_slots(plain)
    np.testing.assert_allclose(plain(x), net(x), atol=1e-6)


def test_unknown_ignore_name_lists_layers():
    with pytest.raises(ValueError, match=r"not in the model: \['nope'\].*layer names \(\[.*'fc1', 'fc2', .*'out'\]"):
        kl.prunable(mlp(), ignore=("nope",))


def test_no_prunable_layer_is_an_error():
    base = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="has no prunable weight"):
        kl.prunable(base)
    assert not kl.mask_slots(base)
    with pytest.raises(ValueError, match=r"has no prunable weight.*ignore=\['fc1', 'fc2', 'out'\]"):
        kl.prunable(mlp(), ignore=("fc1", "fc2", "out"))


def test_prunable_twice_never_masks_twice():
    model = kl.prunable(mlp())
    kl.prune_by_magnitude(model, 0.5)
    count, sparsity = len(model.weights), kl.sparsity(model)
    again = kl.prunable(model)
    assert again is model
    assert len(kl.mask_slots(again)) == 3 and len(again.weights) == count
    for layer in model.layers[1:]:
        hook = vars(layer)["call"]
        assert isinstance(hook, masking._MaskedCall) and len(hook.slots) == 1
        assert not isinstance(hook.original, masking._MaskedCall)
    assert kl.sparsity(again) == pytest.approx(sparsity)


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
def registry():
    """Registrations made by a test are undone after it."""
    saved = dict(PRUNABLE_WEIGHTS.PRUNABLE_KERNELS)
    yield PRUNABLE_WEIGHTS.PRUNABLE_KERNELS
    PRUNABLE_WEIGHTS.PRUNABLE_KERNELS.clear()
    PRUNABLE_WEIGHTS.PRUNABLE_KERNELS.update(saved)


def test_registry_is_the_public_table():
    assert kl.PRUNABLE_KERNELS is PRUNABLE_WEIGHTS.PRUNABLE_KERNELS


def test_unregistered_custom_layer_is_left_unmasked_with_a_hint(registry):
    model = keras.Sequential([keras.Input((5,)), _Affine(3, name="affine"), keras.layers.Dense(2, name="fc")],
                             name="seq")
    with pytest.warns(UserWarning, match=r"Not pruned: \['seq/affine/kernel'\].*_Affine.*register_prunable"):
        kl.prunable(model)
    assert list(kl.get_masks(model)) == ["fc/kernel"]
    statuses = {row.path: row.status for row in kl.inventory(model).rows}
    assert statuses["seq/affine/kernel"] == "unknown layer" and statuses["seq/affine/bias"] == "not a matrix"
    alone = keras.Sequential([keras.Input((5,)), _Affine(3)])
    with pytest.raises(ValueError, match="has no prunable weight.*register_prunable"):
        kl.prunable(alone)


def test_registered_custom_layer_is_masked_with_zero_gradient_for_pruned(registry):
    kl.register_prunable(_Affine, ["kernel"])
    x = _inputs((5,), False)
    inputs = keras.Input((5,))
    layer = _Affine(3, name="affine")
    model = kl.prunable(keras.Model(inputs, layer(inputs)))
    [slot] = kl.mask_slots(model)
    assert slot.key == "affine/kernel" and slot.kernel is layer.kernel and slot.layer is layer
    assert slot.attribute == "kernel"
    assert slot.mask.path == "functional/affine_kernel_mask" or slot.mask.path.endswith("/affine_kernel_mask")
    _random_masks(model, seed=2)
    mask = keras.ops.convert_to_numpy(slot.mask)
    kernel, bias = (w.numpy() for w in layer.weights)
    np.testing.assert_allclose(model(x), x @ (kernel * mask) + bias, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    grad = tape.gradient(loss, slot.kernel).numpy()
    assert np.all(grad[mask == 0] == 0) and np.any(grad[mask != 0] != 0)


def test_prunable_masks_registered_custom_layers_and_saves(registry, tmp_path):
    kl.register_prunable(_Affine, "kernel")
    model = keras.Sequential([keras.Input((20,)), _Affine(8, name="affine"), keras.layers.Dense(3, name="out")],
                             name="seq")
    x, _ = toy_data(n=8)
    before = model(x)
    kl.prunable(model)
    assert [type(l).__name__ for l in model.layers] == ["_Affine", "Dense"]
    assert list(kl.get_masks(model)) == ["affine/kernel", "out/kernel"]
    np.testing.assert_array_equal(model(x), before)
    kl.set_masks(model, {"affine/kernel": np.zeros((20, 8))})
    assert kl.sparsity_by_layer(model)["affine/kernel"] == 1.0
    model.save(tmp_path / "m.keras")
    loaded = kl.load_model(tmp_path / "m.keras", custom_objects={"_Affine": _Affine})
    assert isinstance(loaded.get_layer("affine"), _Affine)
    assert kl.get_masks(loaded)["affine/kernel"].sum() == 0
    assert kl.get_masks(loaded)["out/kernel"].all()
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_registered_names_apply_to_subclasses_unless_they_register_their_own(registry):
    class Dual(_Affine):
        def build(self, input_shape):
            super().build(input_shape)
            self.gate = self.add_weight(shape=(input_shape[-1], self.units), name="gate")

    def names(layer):
        layer.build((None, 3))
        return [w.name for w in kl.prunable_weights(layer)]

    kl.register_prunable(_Affine, ("kernel",))
    assert names(Dual(2)) == ["kernel"]
    kl.register_prunable(Dual, ("kernel", "gate"))
    assert names(Dual(2)) == ["kernel", "gate"]
    assert names(_Affine(2)) == ["kernel"]
    inputs = keras.Input((3,))
    model = kl.prunable(keras.Model(inputs, Dual(2, name="dual")(inputs)))
    assert list(kl.get_masks(model)) == ["dual/kernel", "dual/gate"]


def test_registered_name_that_is_not_a_variable_fails_at_prunable(registry):
    kl.register_prunable(_Affine, "units")
    model = keras.Sequential([keras.Input((3,)), _Affine(2, name="affine")])
    with pytest.raises(ValueError, match=r"registered as prunable with weight 'units'.*\(units=2\)"):
        kl.prunable(model)
    assert not kl.mask_slots(model)


def test_get_prunable_weights_declares_the_weights_without_registration(registry):
    class Declared(_Affine):
        def get_prunable_weights(self):
            return [self.kernel]

    class Wrong(_Affine):
        def get_prunable_weights(self):
            return [self.kernel.value]

    x = _inputs((5,), False)
    inputs = keras.Input((5,))
    layer = Declared(3, name="declared")
    model = kl.prunable(keras.Model(inputs, layer(inputs)))
    [slot] = kl.mask_slots(model)
    assert slot.key == "declared/kernel" and slot.kernel is layer.kernel
    _random_masks(model, seed=4)
    mask = keras.ops.convert_to_numpy(slot.mask)
    np.testing.assert_allclose(model(x), x @ (layer.kernel.numpy() * mask) + layer.bias.numpy(), atol=1e-6)
    assert Declared not in kl.PRUNABLE_KERNELS
    wrong = keras.Sequential([keras.Input((5,)), Wrong(3)])
    with pytest.raises(ValueError, match="get_prunable_weights\\(\\) must return variables"):
        kl.prunable(wrong)


@pytest.mark.parametrize(
    "layer_class, names, error, match",
    [
        (keras.layers.Dense(2), "kernel", TypeError, "Received: layer_class=<Dense"),
        (int, "kernel", TypeError, "Received: layer_class=<class 'int'>"),
        (_Affine, "call", ValueError, "defines as a function, not a weight.*Received: kernel_names='call'"),
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
    assert _Affine not in kl.PRUNABLE_KERNELS
