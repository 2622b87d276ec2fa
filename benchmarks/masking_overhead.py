"""Training-step overhead of `kl.prunable(model)` over the plain Keras model.

For each architecture, two models with the same weights are compiled alike
(Adam, sparse categorical cross-entropy on logits): the plain Keras model
and its `kl.prunable()` version pruned to 80% sparsity (the masked forward
pass is dense either way, so sparsity does not change the work). One
measurement is one `model.fit` over a fixed number of steps on one
in-memory random batch repeated (`tf.data.Dataset.from_tensors(...)
.repeat()`, so no input pipeline cost). The first `fit` of each model
(tracing) is excluded. Measurements of the two models are interleaved and
the result is median(masked) / median(plain); the paired per-round ratios
give the noise. Both `jit_compile=False` (Keras' default on CPU) and
`jit_compile=True` (XLA) are measured.

Goal: ratio <= 1.05 (the paper's models); <= 1.10 for the LSTM and
keras-hub's BERT classifier (`--models lstm bert`), whose masks sit in
recurrent cells and attention projections.

Where an overhead comes from: `prunable()` makes each layer read
`kernel * mask` (its `_MaskedCall` swaps the product in for the call), which
adds two elementwise passes over each masked kernel per step, `kernel * mask` in the forward pass and
`grad * mask` in the backward pass (the mask is non-trainable, so no
gradient is computed for it). They cost about as much as one of Adam's
dozen elementwise ops on that kernel, so they show where kernel-sized
elementwise work is a large part of the step (LeNet-300-100 at batch 60:
its 235K-weight first layer) and disappear behind convolutions.

`--profile` also runs the TensorFlow profiler over `fit` of each model
(jit off; per op, the least of 3 interleaved profiled calls) and lists the ops whose
time per step differs most between the two (op names normalised so the
two models' ops line up): it shows where the overhead goes.
"""

from __future__ import annotations

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import collections
import glob
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf

import keras_lottery as kl
from keras_lottery.runner.presets import models

def lstm_rows(input_shape, classes: int, seed: int) -> keras.Model:
    """An LSTM(64) reading an image's rows as time steps."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(input_shape), keras.layers.LSTM(64),
                             keras.layers.Dense(classes)])


VOCABULARY = 1000


def bert_classifier(input_shape, classes: int, seed: int) -> keras.Model:
    """keras-hub's BertTextClassifier built from config (2 layers, width 64),
    random weights, no preprocessor: token ids in."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=input_shape[0])
    return keras_hub.models.BertTextClassifier(backbone, num_classes=classes,
                                               preprocessor=None)


# name, builder, input shape, batch, steps per measurement (full, quick)
MODELS = {
    "lenet300": (models.lenet300, (28, 28, 1), 60, 200, 100),
    "conv2": (models.conv2, (32, 32, 3), 60, 20, 10),
    "conv6": (models.conv6, (32, 32, 3), 60, 10, 5),
    "resnet20": (models.resnet20, (32, 32, 3), 60, 10, 5),
    "lstm": (lstm_rows, (28, 28), 60, 40, 20),
    "bert": (bert_classifier, (64,), 32, 40, 20),
}
QUICK_MODELS = ("lenet300", "conv2")
GOALS = {"lstm": 1.10, "bert": 1.10}  # CPU ratio goals; 1.05 for the others


def batch_dataset(input_shape, batch: int, classes: int = 10, seed: int = 0, tokens=False):
    """One random batch, repeated forever (token ids, segment ids and a
    padding mask for the BERT classifier)."""
    rng = np.random.default_rng(seed)
    if tokens:
        ids = rng.integers(0, VOCABULARY, size=(batch, *input_shape)).astype("int32")
        x = {"token_ids": ids, "segment_ids": np.zeros_like(ids),
             "padding_mask": np.ones_like(ids)}
    else:
        x = rng.normal(size=(batch, *input_shape)).astype("float32")
    y = rng.integers(0, classes, size=(batch,)).astype("int32")
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def compiled(model: keras.Model, jit: bool) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def pair(name: str, jit: bool, seed: int = 0):
    """The plain model and its prunable version at 80% sparsity, compiled.

    `prunable()` masks a model in place, so the two are two builds of the
    same architecture and seed (the same initial weights)."""
    build, shape, *_ = MODELS[name]
    plain = build(shape, 10, seed=seed)
    masked = kl.prunable(build(shape, 10, seed=seed))
    assert masked is not plain and not kl.mask_slots(plain)
    unmasked = kl.rewind.rewindable_weights(masked)
    assert len(unmasked) == len(plain.weights) and all(
        np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
        for a, b in zip(unmasked, plain.weights))
    kl.prune_by_magnitude(masked, 0.8)
    return compiled(plain, jit), compiled(masked, jit)


def fit_steps(model: keras.Model, data, steps: int):
    return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)


