"""The paper's analyses applied to a run directory, for `keras-lottery report`.

`analyze(run_dir)` reads a run's masks, weights and metrics and returns:

- `train_test`: train vs test accuracy at the early-stop iteration per
  round (the paper: training accuracy rises with pruning, the gap shrinks);
- `stability`: Jaccard overlap and Hamming distance of consecutive rounds'
  masks, and per-layer sparsity over rounds;
- `movement`: how far the weights that survive the next pruning moved in
  training, against those it removes (the paper: winners move the most);
- `early_bird`: the Early-Bird step of the dense round, if it was tracked;
- `structure`: whole neurons/filters left without weights in the last
  ticket, and the speed of the model with them physically removed.

`write_summaries` puts the same numbers (and movement histograms) into
TensorBoard under `RUN_DIR/analysis/`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_lottery import analysis
from keras_lottery.export import strip
from keras_lottery.files import atomic_open
from keras_lottery.pruning import get_kernels, set_masks
from keras_lottery.rewind import WeightSnapshot, restore_weights, snapshot_weights
from keras_lottery.runner.rundir import TICKET, RunDir


def _kernels(model: keras.Model, snapshot: WeightSnapshot, dense_masks) -> dict[str, np.ndarray]:
    """The raw kernel values a snapshot holds, keyed like the masks."""
    set_masks(model, dense_masks)
    restore_weights(model, snapshot)
    return get_kernels(model)


def analyze(run_dir: str, structure_round: int | None = None) -> dict[str, Any]:
    """Every analysis of a run directory.

    Args:
        run_dir: a run directory with at least one completed round.
        structure_round: the round whose ticket the structured-sparsity
            report examines (default: the last completed round).

    Returns:
        A dict with `train_test`, `stability`, `movement`, `early_bird`,
        `structure` (see the module docstring) and `movement_values` (the
        raw survivor/pruned arrays per round, for histograms).
    """
    run = RunDir.load(run_dir)
    tickets = {m["round"]: m for m in run.all_metrics() if m["branch"] == TICKET}
    rounds = sorted(tickets)
    if not rounds:
        raise FileNotFoundError(f"{run_dir} has no completed round yet.")
    masks = {r: run.masks(r) for r in rounds}
    out: dict[str, Any] = {
        "train_test": [
            {
                "round": r, "percent_remaining": tickets[r]["percent_remaining"],
                "train_accuracy": tickets[r].get("train_eval_accuracy_at_early_stop"),
                "test_accuracy": tickets[r]["test_accuracy_at_early_stop"],
                "gap": (tickets[r]["train_eval_accuracy_at_early_stop"]
                        - tickets[r]["test_accuracy_at_early_stop"])
                if "train_eval_accuracy_at_early_stop" in tickets[r] else None,
            }
            for r in rounds
        ],
        "stability": [
            {"from": a, "to": b, "jaccard": analysis.jaccard(masks[a], masks[b]),
             "hamming": analysis.hamming(masks[a], masks[b])}
            for a, b in zip(rounds, rounds[1:]) if b == a + 1
        ],
        "layer_sparsity": {r: tickets[r]["sparsity_by_layer"] for r in rounds},
        "early_bird": tickets[rounds[0]].get("early_bird") if rounds[0] == 0 else None,
    }

    model = run.build_model()
    dense = {k: np.ones_like(v) for k, v in masks[rounds[0]].items()}
    theta0 = snapshot_weights(model)
    rewind = run.rewind_point()
    movement, values = [], {}
    for r in rounds:
        if r + 1 not in masks or run.config.masks_from is not None:
            continue
        start = theta0 if r == 0 or rewind is None else rewind
        moved = analysis.weight_movement(
            _kernels(model, start, dense), _kernels(model, run.weights(r), dense),
            masks[r], masks[r + 1],
        )
        values[r] = moved
        survivors, pruned = moved["survivors"], moved["pruned"]
        movement.append({
            "round": r, "survivors": int(survivors.size), "pruned": int(pruned.size),
            "mean_survivors": float(survivors.mean()), "mean_pruned": float(pruned.mean()),
            "ratio": float(survivors.mean() / pruned.mean()) if pruned.mean() else float("inf"),
        })
    out["movement"] = movement
    out["movement_values"] = values

    last = structure_round if structure_round is not None else rounds[-1]
    set_masks(model, masks[last])
    restore_weights(model, run.weights(last))
    out["structure"] = structure_report(model, last)
    return out


def structure_report(model: keras.Model, round_index: int = 0) -> dict[str, Any]:
    """Dead units per layer, and the speed of the physically compacted model.

    A hidden Dense unit whose incoming weights are all pruned outputs a
    constant (its activated bias), which is folded into the next layer's
    bias; one whose outgoing weights are all pruned feeds nothing. Both are
    removed from the model's trailing chain of Dense layers (the whole of
    LeNet, the fc head of the Conv nets); convolution filters are only
    counted.

    Returns:
        `{"round", "layers": {kernel: {"units", "dead"}}, "compacted":
        {"units_before", "units_after", "max_abs_diff", "speedup"} or None}`.
    """
    kernels = get_kernels(model)
    layers = {name: analysis.dead_units(k) for name, k in kernels.items()}
    plain = strip(model)
    compact = _compact_dense_head(plain)
    result: dict[str, Any] = {"round": round_index, "layers": layers, "compacted": None}
    if compact is None:
        return result
    compacted, before, after = compact
    x = np.random.default_rng(0).normal(size=(1000, *plain.input_shape[1:])).astype("float32")
    diff = float(np.max(np.abs(np.asarray(plain(x)) - np.asarray(compacted(x)))))
    times = _interleaved_times({"ticket": plain, "compacted": compacted}, x)
    result["compacted"] = {
        "units_before": before, "units_after": after, "max_abs_diff": diff,
        "speedup": times["ticket"] / times["compacted"],
        "ms_ticket": 1000 * times["ticket"], "ms_compacted": 1000 * times["compacted"],
    }
    return result


def _interleaved_times(models: dict[str, keras.Model], x: np.ndarray, repeats: int = 15) -> dict[str, float]:
    """Median seconds per forward pass of each model, measured alternately."""
    calls = {name: tf.function(lambda x, m=m: m(x, training=False)) for name, m in models.items()}
    for call in calls.values():
        call(x)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            began = time.perf_counter()
            call(x).numpy()
            samples[name].append(time.perf_counter() - began)
    return {name: float(np.median(s)) for name, s in samples.items()}


def _dense_head(model: keras.Model) -> list[keras.layers.Layer]:
    """The trailing Dense layers of a functional chain (Dropout skipped)."""
    head = []
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            head.append(layer)
        elif not isinstance(layer, keras.layers.Dropout):
            break
    return head[::-1]


def _compact_dense_head(model: keras.Model):
    """`(compacted model, units before, units after)` or None if no head."""
    head = _dense_head(model)
    if len(head) < 2:
        return None
    weights = [[w.copy() for w in layer.get_weights()] for layer in head]
    before = sum(w[0].shape[1] for w in weights[:-1])
    for i in range(len(head) - 1):
        (kernel, bias), (next_kernel, next_bias) = weights[i], weights[i + 1]
        no_input = ~kernel.any(axis=0)
        constant = keras.ops.convert_to_numpy(head[i].activation(bias))
        next_bias += (constant * no_input) @ next_kernel  # fold the constants
        keep = ~no_input & next_kernel.any(axis=1)
        weights[i] = [kernel[:, keep], bias[keep]]
        weights[i + 1] = [next_kernel[keep], next_bias]
    after = sum(w[0].shape[1] for w in weights[:-1])
    x = head[0].input
    for layer, (kernel, bias) in zip(head, weights):
        dense = keras.layers.Dense(kernel.shape[1], activation=layer.activation, name=layer.name)
        x = dense(x)
        dense.set_weights([kernel, bias])
    return keras.Model(model.input, x), before, after


def write_summaries(run_dir: str, result: dict[str, Any]) -> str:
    """Writes the analyses to TensorBoard under `RUN_DIR/analysis/`."""
    logdir = os.path.join(run_dir, "analysis")
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for row in result["train_test"]:
            if row["train_accuracy"] is not None:
                tf.summary.scalar("train_vs_test/train_accuracy_at_early_stop", row["train_accuracy"], step=row["round"])
                tf.summary.scalar("train_vs_test/test_accuracy_at_early_stop", row["test_accuracy"], step=row["round"])
                tf.summary.scalar("train_vs_test/gap", row["gap"], step=row["round"])
        for row in result["stability"]:
            tf.summary.scalar("mask_stability/jaccard", row["jaccard"], step=row["to"])
            tf.summary.scalar("mask_stability/hamming", row["hamming"], step=row["to"])
        for r, layers in result["layer_sparsity"].items():
            for name, value in layers.items():
                tf.summary.scalar(f"layer_sparsity/{name}", value, step=int(r))
        for row in result["movement"]:
            values = result["movement_values"][row["round"]]
            tf.summary.histogram("weight_movement/survivors", values["survivors"], step=row["round"])
            tf.summary.histogram("weight_movement/pruned", values["pruned"], step=row["round"])
            tf.summary.scalar("weight_movement/ratio_of_means", row["ratio"], step=row["round"])
        bird = result["early_bird"]
        if bird and bird.get("step") is not None:
            tf.summary.scalar("early_bird/step", bird["step"], step=0)
        compact = result["structure"]["compacted"]
        if compact:
            tf.summary.scalar("structure/compacted_speedup", compact["speedup"], step=result["structure"]["round"])
    writer.close()
    return logdir


def format_report(result: dict[str, Any], steps: int) -> str:
    """The analyses as text sections for `keras-lottery report`."""
    lines = ["", "train vs test accuracy at early stop (round, % remaining, train, test, gap):"]
    for row in result["train_test"]:
        if row["train_accuracy"] is None:
            lines.append(f"  {row['round']:>3}  {row['percent_remaining']:6.1f}%  (no train-eval set)")
        else:
            lines.append(f"  {row['round']:>3}  {row['percent_remaining']:6.1f}%  {row['train_accuracy']:.4f}  "
                         f"{row['test_accuracy']:.4f}  {row['gap']:+.4f}")
    lines += ["", "mask stability between consecutive rounds (Jaccard of kept weights, Hamming):"]
    lines += [f"  {r['from']:>3} -> {r['to']:<3} {r['jaccard']:.4f}  {r['hamming']:.4f}" for r in result["stability"]]
    names = sorted({n for layers in result["layer_sparsity"].values() for n in layers})
    lines += ["", "per-layer sparsity by round: " + ", ".join(names)]
    for r, layers in sorted(result["layer_sparsity"].items()):
        lines.append(f"  {r:>3}  " + "  ".join(f"{layers[n]:.3f}" for n in names))
    lines += ["", "weight movement |θ_final − θ_init| (round: survivors mean, pruned mean, ratio):"]
    lines += [f"  {m['round']:>3}  {m['mean_survivors']:.4f} ({m['survivors']})  "
              f"{m['mean_pruned']:.4f} ({m['pruned']})  {m['ratio']:.2f}x" for m in result["movement"]]
    bird = result["early_bird"]
    if bird:
        if bird["step"] is None:
            lines += ["", f"Early-Bird: masks never settled (drawn every {bird['every']} steps)."]
        else:
            lines += ["", f"Early-Bird: mask settled at step {bird['step']} of {steps} "
                          f"({100 * (1 - bird['step'] / steps):.0f}% of dense training "
                          f"{'saved' if bird['stopped'] else 'could be saved'})."]
    structure = result["structure"]
    lines += ["", f"structured sparsity of round {structure['round']} (dead units / units):"]
    lines += [f"  {name}: {v['dead']} / {v['units']}" for name, v in structure["layers"].items()]
    compact = structure["compacted"]
    if compact:
        lines.append(
            f"  compacted fc head: {compact['units_before']} -> {compact['units_after']} hidden units, "
            f"forward pass of 1000 examples {compact['ms_ticket']:.2f} ms -> {compact['ms_compacted']:.2f} ms "
            f"({compact['speedup']:.2f}x; max output difference {compact['max_abs_diff']:.1e})")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> str:
    """Weight-movement histograms and per-layer sparsity over rounds (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (move_ax, layer_ax) = plt.subplots(1, 2, figsize=(11, 4))
    shown = sorted(result["movement_values"])[:1] + sorted(result["movement_values"])[-1:]
    for r in dict.fromkeys(shown):
        values = result["movement_values"][r]
        top = max(values["survivors"].max(), values["pruned"].max())
        bins = np.linspace(0, top, 60)
        move_ax.hist(values["pruned"], bins, alpha=0.5, density=True, label=f"round {r}: pruned next")
        move_ax.hist(values["survivors"], bins, alpha=0.5, density=True, label=f"round {r}: survive")
    move_ax.set_xlabel("|θ_final − θ_init|")
    move_ax.set_ylabel("density")
    move_ax.set_yscale("log")
    move_ax.legend(fontsize=8)
    move_ax.set_title("weight movement in training")
    rounds = sorted(result["layer_sparsity"])
    for name in sorted({n for layers in result["layer_sparsity"].values() for n in layers}):
        layer_ax.plot(rounds, [100 * (1 - result["layer_sparsity"][r][name]) for r in rounds],
                      "o-", markersize=3, label=name)
    layer_ax.set_yscale("log")
    layer_ax.set_xlabel("round")
    layer_ax.set_ylabel("percent of layer's weights remaining")
    layer_ax.set_title("per-layer density over rounds")
    layer_ax.legend(fontsize=8)
    layer_ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path
