"""A lottery ticket in a model of your own, on real data that ships offline.

The data are scikit-learn's bundled handwritten digits (1,797 real 8x8
scans; `sklearn.datasets.load_digits`), split 60/20/20 into training,
validation and test sets. The model is an ordinary compiled Keras model:
your optimizer, loss and metrics. The search prunes 20% of the remaining
weights per round (the output layer 10%), rewinds the survivors to θ0 and
trains again, next to a random-reinitialization control, with early
stopping on the validation loss.

    python examples/your_own_model.py            # about 3 minutes on 2 CPU cores
    tensorboard --logdir runs                    # curves, sparsity, summary

Run it again and it reuses the finished rounds; add `--rounds 10` and it
extends the same run.
"""

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_lottery as kl


def build_model() -> keras.Model:
    """A small convolutional network for 8x8 digits, compiled as usual."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(10, name="output")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def load_data():
    """(train, validation, test) NumPy pairs of the real digits."""
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], digits.target[order]
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--logdir", default="runs")
    args = parser.parse_args()

    train, validation, test = load_data()
    search = kl.LotterySearch(build_model, rounds=args.rounds, prune_fraction=0.2,
                              rates={"output": 0.1}, scope="layerwise",
                              controls=("random_reinit",), monitor="val_loss",
                              logdir=args.logdir, verbose=2)
    result = search.fit(train, validation_data=validation, test_data=test,
                        steps=args.steps, eval_every=100, batch_size=32,
                        callbacks=[keras.callbacks.CSVLogger(f"{args.logdir}/history.csv",
                                                             append=True)])
    ticket = result.ticket()  # the last round's masked model, trained weights in
    print(kl.save_ticket(ticket, "digits_ticket.keras"))


if __name__ == "__main__":
    main()
