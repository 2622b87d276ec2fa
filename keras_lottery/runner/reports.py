"""Tables and plots of a run: per-round metrics of the ticket and controls,
and the text and figure of its analyses (`analyses.analyze`).

Everything here is generalized over the run's metric: any key `K` of the
evaluation records (`accuracy`, `loss`, `auc`, `mean_absolute_error`...)
read from the branch rows as `test_K_at_early_stop`, `test_K_final`, ...

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, so
no global matplotlib backend is switched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator, NullLocator

from keras_lottery.files import atomic_open

BRANCH_ORDER = ("ticket", "random_reinit", "random_prune", "lr_rewind", "inverted_scores")

# At most this many labelled percents on a sparsity axis (long runs are thinned).
_MAX_PERCENT_TICKS = 12


def _sorted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row):
        branch = row["branch"]
        rank = BRANCH_ORDER.index(branch) if branch in BRANCH_ORDER else len(BRANCH_ORDER)
        return row["round"], rank, branch

    return sorted(rows, key=key)


def _short(metric: str) -> str:
    """The metric's name in column headers ("acc" for accuracy)."""
    return "acc" if metric == "accuracy" else metric


def _train_at_early_stop(row: dict[str, Any], metric: str) -> Any:
    """The train metric at early stop: the train-eval set's, else training's."""
    value = row.get(f"train_eval_{metric}_at_early_stop")
    return row.get(f"train_{metric}_at_early_stop") if value is None else value


def _cell(value: Any, spec: str = "") -> str:
    """`value` formatted with `spec`, or "-" when it is missing."""
    return "-" if value is None else format(value, spec)


def table(rows: Sequence[dict[str, Any]], metric: str = "accuracy",
          pruner: str = "magnitude") -> str:
    """A fixed-width text table of branch metrics, one line per branch.

    A last `diverged at` column (the step whose loss became NaN/inf) is
    added when any branch diverged. Missing values print as "-". For a run
    of another pruner than IMP's magnitude pruning, the main branch of each
    pruned round is named after the pruner, and a `train steps` column
    gives each row's cost (`training_steps`: its training and the trainings
    its masks came from).

    Args:
        rows: branch metrics as the search records them (`round`, `branch`,
            `percent_remaining`, `early_stop_step`, `test_<metric>_at_early_stop`...).
        metric: the evaluation metric to tabulate (a key of the history
            records without its split prefix: `accuracy`, `loss`, `auc`...).
        pruner: the run's pruner (`LotteryConfig.pruner_name`).

    Returns:
        The table as a string (Markdown-compatible pipes).

    Example:
    >>> print(table([{"round": 0, "branch": "ticket", "percent_remaining": 100.0,
    ...               "early_stop_step": 900, "test_loss_at_early_stop": 0.31}], "loss"))
    | round | branch | % remaining | early-stop iter | test loss @ES | test loss final | val loss @ES | train loss @ES |
    |-------|--------|-------------|-----------------|---------------|-----------------|--------------|----------------|
    | 0     | ticket | 100.0       | 900             | 0.3100        | -               | -            | -              |
    """
    name = _short(metric)
    diverged = any(row.get("diverged") for row in rows)
    header = ("round", "branch", "% remaining", "early-stop iter",
              f"test {name} @ES", f"test {name} final", f"val {name} @ES", f"train {name} @ES")
    cost = pruner != "magnitude"
    header += ("train steps",) if cost else ()
    header += ("diverged at",) if diverged else ()
    lines = [header]
    for row in _sorted(rows):
        branch = row["branch"]
        if cost and branch == "ticket" and row["round"]:
            branch = pruner
        line = (
            str(row["round"]), branch, _cell(row.get("percent_remaining"), ".1f"),
            _cell(row.get("early_stop_step")),
            _cell(row.get(f"test_{metric}_at_early_stop"), ".4f"),
            _cell(row.get(f"test_{metric}_final"), ".4f"),
            _cell(row.get(f"val_{metric}_at_early_stop"), ".4f"),
            _cell(_train_at_early_stop(row, metric), ".4f"),
        )
        if cost:
            line += (_cell(row.get("training_steps")),)
        if diverged:
            line += (_cell(row.get("diverged_at_step") if row.get("diverged") else None),)
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def percent_label(percent: float) -> str:
    """A percent of weights remaining as the paper's axes write it.

    Example:
    >>> [percent_label(p) for p in (100.0, 51.2, 21.1, 7.0, 2.87, 0.43)]
    ['100', '51', '21', '7', '2.9', '0.43']
    """
    return f"{percent:.0f}" if percent >= 10 else f"{percent:.2g}"


