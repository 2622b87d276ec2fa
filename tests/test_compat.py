"""Pins the private Keras/TensorFlow behaviour `keras_lottery.compat` relies on.

Each test fails if an upgrade changes the behaviour its function documents.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lottery import compat


class _Net(keras.Model):
    """A subclassed model holding sublayers in an attribute, a list and a dict."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(4, name="fc")
        self.blocks = [keras.layers.Dense(4, name="b0"), keras.layers.Dense(4, name="b1")]
        self.heads = {"out": keras.layers.Dense(2, name="out")}

    def call(self, x):
        x = self.fc(x)
        for block in self.blocks:
            x = block(x)
        return self.heads["out"](x)


def _dense_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="fc1"), keras.layers.Dense(2, name="fc2")]
    )


def test_sublayers_of_sequential_start_with_its_input_layer():
    names = [(type(l).__name__, l.name) for l in compat.sublayers(_dense_model())]
    assert names[1:] == [("Dense", "fc1"), ("Dense", "fc2")]
    assert names[0][0] == "InputLayer"


def test_sublayers_of_functional_model_follow_the_graph_not_creation():
    second, first = keras.layers.Dense(2, name="second"), keras.layers.Dense(3, name="first")
    x = keras.Input((4,))
    model = keras.Model(x, second(first(x)))
    assert [type(l).__name__ for l in compat.sublayers(model)] == ["InputLayer", "Dense", "Dense"]
    assert [l.name for l in compat.sublayers(model)[1:]] == ["first", "second"]


def test_sublayers_of_subclassed_model_in_assignment_order_and_not_recursive():
    net = _Net()
    assert [l.name for l in compat.sublayers(net)] == ["fc", "b0", "b1", "out"]
    outer = keras.Sequential([keras.Input((3,)), _dense_model()])
    assert [type(l).__name__ for l in compat.sublayers(outer)] == ["InputLayer", "Sequential"]
    assert compat.sublayers(keras.layers.Dense(2)) == []


def test_is_functional_or_sequential():
    x = keras.Input((3,))
    functional = keras.Model(x, keras.layers.Dense(2)(x))
    assert compat.is_functional_or_sequential(_dense_model())
    assert compat.is_functional_or_sequential(functional)
    assert not compat.is_functional_or_sequential(_Net())
    assert not compat.is_functional_or_sequential(keras.layers.Dense(2))


@pytest.mark.parametrize(
    "layer, x, name, stored",
    [
        (lambda: keras.layers.Dense(2), np.ones((2, 3), "float32"), "kernel", "_kernel"),
        (
            lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=2),
            np.ones((2, 3), "float32"),
            "kernel",
            "_kernel",
        ),
        (lambda: keras.layers.Conv1D(2, 2), np.ones((2, 4, 3), "float32"), "kernel", "_kernel"),
        (
            lambda: keras.layers.Conv1DTranspose(2, 2),
            np.ones((2, 4, 3), "float32"),
            "kernel",
            "kernel",
        ),
        (
            lambda: keras.layers.SeparableConv1D(2, 2),
            np.ones((2, 4, 3), "float32"),
            "pointwise_kernel",
            "pointwise_kernel",
        ),
        (lambda: keras.layers.Embedding(5, 2), np.array([[0, 1, 4]]), "embeddings", "_embeddings"),
    ],
)
def test_storage_attribute_names_what_call_reads(layer, x, name, stored):
    layer = layer()
    before = keras.ops.convert_to_numpy(layer(x))
    kernel, weights = getattr(layer, name), list(layer.weights)
    assert compat.storage_attribute(layer, kernel) == stored
    compat.set_attribute_untracked(layer, stored, keras.ops.zeros_like(kernel))
    try:
        swapped = keras.ops.convert_to_numpy(layer(x))
    finally:
        compat.set_attribute_untracked(layer, stored, kernel)
    assert np.all(swapped == 0) and np.any(before != 0)  # biases start at zero
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), before)
    assert getattr(layer, name) is kernel
    assert [id(w) for w in layer.weights] == [id(w) for w in weights]


def test_storage_attribute_of_recurrent_cells_is_the_plain_attribute_the_rnn_reads():
    rnn = keras.layers.SimpleRNN(2, return_sequences=True)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    before = keras.ops.convert_to_numpy(rnn(x))
    cell = rnn.cell
    for name in ("kernel", "recurrent_kernel"):
        assert compat.storage_attribute(cell, getattr(cell, name)) == name
    kernel = cell.kernel
    compat.set_attribute_untracked(cell, "kernel", keras.ops.zeros_like(kernel))
    try:
        swapped = keras.ops.convert_to_numpy(rnn(x))
    finally:
        compat.set_attribute_untracked(cell, "kernel", kernel)
    assert np.all(swapped == 0) and np.any(before != 0)  # no input reaches the state
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rnn(x)), before)


