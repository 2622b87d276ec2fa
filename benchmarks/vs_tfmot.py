"""keras-lottery's TFMOT API vs TFMOT itself: the whole pruned `fit`.

The contender is the migrated user code: the same lines of TFMOT's
pruning guide, once with `import keras_lottery.tfmot as tfmot` on a Keras 3
model and once with `import tensorflow_model_optimization as tfmot` on the
`tf_keras` twin of that model (layer for layer, the same weights):

    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
        end_step=END, frequency=100)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(Adam(1e-3), SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(data, steps_per_epoch=STEPS, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])

Models: LeNet-300-100 (batch 60, 28x28x1) and Conv-2 (batch 60, 32x32x3),
built by `keras_lottery.runner.presets.models`; data: one in-memory random batch
repeated (`tf.data`), so that input is no part of the difference.

Four contenders, interleaved (A, B, C, D, then D, C, B, A, ...) in one
process, each measurement one `fit` of STEPS steps (a multiple of 100):

- `ours`: keras-lottery's `prune_low_magnitude` + `UpdatePruningStep`;
- `tfmot`: TFMOT 0.8's `prune_low_magnitude` + `UpdatePruningStep`;
- `keras3` and `tf_keras`: the plain models, to separate each wrapper's
  cost (`ours/keras3`, `tfmot/tf_keras`) from the cost of the two Keras
  versions (`keras3/tf_keras`).

The pruning step is never reset: fit after fit, both pruned models go on
counting steps, so every measured `fit` holds STEPS/100 mask updates
(`frequency=100`) at rising sparsity, as a user's training does. END is the
last step of the last measurement, so the sparsity rises through the
whole benchmark and ends at 0.8. Tracing happens in the untimed warm-up
fit. Both libraries' final sparsity is reported.

Each `fit` is timed by wall clock and by this process's CPU time (all
threads); the table gives ratios of medians and the min..max of the
per-round (paired) ratios. CPU time is the steadier of the two on a shared
machine.
"""

from __future__ import annotations

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import sys

import keras
import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras

import keras_lottery as kl
import keras_lottery.tfmot as kl_tfmot
from masking_overhead import MODELS, batch_dataset, compiled

STEPS = {"lenet300": (500, 200), "conv2": (100, 100)}  # steps per fit (full, quick)
FINAL_SPARSITY = 0.8
FREQUENCY = 100
WARMUP = 1


def tf_keras_twin(name: str, model: keras.Model) -> tf_keras.Model:
    """The `tf_keras` version of lenet300 / conv2 with `model`'s weights."""
    L = tf_keras.layers
    shape = MODELS[name][1]
    x_in = tf_keras.Input(shape)
    x = x_in
    if name == "conv2":
        x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv1")(x)
        x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
        x = L.MaxPooling2D(2, name="pool1")(x)
        fc = (256, 256)
    else:
        fc = (300, 100)
    x = L.Flatten()(x)
    for i, units in enumerate(fc, start=1):
        x = L.Dense(units, activation="relu", name=f"fc{i}")(x)
    twin = tf_keras.Model(x_in, L.Dense(10, name="output")(x))
    twin.set_weights(model.get_weights())
    return twin


def tf_keras_compiled(model: tf_keras.Model) -> tf_keras.Model:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def tfmot_sparsity(model: tf_keras.Model) -> float:
    """Share of zeros in TFMOT's masks."""
    masks = [mask.numpy() for layer in model.layers if hasattr(layer, "pruning_vars")
             for _, mask, _ in layer.pruning_vars]
    return 1.0 - sum(float(m.sum()) for m in masks) / sum(m.size for m in masks)


def contenders(name: str, end_step: int) -> dict:
    """The four compiled models, each with the callbacks its user passes."""
    build, shape, *_ = MODELS[name]
    keras3 = build(shape, 10, seed=0)
    schedule = dict(initial_sparsity=0.0, final_sparsity=FINAL_SPARSITY, begin_step=0,
                    end_step=end_step, frequency=FREQUENCY)
    ours = kl_tfmot.sparsity.keras.prune_low_magnitude(
        build(shape, 10, seed=0),
        pruning_schedule=kl_tfmot.sparsity.keras.PolynomialDecay(**schedule))
    assert all(np.array_equal(keras.ops.convert_to_numpy(a), b)
               for a, b in zip(kl.rewind.rewindable_weights(ours), keras3.get_weights()))
    theirs = tfmot.sparsity.keras.prune_low_magnitude(
        tf_keras_twin(name, keras3),
        pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(**schedule))
    return {
        "ours": (compiled(ours, jit=False), [kl_tfmot.sparsity.keras.UpdatePruningStep()]),
        "tfmot": (tf_keras_compiled(theirs), [tfmot.sparsity.keras.UpdatePruningStep()]),
        "keras3": (compiled(keras3, jit=False), None),
        "tf_keras": (tf_keras_compiled(tf_keras_twin(name, keras3)), None),
    }


