"""Backend-neutral helpers of the any-backend tests: small models, real data, gradients."""

import functools

import keras
import numpy as np
import pytest


def digits():
    """scikit-learn's bundled real handwritten digits (8x8, 10 classes), offline:
    (x_train, y_train), (x_val, y_val), (x_test, y_test)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    y = y.astype("int64")
    return (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])


@functools.cache
def _digits_train():
    return digits()[0]


def make_batches():
    """A generator function: every call yields the same batches (digits' training split, 60 each)."""
    x, y = _digits_train()
    for i in range(len(x) // 60):
        yield x[i * 60:(i + 1) * 60], y[i * 60:(i + 1) * 60]


def dataloader(shuffle=True):
    """A torch DataLoader of digits' training split, 60 a batch (shuffling: seeded by the search)."""
    torch = pytest.importorskip("torch", reason="the DataLoader input needs PyTorch (the torch suite has it)")
    x, y = _digits_train()
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    generator = torch.Generator() if shuffle else None
    return torch.utils.data.DataLoader(dataset, batch_size=60, shuffle=shuffle, generator=generator)


def mlp(seed: int = 0, inputs: int = 64, classes: int = 10) -> keras.Model:
    """A small functional MLP: inputs -> 32 -> 16 -> classes."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((inputs,))
    h = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    h = keras.layers.Dense(16, activation="relu", name="fc2")(h)
    return keras.Model(x, keras.layers.Dense(classes, name="output")(h))


def compiled(model: keras.Model, optimizer="adam") -> keras.Model:
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def build_model() -> keras.Model:
    """The builder LotterySearch calls (seeded: the same θ0 every call)."""
    return compiled(mlp(0), keras.optimizers.Adam(3e-3))


def gradients(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """d sum(model(x)^2) / d trainable variables, with the backend's own autodiff."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "jax":
        import jax

        trainable = [v.value for v in variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def loss(values):
            out, _ = model.stateless_call(values, fixed, x)
            return jax.numpy.sum(out ** 2)

        return [np.asarray(g) for g in jax.grad(loss)(trainable)]
    if backend == "torch":
        for v in variables:
            v.value.grad = None
        out = model(x)
        (out ** 2).sum().backward()
        return [v.value.grad.detach().cpu().numpy() for v in variables]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    return [np.asarray(g) for g in tape.gradient(loss, variables)]


class BatchCentered(keras.layers.Layer):
    """x minus its batch's mean: an output that depends on how a split is batched."""

    def call(self, x):
        return x - keras.ops.mean(x, axis=0, keepdims=True)
