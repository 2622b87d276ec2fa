"""keras-lottery vs TFMOT `prune_low_magnitude`: training step and mask update.

Models: LeNet-300-100 (batch 60, 28x28x1) and Conv-2 (batch 60, 32x32x3),
built once in Keras 3 (`keras_lottery.runner.models`) and once, layer for layer
with the same weights, in `tf_keras` for TFMOT.

1. Training step. Four contenders, interleaved, each one `fit` of a fixed
   number of steps on one in-memory random batch repeated, Adam, tracing
   excluded:
   - `ours`: `kl.prunable(model)` pruned layer-wise to 80%;
   - `tfmot`: `prune_low_magnitude(model, ConstantSparsity(0.8,
     begin_step=0, frequency=100))` with the `UpdatePruningStep` callback;
   - `keras3` and `tf_keras`: the plain models, to separate the wrappers'
     cost from the cost of the two Keras versions.
   TFMOT recomputes its masks (a full `top_k` of every kernel) whenever its
   `pruning_step` is a multiple of 100. Before each TFMOT measurement its
   `pruning_step` is set to 1 so the measured window (< 100 steps) holds
   no mask update: the step ratio is steady state. The update itself is
   measured in part 2, and `tfmot amortized` adds 1/100 of it per step
   (what `frequency=100` costs while pruning runs).

2. Mask computation and assignment at 80% sparsity, from dense weights
   (masks reset to ones and weights restored before each measurement,
   untimed), on the compiled models after training (optimizer built):
   - `ours`: `kl.prune_by_magnitude(model, 0.8, scope="layerwise")`
     (reads kernels and masks, NumPy partition per kernel, assigns masks,
     zeros pruned weights and their Adam slots);
   - `tfmot (graph)`: for every wrapper, `pruning_obj.conditional_mask_update()`
     (threshold and mask from `top_k`) then `pruning_obj.weight_mask_op()`
     (weights *= mask), with `pruning_step = 0` (a pruning turn), inside
     one `tf.function` (traced once, excluded): exactly the ops TFMOT runs
     in its training step when it prunes;
   - `tfmot (eager)`: the same calls run eagerly, as a user would call them.
   The masks of both libraries are compared (share of equal entries).
"""

from __future__ import annotations

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

import keras_lottery as kl
from masking_overhead import MODELS, batch_dataset, compiled

STEPS = {"lenet300": (90, 90), "conv2": (10, 5)}  # steps per fit (full, quick)
SPARSITY = 0.8


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


def tfmot_pruned(model: tf_keras.Model) -> tf_keras.Model:
    schedule = tfmot.sparsity.keras.ConstantSparsity(SPARSITY, begin_step=0, frequency=100)
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


def wrappers(model: tf_keras.Model) -> list:
    """TFMOT's pruning wrappers of `model` (it exports no public test)."""
    return [layer for layer in model.layers if hasattr(layer, "pruning_obj")]


def set_pruning_step(model: tf_keras.Model, step: int) -> None:
    for layer in wrappers(model):
        layer.pruning_step.assign(step)


def tfmot_masks(model: tf_keras.Model) -> dict[str, np.ndarray]:
    """TFMOT's masks keyed like keras-lottery's: "<layer>/<weight>" ("fc1/kernel")."""
    return {
        f"{layer.layer.name}/{weight.name.split('/')[-1].split(':')[0]}": mask.numpy() != 0
        for layer in wrappers(model)
        for weight, mask, _ in layer.pruning_vars
    }


def masks_sparsity(masks: dict[str, np.ndarray]) -> float:
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values())


def contenders(name: str) -> dict:
    """The four compiled models (TFMOT's is pruned in `step_times`)."""
    build, shape, *_ = MODELS[name]
    keras3 = build(shape, 10, seed=0)
    # prunable() masks in place: ours is a second build of the same seed.
    ours = kl.prunable(build(shape, 10, seed=0))
    assert not kl.mask_slots(keras3) and all(
        np.array_equal(keras.ops.convert_to_numpy(a), b)
        for a, b in zip(kl.rewind.rewindable_weights(ours), keras3.get_weights()))
    kl.prune_by_magnitude(ours, SPARSITY, scope="layerwise")
    plain_tfk = tf_keras_twin(name, keras3)
    pruned_tfk = tfmot_pruned(tf_keras_twin(name, keras3))
    return {
        "ours": compiled(ours, jit=False),
        "tfmot": tf_keras_compiled(pruned_tfk),
        "keras3": compiled(keras3, jit=False),
        "tf_keras": tf_keras_compiled(plain_tfk),
    }