def test_storage_attribute_of_a_variable_no_attribute_holds_is_none():
    class Listed(keras.layers.Layer):
        def build(self, input_shape):
            self.parts = [self.add_weight(shape=(2, 2), name="part")]

        @property
        def kernel(self):
            return keras.ops.ones((2, 2))

    layer = Listed()
    layer.build((None, 2))
    assert compat.storage_attribute(layer, layer.parts[0]) is None
    assert compat.storage_attribute(layer, layer.kernel) is None
    other = keras.layers.Dense(2)
    other.build((None, 3))
    assert compat.storage_attribute(layer, other.kernel) is None


def test_set_attribute_untracked_adds_no_state():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    weights = list(layer.weights)
    compat.set_attribute_untracked(layer, "extra", keras.Variable(np.ones(3)))
    assert [id(w) for w in layer.weights] == [id(w) for w in weights]
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        layer.tracked = keras.Variable(np.ones(3))  # what the bypass avoids


def test_own_variables_are_a_layers_own_not_its_sublayers():
    model = _dense_model()
    fc1 = model.get_layer("fc1")
    assert [id(v) for v in compat.own_variables(fc1)] == [id(fc1.kernel), id(fc1.bias)]
    assert compat.own_variables(model) == [] and len(model.weights) == 4
    bn = keras.layers.BatchNormalization()
    bn.build((None, 3))
    assert [v.name for v in compat.own_variables(bn)] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_unlocked_lets_a_built_layer_take_variables_and_puts_the_lock_back():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    assert layer._tracker.locked  # Keras locks a built layer's state
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        layer.add_weight(shape=(2,), initializer="ones", trainable=False)
    with compat.unlocked(layer) as same:
        assert same is layer
        extra = layer.add_weight(shape=(2,), initializer="ones", trainable=False, name="extra")
    assert [id(v) for v in compat.own_variables(layer)] == [id(layer.kernel), id(layer.bias), id(extra)]
    assert any(v is extra for v in layer.non_trainable_weights)
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        layer.add_weight(shape=(2,), initializer="ones", trainable=False)
    with pytest.raises(RuntimeError), compat.unlocked(layer):
        raise RuntimeError
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        layer.add_weight(shape=(2,), initializer="ones", trainable=False)
    # A built model's tracker is not locked (Keras 3.15): unlocked() leaves it so.
    model = _dense_model()
    assert not model._tracker.locked
    with compat.unlocked(model):
        mask = model.add_weight(shape=(3, 4), initializer="ones", trainable=False, name="mask")
    assert not model._tracker.locked
    assert [id(v) for v in compat.own_variables(model)] == [id(mask)]
    assert any(v is mask for v in model.weights)


def test_without_own_variables_hides_them_from_saving_and_loading():
    model = _dense_model()
    with compat.unlocked(model):
        hidden = model.add_weight(shape=(2,), initializer="ones", trainable=False, name="hidden")
        kept = model.add_weight(shape=(3,), initializer="zeros", name="kept")
    store = {}
    model.save_own_variables(store)
    assert sorted(store) == ["0", "1"]  # both, as Keras saves them
    store = {}
    with compat.without_own_variables(model, [hidden]) as same:
        assert same is model
        assert [id(v) for v in compat.own_variables(model)] == [id(kept)]
        model.save_own_variables(store)
    assert list(store) == ["0"] and np.shape(store["0"]) == (3,)
    with compat.without_own_variables(model, [hidden]):
        model.load_own_variables({"0": np.full(3, 7.0, "float32")})
    np.testing.assert_array_equal(kept.numpy(), np.full(3, 7.0))
    np.testing.assert_array_equal(hidden.numpy(), np.ones(2))
    assert [id(v) for v in compat.own_variables(model)] == [id(kept), id(hidden)]  # restored
    before = [id(v) for v in compat.own_variables(model)]
    with pytest.raises(RuntimeError), compat.without_own_variables(model, [hidden, kept]):
        assert compat.own_variables(model) == []
        raise RuntimeError
    assert [id(v) for v in compat.own_variables(model)] == before