def fit_times(name: str, repeats: int, quick: bool) -> dict:
    _, shape, batch, *_ = MODELS[name]
    steps = STEPS[name][quick]
    data = batch_dataset(shape, batch)
    models = contenders(name, end_step=steps * (WARMUP + repeats))

    def fit(key):
        model, callbacks = models[key]
        return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0,
                                 shuffle=False, callbacks=callbacks)

    times = common.interleave({k: fit(k) for k in models}, repeats, warmup=WARMUP)
    out = {"steps": steps, "mask_updates_per_fit": steps // FREQUENCY,
           "end_step": steps * (WARMUP + repeats), "times": times,
           "sparsity_ours": kl.sparsity(models["ours"][0]),
           "sparsity_tfmot": tfmot_sparsity(models["tfmot"][0])}
    for clock in times:
        out[clock] = {
            "ours/tfmot": common.ratio(times[clock], "ours", "tfmot"),
            "ours/keras3": common.ratio(times[clock], "ours", "keras3"),
            "tfmot/tf_keras": common.ratio(times[clock], "tfmot", "tf_keras"),
            "keras3/tf_keras": common.ratio(times[clock], "keras3", "tf_keras"),
            "ms_per_step": {k: 1e3 * float(np.median(v)) / steps
                            for k, v in times[clock].items()},
        }
    return out


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--models", nargs="+", choices=sorted(STEPS), default=sorted(STEPS))
    p.add_argument("--repeats", type=int, default=None, help="default: 5 (--quick) or 7")
    args = p.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 7)
    results = {}
    for name in args.models:
        results[name] = fit_times(name, repeats, args.quick)
        keras.backend.clear_session()
        tf_keras.backend.clear_session()
    table, notes = render(results, repeats)
    notes += " Command: `" + " ".join(["python benchmarks/vs_tfmot.py", *(argv or sys.argv[1:])]) + "`."
    common.write_results(args.out, "vs_tfmot", args, results, table, notes)


def render(results: dict, repeats: int) -> tuple[str, str]:
    rows = []
    for name, r in results.items():
        cpu, wall = r["cpu"], r["wall"]
        ms = cpu["ms_per_step"]
        rows.append((
            name, f"{r['steps']} ({r['mask_updates_per_fit']})",
            f"{ms['ours']:.2f} / {ms['tfmot']:.2f}",
            cpu["ours/tfmot"]["ratio"], common.noise(cpu["ours/tfmot"]),
            wall["ours/tfmot"]["ratio"], common.noise(wall["ours/tfmot"]),
            cpu["ours/keras3"]["ratio"], cpu["tfmot/tf_keras"]["ratio"],
            cpu["keras3/tf_keras"]["ratio"],
            f"{r['sparsity_ours']:.3f} / {r['sparsity_tfmot']:.3f}",
        ))
    table = "Whole pruned `fit` (PolynomialDecay 0 -> 0.8, frequency 100, mask updates included)\n\n"
    table += common.markdown_table(
        ["model", "steps per fit (mask updates)", "CPU ms/step ours / tfmot",
         "ours/tfmot (CPU)", "CPU paired min..max", "ours/tfmot (wall)",
         "wall paired min..max", "ours/keras3 (CPU)", "tfmot/tf_keras (CPU)",
         "keras3/tf_keras (CPU)", "final sparsity ours / tfmot"],
        rows,
    )
    notes = (
        f"Ratios of medians over {repeats} interleaved `fit`s per contender (after "
        f"{WARMUP} untimed warm-up fit); < 1 means keras-lottery is faster. ours: "
        "`keras_lottery.tfmot.sparsity.keras.prune_low_magnitude` + `UpdatePruningStep` "
        "on the Keras 3 model; tfmot: TFMOT 0.8's on the tf_keras twin, same weights and "
        "schedule. ours/keras3 and tfmot/tf_keras: each pruning API's cost over its own "
        "plain Keras; keras3/tf_keras: the two Keras versions' plain fits."
    )
    return table, notes


if __name__ == "__main__":
    main()
