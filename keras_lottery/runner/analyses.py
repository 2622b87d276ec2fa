"""The paper's analyses applied to a run directory, for `keras-lottery report`.

`analyze(run_dir)` reads a run's masks, weights and metrics and returns:

- `train_test`: train (train-eval set) vs test metric at the early-stop
  iteration per round (the paper: training accuracy rises with pruning,
  the gap shrinks);
- `stability`: how early the final ticket's weights are chosen: for each
  earlier round, the Jaccard overlap of the final ticket with that round's
  largest trained weights (as many per layer as the final ticket keeps),
  over all layers and per layer; `layer_sparsity`: per-layer sparsity over
  rounds;
- `movement`: how far the weights that survive the next pruning moved in
  training, against those it removes (the paper: winners move the most);
- `early_bird`: the Early-Bird step of the dense round, if it was tracked;
- `structure`: whole neurons/filters left without weights in the last
  ticket, and the speed of the model with them physically removed
  (`keras_lottery.compact`).

This module only computes: `reports.format_report` and
`reports.plot_analyses` present the result, and
`tensorboard.write_analysis_summaries` logs it under `RUN_DIR/analysis/`.

Why not consecutive rounds' masks: every round keeps a fixed share of the
previous round's mask, so their overlap is that share by construction (and
the overlap of nested masks is their density ratio). Comparing the final
ticket with each round's largest *weights* asks instead whether pruning
straight to the final sparsity from that round would have found it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_lottery import analysis, compat
from keras_lottery.compact import compact_report
from keras_lottery.export import strip
from keras_lottery.pruning import get_kernels, output_layers, set_masks
from keras_lottery.rewind import WeightSnapshot, restore_weights, snapshot_weights
from keras_lottery.runner.rebuild import masked_model
from keras_lottery.runner.rundir import TICKET, RunDir


def _kernels(model: keras.Model, snapshot: WeightSnapshot, dense_masks) -> dict[str, np.ndarray]:
    """The raw kernel values a snapshot holds, keyed like the masks."""
    set_masks(model, dense_masks)
    restore_weights(model, snapshot)
    return get_kernels(model)


def analyze(run_dir: str, structure_round: int | None = None,
            metric: str = "accuracy", build: Callable[[], keras.Model] | None = None
            ) -> dict[str, Any]:
    """Every analysis of a run directory.

    Args:
        run_dir: a run directory with at least one completed round.
        structure_round: the round whose ticket the structured-sparsity
            report examines (default: the last completed round).
        metric: the run's metric compared in `train_test` (a key of its
            evaluation records without the split prefix: `accuracy`,
            `auc`, `mean_absolute_error`...).
        build: makes the run's masked model when it is a model of your own
            without a readable `model.keras` (`rebuild.masked_model`).

    Returns:
        A dict with `metric`, `train_test`, `final_round`, `stability`,
        `layer_sparsity`, `movement`, `early_bird`, `structure` (see the
        module docstring), `movement_values` (the raw survivor/pruned
        arrays per round, for histograms) and `unreadable` (rounds left out
        of the weight analyses because their `masks.npz` or `weights.npz`
        is missing or damaged: rerunning the search rebuilds them).

    Raises:
        FileNotFoundError: if no round is complete.
        ValueError: if the run has no test `metric`, or no round's masks
            and weights can be read.

    Example:
    >>> result = analyze("runs/lenet300_fashion_mnist_iterative_1a2b3c4d")
    >>> [(row["round"], round(row["jaccard"], 3)) for row in result["stability"]]
    """
    run = RunDir.load(run_dir)
    tickets = {m["round"]: m for m in run.all_metrics() if m["branch"] == TICKET}
    rounds = sorted(tickets)
    if not rounds:
        raise FileNotFoundError(f"{run_dir} has no completed round yet.")
    _check_metric(tickets[rounds[0]], metric)
    out: dict[str, Any] = {
        "metric": metric,
        "train_test": [_train_test(tickets[r], metric) for r in rounds],
        "layer_sparsity": {r: tickets[r]["sparsity_by_layer"] for r in rounds},
        "early_bird": tickets[rounds[0]].get("early_bird") if rounds[0] == 0 else None,
    }
    masks, weights = {r: run.masks(r) for r in rounds}, {r: run.weights(r) for r in rounds}
    out["unreadable"] = [r for r in rounds if masks[r] is None or weights[r] is None]
    rounds = [r for r in rounds if r not in out["unreadable"]]
    if not rounds:
        raise ValueError(
            f"no round of {run_dir} has readable masks.npz and weights.npz (damaged or "
            "missing); rerun the search with the same arguments to rebuild them."
        )
    final = out["final_round"] = rounds[-1]

    model = masked_model(run, build)
    dense = {k: np.ones_like(v) for k, v in masks[rounds[0]].items()}
    theta0 = snapshot_weights(model)
    rewind = run.rewind_point()
    stability, movement, values = [], [], {}
    for r in rounds[:-1]:
        trained = _kernels(model, weights[r], dense)
        jaccard, layers = _final_ticket_agreement(trained, masks[r], masks[final])
        stability.append({"round": r, "percent_remaining": tickets[r]["percent_remaining"],
                          "jaccard": jaccard, "layers": layers})
        if masks.get(r + 1) is None or run.config.masks_from is not None:
            continue  # the next round's masks not done, or not readable
        start = theta0 if r == 0 or rewind is None else rewind
        moved = analysis.weight_movement(_kernels(model, start, dense), trained,
                                         masks[r], masks[r + 1])
        values[r] = moved
        survivors, pruned = moved["survivors"], moved["pruned"]
        movement.append({
            "round": r, "survivors": int(survivors.size), "pruned": int(pruned.size),
            "mean_survivors": float(survivors.mean()), "mean_pruned": float(pruned.mean()),
            "ratio": float(survivors.mean() / pruned.mean()) if pruned.mean() else float("inf"),
        })
    out["stability"] = stability
    out["movement"] = movement
    out["movement_values"] = values

    last = structure_round if structure_round is not None else final
    if last not in rounds:
        raise ValueError(f"structure_round must be a completed round with readable masks and "
                         f"weights: {rounds}. Received: structure_round={last}")
    set_masks(model, masks[last])
    restore_weights(model, weights[last])
    out["structure"] = structure_report(model, last)
    return out


def _check_metric(row: dict[str, Any], metric: str) -> None:
    """Raises unless the branch row has the test `metric` at early stop."""
    if f"test_{metric}_at_early_stop" in row:
        return
    prefix, suffix = "test_", "_at_early_stop"
    available = sorted(k[len(prefix):-len(suffix)] for k in row
                       if k.startswith(prefix) and k.endswith(suffix))
    raise ValueError(f"metric must be one of the run's test metrics {available}. "
                     f"Received: metric={metric!r}")


def _train_test(row: dict[str, Any], metric: str) -> dict[str, Any]:
    """Train-eval vs test `metric` at early stop of one ticket row."""
    train = row.get(f"train_eval_{metric}_at_early_stop")
    test = row[f"test_{metric}_at_early_stop"]
    return {"round": row["round"], "percent_remaining": row["percent_remaining"],
            f"train_{metric}": train, f"test_{metric}": test,
            "gap": None if train is None else train - test}


def _largest(kernel: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the `k` largest |kernel| entries alive in `mask`."""
    magnitude = np.where(np.asarray(mask) != 0, np.abs(kernel), -1.0).ravel()
    keep = np.zeros(magnitude.size, dtype=bool)
    if k:
        keep[np.argpartition(magnitude, magnitude.size - k)[magnitude.size - k:]] = True
    return keep.reshape(np.shape(kernel))


