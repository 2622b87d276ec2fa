"""tf.data input pipelines: deterministic, resumable, shardable.

The training stream is a function of the step: step `s` belongs to epoch
`s // (n // batch)`, whose order is a stateless pseudo-random permutation of
`range(n)` keyed by (seed, epoch) (`tf.random.experimental.index_shuffle`),
and takes the next `batch` indices of it. Nothing depends on TensorFlow's
global seed or on what ran before, so a run resumed at step `s` starts there
in O(1), and multi-worker sharding (`AutoShardPolicy.DATA`) splits each
global batch between workers exactly as one worker would see it. Each epoch
drops its last `n % batch` examples (different ones every epoch). Images
stay uint8 in memory and are scaled per batch inside the pipeline.

The training stream runs with tf.data's autotuning off (its `AUTOTUNE`
parallelism and prefetch buffer take tf.data's fixed defaults). Every
branch of a run builds a new stream and drops it at its end, and dropping
an autotuned iterator blocked for about 2 s in a third of the branches of
LeNet-300-100 runs (TensorFlow 2.21 on 2 cores; docs/speed.md, "Fifth
round"); the batches, their order and the results are the same either way.
"""

from __future__ import annotations

import math

import numpy as np

from keras_lottery.compat import import_tensorflow

tf = import_tensorflow("The presets' driver and its tf.data pipeline (find_ticket, "
                       "keras-lottery run --preset)")

AUTOTUNE = tf.data.AUTOTUNE


def normalizer(x_train: np.ndarray, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the training images, scaled to [0, 1].

    Computed exactly from each channel's histogram of the 256 uint8 values
    (integer sums, then one correctly rounded division), `chunk` pixels at a
    time: no float copy of the images (a float64 one of Fashion-MNIST is
    345 MB, and its standard deviation needs two).

    Example:
    >>> normalizer(np.array([[[[0]], [[255]]]], np.uint8))
    (array([0.5], dtype=float32), array([0.5], dtype=float32))
    """
    pixels = x_train.reshape(-1, x_train.shape[-1])
    n, means, stds = len(pixels), [], []
    for channel in range(pixels.shape[1]):
        counts = np.zeros(256, np.int64)
        for start in range(0, n, chunk):
            counts += np.bincount(pixels[start:start + chunk, channel], minlength=256)
        total = sum(int(count) * value for value, count in enumerate(counts))
        squares = sum(int(count) * value * value for value, count in enumerate(counts))
        means.append(total / (255 * n))
        stds.append(math.sqrt((n * squares - total * total) / (255 * 255 * n * n)))
    return np.array(means, np.float32), np.array(stds, np.float32)


def _standardize(images: tf.Tensor, mean: np.ndarray, std: np.ndarray) -> tf.Tensor:
    return (tf.cast(images, tf.float32) / 255.0 - mean) / std


def _augment(images: tf.Tensor, step: tf.Tensor, seed: int) -> tf.Tensor:
    """Random horizontal flip and 4-pixel padded random crop, per example.

    Stateless: the randomness is a function of (seed, step), so a resumed
    run augments step `s` exactly as an uninterrupted one.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    key = tf.stack([tf.cast(seed, tf.int64), step])
    flips = tf.random.stateless_uniform([batch], seed=key) < 0.5
    images = tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=key + 1, minval=0, maxval=9, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def train_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    augment: bool = False,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tf.data.Dataset:
    """The endless, shuffled training stream from step `start_step` on.

    Args:
        x: uint8 images (N, H, W, C), NumPy or a tensor (a run converts
            them once for all its branches: a conversion holds about twice
            the array's size).
        y: integer labels (N,), NumPy or an int64 tensor.
        batch_size: global batch size.
        seed: shuffle (and augmentation) seed.
        start_step: number of batches to skip (resuming).
        augment: random flips and crops (CIFAR-10 recipe).
        stats: per-channel (mean, std); default computed from `x`.

    Returns:
        A `tf.data.Dataset` of (float32 images, int labels) batches.

    Example:
    >>> batches = train_batches(x_train, y_train, batch_size=60, seed=0)
    """
    mean, std = stats if stats is not None else normalizer(np.asarray(x))
    images = x if tf.is_tensor(x) else tf.constant(x)
    labels = y if tf.is_tensor(y) else tf.constant(y.astype("int64"))
    n = int(images.shape[0])
    if batch_size > n:
        raise ValueError(
            f"batch_size must be at most the number of training examples ({n}). "
            f"Received: batch_size={batch_size}"
        )
    per_epoch = n // batch_size

    def load(step):
        epoch, position = step // per_epoch, step % per_epoch
        slots = position * batch_size + tf.range(batch_size, dtype=tf.int64)
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        index = tf.random.experimental.index_shuffle(slots, seed=key, max_index=n - 1)
        batch = tf.gather(images, index)
        if augment:
            batch = _augment(batch, step, seed)
        return _standardize(batch, mean, std), tf.gather(labels, index)

    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False  # see the module docstring
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.map(load, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE).with_options(options)


def eval_batches(
    x: np.ndarray,
    y: np.ndarray,
    stats: tuple[np.ndarray, np.ndarray],
    batch_size: int = 1000,
) -> tf.data.Dataset:
    """One pass over an evaluation split, standardized like training data."""
    mean, std = stats
    data = tf.data.Dataset.from_tensor_slices((x, y.astype("int64"))).batch(batch_size)
    return data.map(
        lambda images, labels: (_standardize(images, mean, std), labels),
        num_parallel_calls=AUTOTUNE,
    ).cache().prefetch(AUTOTUNE)
