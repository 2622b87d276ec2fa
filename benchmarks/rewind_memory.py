"""Bytes per parameter of a rewind snapshot, in memory and on disk.

For LeNet-300-100 and Conv-2 wrapped with `kl.prunable`, two states:

- dense: right after initialization (what `RewindCallback(rewind_step=0)`
  keeps);
- pruned: after `kl.prune_by_magnitude(model, 0.8)` and
  `kl.restore_weights(model, snapshot)`, so 80% of the kernels are zero
  (the snapshot of a later round's model).

In memory: `snapshot.nbytes` per parameter, and the bytes allocated by
`kl.snapshot_weights(model)` (tracemalloc: retained after the call, and
peak during it). On disk: size of `snapshot.save(path)` (a compressed
`.npz`) per parameter. Parameters are the model's weights without masks
(`count_params()` of the plain model); masks are never in a snapshot.
Nothing here is timed.
"""

from __future__ import annotations

import gc
import os
import tempfile
import tracemalloc

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import keras

import keras_lottery as kl
from keras_lottery.runner.presets import models

MODELS = {"lenet300": (models.lenet300, (28, 28, 1)), "conv2": (models.conv2, (32, 32, 3))}


def measure(model: keras.Model, params: int, directory: str, tag: str) -> dict:
    gc.collect()
    tracemalloc.start()
    snapshot = kl.snapshot_weights(model)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    path = os.path.join(directory, f"{tag}.npz")
    snapshot.save(path)
    size = os.path.getsize(path)
    return {
        "params": params,
        "nbytes": snapshot.nbytes,
        "traced_retained": retained,
        "traced_peak": peak,
        "file_bytes": size,
        "nbytes_per_param": snapshot.nbytes / params,
        "traced_retained_per_param": retained / params,
        "traced_peak_per_param": peak / params,
        "file_bytes_per_param": size / params,
        "snapshot": snapshot,
    }


def main(argv=None) -> None:
    p = common.parser(__doc__)
    args = p.parse_args(argv)  # --quick changes nothing: this is fast
    results, rows = [], []
    with tempfile.TemporaryDirectory() as directory:
        for name, (build, shape) in MODELS.items():
            plain = build(shape, 10, seed=0)
            params = plain.count_params()
            model = kl.prunable(plain)
            dense = measure(model, params, directory, f"{name}_dense")
            kl.prune_by_magnitude(model, 0.8)
            kl.restore_weights(model, dense["snapshot"])
            pruned = measure(model, params, directory, f"{name}_pruned")
            for state, r in (("dense", dense), ("80% pruned", pruned)):
                r.pop("snapshot")
                r.update(model=name, state=state, sparsity=kl.sparsity(model) if
                         state != "dense" else 0.0)
                results.append(r)
                rows.append((
                    name, state, params, r["nbytes_per_param"],
                    r["traced_retained_per_param"], r["traced_peak_per_param"],
                    r["file_bytes_per_param"],
                ))
            keras.backend.clear_session()
    table = common.markdown_table(
        ["model", "state", "params", "nbytes/param", "tracemalloc retained/param",
         "tracemalloc peak/param", "file bytes/param (npz, compressed)"],
        rows,
    )
    notes = (
        "float32 weights: 4 bytes/param is the floor in memory. The file is "
        "`np.savez_compressed`: random dense weights barely compress; zeros of "
        "pruned weights do (the snapshot does not store masks or indices)."
    )
    common.write_results(args.out, "rewind_memory", args, results, table, notes)


if __name__ == "__main__":
    main()
