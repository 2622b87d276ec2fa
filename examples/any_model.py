"""Lottery tickets of a small transformer and an LSTM on real Fashion-MNIST.

Each image is read as a sequence of its 28 rows (28 pixels each). The
transformer embeds each row, adds a learned position embedding and runs two
pre-norm encoder blocks (`keras.layers.MultiHeadAttention`, a Dense
feed-forward, `a + b` residuals and `keras.ops` between layers), then pools;
the LSTM reads the rows with 64 units. Both go through `LotterySearch`
unchanged (no wrappers): iterative magnitude pruning of 50% of the weights
per round (attention projections, feed-forward, embeddings, LSTM kernel and
recurrent kernel; the output layer at 25%), rewinding to θ0, with the
random-reinitialization control in every round.

    python examples/any_model.py --steps 1500 --rounds 4 --seeds 0

prints one table per model and writes `docs/any_model.md`.
"""

from __future__ import annotations

import argparse
import os
import sys

import keras
import numpy as np

import keras_lottery as kl

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def transformer(width: int = 32, heads: int = 4, blocks: int = 2) -> keras.Model:
    """Rows of an image as tokens: a functional encoder with Keras ops."""
    inputs = keras.Input((28, 28))
    h = keras.layers.Dense(width, name="row_embedding")(inputs)
    h = h + keras.layers.Embedding(28, width, name="position_embedding")(
        keras.ops.arange(28)[None, :])
    for i in range(blocks):
        a = keras.layers.LayerNormalization(name=f"norm_{i}a")(h)
        h = h + keras.layers.MultiHeadAttention(heads, width // heads, name=f"attention_{i}")(a, a)
        f = keras.layers.LayerNormalization(name=f"norm_{i}b")(h)
        f = keras.layers.Dense(2 * width, activation="gelu", name=f"ff_{i}a")(f)
        h = h + keras.layers.Dense(width, name=f"ff_{i}b")(f)
    h = keras.ops.mean(keras.layers.LayerNormalization(name="norm_out")(h), axis=1)
    return keras.Model(inputs, keras.layers.Dense(10, name="output")(h), name="row_transformer")


def lstm(units: int = 64) -> keras.Model:
    """Rows of an image as time steps."""
    return keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(units, name="lstm"),
                             keras.layers.Dense(10, name="output")], name="row_lstm")


MODELS = {"transformer": transformer, "lstm": lstm}


def builder(name: str, seed: int):
    def build() -> keras.Model:
        keras.utils.set_random_seed(seed)
        model = MODELS[name]()
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--logdir", default=os.path.join("runs", "any_model"))
    parser.add_argument("--out", default=os.path.join(DOCS, "any_model.md"))
    args = parser.parse_args()
    data = kl.data.load("fashion_mnist")
    rows = {split: getattr(data, f"x_{split}")[..., 0].astype("float32") / 255.0
            for split in ("train", "val", "test")}
    sections = [f"Made by `python {' '.join(sys.argv)}` (real Fashion-MNIST, {data.source}; "
                f"train {len(rows['train'])}, validation {len(rows['val'])}, "
                f"test {len(rows['test'])})."]
    for name in args.models:
        for seed in (int(s) for s in args.seeds.split(",")):
            search = kl.LotterySearch(builder(name, seed), rounds=args.rounds, prune_fraction=0.5,
                                      rates={"output": 0.25}, scope="layerwise",
                                      controls=("random_reinit",), seed=seed,
                                      logdir=args.logdir)
            result = search.fit((rows["train"], data.y_train), batch_size=64,
                                validation_data=(rows["val"], data.y_val),
                                test_data=(rows["test"], data.y_test),
                                steps=args.steps, eval_every=100)
            table = result.table()
            print(f"\n{name}, seed {seed}\n{table}")
            ticket = result.ticket(round=0)
            inventory = kl.inventory(ticket)
            sections.append(
                f"## {name}, seed {seed}\n\n{inventory.count('pruned'):,} masked weights of "
                f"{ticket.count_params() - inventory.count('pruned'):,} parameters.\n\n"
                f"{table}\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        handle.write("# Tickets of a transformer and an LSTM (real Fashion-MNIST rows)\n\n"
                     + "\n".join(sections))


if __name__ == "__main__":
    main()
