"""keras-lottery on each Keras backend: masked / plain training step, and one lottery round.

One process per backend (TensorFlow, JAX, PyTorch; each backend's own
Python, e.g. a venv without TensorFlow, via --python-BACKEND), the same
models, data and settings:

1. Step time. For LeNet-300-100 (28x28x1, batch 60) and Conv-2 (32x32x3,
   batch 60): the plain Keras model and its `kl.prunable()` version pruned
   to 80% sparsity, same weights, compiled alike (Adam, sparse categorical
   cross-entropy on logits, the backend's default `jit_compile`). One
   measurement is one `model.fit` of `steps` steps on NumPy arrays of
   random data (the same for both); the first fit of each model
   (tracing/compilation) is excluded; the two are interleaved
   (`common.interleave`). Ratio = median CPU time masked / plain.
2. Round time. `LotterySearch` on real Fashion-MNIST (Debian's files,
   /usr/share/datasets/fashion-mnist, read by `keras_lottery.runner.presets.data`):
   LeNet-300-100, Adam 1.2e-3, batch 60, `--round-steps` steps, evaluated
   on the 5,000 validation and 10,000 test images every `--round-steps / 2`
   steps. The dense round 0 runs first (untimed); then the search is
   extended to `rounds=1` and that call is timed: one pruning round (prune
   20%, rewind to θ0, train, evaluate, write the run directory and
   TensorBoard). Wall and CPU time; one measurement per backend.

Usage:
    python benchmarks/backends.py --python-jax /tmp/venv-jax/bin/python \
        --python-torch /tmp/venv-torch/bin/python
    python benchmarks/backends.py --backend jax   # one backend, JSON on stdout
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

BACKENDS = ("tensorflow", "jax", "torch")
# name, input shape, batch, steps per measurement (full, quick)
MODELS = {"lenet300": ((28, 28, 1), 60, 200, 50), "conv2": ((32, 32, 3), 60, 20, 5)}


def _compiled(model, keras):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def step_times(name: str, repeats: int, quick: bool) -> dict:
    import keras
    import numpy as np

    import keras_lottery as kl
    from keras_lottery.runner.presets import models

    shape, batch, steps_full, steps_quick = MODELS[name]
    steps = steps_quick if quick else steps_full
    plain = models.build(name, shape, 10, seed=0)
    masked = kl.prunable(plain)
    kl.prune_by_magnitude(masked, 0.8)
    plain, masked = _compiled(plain, keras), _compiled(masked, keras)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, *shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch * steps,)).astype("int32")

    def fit(model):
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    times = common.interleave({"masked": fit(masked), "plain": fit(plain)}, repeats=repeats, warmup=1)
    result = {clock: common.ratio(times[clock], "masked", "plain") for clock in times}
    result.update(model=name, batch=batch, steps=steps, sparsity=round(kl.sparsity(masked), 4),
                  cpu_ms_per_step_plain=1e3 * result["cpu"]["median_s_plain"] / steps,
                  cpu_ms_per_step_masked=1e3 * result["cpu"]["median_s_masked"] / steps,
                  wall_ms_per_step_plain=1e3 * result["wall"]["median_s_plain"] / steps,
                  wall_ms_per_step_masked=1e3 * result["wall"]["median_s_masked"] / steps,
                  times=times)
    keras.backend.clear_session()
    return result


def lenet_builder():
    """LeNet-300-100 for Fashion-MNIST, seeded (the same θ0 on every call)."""
    import keras

    from keras_lottery.runner.presets import models

    model = models.lenet300((28, 28, 1), 10, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1.2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def round_time(steps: int) -> dict:
    import keras_lottery as kl
    from keras_lottery.runner.presets import data as data_lib

    data = data_lib.load("fashion_mnist")
    scale = lambda x: (x / 255.0).astype("float32")  # noqa: E731
    train = (scale(data.x_train), data.y_train)
    val, test = (scale(data.x_val), data.y_val), (scale(data.x_test), data.y_test)
    fit = dict(steps=steps, eval_every=steps // 2, batch_size=60)
    with tempfile.TemporaryDirectory() as logdir:
        settings = dict(logdir=logdir, verbose=0, checkpoint_every=steps)
        began, began_cpu = time.perf_counter(), time.process_time()
        kl.LotterySearch(lenet_builder, rounds=0, **settings).fit(train, val, test, **fit)
        dense_wall, dense_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        began, began_cpu = time.perf_counter(), time.process_time()
        result = kl.LotterySearch(lenet_builder, rounds=1, **settings).fit(train, val, test, **fit)
        wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    row = result.branch("ticket")[-1]
    return {"steps": steps, "eval_every": steps // 2, "round_wall_s": wall, "round_cpu_s": cpu,
            "dense_round_wall_s": dense_wall, "dense_round_cpu_s": dense_cpu,
            "round1_percent_remaining": row["percent_remaining"],
            "round1_test_accuracy_final": row["test_accuracy_final"]}


def one_backend(args) -> dict:
    os.environ["KERAS_BACKEND"] = args.backend
    import keras

    assert keras.backend.backend() == args.backend, keras.backend.backend()
    from importlib import metadata

    versions = {}
    for package in ("keras", "tensorflow", "jax", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    repeats = 5 if args.quick else args.repeats
    steps = {name: step_times(name, repeats, args.quick) for name in MODELS}
    rounds = round_time(200 if args.quick else args.round_steps)
    return {"backend": args.backend, "versions": versions, "steps": steps, "round": rounds,
            "tensorflow_imported": "tensorflow" in sys.modules}


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--backend", choices=BACKENDS, help="measure one backend in this process")
    p.add_argument("--repeats", type=int, default=9, help="interleaved fits per model")
    p.add_argument("--round-steps", type=int, default=1000, help="training steps of the timed round")
    for backend in BACKENDS:
        p.add_argument(f"--python-{backend}", default=sys.executable,
                       help=f"the Python with the {backend} backend (default: this one)")
    args = p.parse_args()
    if args.backend:
        print(json.dumps(one_backend(args)))
        return
    results = []
    for backend in BACKENDS:
        python = getattr(args, f"python_{backend}")
        command = [python, os.path.abspath(__file__), "--backend", backend,
                   "--repeats", str(args.repeats), "--round-steps", str(args.round_steps)]
        if args.quick:
            command.append("--quick")
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend})
        if done.returncode:
            sys.exit(f"{backend} failed:\n{done.stderr[-4000:]}")
        results.append({**json.loads(done.stdout.strip().splitlines()[-1]), "python": python})
        print(f"{backend}: done", flush=True)
    rows = []
    for r in results:
        s = r["steps"]
        rows.append([r["backend"], r["versions"]["jax"] or r["versions"]["torch"] or r["versions"]["tensorflow"],
                     s["lenet300"]["cpu_ms_per_step_plain"], s["lenet300"]["cpu_ms_per_step_masked"],
                     s["lenet300"]["cpu"]["ratio"], common.noise(s["lenet300"]["cpu"]),
                     s["conv2"]["cpu_ms_per_step_plain"], s["conv2"]["cpu_ms_per_step_masked"],
                     s["conv2"]["cpu"]["ratio"], common.noise(s["conv2"]["cpu"]),
                     r["round"]["round_wall_s"], r["round"]["round_cpu_s"],
                     r["round"]["round1_test_accuracy_final"]])
    headers = ["backend", "version", "LeNet plain CPU ms/step", "LeNet masked", "LeNet CPU ratio",
               "paired min..max", "Conv-2 plain CPU ms/step", "Conv-2 masked", "Conv-2 CPU ratio",
               "paired min..max", "round wall s", "round CPU s", "round-1 test acc"]
    notes = (
        "CPU ratio = median CPU time of `model.fit` masked / plain (80% sparsity, same weights and "
        f"data, Adam, batch 60), {results[0]['steps']['lenet300']['cpu']['n']} interleaved fits per "
        "model in one process per backend, compilation excluded; CPU ms/step are medians of this "
        "process's CPU time (all threads) per step. Round = one pruning round of `LotterySearch` on "
        f"real Fashion-MNIST (LeNet-300-100, {results[0]['round']['steps']} steps of batch 60, two "
        "evaluations on 5,000 validation + 10,000 test images, run directory and TensorBoard), "
        "one measurement. The jax and torch processes ran without TensorFlow installed: "
        + ", ".join(f"{r['backend']}: tensorflow imported={r['tensorflow_imported']}" for r in results)
        + ". Shared 2-core machine: times are indicative, ratios are the result."
    )
    common.write_results(args.out, args.name or "backends", args, results,
                         common.markdown_table(headers, rows), notes)


if __name__ == "__main__":
    main()
