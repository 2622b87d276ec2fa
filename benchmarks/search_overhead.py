"""What the lottery search adds to a user's own training: one round vs `model.fit`.

One contender is a plain `model.fit` of LeNet-300-100 on real Fashion-MNIST
for `--steps` steps with the validation and test sets evaluated every
`--eval-every` steps; the other is one round of `LotterySearch` (the dense
round, `rounds=0`) on the same model, data, steps and evaluations
(`test_curves=True`: the test set at every evaluation, as the plain fit), with
everything the search does around training: the run directory, θ0 and the
trained weights saved, checkpoints, TensorBoard events, early-stop
tracking. Both evaluate before the first step too (the search's history,
like the paper's, starts at step 0). Both are timed interleaved in one process, each call from a fresh
model, for a `tf.data` pipeline (evaluating every `--eval-every` steps)
and for NumPy input as `model.fit(x, y, epochs=...)` takes it (whole
epochs, evaluating at each epoch's end: Keras cuts an epoch short when
`steps_per_epoch` does not divide it, so the plain contender could not
train the same steps otherwise). The goal is a CPU-time ratio of at most
1.05.
"""

from __future__ import annotations

import shutil
import tempfile

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import keras
import numpy as np
import tensorflow as tf

import keras_lottery as kl


def _build(masked: bool = False):
    model = kl.models.lenet300((784,), 10, seed=0)
    if masked:
        model = kl.prunable(model)
    model.compile(keras.optimizers.Adam(1.2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class _EvaluateTest(keras.callbacks.Callback):
    """What a user adds to `fit` to watch the test set as the search does."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        test = self.model.evaluate(self.x, self.y, batch_size=256, verbose=0, return_dict=True)
        logs.update({f"test_{k}": v for k, v in test.items()})


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--steps", type=int, default=None, help="training steps (default 2000; quick 1000)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--repeats", type=int, default=None, help="measurements (default 5; quick 3)")
    args = p.parse_args(argv)
    steps = args.steps or (1000 if args.quick else 2000)
    repeats = args.repeats or (3 if args.quick else 5)
    every, batch = args.eval_every, 60

    data = kl.data.load("fashion_mnist")
    flat = lambda x: (x.reshape(len(x), -1) / 255.0).astype("float32")  # noqa: E731
    train = (flat(data.x_train), data.y_train)
    val, test = (flat(data.x_val), data.y_val), (flat(data.x_test), data.y_test)
    pipeline = (tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[1]), seed=0)
                .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    logdir = tempfile.mkdtemp()

    per_epoch = len(train[1]) // batch
    epochs = max(1, round(steps / per_epoch))
    plans = {  # label -> (input, steps, evaluate every)
        "tf.data": (pipeline, steps, every),
        "NumPy (x, y)": (train, epochs * per_epoch, per_epoch),
    }

    def plain(inputs, steps, every, masked=False):
        def fit():
            model = _build(masked)
            for x, y in (val, test):  # the search's history starts at step 0 too
                model.evaluate(x, y, batch_size=256, verbose=0)
            common_args = dict(validation_data=val, validation_batch_size=256, verbose=0,
                               callbacks=[_EvaluateTest(*test)])
            if isinstance(inputs, tf.data.Dataset):
                model.fit(inputs.repeat(), steps_per_epoch=every, epochs=steps // every,
                          **common_args)
            else:
                model.fit(*inputs, batch_size=batch, epochs=steps // every, **common_args)
        return fit

    def search(inputs, steps, every):
        def fit():
            shutil.rmtree(logdir, ignore_errors=True)
            kl.LotterySearch(_build, rounds=0, logdir=logdir, verbose=0, test_curves=True).fit(
                inputs, val, test, steps=steps, eval_every=every, batch_size=batch)
        return fit

    results, rows = {}, []
    for label, plan in plans.items():
        times = common.interleave({"search": search(*plan), "plain": plain(*plan),
                                   "plain_masked": plain(*plan, masked=True)}, repeats)
        cpu = common.ratio(times["cpu"], "search", "plain")
        wall = common.ratio(times["wall"], "search", "plain")
        own = common.ratio(times["cpu"], "search", "plain_masked")
        results[label] = {"cpu": cpu, "wall": wall, "cpu_vs_masked_fit": own, "times": times}
        rows.append([f"LeNet-300-100, {label}, {plan[1]} steps, eval every {plan[2]}",
                     cpu["ratio"], common.noise(cpu), wall["ratio"], own["ratio"],
                     common.noise(own), cpu["median_s_plain"], cpu["median_s_search"]])
    shutil.rmtree(logdir, ignore_errors=True)
    table = common.markdown_table(
        ["one round of", "search / plain fit (CPU)", "paired CPU ratios", "search / plain (wall)",
         "search / fit of the masked model (CPU)", "paired", "plain fit CPU s", "search CPU s"],
        rows)
    notes = (f"Batch {batch} on real Fashion-MNIST (55K train); validation (5K) and test (10K) "
             f"evaluated as the row says in both contenders; median of {repeats} interleaved "
             "calls, each from a fresh model; goal <= 1.05 (CPU). The masked-model column "
             "separates the search's own work (run directory, evaluation, logging) from the "
             "cost of masking itself (kernel * mask forward, grad * mask backward; see "
             "masking_overhead).")
    common.write_results(args.out, "search_overhead", args, results, table, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
