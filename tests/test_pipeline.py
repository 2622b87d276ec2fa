"""The training stream: deterministic, independent of global seeds, resumable."""

import numpy as np
import pytest
import tensorflow as tf

from keras_lottery.runner.presets import pipeline


def _labels(stream, n):
    return [b[1].numpy() for b in stream.take(n)]


def _data(n=1000):
    x = np.random.default_rng(0).integers(0, 255, (n, 4, 4, 1)).astype("uint8")
    return x, np.arange(n)


def test_order_depends_only_on_the_seed():
    x, y = _data()
    first = _labels(pipeline.train_batches(x, y, 60, seed=3), 40)
    tf.random.set_seed(1234)  # a user's global seed must not change the data order
    again = _labels(pipeline.train_batches(x, y, 60, seed=3), 40)
    other = _labels(pipeline.train_batches(x, y, 60, seed=4), 40)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_resuming_at_a_step_gives_the_same_batches():
    x, y = _data()
    full = _labels(pipeline.train_batches(x, y, 60, seed=0), 50)
    resumed = _labels(pipeline.train_batches(x, y, 60, seed=0, start_step=33), 17)
    assert all(np.array_equal(a, b) for a, b in zip(full[33:], resumed))


def test_each_epoch_is_a_reshuffled_pass_without_repeats():
    x, y = _data()
    batches = _labels(pipeline.train_batches(x, y, 60, seed=0), 32)  # 16 batches per epoch
    epochs = [np.concatenate(batches[:16]), np.concatenate(batches[16:])]
    assert all(len(np.unique(e)) == 960 for e in epochs)
    assert not np.array_equal(epochs[0][:60], epochs[1][:60])


def test_augmentation_is_stateless_and_keeps_shapes():
    x = np.random.default_rng(1).integers(0, 255, (200, 32, 32, 3)).astype("uint8")
    y = np.arange(200)
    a = next(iter(pipeline.train_batches(x, y, 20, seed=0, start_step=5, augment=True)))[0]
    b = list(pipeline.train_batches(x, y, 20, seed=0, augment=True).take(6))[5][0]
    plain = next(iter(pipeline.train_batches(x, y, 20, seed=0, start_step=5)))[0]
    assert a.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), plain.numpy())


def test_batch_larger_than_the_data_is_an_error():
    x, y = _data(50)
    with pytest.raises(ValueError, match=r"batch_size must be at most the number of training examples \(50\). Received: batch_size=60"):
        pipeline.train_batches(x, y, 60, seed=0)


def test_normalizer_matches_float64_mean_and_std_without_a_float_copy():
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 1, 1), (500, 8, 8, 1), (300, 6, 6, 3)]:
        for x in (rng.integers(0, 256, shape, dtype=np.uint8),
                  (rng.beta(0.5, 2, shape) * 255).astype(np.uint8)):
            pixels = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
            mean, std = pipeline.normalizer(x, chunk=1000)
            assert mean.dtype == std.dtype == np.float32
            np.testing.assert_array_equal(mean, pixels.mean(axis=0).astype(np.float32))
            np.testing.assert_array_equal(std, pixels.std(axis=0).astype(np.float32))


def test_training_stream_is_not_autotuned():
    """Dropping an autotuned iterator blocked for about 2 s at the end of some
    branches (module docstring); the stream keeps tf.data's fixed defaults,
    and its batches do not depend on that."""
    x, y = _data()
    stream = pipeline.train_batches(x, y, 60, seed=0)
    assert stream.options().autotune.enabled is False
    tuned = stream.with_options(_autotuned())
    assert all(np.array_equal(a, b) for a, b in zip(_labels(stream, 20), _labels(tuned, 20)))


def _autotuned():
    options = tf.data.Options()
    options.autotune.enabled = True
    return options