def step_times(name: str, models: dict, repeats: int, quick: bool) -> dict:
    _, shape, batch, *_ = MODELS[name]
    steps = STEPS[name][quick]
    data = batch_dataset(shape, batch)
    callbacks = {"tfmot": [tfmot.sparsity.keras.UpdatePruningStep()]}

    def fit(key):
        model = models[key]
        return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0,
                                 shuffle=False, callbacks=callbacks.get(key))

    # Prune TFMOT's model to 80%: its step is incremented, then the mask is
    # updated if the step is a multiple of 100, so one step from 99 does it.
    models["tfmot"].fit(data, epochs=1, steps_per_epoch=1, verbose=0,
                        callbacks=callbacks["tfmot"])
    set_pruning_step(models["tfmot"], 99)
    models["tfmot"].fit(data, epochs=1, steps_per_epoch=1, verbose=0,
                        callbacks=callbacks["tfmot"])
    tfmot_sparsity = masks_sparsity(tfmot_masks(models["tfmot"]))

    def setup(key):
        if key == "tfmot":
            set_pruning_step(models[key], 1)

    times = common.interleave({k: fit(k) for k in models}, repeats, warmup=1, setup=setup)
    out = {"steps": steps, "times": times, "tfmot_sparsity": tfmot_sparsity,
           "ours_sparsity": kl.sparsity(models["ours"])}
    for clock in times:
        out[clock] = {
            "ours/tfmot": common.ratio(times[clock], "ours", "tfmot"),
            "ours/keras3": common.ratio(times[clock], "ours", "keras3"),
            "tfmot/tf_keras": common.ratio(times[clock], "tfmot", "tf_keras"),
            "ms_per_step": {k: 1e3 * float(np.median(v)) / steps
                            for k, v in times[clock].items()},
        }
    return out


def mask_times(models: dict, repeats: int) -> dict:
    ours, pruned = models["ours"], models["tfmot"]
    # Dense starting point for both: masks of ones and the weights of the
    # plain Keras 3 model (trained, unpruned).
    mask_ids = kl.masking.masks_of(ours)
    dense = iter(models["keras3"].get_weights())
    ours_dense = [np.ones(v.shape, v.dtype) if id(v) in mask_ids else next(dense)
                  for v in ours.weights]
    for layer in wrappers(pruned):  # the same values, so the masks compare
        if not layer.pruning_vars:  # TFMOT wraps pooling and flatten too
            continue
        plain = models["keras3"].get_layer(layer.layer.name)
        layer.layer.kernel.assign(keras.ops.convert_to_numpy(plain.kernel))
        layer.layer.bias.assign(keras.ops.convert_to_numpy(plain.bias))
        for _, mask, threshold in layer.pruning_vars:
            mask.assign(tf.ones_like(mask))
            threshold.assign(tf.zeros_like(threshold))
    set_pruning_step(pruned, 0)  # a pruning turn of ConstantSparsity
    tfmot_dense = [v.numpy() for v in pruned.weights]

    def update_eager():
        for layer in wrappers(pruned):
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()

    update_graph = tf.function(update_eager)

    def setup(key):
        if key == "ours":
            ours.set_weights(ours_dense)
        else:
            for var, value in zip(pruned.weights, tfmot_dense):
                var.assign(value)

    times = common.interleave(
        {
            "ours": lambda: kl.prune_by_magnitude(ours, SPARSITY, scope="layerwise"),
            "tfmot_graph": update_graph,
            "tfmot_eager": update_eager,
        },
        repeats,
        warmup=1,
        setup=setup,
    )
    ours_masks = kl.get_masks(ours)
    theirs = tfmot_masks(pruned)
    out = {"times": times}
    for clock in times:
        out[clock] = {
            "ours/tfmot_graph": common.ratio(times[clock], "ours", "tfmot_graph"),
            "ours/tfmot_eager": common.ratio(times[clock], "ours", "tfmot_eager"),
            "ms": {k: 1e3 * float(np.median(v)) for k, v in times[clock].items()},
        }
    assert sorted(theirs) == sorted(ours_masks), (sorted(theirs), sorted(ours_masks))
    out["mask_agreement"] = kl.mask_overlap(ours_masks, {k: theirs[k] for k in ours_masks})
    out["sparsity_ours"] = kl.sparsity(ours)
    out["sparsity_tfmot"] = masks_sparsity(theirs)
    return out


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--models", nargs="+", choices=sorted(STEPS), default=sorted(STEPS))
    p.add_argument("--repeats", type=int, default=None, help="default: 7 (--quick) or 11")
    args = p.parse_args(argv)
    repeats = args.repeats or (7 if args.quick else 11)
    results = {}
    for name in args.models:
        models = contenders(name)
        results[name] = {
            "step": step_times(name, models, repeats, args.quick),
            "mask_update": mask_times(models, repeats),
        }
        keras.backend.clear_session()
        tf_keras.backend.clear_session()
    table = render(results, repeats)
    common.write_results(args.out, "vs_tfmot", args, results, table["table"], table["notes"])


