"""What Keras's `model.fit` loop and the search's stream cost around a training step (issue 22).

The TensorFlow `LotterySearch` trains a user's model through `model.fit`
(100 steps per compiled call, `steps_per_execution`); the presets run their
own traced loop. This benchmark separates the two costs on LeNet-300-100
(masked by `kl.prunable`, Adam, batch 60, Fashion-MNIST), in one process,
interleaved:

- `fit`: `model.fit` over 1,000 steps, 100 per compiled call (Keras's
  multi-step loop: a `tf.while_loop` of optional-valued `get_next`s around
  `train_step`, a callback dispatch per call);
- `loop`: the same `model.train_step` (loss tracker, metrics, Adam) in a
  plain traced `tf.range` loop of 100 steps, called 10 times.

Both read the same batches (a tf.data pipeline without autotuning) and
train the same model on. Thread pools are set by TensorFlow's environment
variables, so compare them in turn:

    for pools in "" "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1"; do
      env $pools python benchmarks/fit_step_rate.py --name fit_step_rate_${pools:+1thread}
    done

With `--streams` it compares, both through `model.fit`, the search's own
NumPy training stream (`inputs._tf_array_stream`, several batches per
gather) with the same stream gathering one batch at a time (as before
docs/speed.md's eighth round):

    python benchmarks/fit_step_rate.py --streams --name fit_step_rate_streams
"""

from __future__ import annotations

import os

import common  # before TensorFlow: it sets TensorFlow's log level
import keras
import numpy as np
import tensorflow as tf

import keras_lottery as kl
from keras_lottery.runner import inputs

_BATCH, _PER_CALL, _CALLS = 60, 100, 10


def _batches(data, count: int) -> tf.data.Dataset:
    """`count` shuffled training batches, repeated, tf.data's autotuning off."""
    x = (data.x_train / 255.0).astype("float32").reshape((-1, *data.input_shape))
    index = np.random.default_rng(0).integers(0, len(x), size=_BATCH * count)
    dataset = tf.data.Dataset.from_tensor_slices((x[index], data.y_train[index]))
    return inputs.without_autotuning(dataset.batch(_BATCH).repeat().prefetch(2))


def _model(data) -> keras.Model:
    model = kl.prunable(kl.models.lenet300(data.input_shape, 10, seed=0))
    model.compile(keras.optimizers.Adam(1.2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=_PER_CALL)
    return model


def _fit(model: keras.Model, dataset: tf.data.Dataset):
    """`model.fit` over `_PER_CALL * _CALLS` steps of `dataset`, as a contender."""
    return lambda: model.fit(dataset, steps_per_epoch=_PER_CALL * _CALLS, epochs=1, verbose=0,
                             shuffle=False)


def _contenders(model: keras.Model, dataset: tf.data.Dataset) -> dict:
    @tf.function
    def hundred(iterator):
        logs = model.train_step(next(iterator))
        for _ in tf.range(_PER_CALL - 1):
            logs = model.train_step(next(iterator))
        return logs

    iterator = iter(dataset)

    def loop():
        for _ in range(_CALLS):
            logs = hundred(iterator)
        float(logs["loss"])  # wait for the last call

    return {"fit": _fit(model, dataset), "loop": loop}


def _search_streams(data) -> dict[str, tf.data.Dataset]:
    """The search's training stream over the training split, as it is and
    with one batch per gather."""
    x = (data.x_train / 255.0).astype("float32").reshape((-1, *data.input_shape))
    tensors = (tf.constant(x), tf.constant(data.y_train))
    streams = {"gather 4 MiB": inputs._tf_array_stream(tensors, _BATCH, 0, 0)}
    kept, inputs._GATHER_BYTES = inputs._GATHER_BYTES, 0  # one batch per gather
    try:
        streams["gather a batch"] = inputs._tf_array_stream(tensors, _BATCH, 0, 0)
    finally:
        inputs._GATHER_BYTES = kept
    return streams


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="default: 3 (--quick) or 7")
    p.add_argument("--streams", action="store_true",
                   help="compare the search's training stream with one batch per gather")
    args = p.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    data = kl.data.load("fashion_mnist")
    model = _model(data)
    if args.streams:
        names = ("gather 4 MiB", "gather a batch")
        contenders = {name: _fit(model, dataset) for name, dataset in _search_streams(data).items()}
    else:
        names = ("fit", "loop")
        contenders = _contenders(model, _batches(data, 1000))
    times = common.interleave(contenders, repeats=repeats, warmup=1)
    steps = _PER_CALL * _CALLS
    result = {clock: common.ratio(times[clock], *names) for clock in times}
    pools = {name: os.environ.get(name, "default")
             for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    result.update(times=times, steps_per_contender_call=steps, pools=pools)
    rows = [(name, steps / result["wall"][f"median_s_{name}"],
             result["cpu"][f"median_s_{name}"] / result["wall"][f"median_s_{name}"])
            for name in names]
    for clock, label in (("wall", "wall"), ("cpu", "CPU")):
        rows.append((f"{names[0]} / {names[1]}, {label}", result[clock]["ratio"],
                     common.noise(result[clock])))
    table = common.markdown_table(["contender", "steps/s (median) or ratio",
                                   "CPU/wall or paired min..max"], rows)
    notes = (f"{repeats} interleaved rounds of {steps} steps each; thread pools {pools}. "
             "steps/s from wall medians (indicative only); the ratios are the result.")
    common.write_results(args.out, "fit_step_rate", args, result, table, notes)


if __name__ == "__main__":
    main()
