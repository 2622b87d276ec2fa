"""keras_lottery.runner.split_eval: a whole split of arrays in one traced
call (TensorFlow), the same logs as Keras's `model.evaluate`, value for
value, and Keras's own loop wherever the traced one would not compute
what it does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lottery.runner import split_eval
from keras_lottery.runner.inputs import EvalData


def _model(**compile_args):
    keras.utils.set_random_seed(0)
    inputs = {"a": keras.Input((3,), name="a"), "b": keras.Input((2,), name="b")}
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([inputs["a"], inputs["b"]]))
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(2)],
                  **compile_args)
    return model


def _split(n, weights=False):
    rng = np.random.default_rng(n)
    x = {"a": rng.normal(size=(n, 3)).astype("float32"), "b": rng.normal(size=(n, 2)).astype("float32")}
    y = rng.integers(0, 4, n)
    return (x, y, rng.uniform(size=n).astype("float32")) if weights else (x, y)


def _keras_logs(model, split, batch_size):
    x, y, *weights = split
    return model.evaluate(x, y, sample_weight=weights[0] if weights else None,
                          batch_size=batch_size, verbose=0, return_dict=True)


@pytest.mark.parametrize("weights", [False, True])
def test_the_traced_loop_gives_kerass_logs_value_for_value(weights):
    """Every pairing of the loop's two batches an iteration with a rest: one
    batch, a partial one, two, an odd count, a partial last batch."""
    model = _model()
    cases = [(7, 8), (8, 8), (16, 8), (24, 8), (29, 8), (61, 8), (100, 7)]
    splits = {n: EvalData.of(_split(n, weights), "validation_data") for n, _ in cases}
    for n, batch_size in cases * 2:  # the first evaluation runs Keras's own loop, the rest the traced one
        logs = splits[n].evaluate(model, batch_size)
        assert logs == _keras_logs(model, _split(n, weights), batch_size), (n, batch_size)
    loop = split_eval._FUNCTIONS[model]["loop"]
    assert loop.experimental_get_tracing_count() == 1  # one trace for every split length


def test_a_model_compiled_again_gets_a_new_loop():
    model = _model()
    split = EvalData.of(_split(20), "validation_data")
    for _ in range(2):
        split.evaluate(model, 8)
    first = split_eval._FUNCTIONS[model]["loop"]
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    for _ in range(2):  # a new loss tracker: Keras's loop first again
        assert split.evaluate(model, 8) == _keras_logs(model, split.source, 8)
    assert split_eval._FUNCTIONS[model]["loop"] is not first


class OwnLogs(keras.Model):
    """A `test_step` returning a log of its own besides the metrics."""

    def test_step(self, data):
        logs = super().test_step(data)
        return {**logs, "batch_mean": tf.reduce_mean(data[1])}


@pytest.mark.parametrize("case", ["jit_compile", "own_logs", "strategy"])
def test_kerass_loop_is_kept_where_the_traced_one_would_differ(case):
    keras.utils.set_random_seed(0)
    split = _split(30)
    if case == "own_logs":  # Keras returns the last step's logs, which the loop does not keep
        inputs = {"a": keras.Input((3,), name="a"), "b": keras.Input((2,), name="b")}
        model = OwnLogs(inputs, keras.layers.Dense(4)(keras.layers.Concatenate()(list(inputs.values()))))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    elif case == "strategy":  # each step runs per replica
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            model = _model()
    else:  # Keras compiles each step with XLA
        model = _model(jit_compile=True)
    data = EvalData.of(split, "test_data")
    for _ in range(3):
        logs = data.evaluate(model, 8)
        assert logs == _keras_logs(model, split, 8)
    assert split_eval._FUNCTIONS[model].get("loop", False) is False
    if case == "own_logs":
        assert "batch_mean" in logs
