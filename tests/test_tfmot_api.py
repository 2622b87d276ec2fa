"""keras_lottery.tfmot: TFMOT's pruning API on the current Keras backend."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
import keras_lottery.tfmot as tfmot
from conftest import compile_for_test, mlp, toy_data
from keras_lottery.tfmot import masks as tm
from keras_lottery.tfmot.prune import layer_pruning

sk = tfmot.sparsity.keras
X, Y = toy_data(256)


def _fit(model, epochs=1, callbacks=None, batch_size=32):
    callbacks = [sk.UpdatePruningStep()] if callbacks is None else callbacks
    return model.fit(X, Y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)


def _seq(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(3)])


# --- the names -------------------------------------------------------------------------

def test_every_tfmot_name_is_there():
    for name in ["prune_low_magnitude", "prune_scope", "strip_pruning", "UpdatePruningStep",
                 "PruningSummaries", "PruningSchedule", "ConstantSparsity", "PolynomialDecay",
                 "PrunableLayer", "PruningPolicy", "PruneForLatencyOnXNNPack"]:
        assert hasattr(sk, name), name


# --- schedules -------------------------------------------------------------------------

def test_schedules_defaults_and_values():
    constant = sk.ConstantSparsity(0.5, begin_step=10)
    assert (constant.end_step, constant.frequency) == (-1, 100)
    assert constant(10) == (True, np.float32(0.5))
    assert not constant(60)[0] and constant(110)[0] and constant(10**7 + 10)[0]
    assert not constant(9)[0]
    poly = sk.PolynomialDecay(0.2, 0.8, begin_step=100, end_step=1100)
    assert (poly.power, poly.frequency) == (3, 100)
    assert not poly(0)[0] and poly(0)[1] == pytest.approx(0.2)  # float32, as TFMOT: 0.19999999
    assert poly(600)[1] == pytest.approx(0.8 - 0.6 * 0.5 ** 3)
    assert poly(1100) == (True, np.float32(0.8)) and poly(5000) == (False, np.float32(0.8))


def test_schedule_config_round_trip():
    poly = sk.PolynomialDecay(0.1, 0.9, 5, 500, power=1, frequency=7)
    config = poly.get_config()
    assert config["class_name"] == "PolynomialDecay"
    again = sk.PolynomialDecay.from_config(config["config"])
    assert all(again(s) == poly(s) for s in range(0, 600, 13))
    assert "PolynomialDecay(" in repr(poly)


@pytest.mark.parametrize("make, message", [
    (lambda: sk.ConstantSparsity(1.0, 0), r"target_sparsity must be in range \[0,1\)"),
    (lambda: sk.ConstantSparsity(-0.1, 0), r"target_sparsity must be in range \[0,1\)"),
    (lambda: sk.PolynomialDecay(0.0, 1.5, 0, 10), r"final_sparsity must be in range \[0,1\)"),
    (lambda: sk.PolynomialDecay(-1, 0.5, 0, 10), r"initial_sparsity must be in range"),
    (lambda: sk.PolynomialDecay(0.0, 0.5, 100, 10), "begin_step should be <= end_step"),
    (lambda: sk.ConstantSparsity(0.5, 100, end_step=10), "begin_step should be <= end_step"),
    (lambda: sk.PolynomialDecay(0.0, 0.5, 0, -1), "end_step cannot be -1"),
    (lambda: sk.ConstantSparsity(0.5, -1), "begin_step should be >= 0"),
    (lambda: sk.ConstantSparsity(0.5, 0, end_step=-5), "end_step can be -1 or >= 0"),
    (lambda: sk.ConstantSparsity(0.5, 0, frequency=0), "frequency should be > 0"),
    (lambda: sk.ConstantSparsity(0.5, 0.5), "begin_step must be an integer"),
])
def test_schedule_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedule_is_abstract():
    with pytest.raises(TypeError):
        sk.PruningSchedule()

    class Every(sk.PruningSchedule):
        def __call__(self, step):
            return self._should_prune_in_step(step, 0, -1, 2), np.float32(0.25)

        def get_config(self):
            return {"class_name": "Every", "config": {}}

    assert Every()(4)[0] and not Every()(3)[0]


# --- mask math -------------------------------------------------------------------------

def test_magnitude_mask_keeps_ties_at_the_threshold():
    w = np.array([0.1, 0.5, -0.5, 0.5, 2.0, 0.3])
    mask, threshold = tm.magnitude_mask(w, 0.5)  # keep 3: 2.0 and 0.5 (three tied)
    assert threshold == 0.5
    assert mask.tolist() == [False, True, True, True, True, False]
    assert tm.keep_count(10, 0.999) == 1 and tm.keep_count(5, 0.5) == 2  # round half to even


def test_block_mask_average_and_max():
    w = np.array([[1.0, 1.0, 0.0, 3.0], [1.0, 1.0, 0.0, 0.0]])
    avg, _ = tm.block_mask(w, 0.5, (2, 2), "AVG")  # blocks: 1.0 and 0.75
    assert avg.astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    top, _ = tm.block_mask(w, 0.5, (2, 2), "MAX")  # blocks: 1.0 and 3.0
    assert top.astype(int).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    edge, _ = tm.block_mask(np.arange(15.0).reshape(5, 3), 0.5, (2, 2))  # partial blocks
    assert edge.shape == (5, 3)
    with pytest.raises(ValueError, match="Block Sparsity can only be used for layers which have "
                                         "2-dimensional weights"):
        tm.block_mask(np.ones((3, 3, 2, 2)), 0.5, (2, 2))


def test_m_by_n_mask_dense_and_conv():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(16, 5))
    mask = tm.m_by_n_mask(dense, (2, 4))
    groups = mask.T.reshape(5, 4, 4)  # per output: 4 groups of 4 input weights
    assert (groups.sum(axis=-1) == 2).all()
    conv = rng.normal(size=(3, 3, 8, 4))
    mask = tm.m_by_n_mask(conv, (1, 4))
    assert (np.moveaxis(mask, 2, -1).reshape(-1, 2, 4).sum(-1) == 3).all()
    with pytest.raises(ValueError, match="not supported"):
        tm.m_by_n_mask(rng.normal(size=(3, 8, 4)))
    for bad in [(2,), (2, 2), (4, 2), "2:4", (2.0, 4)]:
        with pytest.raises(ValueError, match="m_by_n"):
            tm.check_m_by_n(bad)


# --- prune_low_magnitude -------------------------------------------------------------

def test_prune_sequential_copies_and_leaves_the_original_alone():
    base = _seq()
    before = [w.copy() for w in base.get_weights()]
    pruned = sk.prune_low_magnitude(base)
    assert pruned is not base and not kl.mask_slots(base)
    assert len(kl.mask_slots(pruned)) == 2
    copied = [w for layer in pruned.layers for w in layer.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(copied, before, strict=True))
    assert np.allclose(pruned.predict(X[:8], verbose=0), base.predict(X[:8], verbose=0))
    schedule = layer_pruning(kl.mask_slots(pruned)[0].layer).pruning_schedule
    assert isinstance(schedule, sk.ConstantSparsity) and schedule.target_sparsity == 0.5
    compile_for_test(pruned)
    _fit(pruned, epochs=1)  # 8 steps: ConstantSparsity(0.5, 0) prunes at step 100 only
    assert kl.sparsity(pruned) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), before))


def test_pruning_follows_the_schedule_in_fit():
    pruned = sk.prune_low_magnitude(
        mlp(0), pruning_schedule=sk.PolynomialDecay(0.0, 0.75, begin_step=2, end_step=14,
                                                   power=1, frequency=4))
    compile_for_test(pruned)
    _fit(pruned, epochs=2)  # 16 steps: masks at steps 2, 6, 10, 14
    states = {id(layer_pruning(s.layer)): layer_pruning(s.layer) for s in kl.mask_slots(pruned)}
    assert {s.step for s in states.values()} == {16}
    for slot in kl.mask_slots(pruned):
        kept = int(keras.ops.convert_to_numpy(slot.mask).sum())
        assert kept == tm.keep_count(int(np.prod(slot.mask.shape)), np.float32(0.75))
        kernel = keras.ops.convert_to_numpy(slot.kernel)
        assert np.count_nonzero(kernel) == kept  # pruned weights are stored zeros


def test_pruned_weights_stay_zero_between_mask_updates():
    pruned = sk.prune_low_magnitude(mlp(0), pruning_schedule=sk.ConstantSparsity(
        0.6, begin_step=1, end_step=1))  # one mask update, at the first step
    compile_for_test(pruned, keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(pruned, epochs=3)
    for slot in kl.mask_slots(pruned):
        mask = keras.ops.convert_to_numpy(slot.mask) != 0
        assert not keras.ops.convert_to_numpy(slot.kernel)[~mask].any()
        assert 1 - mask.mean() == pytest.approx(0.6, abs=0.01)



def test_a_mask_update_zeros_the_pruned_weights_optimizer_slots():
    # Adam's momentum and velocity of a pruned weight are zeroed with it, so
    # a weight pruned at a later step does not carry its old moments.
    pruned = sk.prune_low_magnitude(mlp(0), pruning_schedule=sk.PolynomialDecay(
        0.2, 0.7, begin_step=3, end_step=11, frequency=4))  # updates at steps 3, 7, 11
    compile_for_test(pruned)
    _fit(pruned, epochs=2)  # 16 steps: the last 5 after the last update
    slots = kl.mask_slots(pruned)
    for slot in slots:
        mask = keras.ops.convert_to_numpy(slot.mask) == 0
        moments = kl.compat.optimizer_slots(pruned.optimizer, slot.kernel)
        assert len(moments) == 2, slot.key
        for moment in moments:
            value = keras.ops.convert_to_numpy(moment)
            assert not value[mask].any() and value[~mask].any(), moment.name

def test_fit_without_update_pruning_step_fails_then_works_with_it():
    pruned = compile_for_test(sk.prune_low_magnitude(_seq()))
    with pytest.raises(RuntimeError, match="requires the UpdatePruningStep callback"):
        _fit(pruned, callbacks=[])
    pruned.evaluate(X, Y, verbose=0)  # inference needs no callback
    _fit(pruned)  # the same model, now with the callback
    assert {layer_pruning(s.layer).step for s in kl.mask_slots(pruned)} == {8}


def test_fit_without_update_pruning_step_fails_for_pruned_layers():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), sk.prune_low_magnitude(keras.layers.Dense(3))])
    compile_for_test(model)
    with pytest.raises(RuntimeError, match="requires the UpdatePruningStep callback"):
        _fit(model, callbacks=[])  # refused when the train step is traced (or run eagerly)
    if keras.backend.backend() != "jax":  # JAX's fit leaves the variables empty after a failed step
        _fit(model)
        assert kl.sparsity(model) == 0.0 and layer_pruning(model.layers[0]).step == 8


def test_prune_layers_in_a_sequential_with_input_shape_and_a_list():
    keras.utils.set_random_seed(0)
    first = sk.prune_low_magnitude(keras.layers.Dense(16, activation="relu"), input_shape=(20,),
                                   pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
    rest = sk.prune_low_magnitude([keras.layers.Dense(8), keras.layers.Dense(3)],
                                  pruning_schedule=sk.ConstantSparsity(0.25, 0, frequency=1))
    model = keras.Sequential([first, *rest])  # built by `input_shape`, masked when built
    assert [s.layer.name for s in kl.mask_slots(model)] == [first.name, *(r.name for r in rest)]
    compile_for_test(model)
    _fit(model)
    assert list(kl.sparsity_by_layer(model).values()) == pytest.approx([0.5, 0.25, 0.25], abs=0.02)
    plain = sk.strip_pruning(model)
    assert not kl.mask_slots(plain)
    assert np.allclose(plain.predict(X[:16], verbose=0), model.predict(X[:16], verbose=0),
                       atol=1e-6)


def test_prune_some_layers_with_clone_model_as_in_tfmot_guide():
    base = mlp(0)

    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense) and layer.name != "out":
            return sk.prune_low_magnitude(layer)
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(base, clone_function=apply_pruning_to_dense)
    assert sorted(s.layer.name for s in kl.mask_slots(model)) == ["fc1", "fc2"]


def test_prune_functional_and_subclassed_models():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fc = keras.layers.Dense(16, activation="relu")
            self.out = keras.layers.Dense(3)

        def call(self, x):
            return self.out(self.fc(x))

    net = Net()
    net(X[:2])
    schedule = sk.ConstantSparsity(0.5, 0, frequency=2)
    same = sk.prune_low_magnitude(net, pruning_schedule=schedule)
    assert same is net and len(kl.mask_slots(net)) == 2  # subclassed: in place
    functional = sk.prune_low_magnitude(mlp(0), pruning_schedule=schedule)
    for model in (net, functional):
        compile_for_test(model)
        _fit(model)
        assert kl.sparsity(model) == pytest.approx(0.5, abs=0.01)


def test_already_pruned_layers_keep_their_schedule():
    keras.utils.set_random_seed(0)
    inner = sk.prune_low_magnitude(keras.layers.Dense(8, name="fc1"),
                                   pruning_schedule=sk.ConstantSparsity(0.75, 0, frequency=1))
    x = keras.Input((20,))
    model = keras.Model(x, keras.layers.Dense(3, name="out")(inner(x)))
    pruned = sk.prune_low_magnitude(model, pruning_schedule=sk.ConstantSparsity(0.25, 0,
                                                                                frequency=1))
    compile_for_test(pruned)
    _fit(pruned)
    by_layer = {s.layer.name: v for s, v in zip(kl.mask_slots(pruned),
                                                kl.sparsity_by_layer(pruned).values())}
    assert by_layer == pytest.approx({"fc1": 0.75, "out": 0.25}, abs=0.02)
    again = sk.prune_low_magnitude(pruned)  # nothing left to prune: the model itself
    assert again is pruned and len(kl.mask_slots(again)) == 2


def test_depthwise_kernels_are_left_unpruned_as_in_tfmot():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.SeparableConv2D(4, 3),
                              keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    pruned = sk.prune_low_magnitude(model)
    assert [s.kernel.name for s in kl.mask_slots(pruned)] == ["pointwise_kernel", "kernel"]
    assert [type(s.layer).__name__ for s in kl.mask_slots(pruned)] == ["SeparableConv2D", "Dense"]


class _Scale(keras.layers.Layer, sk.PrunableLayer):
    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.offset = self.add_weight(shape=(3,), name="offset")

    def call(self, x):
        return x @ self.kernel + self.offset

    def get_prunable_weights(self):
        return [self.kernel]


def test_prunable_layer_protocol():
    layer = sk.prune_low_magnitude(_Scale(),
                                   pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
    model = keras.Sequential([keras.Input((20,)), layer])
    assert [s.kernel.name for s in kl.mask_slots(model)] == ["kernel"]
    compile_for_test(model)
    _fit(model)
    assert kl.sparsity(model) == 0.5


def test_block_and_m_by_n_pruning_in_fit():
    block = sk.prune_low_magnitude(mlp(0), block_size=(4, 4), block_pooling_type="MAX",
                                   pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
    compile_for_test(block)
    _fit(block)
    kernel = keras.ops.convert_to_numpy(kl.mask_slots(block)[0].mask)  # fc1: (20, 32)
    blocks = kernel.reshape(5, 4, 8, 4).transpose(0, 2, 1, 3).reshape(40, 16)
    assert set(blocks.mean(axis=1)) == {0.0, 1.0} and blocks.mean() == 0.5
    nm = sk.prune_low_magnitude(mlp(0), sparsity_m_by_n=(2, 4))
    compile_for_test(nm)
    _fit(nm)
    mask = keras.ops.convert_to_numpy(kl.mask_slots(nm)[0].mask)  # (20, 32)
    assert (mask.T.reshape(32, 5, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"block_pooling_type": "MIN"}, "Unsupported pooling type 'MIN'"),
    ({"block_size": (2,)}, "block_size must be"),
    ({"sparsity_m_by_n": (4, 2)}, "m be must smaller than n"),
    ({"sparsity_m_by_n": [2, 4.0]}, "must be a tuple/list of 2 integers"),
    ({"pruning_schedule": 0.5}, "pruning_schedule must be"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sk.prune_low_magnitude(_seq(), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="can only prune an object of the following types"):
        sk.prune_low_magnitude("dense")
    flatten = keras.layers.Flatten()
    flatten.build((None, 4, 4))
    with pytest.raises(ValueError, match="layer has no weights to prune"):
        sk.prune_low_magnitude(flatten)
    with pytest.raises(ValueError, match="has no prunable weight"):
        sk.prune_low_magnitude(keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten()]))
    conv = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="Block Sparsity can only be used for layers which have "
                                         "2-dimensional weights"):
        sk.prune_low_magnitude(conv, block_size=(2, 2))
    conv1d = keras.Sequential([keras.Input((8, 3)), keras.layers.Conv1D(4, 3)])
    with pytest.raises(ValueError, match="not supported for sparsity_m_by_n"):
        sk.prune_low_magnitude(conv1d, sparsity_m_by_n=(2, 4))



def test_unbuilt_layer_without_prunable_weights_is_refused_at_once():
    # Said by prune_low_magnitude itself, not later when a model builds it.
    for layer in (keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.MaxPooling2D()):
        with pytest.raises(ValueError, match="layer has no weights to prune"):
            sk.prune_low_magnitude(layer)


class _Block(keras.layers.Layer):
    """A custom layer whose prunable weights are its sublayers' (no
    get_prunable_weights of its own)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(8, activation="relu")
        self.b = keras.layers.Dense(3)

    def build(self, input_shape):
        self.a.build(input_shape)
        self.b.build((*input_shape[:-1], 8))

    def call(self, x):
        return self.b(self.a(x))