def _final_ticket_agreement(trained: dict[str, np.ndarray], mask: dict[str, np.ndarray],
                            final: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """Jaccard of the final ticket with a round's largest trained weights.

    In each layer the round keeps as many of its largest weights as the
    final ticket has there; the overlap is over all layers together and
    per layer.

    Returns:
        `(overall, {kernel name: per-layer})`.
    """
    chosen = {k: _largest(trained[k], mask[k], int(np.count_nonzero(final[k]))) for k in final}
    layers = {k: analysis.jaccard({k: chosen[k]}, {k: final[k]}) for k in final}
    return analysis.jaccard(chosen, final), layers


def structure_report(model: keras.Model, round_index: int = 0) -> dict[str, Any]:
    """Dead units per layer, and the speed of the physically compacted model.

    `keras_lottery.compact` removes every dead unit and channel (all
    incoming weights pruned: its constant output is folded into the next
    layer's bias; all outgoing weights pruned: nothing reads it) wherever
    the graph allows (Dense and Conv chains, pooling, Flatten,
    BatchNorm); the compacted model's forward pass is timed against the
    ticket's.

    Returns:
        `{"round", "layers": {kernel: {"units", "dead"}}, "compacted":
        {"units_before", "units_after" (hidden units: every Dense/Conv
        layer but the outputs), "params_before", "params_after",
        "max_abs_diff", "speedup", "ms_ticket", "ms_compacted"} or None}`
        (None for a model compaction cannot follow, e.g. subclassed).
    """
    kernels = get_kernels(model)
    layers = {name: analysis.dead_units(k) for name, k in kernels.items()}
    result: dict[str, Any] = {"round": round_index, "layers": layers, "compacted": None}
    plain = strip(model)
    if not compat.is_functional_or_sequential(plain) or len(plain.inputs) != 1:
        return result  # compaction follows one input tensor through a layer graph
    try:
        report = compact_report(plain)
    except ValueError:
        return result
    outputs = {layer.name for layer in output_layers(model)}
    hidden = [units for name, units in report.units.items() if name not in outputs]
    compacted = report.model
    x = np.random.default_rng(0).normal(size=(1000, *plain.input_shape[1:])).astype("float32")
    diff = float(np.max(np.abs(keras.ops.convert_to_numpy(plain(x))
                               - keras.ops.convert_to_numpy(compacted(x)))))
    times = _interleaved_times({"ticket": plain, "compacted": compacted}, x)
    result["compacted"] = {
        "units_before": sum(b for _, b in hidden), "units_after": sum(a for a, _ in hidden),
        "params_before": report.params_before, "params_after": report.params_after,
        "max_abs_diff": diff, "speedup": times["ticket"] / times["compacted"],
        "ms_ticket": 1000 * times["ticket"], "ms_compacted": 1000 * times["compacted"],
    }
    return result


def _interleaved_times(models: dict[str, keras.Model], x: np.ndarray, repeats: int = 15) -> dict[str, float]:
    """Median seconds per forward pass of each model, measured alternately."""
    calls = {name: _compiled_call(m) for name, m in models.items()}
    for call in calls.values():
        call(x)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            began = time.perf_counter()
            keras.ops.convert_to_numpy(call(x))
            samples[name].append(time.perf_counter() - began)
    return {name: float(np.median(s)) for name, s in samples.items()}


def _compiled_call(model: keras.Model):
    """The model's inference call, as a `tf.function` on TensorFlow, eager elsewhere."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False))
    return lambda x: model(x, training=False)