def _percent_ticks(percents: Sequence[float]) -> list[float]:
    """The percents to label, densest first, thinned on a log scale.

    One tick per distinct label; when there are more than
    `_MAX_PERCENT_TICKS`, ticks closer than an even share of the axis's
    decades to the previous one are dropped.
    """
    by_label = {percent_label(p): float(p) for p in sorted(percents) if p > 0}
    values = sorted(by_label.values(), reverse=True)
    if len(values) <= _MAX_PERCENT_TICKS:
        return values
    gap = math.log10(values[0] / values[-1]) / (_MAX_PERCENT_TICKS - 1)
    ticks = [values[0]]
    for value in values[1:]:
        if math.log10(ticks[-1] / value) >= gap:
            ticks.append(value)
    return ticks


def percent_axis(ax, percents: Sequence[float]) -> None:
    """A log-scale, inverted percent-remaining x axis labelled at `percents`."""
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(FixedLocator(_percent_ticks(percents)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda p, _: percent_label(p)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("percent of weights remaining")


def _figure(width: float, height: float = 4.0) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure, path: str | None) -> bytes:
    """The figure's PNG bytes, also written atomically to `path` if given."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    png = buffer.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as f:
            f.write(png)
    return png


def _value(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float("nan") if value is None else float(value)


def sparsity_figure(rows: Sequence[dict[str, Any]], title: str = "",
                    metric: str = "accuracy") -> Figure:
    """The metric and early-stop iteration against percent remaining.

    Like the paper's figures, the x axis is logarithmic, runs from the
    dense network (100%) towards sparser tickets and is labelled with the
    rounds' percents of weights remaining.

    Args:
        rows: branch metrics.
        title: figure title.
        metric: the metric plotted (`test_<metric>_at_early_stop`).

    Returns:
        A `matplotlib.figure.Figure` with two axes (metric, early stop).

    Example:
    >>> fig = sparsity_figure(rows, metric="auc")
    >>> fig.canvas.draw(); [t.get_text() for t in fig.axes[0].get_xticklabels()]
    """
    fig = _figure(11)
    metric_ax, stop_ax = fig.subplots(1, 2)
    branches = [b for b in BRANCH_ORDER if any(r["branch"] == b for r in rows)]
    branches += sorted({r["branch"] for r in rows} - set(branches))
    dense = [r for r in rows if r["branch"] == "ticket" and r["round"] == 0]
    for branch in branches:
        own = [r for r in rows if r["branch"] == branch]
        # Controls start from the dense network too, so every line begins at 100%.
        points = sorted(own if branch == "ticket" else dense + own,
                        key=lambda r: -r["percent_remaining"])
        xs = [r["percent_remaining"] for r in points]
        metric_ax.plot(xs, [_value(r, f"test_{metric}_at_early_stop") for r in points],
                       "o-", label=branch)
        stop_ax.plot(xs, [_value(r, "early_stop_step") for r in points], "o-", label=branch)
    percents = [r["percent_remaining"] for r in rows]
    for ax, label in ((metric_ax, f"test {metric} at early stop"),
                      (stop_ax, "early-stop iteration")):
        percent_axis(ax, percents)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot(rows: Sequence[dict[str, Any]], path: str | None = None, title: str = "",
         metric: str = "accuracy") -> bytes:
    """Plots the metric and early-stop iteration against percent remaining.

    Args:
        rows: branch metrics.
        path: where to write the PNG (optional; written atomically).
        title: figure title.
        metric: the metric plotted (see `sparsity_figure`).

    Returns:
        The PNG bytes (for TensorBoard image summaries).

    Example:
    >>> png = plot(result.rows, "accuracy_vs_sparsity.png", title=config.run_name)
    """
    return _png(sparsity_figure(rows, title, metric), path)


def format_report(result: dict[str, Any], steps: int) -> str:
    """The analyses as text sections for `keras-lottery report`.

    Args:
        result: what `analyses.analyze` returns.
        steps: training steps per round (to tell how much Early-Bird saves).

    Returns:
        The sections, each a title line and indented rows.

    Example:
    >>> print(format_report(analyses.analyze(run_dir), config.steps))
    """
    metric = result["metric"]
    train, test = f"train_{metric}", f"test_{metric}"
    lines = ["", f"train vs test {metric} at early stop (round, % remaining, train, test, gap):"]
    for row in result["train_test"]:
        if row[train] is None:
            lines.append(f"  {row['round']:>3}  {row['percent_remaining']:6.1f}%  (no train-eval set)")
        else:
            lines.append(f"  {row['round']:>3}  {row['percent_remaining']:6.1f}%  {row[train]:.4f}  "
                         f"{row[test]:.4f}  {row['gap']:+.4f}")
    if result.get("unreadable"):
        lines += ["", f"rounds {result['unreadable']} are left out of the weight analyses: their "
                      "masks.npz or weights.npz is missing or damaged (rerun the search with the "
                      "same arguments: it trains them again)."]
    lines += _stability_lines(result)
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


def _stability_lines(result: dict[str, Any]) -> list[str]:
    """The mask-stability section: each round against the final ticket."""
    rows = result["stability"]
    if not rows:
        return ["", "mask stability against the final ticket: needs two completed rounds."]
    names = list(rows[0]["layers"])
    lines = ["", f"mask stability against the final ticket of round {result['final_round']} "
                 "(Jaccard with each round's largest trained weights, as many per layer as the "
                 "ticket keeps; 1 for the round it was pruned from):",
             "  round, % remaining, all layers, " + ", ".join(names)]
    for row in rows:
        lines.append(f"  {row['round']:>3}  {row['percent_remaining']:6.1f}%  {row['jaccard']:.4f}  "
                     + "  ".join(f"{row['layers'][n]:.4f}" for n in names))
    return lines


def analyses_figure(result: dict[str, Any]) -> Figure:
    """Weight movement, per-layer density and mask stability over rounds.

    Args:
        result: what `analyses.analyze` returns.

    Returns:
        A `matplotlib.figure.Figure` with three axes.

    Example:
    >>> analyses_figure(analyses.analyze(run_dir)).savefig("analyses.png")
    """
    fig = _figure(16)
    move_ax, layer_ax, stable_ax = fig.subplots(1, 3)
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
    layer_ax.yaxis.set_major_formatter(LogFormatter())  # 100, 10, not 10², 10¹
    layer_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    layer_ax.set_xlabel("round")
    layer_ax.set_ylabel("percent of layer's weights remaining")
    layer_ax.set_title("per-layer density over rounds")
    layer_ax.legend(fontsize=8)
    layer_ax.grid(True, which="both", alpha=0.3)
    stability = result["stability"]
    if stability:
        xs = [row["round"] for row in stability]
        stable_ax.plot(xs, [row["jaccard"] for row in stability], "o-", color="black", label="all layers")
        for name in stability[0]["layers"]:
            stable_ax.plot(xs, [row["layers"][name] for row in stability], "o--", markersize=3, label=name)
        stable_ax.legend(fontsize=8)
    for ax in (layer_ax, stable_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    stable_ax.set_xlabel("round")
    stable_ax.set_ylabel("Jaccard with the final ticket")
    stable_ax.set_title(f"agreement with the final ticket (round {result['final_round']})")
    stable_ax.grid(True, alpha=0.3)
    return fig


def plot_analyses(result: dict[str, Any], path: str) -> str:
    """Writes `analyses_figure(result)` as a PNG.

    Args:
        result: what `analyses.analyze` returns.
        path: where to write the PNG (atomically).

    Returns:
        `path`.

    Example:
    >>> plot_analyses(analyses.analyze(run_dir), os.path.join(run_dir, "analyses.png"))
    """
    _png(analyses_figure(result), path)
    return path


def scope_table(results: dict[str, Any]) -> str:
    """Side-by-side rounds of a global and a layer-wise run.

    Args:
        results: scope -> `LotteryResult` of `keras-lottery compare-scopes`.

    Returns:
        A Markdown table: per round, each scope's percent remaining, test
        accuracy at early stop and early-stop iteration.
    """
    lines = ["| round | " + " | ".join(f"{s}: % remaining | {s}: test acc @ES | {s}: ES iter"
                                         for s in results) + " |",
             "|---|" + "---|---|---|" * len(results)]
    by_scope = {s: {row["round"]: row for row in r.branch()} for s, r in results.items()}
    for r in sorted(next(iter(by_scope.values()))):
        cells = [str(r)]
        for scope in results:
            row = by_scope[scope].get(r)
            cells += ([f"{row['percent_remaining']:.1f}", f"{row['test_accuracy_at_early_stop']:.4f}",
                       str(row["early_stop_step"])] if row else ["", "", ""])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def instability_figure(results: Sequence[dict[str, Any]], path: str | None = None,
                       split: str = "test") -> bytes:
    """Error along the linear path between the two copies, one line per k.

    One panel per round; the legend gives each k's instability (error
    barrier, percentage points).

    Args:
        results: `runner.instability.load_results(run_dir)` (or `measure`
            results).
        path: where to write the PNG (optional).
        split: the evaluation split plotted (`"test"`, `"val"`).

    Returns:
        The PNG bytes.

    Example:
    >>> png = instability_figure(instability.load_results(run_dir), "instability.png")
    """
    rounds = sorted({r["round"] for r in results})
    if not rounds:
        raise ValueError("results must hold at least one instability result. Received: []")
    fig = _figure(4.5 * len(rounds), 3.6)
    for index, r in enumerate(rounds):
        ax = fig.add_subplot(1, len(rounds), index + 1)
        chosen = sorted((x for x in results if x["round"] == r), key=lambda x: x["rewind_step"])
        for result in chosen:
            values = result["curve"]["metrics"].get(f"{split}_error")
            if values is None:
                continue
            barrier = 100.0 * result["instability"][split]
            ax.plot(result["curve"]["alphas"], [100.0 * v for v in values], marker=".",
                    label=f"k={result['rewind_step']} ({barrier:.1f} pp)")
        ax.set_xlabel("interpolation α (copy 1 → copy 2)")
        ax.set_ylabel(f"{split} error (%)")
        ax.set_title(f"round {r}: {chosen[0]['percent_remaining']:.1f}% remaining")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig, path)