def test_conv_lstm_cell_class_is_the_cell_of_every_conv_lstm():
    cell_class = compat.conv_lstm_cell_class()
    assert cell_class.__name__ == "ConvLSTMCell" and issubclass(cell_class, keras.layers.Layer)
    for layer, shape in ((keras.layers.ConvLSTM1D(2, 3), (2, 3, 6, 2)),
                         (keras.layers.ConvLSTM2D(2, 3), (2, 3, 6, 6, 2))):
        layer.build(shape)
        assert isinstance(layer.cell, cell_class)
        for name in ("kernel", "recurrent_kernel"):
            assert compat.storage_attribute(layer.cell, getattr(layer.cell, name)) == name


def test_functional_class_is_the_class_of_keras_model_inputs_outputs():
    x = keras.Input((3,))
    functional = keras.Model(x, keras.layers.Dense(2)(x))
    assert type(functional) is compat.functional_class()
    assert type(_dense_model()) is keras.Sequential
    assert not isinstance(_Net(), compat.functional_class())


def test_uncompiled_makes_clone_model_return_an_uncompiled_clone():
    model = _dense_model()
    model.compile(optimizer="adam", loss="mse")
    optimizer = model.optimizer
    assert keras.models.clone_model(model).compiled  # why uncompiled() exists
    with compat.uncompiled(model) as same:
        assert same is model and not model.compiled
        clone = keras.models.clone_model(model)
    assert not clone.compiled
    assert model.compiled and model.optimizer is optimizer
    with pytest.raises(RuntimeError), compat.uncompiled(model):
        raise RuntimeError
    assert model.compiled


def _trained_slots(optimizer) -> tuple[keras.Model, list]:
    model = _dense_model()
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, verbose=0)
    kernel = model.get_layer("fc1").kernel
    return kernel, compat.optimizer_slots(model.optimizer, kernel)


def test_optimizer_slots_find_adams_momentum_and_velocity_for_a_kernel():
    kernel, slots = _trained_slots(keras.optimizers.Adam())
    prefix = kernel.path.replace("/", "_")  # "sequential_<n>_fc1_kernel"
    assert prefix.endswith("fc1_kernel")
    assert [s.name for s in slots] == [f"{prefix}_momentum", f"{prefix}_velocity"]
    assert all(tuple(s.shape) == tuple(kernel.shape) for s in slots)
    assert np.any(slots[0].numpy() != 0)  # they are the live state, not copies


def test_optimizer_slots_of_sgd_with_and_without_momentum():
    kernel, slots = _trained_slots(keras.optimizers.SGD(momentum=0.9))
    assert [s.name for s in slots] == [kernel.path.replace("/", "_") + "_momentum"]
    assert _trained_slots(keras.optimizers.SGD())[1] == []


def test_optimizer_slots_seen_through_loss_scale_optimizer():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _dense_model()
    model.compile(optimizer="adam", loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, verbose=0)
    slots = compat.optimizer_slots(model.optimizer, model.get_layer("fc1").kernel)
    assert [s.name.rsplit("_", 1)[-1] for s in slots] == ["momentum", "velocity"]


def test_compile_arguments_are_the_objects_passed_to_compile():
    model = _dense_model()
    assert compat.compile_arguments(model) is None
    optimizer = keras.optimizers.SGD(0.1)
    loss = keras.losses.MeanSquaredError()
    metric = keras.metrics.MeanAbsoluteError()
    metrics = [metric, "mse"]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, steps_per_execution=2)
    args = compat.compile_arguments(model)
    assert set(args) == {
        "optimizer", "loss", "loss_weights", "metrics", "weighted_metrics",
        "run_eagerly", "steps_per_execution", "jit_compile",
    }
    assert args["optimizer"] is optimizer and args["loss"] is loss
    assert args["metrics"] is metrics and args["metrics"][0] is metric
    assert args["loss_weights"] is None and args["weighted_metrics"] is None
    assert args["steps_per_execution"] == 2 and args["run_eagerly"] is False
    assert args["jit_compile"] in (True, False)  # resolved, not "auto"
    args["loss"] = "changed"  # a copy: the model's record is untouched
    assert compat.compile_arguments(model)["loss"] is loss


def test_compile_arguments_are_the_last_compile_and_unwrap_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _dense_model()
    model.compile(optimizer="sgd", loss="mse")
    adam = keras.optimizers.Adam()
    model.compile(optimizer=adam, loss="mae", run_eagerly=True)
    args = compat.compile_arguments(model)
    assert args["optimizer"] is adam and model.optimizer is not adam
    assert args["loss"] == "mae" and args["run_eagerly"] is True and args["jit_compile"] is False