@pytest.mark.parametrize("make, inputs, built", [
    (lambda: keras.layers.LSTM(6), (5, 4), True),  # TFMOT prunes an LSTM layer's cell
    (lambda: keras.layers.LSTM(6), (5, 4), False),
    (lambda: _Block(), (20,), True),
    (lambda: _Block(), (20,), False),
])
def test_prune_a_layer_whose_weights_are_in_its_sublayers(make, inputs, built):
    keras.utils.set_random_seed(0)
    layer = make()
    if built:
        layer.build((None, *inputs))
    pruned = sk.prune_low_magnitude(layer, pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=2))
    assert pruned is layer
    x_in = keras.Input(inputs)
    h = pruned(x_in)
    model = keras.Model(x_in, keras.layers.Dense(3)(h) if h.shape[-1] != 3 else h)
    assert len(kl.mask_slots(layer)) == 2  # kernel + recurrent kernel, or two Dense kernels
    compile_for_test(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, *inputs)).astype("float32")
    with pytest.raises(RuntimeError, match="requires the UpdatePruningStep callback"):
        model.fit(x, Y[:64], verbose=0, batch_size=16)
    if keras.backend.backend() == "jax":
        return  # JAX's fit leaves the variables empty after a failed step (test above)
    model.fit(x, Y[:64], verbose=0, batch_size=16, callbacks=[sk.UpdatePruningStep()])
    for slot in kl.mask_slots(layer):
        mask = keras.ops.convert_to_numpy(slot.mask)
        assert mask.mean() == pytest.approx(0.5, abs=0.01), slot.key
        assert not keras.ops.convert_to_numpy(slot.kernel)[mask == 0].any()


