"""keras_lottery.runner.inputs on the current Keras backend: a user's data as
an endless, replayable stream of training batches, and evaluation splits.

The one test file of `runner/inputs.py` (it runs under jax, torch and
tensorflow; the tests of its TensorFlow-only paths skip on the others)."""

import keras
import numpy as np
import pytest

from helpers import BatchCentered, dataloader, digits, make_batches
from keras_lottery.runner import inputs
from keras_lottery.runner.inputs import EvalData, SearchData, TrainData

TRAIN, _, _ = digits()
TENSORFLOW = keras.backend.backend() == "tensorflow"
on_tensorflow = pytest.mark.skipif(not TENSORFLOW, reason="a TensorFlow path (the TensorFlow suite has it)")


def _indices(stream, n):
    """The example indices of the next n batches of a stream over x = arange."""
    return [np.asarray(next(stream)[0]).reshape(-1).tolist() for _ in range(n)]


class Batches(keras.utils.PyDataset):
    """A PyDataset of `count` batches: batch i is [[i], [i]]."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        return np.full((2, 1), i, "float32"), np.zeros(2)


# Moved here (issue 21) ------------------------------------------------------
def test_a_shuffling_dataloader_is_seeded_per_epoch():
    loader = dataloader()
    data = TrainData.of(loader, None, seed=0)
    epochs = [np.asarray(b[1]) for b in (next(data.stream(0)), next(data.stream(20)))]
    assert not np.array_equal(*epochs)  # epoch 1 has another order
    other = TrainData.of(loader, None, seed=1)
    assert not np.array_equal(np.asarray(next(other.stream(0))[1]), epochs[0])


def test_unusable_inputs_are_refused_with_what_is_accepted():
    with pytest.raises(ValueError, match="one-pass iterator.*make_batches"):
        TrainData.of(make_batches(), None, seed=0)
    with pytest.raises(ValueError, match="torch.utils.data.DataLoader, a function returning"):
        TrainData.of("x.npz", None, seed=0)
    torch = pytest.importorskip("torch", reason="the DataLoader checks need PyTorch (the torch suite has it)")
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(TRAIN[0]), torch.from_numpy(TRAIN[1]))
    with pytest.raises(ValueError, match="generator=torch.Generator"):
        TrainData.of(torch.utils.data.DataLoader(dataset, batch_size=60, shuffle=True), None, seed=0)


@on_tensorflow
@pytest.mark.parametrize("per_gather", [1, 4, 64])  # a batch, a part of an epoch, epochs
def test_numpy_input_streams_the_same_batches_through_tf_data_on_tensorflow(per_gather, monkeypatch):
    from keras_lottery.runner import inputs

    batch_bytes = 8 * (2 * 3 * 4 + 8)  # x's "a" and "b" (3 float32s each) and y (an int64)
    monkeypatch.setattr(inputs, "_GATHER_BYTES", per_gather * batch_bytes)
    x = np.arange(50 * 3, dtype="float32").reshape(50, 3)
    data = (({"a": x, "b": -x}, np.arange(50)))
    train = inputs.TrainData.of(data, 8, 3)
    for start in (0, 7, 23):  # mid-epoch starts: a rewound or resumed branch
        python = inputs._array_stream(data, 8, 3, start)
        graph = iter(train.stream(start))  # one conversion to tensors for every stream
        for _ in range(20):  # across three epochs of 6 batches
            (px, py), (gx, gy) = next(python), next(graph)
            assert np.array_equal(px["a"], gx["a"].numpy()) and np.array_equal(px["b"], gx["b"].numpy())
            assert np.array_equal(py, gy.numpy())
    assert inputs._batches_per_gather(inputs._tensors_of(train), 8) == per_gather


@on_tensorflow
def test_a_gather_takes_at_most_its_bytes_and_batches():
    import tensorflow as tf

    from keras_lottery.runner import inputs

    images = (tf.zeros((10, 224, 224, 3)), tf.zeros((10,), "int64"))  # 602 KB an example
    assert inputs._batches_per_gather(images, 64) == 1  # 38 MB a batch: one
    assert inputs._batches_per_gather((tf.zeros((10, 784)), tf.zeros((10,), "int64")), 60) == 22
    text = (tf.constant([["a"]] * 10), tf.zeros((10,), "int64"))  # strings: 0 bytes to TensorFlow
    assert inputs._batches_per_gather(text, 8) == inputs._GATHER_BATCHES


@on_tensorflow
def test_an_evaluation_split_is_batched_by_the_batch_size_it_is_asked_for():
    x = np.arange(50 * 3, dtype="float32").reshape(50, 3)
    split = EvalData.of((x, np.arange(50)), "validation_data")
    assert split._tf_batches(16) is split._tf_batches(16)  # built once
    assert [int(b[1].shape[0]) for b in split._tf_batches(20)] == [20, 20, 10]


@on_tensorflow
def test_the_pipelines_the_search_builds_are_not_autotuned():
    """Dropping an autotuned iterator stalls for seconds at random
    (`inputs.without_autotuning`); the batches do not depend on the option."""
    import tensorflow as tf

    tuned = tf.data.Options()
    tuned.autotune.enabled = True
    x = np.arange(50 * 3, dtype="float32").reshape(50, 3)
    stream = TrainData.of((x, np.arange(50)), 8, 3).stream(7)
    split = EvalData.of((x, np.arange(50)), "validation_data")._tf_batches(16)
    for dataset, count in ((stream, 20), (split, 4)):
        assert dataset.options().autotune.enabled is False
        pairs = zip(dataset.take(count), dataset.with_options(tuned).take(count), strict=True)
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in pairs)


# NumPy training data ----------------------------------------------------------
def test_numpy_epochs_are_seeded_permutations_without_the_remainder():
    x = np.arange(50, dtype="float32")
    train = TrainData.of((x, x), 8, seed=3)
    assert (train.kind, train.batch_size) == ("arrays", 8)
    epochs = _indices(iter(train.stream(0)), 18)  # 6 batches an epoch: 2 of 50 dropped
    for e in range(3):
        seen = sum(epochs[6 * e:6 * e + 6], [])
        assert len(seen) == len(set(seen)) == 48  # each example at most once an epoch
    assert epochs[:6] != epochs[6:12]  # a new order every epoch
    assert _indices(iter(TrainData.of((x, x), 8, seed=3).stream(0)), 6) == epochs[:6]
    assert _indices(iter(TrainData.of((x, x), 8, seed=4).stream(0)), 6) != epochs[:6]


@pytest.mark.parametrize("start", [1, 6, 11, 13])
def test_numpy_stream_from_a_step_is_the_stream_from_zero_without_its_first_steps(start):
    x = np.arange(50, dtype="float32")
    train = TrainData.of((x, x), 8, seed=3)
    assert _indices(iter(train.stream(start)), 8) == _indices(iter(train.stream(0)), start + 8)[start:]


def test_batches_are_the_first_pairs_of_the_stream_without_sample_weights():
    x = np.arange(20, dtype="float32")
    train = TrainData.of((x, x * 2, np.ones(20)), 4, seed=0)
    batches = train.batches(3)
    assert len(batches) == 3 and all(len(b) == 2 for b in batches)
    first = iter(train.stream(0))
    for bx, by in batches:
        np.testing.assert_array_equal(np.asarray(bx), np.asarray(next(first)[0]))
        np.testing.assert_array_equal(np.asarray(by), 2 * np.asarray(bx))


@pytest.mark.parametrize("batch_size", [None, 0, 11, True, 2.0])
def test_numpy_training_data_needs_a_batch_size_that_fits(batch_size):
    x = np.zeros((10, 3), "float32")
    with pytest.raises(ValueError, match=r"needs batch_size, an integer in \[1, 10\] .*Received: "
                                         rf"batch_size={batch_size!r}$"):
        TrainData.of((x, np.zeros(10)), batch_size, seed=0)


def test_bad_numpy_training_data_is_named():
    x = np.zeros((10, 3), "float32")
    with pytest.raises(ValueError, match=r"^The training data is empty \(0 examples\)\.$"):
        TrainData.of((x[:0], np.zeros(0)), 4, seed=0)
    with pytest.raises(ValueError, match=r"same number of examples. Received lengths: \[9, 10\]"):
        TrainData.of((x, np.zeros(9)), 4, seed=0)
    with pytest.raises(ValueError, match=r"Python scalars.*np\.asarray.*Received: 4 values, 3 of them"):
        TrainData.of((x[:3], [0, 1, 0]), 1, seed=0)  # labels as a Python list
    with pytest.raises(ValueError, match=r"must be a tf\.data\.Dataset.*Received: a tuple of 4 items"):
        TrainData.of((x, x, x, x), 4, seed=0)


# Generators and PyDatasets -----------------------------------------------------
def test_a_generator_function_is_replayed_pass_after_pass_from_any_step():
    def three():
        for i in range(3):
            yield [np.full(2, i), np.zeros(2)]  # a list, as DataLoaders collate

    train = TrainData.of(three, None, seed=0)
    assert train.kind == "generator"
    stream = train.stream(4)  # pass 2, second batch
    batches = [next(stream) for _ in range(4)]
    assert all(isinstance(b, tuple) for b in batches)
    assert [int(b[0][0]) for b in batches] == [1, 2, 0, 1]


def test_an_empty_generator_or_pydataset_is_named():
    def nothing():
        yield from ()

    with pytest.raises(ValueError, match=r"generator function .*nothing yielded no batch"):
        next(TrainData.of(nothing, None, seed=0).stream(0))
    with pytest.raises(ValueError, match=r"PyDataset is empty \(len\(dataset\) == 0\)"):
        next(TrainData.of(Batches(0), None, seed=0).stream(0))


def test_a_pydataset_streams_its_batches_round_and_round():
    train = TrainData.of(Batches(3), None, seed=0)
    assert train.kind == "pydataset"
    stream = train.stream(2)
    assert [int(next(stream)[0][0, 0]) for _ in range(5)] == [2, 0, 1, 2, 0]


# Evaluation splits and fingerprints ------------------------------------------
def test_bad_evaluation_data_is_named():
    x = np.zeros((10, 3), "float32")
    with pytest.raises(ValueError, match=r"^validation_data is empty \(0 examples\)"):
        EvalData.of((x[:0], np.zeros(0)), "validation_data")
    with pytest.raises(ValueError, match=r"^test_data is a one-pass iterator \(generator\)"):
        EvalData.of(make_batches(), "test_data")
    with pytest.raises(ValueError, match=r"^test_data must be a tf\.data\.Dataset.*Received: an "
                                         r"object of type dict$"):
        EvalData.of({"x": x}, "test_data")


def test_fingerprints_follow_the_bytes_and_the_splits():
    x, y = np.arange(12, dtype="float32").reshape(6, 2), np.arange(6)
    same = SearchData.of((x, y), (x, y), batch_size=2)
    assert same.fingerprint() == SearchData.of((x.copy(), y), (x, y), batch_size=2).fingerprint()
    changed = x.copy()
    changed[5, 1] += 1
    assert same.train.fingerprint() != TrainData.of((changed, y), 2, 0).fingerprint()
    assert same.train.fingerprint() != TrainData.of((x.astype("float64"), y), 2, 0).fingerprint()
    as_test = SearchData.of((x, y), test_data=(x, y), batch_size=2)
    assert as_test.fingerprint() != same.fingerprint()  # the split's name counts
    assert same.eval_batch_size == 256  # NumPy evaluation: at least 256 a batch
    assert SearchData.of((x, y), batch_size=6).train.batch_size == 6


def test_evaluation_of_every_split_or_the_named_ones():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["mean_absolute_error"])
    rng = np.random.default_rng(0)
    test = rng.normal(size=(600, 2)).astype("float32"), rng.normal(size=(600, 1)).astype("float32")
    val = test[0][:40], test[1][:40] + 1  # evaluated first; test in 3 batches of 256
    data = SearchData.of(val, val, test, batch_size=8)
    steps = model.steps_per_execution
    record = data.evaluate(model)
    assert sorted(record) == ["test_loss", "test_mean_absolute_error", "val_loss",
                              "val_mean_absolute_error"]
    for split, (x, y) in (("val", val), ("test", test)):
        error = keras.ops.convert_to_numpy(model.predict(x, verbose=0)) - y
        assert record[f"{split}_loss"] == pytest.approx(float(np.mean(error ** 2)), rel=1e-5)
        assert record[f"{split}_mean_absolute_error"] == pytest.approx(float(np.mean(abs(error))), rel=1e-5)
    assert data.evaluate(model, names=("test",)) == {k: v for k, v in record.items() if k.startswith("test")}
    assert model.steps_per_execution == steps  # put back after the whole-split call


def test_numpy_evaluation_runs_in_batches_of_eval_batch_size():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), BatchCentered(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype("float32"), rng.normal(size=(40, 1)).astype("float32")
    assert SearchData.of((x, y), batch_size=8).eval_batch_size == 256  # at least 256
    assert SearchData.of((x, y), batch_size=40).eval_batch_size == 256
    assert SearchData.of((np.zeros((300, 3)), np.zeros(300)), batch_size=300).eval_batch_size == 300
    by_ten = SearchData.of((x, y), (x, y), batch_size=8, eval_batch_size=10)
    assert by_ten.eval_batch_size == 10
    expected = np.mean([np.mean((keras.ops.convert_to_numpy(model(x[i:i + 10])) - y[i:i + 10]) ** 2)
                        for i in range(0, 40, 10)])
    whole = SearchData.of((x, y), (x, y), batch_size=8).evaluate(model)["val_loss"]
    assert by_ten.evaluate(model)["val_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert abs(whole - expected) > 1e-3  # one batch of 40 centers differently
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="eval_batch_size must be an integer >= 1"):
            SearchData.of((x, y), batch_size=8, eval_batch_size=bad)


@on_tensorflow
def test_a_tf_dataset_repeats_and_skips_to_the_step():
    import tensorflow as tf

    dataset = tf.data.Dataset.range(5).map(lambda i: (tf.fill([2], i), tf.zeros(2))).batch(1)
    train = TrainData.of(dataset, None, seed=0)
    assert train.kind == "tf.data" and EvalData.of(dataset, "test_data").kind == "tf.data"
    firsts = [int(b[0][0, 0]) for b in train.stream(3).take(6)]
    assert firsts == [3, 4, 0, 1, 2, 3]


@on_tensorflow
@pytest.mark.parametrize("array", [np.arange(6, dtype="float32").reshape(2, 3), np.arange(5),
                                   np.array(7.5), np.array(["a", "b"]), np.zeros((0, 2))])
def test_host_tensor_holds_the_array(array):
    tensor = inputs.host_tensor(array)
    assert tuple(tensor.shape) == array.shape
    np.testing.assert_array_equal(tensor.numpy().astype(array.dtype), array)


# Inputs converted once to the model's dtype (issue 22) ----------------------
def _two_inputs():
    image, count = keras.Input((3,), name="image"), keras.Input((1,), name="count", dtype="int32")
    merged = keras.layers.Concatenate()([image, keras.ops.cast(count, "float32")])
    return keras.Model([image, count], keras.layers.Dense(1)(merged))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_narrowed_inputs_are_the_float_inputs_the_model_narrows():
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    wide, narrow = np.zeros((4, 3)), np.zeros((4, 3), "float32")
    assert inputs.narrowed_inputs(sequential, wide) == "float32"
    assert inputs.narrowed_inputs(sequential, narrow) is None  # already the model's
    assert inputs.narrowed_inputs(sequential, np.zeros((4, 3), "uint8")) is None  # not a float
    assert inputs.narrowed_inputs(sequential, [wide, wide]) is None  # not the model's structure
    model, counts = _two_inputs(), np.zeros((4, 1), "int64")
    assert inputs.narrowed_inputs(model, [wide, counts]) == ["float32", None]
    assert inputs.narrowed_inputs(model, (narrow, counts)) is None
    assert inputs.narrowed_inputs(model, {"count": counts, "image": wide}) == {"count": None,
                                                                             "image": "float32"}
    assert inputs.narrowed_inputs(model, {"other": wide}) is None
    float64 = keras.Sequential([keras.Input((3,), dtype="float64"), keras.layers.Dense(1)])
    assert inputs.narrowed_inputs(float64, wide) is None  # a float64 model keeps float64
    assert inputs.narrowed_inputs(_Subclassed(), wide) is None  # its inputs are unknown


def test_converted_inputs_give_the_model_the_same_values():
    model = _two_inputs()
    x = [RNG_WIDE.normal(size=(40, 3)), np.arange(40).reshape(40, 1)]
    y = RNG_WIDE.normal(size=(40, 1))
    data = SearchData.of((x, y), (x, y), batch_size=8)
    converted = data.for_model(model)
    assert converted.fingerprint() == data.fingerprint()  # the run is the same run
    assert converted.train.x_dtypes == ["float32", None]
    batch, wide_batch = next(iter(converted.train.stream(3))), next(iter(data.train.stream(3)))
    for part, wide_part in zip(keras.tree.flatten(batch), keras.tree.flatten(wide_batch)):
        np.testing.assert_array_equal(np.asarray(part), np.asarray(wide_part).astype(np.asarray(part).dtype))
    # what the model computes from them, bit for bit, and the same metrics
    np.testing.assert_array_equal(model.predict_on_batch(list(batch[0])),
                                  model.predict_on_batch(list(wide_batch[0])))
    model.compile("sgd", "mse", metrics=["mae"])
    assert converted.evaluate(model) == data.evaluate(model)



@on_tensorflow
def test_a_copy_of_wide_inputs_is_made_in_the_model_dtype():
    """A float64 array TensorFlow cannot take as it is (not 64-byte aligned)
    is copied once: as float32, half the memory, since the model converts
    every batch to float32."""
    x = np.zeros(40 * 3 + 1)[1:].reshape(40, 3)  # 8 bytes off an aligned start
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    data = SearchData.of((x, np.zeros(40)), batch_size=8).for_model(model)
    images, _ = next(iter(data.train.stream(0)))
    assert images.dtype == "float32"


RNG_WIDE = np.random.default_rng(3)