def render(results: dict, repeats: int) -> dict:
    steps, masks = [], []
    for name, r in results.items():
        s, m = r["step"], r["mask_update"]
        ms, mm = s["wall"]["ms_per_step"], m["wall"]["ms"]
        amortized = s["cpu"]["ms_per_step"]["tfmot"] + m["cpu"]["ms"]["tfmot_graph"] / 100
        steps.append((
            name, s["steps"], f"{ms['ours']:.2f} / {ms['tfmot']:.2f}",
            s["wall"]["ours/tfmot"]["ratio"], common.noise(s["wall"]["ours/tfmot"]),
            s["cpu"]["ours/tfmot"]["ratio"], common.noise(s["cpu"]["ours/tfmot"]),
            s["cpu"]["ms_per_step"]["ours"] / amortized,
            s["cpu"]["ours/keras3"]["ratio"], s["cpu"]["tfmot/tf_keras"]["ratio"],
        ))
        masks.append((
            name, f"{mm['ours']:.1f} / {mm['tfmot_graph']:.1f} / {mm['tfmot_eager']:.1f}",
            m["wall"]["ours/tfmot_graph"]["ratio"], m["cpu"]["ours/tfmot_graph"]["ratio"],
            common.noise(m["cpu"]["ours/tfmot_graph"]),
            m["wall"]["ours/tfmot_eager"]["ratio"], f"{m['mask_agreement']:.5f}",
        ))
    table = "Training step at 80% sparsity (steady state)\n\n" + common.markdown_table(
        ["model", "steps", "ms/step ours / tfmot (wall)", "ours/tfmot (wall)",
         "wall paired min..max", "ours/tfmot (CPU)", "CPU paired min..max",
         "ours/tfmot amortized (CPU)", "ours/keras3 (CPU)", "tfmot/tf_keras (CPU)"],
        steps,
    ) + "\nMask computation + assignment, 80% layer-wise from dense\n\n" + (
        common.markdown_table(
            ["model", "ms ours / tfmot graph / tfmot eager (wall)",
             "ours/tfmot graph (wall)", "ours/tfmot graph (CPU)", "CPU paired min..max",
             "ours/tfmot eager (wall)", "mask agreement"],
            masks,
        )
    )
    notes = (
        f"Ratios of medians over {repeats} interleaved measurements; < 1 means "
        "keras-lottery is faster. Step: no TFMOT mask update in the measured "
        "window; `amortized` adds 1/100 of TFMOT's graph mask update per step "
        "(frequency=100). ours/keras3 and tfmot/tf_keras: each wrapper's cost "
        "over its own plain Keras. Mask: `kl.prune_by_magnitude(m, 0.8, "
        "scope=\"layerwise\")` (NumPy, also zeros Adam slots) vs TFMOT's "
        "`conditional_mask_update()` + `weight_mask_op()` on every wrapper, in a "
        "`tf.function` (as in its training step) or eagerly; agreement = share "
        "of equal mask entries."
    )
    return {"table": table, "notes": notes}


if __name__ == "__main__":
    main()