def test_train_on_batch_without_update_pruning_step_fails():
    pruned = compile_for_test(sk.prune_low_magnitude(_seq()))
    with pytest.raises(RuntimeError, match="requires the UpdatePruningStep callback"):
        pruned.train_on_batch(X[:32], Y[:32])

def test_strip_pruning_errors():
    with pytest.raises(ValueError, match="Expected model to be a `keras.Model` instance"):
        sk.strip_pruning(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="strip_pruning got a model that is not pruned"):
        sk.strip_pruning(_seq())


def test_save_load_and_prune_scope(tmp_path):
    pruned = compile_for_test(sk.prune_low_magnitude(
        mlp(0), pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1)))
    _fit(pruned)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    with sk.prune_scope():
        plain = keras.models.load_model(path)
    assert np.allclose(plain.predict(X[:8], verbose=0), pruned.predict(X[:8], verbose=0),
                       atol=1e-6)
    assert kl.get_masks(kl.load_model(path)).keys() == kl.get_masks(pruned).keys()


def test_custom_training_loop_as_in_tfmot_guide():
    model = sk.prune_low_magnitude(mlp(0), pruning_schedule=sk.ConstantSparsity(0.5, 0,
                                                                                frequency=3))
    compile_for_test(model)
    callback = sk.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    for step in range(3):
        callback.on_train_batch_begin(batch=-1)
        model.train_on_batch(X[:32], Y[:32])
    callback.on_epoch_end(batch=-1)
    assert kl.sparsity(model) == pytest.approx(0.5, abs=0.01)