def test_in_multi_worker_mode_is_false_on_one_process():
    assert compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert compat.in_multi_worker_mode(tf.distribute.OneDeviceStrategy("/cpu:0")) is False


def test_tflite_flatbuffers_read_and_write_a_converted_model():
    schema, utils = compat.tflite_flatbuffers()
    converter = tf.lite.TFLiteConverter.from_keras_model(_dense_model())
    content = converter.convert()
    model = utils.convert_bytearray_to_object(bytearray(content))
    assert isinstance(model, schema.ModelT)
    tensors = model.subgraphs[0].tensors
    assert all(isinstance(t, schema.TensorT) for t in tensors)
    assert {t.type for t in tensors} == {schema.TensorType.FLOAT32}
    assert bytes(utils.convert_object_to_bytearray(model))[4:8] == b"TFL3"  # a TFLite file
    for name in ("SparsityParametersT", "DimensionMetadataT", "Int32VectorT", "Uint16VectorT",
                 "Uint8VectorT"):
        assert hasattr(schema, name), name
    assert schema.DimensionType.SPARSE_CSR != schema.DimensionType.DENSE


def test_training_keywords_only_where_call_takes_training():
    class NoTraining(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    subclassed = NoTraining()
    subclassed(np.zeros((1, 3), "float32"))
    assert compat.training_keywords(plain, True) == {"training": True}
    assert compat.training_keywords(subclassed, False) == {}


class _TrainingProbe(keras.layers.Layer):
    """Records `compat.in_training_call()` at each call (its `call` takes no
    `training` argument, so only the call context knows)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x):
        self.seen.append(compat.in_training_call())
        return x


@pytest.mark.parametrize("training", [True, False, None])
def test_in_training_call_reads_the_outer_calls_training_argument(training):
    probe = _TrainingProbe()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), probe])
    probe.seen.clear()  # the symbolic build's call
    model(np.zeros((1, 3), "float32"), training=training)
    assert probe.seen == [bool(training)]
    assert compat.in_training_call() is False  # outside any call


def test_in_training_call_is_true_while_fit_traces_its_train_step():
    probe = _TrainingProbe()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), probe])
    model.compile("sgd", "mse")
    probe.seen.clear()
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    model.predict(np.zeros((4, 3)), verbose=0)
    assert probe.seen[0] is True and probe.seen[-1] is False


def test_set_input_shape_argument_makes_sequential_add_an_input_layer():
    dense = keras.layers.Dense(4)
    compat.set_input_shape_argument(dense, [3])
    model = keras.Sequential([dense])
    assert model.built and tuple(model.input_shape) == (None, 3)
    assert tuple(dense.kernel.shape) == (3, 4)


def test_graph_operations_of_a_functional_model():
    x_in = keras.Input((3,), name="x")
    a = keras.layers.Dense(4, name="a")(x_in)
    b = keras.layers.Dense(4, name="b")(x_in)
    out = keras.layers.Dense(2, name="out")(keras.layers.Add(name="add")([a, b]))
    model = keras.Model(x_in, out)
    add = model.get_layer("add")
    assert sorted(op.name for op in compat.inbound_operations(add)) == ["a", "b"]
    assert [op.name for op in compat.outbound_operations(model.get_layer("a"))] == ["add"]
    assert [op.name for op in compat.outbound_operations(add)] == ["out"]
    assert compat.producing_operation(model.outputs[0]) is model.get_layer("out")
    assert isinstance(compat.producing_operation(model.inputs[0]), keras.layers.InputLayer)
    assert compat.inbound_operations(compat.producing_operation(model.inputs[0])) == []


def test_built_input_shapes_and_input_structure():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed.build((None, 5))
    assert compat.built_input_shapes(subclassed) == [(None, 5)]
    assert compat.built_input_shapes(Subclassed()) is None  # not built
    inputs = {"ids": keras.Input((4,), dtype="int32", name="ids"),
              "mask": keras.Input((4,), name="mask")}
    functional = keras.Model(inputs, keras.layers.Dense(2)(
        keras.ops.cast(inputs["ids"], "float32") * inputs["mask"]))
    order = [t.name for t in functional.inputs]
    packed = compat.pack_as_inputs(functional, [np.full((1, 4), i) for i in range(2)])
    assert isinstance(packed, dict) and set(packed) == {"ids", "mask"}
    assert [int(packed[name][0, 0]) for name in order] == [0, 1]
