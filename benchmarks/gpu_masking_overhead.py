"""Training-step time of masked vs plain models on a GPU (Keras 3, JAX backend).

The GPU machines this project can borrow have no TensorFlow and cannot fetch
it (their transfers are capped below the size of a TensorFlow wheel), but
they have JAX. `prunable()`'s masked calls are written in backend-agnostic
`keras.ops`, so this script imports `keras_lottery/masking.py` and
`runner/presets/models.py` (and the modules they import) from their files without
running the package `__init__`s (which import TensorFlow), and times
`model.fit` of each paper architecture plain and `prunable` at 80% sparsity,
interleaved, median of the measurements, in one process. `prunable()` masks
a model in place, so the plain model is a second build of the same
architecture and seed.

    KERAS_BACKEND=jax python benchmarks/gpu_masking_overhead.py [--quick]
"""

from __future__ import annotations

import importlib
import os
import sys
import types

os.environ.setdefault("KERAS_BACKEND", "jax")

from common import REPO, interleave, markdown_table, parser, ratio, write_results  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402


def _load(name: str):
    """Imports keras_lottery.<name> without running the packages' __init__:
    keras_lottery and its runner packages are stood in for by empty
    packages whose submodules load from the checkout's files."""
    for package in ("keras_lottery", "keras_lottery.runner", "keras_lottery.runner.presets"):
        if package not in sys.modules:
            stub = types.ModuleType(package)
            stub.__path__ = [os.path.join(REPO, *package.split("."))]
            sys.modules[package] = stub
    return importlib.import_module(f"keras_lottery.{name}")


masking = _load("masking")
models = _load("runner.presets.models")

# name -> (input shape, batch, steps per measurement)
MODELS = {
    "lenet300": ((28, 28, 1), 60, 2000),
    "conv2": ((32, 32, 3), 60, 1000),
    "conv6": ((32, 32, 3), 60, 600),
    "resnet20": ((32, 32, 3), 128, 300),
    "vgg19": ((32, 32, 3), 64, 200),
}


def _compiled(model: keras.Model) -> keras.Model:
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def pair(name: str):
    """Plain model and the same architecture masked at 80% random sparsity,
    compiled (prunable() masks in place: the two are separate builds)."""
    shape, *_ = MODELS[name]
    plain = models.build(name, shape, 10, seed=0)
    masked = masking.prunable(models.build(name, shape, 10, seed=0))
    slots = masking.mask_slots(masked)
    assert slots and not masking.mask_slots(plain)
    rng = np.random.default_rng(0)
    for slot in slots:
        keep = (rng.random(slot.mask.shape) < 0.2).astype("float32")
        slot.mask.assign(keep)
        slot.kernel.assign(keras.ops.convert_to_numpy(slot.kernel) * keep)
    return _compiled(plain), _compiled(masked)


def main() -> None:
    args = parser(__doc__).parse_args()
    names = ("lenet300", "conv2") if args.quick else tuple(MODELS)
    repeats = 5 if args.quick else 11
    device = str(keras.backend.backend()) + ": " + ", ".join(
        str(d) for d in __import__("jax").devices())
    results, rows = [], []
    for name in names:
        shape, batch, steps = MODELS[name]
        rng = np.random.default_rng(1)
        x = rng.normal(size=(batch * steps, *shape)).astype("float32")
        y = rng.integers(0, 10, size=batch * steps)
        plain, masked = pair(name)
        fits = {label: (lambda m=m: m.fit(x, y, batch_size=batch, epochs=1, shuffle=False,
                                          verbose=0))
                for label, m in (("plain", plain), ("masked", masked))}
        times = interleave(fits, repeats=repeats, warmup=1)["wall"]
        r = ratio(times, "masked", "plain")
        results.append({"model": name, "batch": batch, "steps": steps, **r, "times": times})
        rows.append([name, batch, steps, 1000 * r["median_s_plain"] / steps,
                     1000 * r["median_s_masked"] / steps, r["ratio"],
                     f"[{r['paired_min']:.3f}, {r['paired_max']:.3f}]"])
    table = markdown_table(["model", "batch", "steps", "plain ms/step", "masked ms/step",
                            "masked/plain", "paired min..max"], rows)
    notes = (f"Device: {device}. `model.fit` wall time over `steps` steps, median of "
             f"{repeats} interleaved measurements after one warm-up fit (compilation).")
    write_results(args.out, "gpu_masking_overhead", args, results, table, notes)


if __name__ == "__main__":
    main()