def measure(name: str, jit: bool, repeats: int, quick: bool) -> dict:
    _, shape, batch, steps_full, steps_quick = MODELS[name]
    steps = steps_quick if quick else steps_full
    plain, masked = pair(name, jit)
    data = batch_dataset(shape, batch, tokens=name == "bert")
    times = common.interleave(
        {"masked": fit_steps(masked, data, steps), "plain": fit_steps(plain, data, steps)},
        repeats=repeats,
        warmup=1,
    )
    result = {clock: common.ratio(times[clock], "masked", "plain") for clock in times}
    result.update(
        model=name,
        jit_compile=jit,
        batch=batch,
        steps=steps,
        params=plain.count_params(),
        sparsity=round(kl.sparsity(masked), 4),
        ms_per_step_plain=1e3 * result["wall"]["median_s_plain"] / steps,
        ms_per_step_masked=1e3 * result["wall"]["median_s_masked"] / steps,
        times=times,
    )
    keras.backend.clear_session()
    return result


def op_times(model: keras.Model, data, steps: int) -> dict[str, float]:
    """Microseconds per step spent in each TensorFlow op during one `fit`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TF's trace format

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        fit_steps(model, data, steps)()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    totals: dict[str, float] = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if ":" not in name or "::" in name:  # executor bookkeeping
                    continue
                # "StatefulPartitionedCall/m_1/fc1_1/fc1_1/Mul:Mul" -> "m/fc1/Mul:Mul"
                name = re.sub(r"_\d+(?=[/:])", "", name.split("/", 1)[-1])
                name = re.sub(r"\b(\w+)(/\1)+/", r"\1/", name)
                totals[name] += event.duration_ps / 1e6
    return {name: total / steps for name, total in totals.items()}


def profile(name: str, jit: bool, quick: bool, top: int = 8, rounds: int = 3) -> dict:
    """Ops whose time per step differs most between masked and plain."""
    _, shape, batch, steps_full, steps_quick = MODELS[name]
    steps = steps_quick if quick else steps_full
    plain, masked = pair(name, jit)
    data = batch_dataset(shape, batch, tokens=name == "bert")
    for model in (plain, masked):
        fit_steps(model, data, 2)()  # trace outside the profile
    # Per op, the least of `rounds` profiled fits, interleaved: the profiler
    # records wall time per op, which other processes inflate.
    runs = {"plain": [], "masked": []}
    for _ in range(rounds):
        for key, model in (("plain", plain), ("masked", masked)):
            runs[key].append(op_times(model, data, steps))
    plain_ops, masked_ops = (
        {op: min(r.get(op, 0.0) for r in runs[key]) for op in set().union(*runs[key])}
        for key in ("plain", "masked")
    )
    keras.backend.clear_session()
    diff = {op: masked_ops.get(op, 0.0) - plain_ops.get(op, 0.0)
            for op in set(plain_ops) | set(masked_ops)}
    return {
        "model": name,
        "jit_compile": jit,
        "op_us_per_step_plain": sum(plain_ops.values()),
        "op_us_per_step_masked": sum(masked_ops.values()),
        "top_added_us_per_step": dict(sorted(diff.items(), key=lambda kv: -kv[1])[:top]),
    }


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None,
                   help="default: lenet300 conv2 (--quick) or all")
    p.add_argument("--repeats", type=int, default=None, help="default: 9 (--quick) or 15")
    p.add_argument("--jit", choices=("off", "on", "both"), default="both")
    p.add_argument("--profile", action="store_true",
                   help="also profile ops (jit off) and list where the extra time goes")
    args = p.parse_args(argv)
    names = args.models or (QUICK_MODELS if args.quick else list(MODELS))
    repeats = args.repeats or (9 if args.quick else 15)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    results = [measure(n, jit, repeats, args.quick) for n in names for jit in jits]
    rows = [
        (r["model"], "on" if r["jit_compile"] else "off", r["batch"], r["steps"],
         r["ms_per_step_plain"], r["ms_per_step_masked"],
         r["wall"]["ratio"], common.noise(r["wall"]),
         r["cpu"]["ratio"], common.noise(r["cpu"]),
         "yes" if r["cpu"]["ratio"] <= GOALS.get(r["model"], 1.05) else "no")
        for r in results
    ]
    table = common.markdown_table(
        ["model", "jit", "batch", "steps", "plain ms/step", "masked ms/step",
         "wall ratio", "wall paired min..max", "CPU ratio", "CPU paired min..max",
         "CPU ratio within goal"],
        rows,
    )
    notes = (
        f"Ratio = median(masked) / median(plain) over {repeats} interleaved `fit` "
        "calls per model, each of `steps` steps (tracing excluded); masked = "
        "`kl.prunable` at 80% sparsity, same weights, data and optimizer (Adam). "
        "`wall` is elapsed time, `CPU` this process's CPU time (all threads); "
        "with other processes on the machine the wall times jump between modes "
        "(a 2-thread step waits for a preempted thread), so the CPU ratio is the "
        "steadier estimate. min..max of the per-round paired ratios show the "
        "noise. ms/step (wall medians) are indicative only."
    )
    if args.profile:
        profiles = [profile(n, False, args.quick) for n in names]
        results = {"timings": results, "profiles": profiles}
        for prof in profiles:
            lines = "\n".join(f"  {us:9.1f} us/step  {op}"
                              for op, us in prof["top_added_us_per_step"].items())
            notes += (
                f"\n\nProfile of {prof['model']} (jit off): op time "
                f"{prof['op_us_per_step_plain']:.0f} -> {prof['op_us_per_step_masked']:.0f} "
                f"us/step (both threads); most added per step:\n\n```\n{lines}\n```"
            )
    common.write_results(args.out, "masking_overhead", args, results, table, notes)


if __name__ == "__main__":
    main()