def test_pruning_summaries_writes_sparsity_and_threshold(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with pytest.raises(ValueError, match="`log_dir` must be a non-empty string"):
        sk.PruningSummaries(log_dir="")
    model = compile_for_test(sk.prune_low_magnitude(
        mlp(0), pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1)))
    logdir = str(tmp_path / "logs")
    _fit(model, epochs=2, callbacks=[sk.UpdatePruningStep(), sk.PruningSummaries(logdir)])
    events = EventAccumulator(os.path.join(logdir, "metrics"))
    events.Reload()
    tags = events.Tags()["tensors"]
    key = kl.mask_slots(model)[0].key
    assert f"{key}/sparsity" in tags and f"{key}/threshold" in tags
    values = [e.tensor_proto.float_val[0] for e in events.Tensors(f"{key}/sparsity")]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.5, abs=0.01)  # epoch 2 begins pruned
    assert os.listdir(os.path.join(logdir, "train"))


def test_pruning_policy():
    class DenseOnly(sk.PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name == "fc2"

        def ensure_model_supports_pruning(self, model):
            pass

    pruned = sk.prune_low_magnitude(mlp(0), pruning_policy=DenseOnly())
    assert [s.layer.name for s in kl.mask_slots(pruned)] == ["fc2"]
    with pytest.raises(ValueError, match="Could not find `Conv2D 3x3` layer"):
        sk.prune_low_magnitude(mlp(0), pruning_policy=sk.PruneForLatencyOnXNNPack())


def test_prune_for_latency_on_xnnpack():
    layers = keras.layers
    x = keras.Input((16, 16, 3))
    h = layers.ZeroPadding2D(1)(x)
    h = layers.Conv2D(8, 3, strides=2, padding="valid")(h)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.DepthwiseConv2D(3, padding="same")(h)
    h = layers.Conv2D(16, 1, name="pointwise")(h)
    h = layers.GlobalAveragePooling2D(keepdims=True)(h)
    model = keras.Model(x, layers.Flatten()(h))
    pruned = sk.prune_low_magnitude(model, pruning_policy=sk.PruneForLatencyOnXNNPack())
    assert [s.layer.name for s in kl.mask_slots(pruned)] == ["pointwise"]
    y = layers.Conv2D(16, 1)(layers.MaxPooling2D()(model.layers[3].output))
    bad = keras.Model(x, layers.GlobalAveragePooling2D(keepdims=True)(y))
    with pytest.raises(ValueError, match="Layer MaxPooling2D is not supported"):
        sk.prune_low_magnitude(bad, pruning_policy=sk.PruneForLatencyOnXNNPack())


def test_prune_a_keras_hub_backbone_beyond_tfmot():
    keras_hub = pytest.importorskip("keras_hub", reason="needs keras-hub (the TensorFlow suite has it)")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=64, num_layers=1, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=8)
    pruned = sk.prune_low_magnitude(backbone, pruning_schedule=sk.ConstantSparsity(
        0.5, 0, frequency=1))
    assert pruned is backbone and len(kl.mask_slots(pruned)) >= 8  # in place
    callback = sk.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)
    assert all(s == pytest.approx(0.5, abs=0.02) for s in kl.sparsity_by_layer(pruned).values())
    inputs = {"token_ids": np.ones((2, 8), "int32"), "segment_ids": np.zeros((2, 8), "int32"),
              "padding_mask": np.ones((2, 8), "int32")}
    assert np.isfinite(keras.ops.convert_to_numpy(pruned(inputs)["pooled_output"])).all()
