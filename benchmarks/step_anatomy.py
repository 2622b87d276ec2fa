"""What a LeNet-300-100 training step costs beyond its matrix products (issue 22).

Times, in one process and in turn, 100-step `tf.function` loops of the
preset's masked LeNet-300-100 at batch 60 on one fixed batch:

- `keras_adam`: the presets' step (gradients through the masks, Keras's
  Adam, the lenet300 recipe's optimizer);
- `fused_adam`: the same gradients, Adam applied by TensorFlow's fused
  `ResourceApplyAdam` kernel (one pass per variable instead of about ten);
- `matmuls`: only the step's eight matrix products (forward and backward),
  a floor for its arithmetic.

Then it trains two fresh models 300 steps, with Keras's Adam and with the
fused kernel, and says whether their weights are the same bit for bit.

Usage:
    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python benchmarks/step_anatomy.py
"""

from __future__ import annotations

import os

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path
import numpy as np
import tensorflow as tf

import keras
from keras_lottery.masking import prunable
from keras_lottery.runner.presets import models
from keras_lottery.runner.presets.config import PresetConfig
from keras_lottery.runner.presets.loop_trainer import make_optimizer

BATCH, STEPS, ROUNDS = 60, 100, 8


def _batch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH, 28, 28, 1)).astype("float32")
    return tf.constant(images), tf.constant(rng.integers(0, 10, BATCH))


def training_loop(fused: bool):
    """A 100-step loop of the preset's step, and its model and optimizer."""
    config = PresetConfig.from_preset("lenet300", dataset="fashion_mnist")
    model = prunable(models.build("lenet300", (28, 28, 1), 10, seed=0))
    optimizer = make_optimizer(config)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    images, labels = _batch()
    weights = model.trainable_variables

    def apply_fused(grads):
        rate = optimizer.learning_rate  # the schedule at the step before the increment
        step = tf.cast(optimizer.iterations + 1, tf.float32)
        for grad, weight in zip(grads, weights):
            index = optimizer._get_variable_index(weight)
            tf.raw_ops.ResourceApplyAdam(
                var=weight.handle, m=optimizer._momentums[index].handle,
                v=optimizer._velocities[index].handle,
                beta1_power=tf.pow(optimizer.beta_1, step),
                beta2_power=tf.pow(optimizer.beta_2, step), lr=rate,
                beta1=optimizer.beta_1, beta2=optimizer.beta_2,
                epsilon=optimizer.epsilon, grad=grad)
        optimizer.iterations.assign_add(1)

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for _ in tf.range(STEPS):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, logits), global_batch_size=BATCH)
            grads = tape.gradient(loss, weights)
            if fused:
                apply_fused(grads)
            else:
                optimizer.apply_gradients(zip(grads, weights))
            total += loss
        return total

    return loop, model


def matmul_loop():
    """The step's eight matrix products, 100 times."""
    rng = np.random.default_rng(0)
    x, w1, w2, w3 = (tf.constant(rng.normal(size=s).astype("float32"))
                     for s in [(BATCH, 784), (784, 300), (300, 100), (100, 10)])

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for _ in tf.range(STEPS):
            h1 = tf.nn.relu(x @ w1)
            h2 = tf.nn.relu(h1 @ w2)
            out = h2 @ w3
            d2 = tf.matmul(out, w3, transpose_b=True)
            d1 = tf.matmul(d2, w2, transpose_b=True)
            grads = (tf.matmul(h2, out, transpose_a=True), tf.matmul(h1, d2, transpose_a=True),
                     tf.matmul(x, d1, transpose_a=True))
            total += sum(tf.reduce_sum(g[:1, :1]) for g in grads)
        return total

    return loop


def main() -> None:
    loops = {"keras_adam": training_loop(False)[0], "fused_adam": training_loop(True)[0],
             "matmuls": matmul_loop()}
    calls = {name: (lambda loop=loop: float(loop())) for name, loop in loops.items()}
    seconds = common.interleave(calls, ROUNDS)["wall"]  # its warm-up call traces each loop
    print("TF_NUM_INTRAOP_THREADS={} TF_NUM_INTEROP_THREADS={} (unset: one per core)".format(
        os.environ.get("TF_NUM_INTRAOP_THREADS", "unset"),
        os.environ.get("TF_NUM_INTEROP_THREADS", "unset")))
    for name, times in seconds.items():
        print(f"{name}: {STEPS / np.median(times):.0f} steps/s (median of {ROUNDS} loops of {STEPS})")
    (keras_loop, keras_model), (fused_loop, fused_model) = training_loop(False), training_loop(True)
    for _ in range(3):
        keras_loop(), fused_loop()
    same = all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(keras_model.trainable_variables, fused_model.trainable_variables))
    worst = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                for a, b in zip(keras_model.trainable_variables, fused_model.trainable_variables))
    print(f"after {3 * STEPS} steps, Keras's Adam and the fused kernel: "
          f"{'the same weights' if same else f'different weights (largest difference {worst:.3g})'}")


if __name__ == "__main__":
    main()
