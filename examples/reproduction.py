"""Shared machinery of the reproduction scripts: run configs, aggregate seeds,
plot like the paper, and check the paper's claims against the numbers.

Used by `reproduce_lenet.py` and `reproduce_conv.py`; not part of the
library's API.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import keras_lottery as kl

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results")
LABELS = {
    "ticket": "winning ticket (iterative)",
    "random_reinit": "random reinit",
    "random_prune": "random pruning",
    "oneshot": "winning ticket (one-shot)",
}


def run_all(configs: Iterable[kl.LotteryConfig]) -> list[kl.LotteryResult]:
    """Runs (or resumes) every config in turn."""
    results = []
    for config in configs:
        print(f"== {config.run_name} (seed {config.seed}, {config.mode})", flush=True)
        results.append(kl.find_ticket(config))
    return results


def rows_by_branch(results: Sequence[kl.LotteryResult]) -> dict[str, list[dict[str, Any]]]:
    """All rows, with one-shot tickets relabelled `oneshot` (their dense
    round 0 is the same network as the iterative dense round, left out)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        for row in result.rows:
            branch = row["branch"]
            if result.config.mode == "oneshot":
                if row["round"] == 0:
                    continue
                branch = "oneshot" if branch == "ticket" else f"oneshot_{branch}"
            out[branch].append({**row, "seed": result.config.seed})
    return out


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds, per pruning level (round)."""
    levels: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        levels[row["round"]].append(row)
    out = []
    for level, group in sorted(levels.items()):
        acc = [r["test_accuracy_at_early_stop"] for r in group]
        stop = [r["early_stop_step"] for r in group]
        train = [r.get("train_eval_accuracy_at_early_stop", math.nan) for r in group]
        out.append({
            "round": level,
            "percent_remaining": float(np.mean([r["percent_remaining"] for r in group])),
            "seeds": len(group),
            "test_acc_mean": float(np.mean(acc)), "test_acc_std": float(np.std(acc)),
            "early_stop_mean": float(np.mean(stop)), "early_stop_std": float(np.std(stop)),
            "train_acc_mean": float(np.mean(train)),
            "test_acc_final_mean": float(np.mean([r["test_accuracy_final"] for r in group])),
        })
    return out


def write_tables(name: str, table: dict[str, list[dict[str, Any]]]) -> None:
    """Writes `docs/results/<name>.json` and `<name>.csv`."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(RESULTS, f"{name}.csv"), "w", newline="") as f:
        fields = ["branch", *next(iter(table.values()))[0].keys()]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for branch, levels in table.items():
            for level in levels:
                writer.writerow({"branch": branch, **level})


def plot(name: str, table: dict[str, list[dict[str, Any]]], title: str) -> list[str]:
    """Test accuracy at early stop and early-stop iteration vs percent
    remaining, log x axis labelled in percents (100, 51, 21, 7, 3), mean with
    std error bars (the paper's Figure 3/4 style). Returns the PNG paths."""
    from matplotlib.figure import Figure

    from keras_lottery.runner.reports import percent_axis

    dense = table["ticket"][0]
    percents = [p["percent_remaining"] for levels in table.values() for p in levels]
    paths = []
    for key, ylabel, suffix in (("test_acc", "test accuracy at early stop", "accuracy"),
                                ("early_stop", "early-stop iteration", "early_stop")):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for branch, levels in table.items():
            if branch not in LABELS:
                continue
            points = levels if branch == "ticket" else [dense, *levels]
            ax.errorbar([p["percent_remaining"] for p in points],
                        [p[f"{key}_mean"] for p in points],
                        yerr=[p[f"{key}_std"] for p in points],
                        marker="o", markersize=3, capsize=2, label=LABELS[branch])
        percent_axis(ax, percents)
        ax.set_xlabel("percent of weights remaining (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(RESULTS, f"{name}_{suffix}.png")
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def markdown_table(table: dict[str, list[dict[str, Any]]]) -> str:
    """Per pruning level: each branch's test accuracy and early-stop iteration."""
    branches = [b for b in LABELS if b in table]
    header = "| round | % remaining | " + " | ".join(
        f"{LABELS[b]}: test acc @ES (%) | ES iter" for b in branches) + " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(branches))]
    for ticket in table["ticket"]:
        cells = [str(ticket["round"]), f"{ticket['percent_remaining']:.1f}"]
        for b in branches:
            lvl = ticket if b == "ticket" else level_at(table[b], ticket["percent_remaining"])
            if lvl is None:
                cells += ["", ""]
            else:
                cells += [f"{100 * lvl['test_acc_mean']:.2f} ± {100 * lvl['test_acc_std']:.2f}",
                          f"{lvl['early_stop_mean']:.0f} ± {lvl['early_stop_std']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def level_at(levels: Sequence[dict[str, Any]], percent: float) -> dict[str, Any] | None:
    """The level of a branch at (within 2% of) a percent remaining."""
    for level in levels:
        if abs(level["percent_remaining"] - percent) <= 0.02 * percent:
            return level
    return None


def command_line() -> str:
    """The command that is running, for the record."""
    return "python " + " ".join(sys.argv)


def claims(table: dict[str, list[dict[str, Any]]], paper: dict[str, str]) -> str:
    """Checks the paper's claims against `table`, as Markdown bullet points.

    Each verdict follows from the numbers by a fixed rule, stated in the
    text; the rules were written before the results were seen.
    """
    dense = table["ticket"][0]
    tickets = table["ticket"][1:]
    d_acc, d_std, d_stop = dense["test_acc_mean"], dense["test_acc_std"], dense["early_stop_mean"]
    out = [f"Dense network: test accuracy {100 * d_acc:.2f} ± {100 * d_std:.2f}% at early stop, "
           f"early-stop iteration {d_stop:.0f}."]

    # (a) Tickets between ~10% and ~21% remaining match or beat dense and stop earlier.
    band = [t for t in tickets if 9.5 <= t["percent_remaining"] <= 22]
    if band:
        matched = [t for t in band if t["test_acc_mean"] >= d_acc - d_std]
        earlier = [t for t in band if t["early_stop_mean"] < d_stop]
        verdict = ("reproduced" if len(matched) == len(band) and len(earlier) == len(band)
                   else "partly reproduced" if matched or earlier else "not reproduced")
        out.append(
            f"**(a) {paper['a']}** — {verdict}. Rule: every level between 9.5% and 22% "
            "remaining has mean test accuracy ≥ dense mean − dense std, and a mean "
            "early-stop iteration below dense. Levels: " + "; ".join(
                f"{t['percent_remaining']:.1f}%: {100 * t['test_acc_mean']:.2f}% "
                f"({100 * (t['test_acc_mean'] - d_acc):+.2f} pts), ES {t['early_stop_mean']:.0f} "
                f"({t['early_stop_mean'] / d_stop:.2f}x dense)" for t in band) + ".")

    # (b) Random reinitialization is worse at the same sparsity.
    if "random_reinit" in table:
        pairs = [(t, level_at(table["random_reinit"], t["percent_remaining"])) for t in tickets
                 if t["percent_remaining"] <= 51.5]
        pairs = [(t, r) for t, r in pairs if r is not None]
        worse = [p for p in pairs if p[1]["test_acc_mean"] < p[0]["test_acc_mean"]]
        verdict = ("reproduced" if pairs and len(worse) == len(pairs)
                   else "partly reproduced" if worse else "not reproduced")
        gaps = ", ".join(f"{t['percent_remaining']:.1f}%: {100 * (r['test_acc_mean'] - t['test_acc_mean']):+.2f}"
                         for t, r in pairs)
        out.append(f"**(b) {paper['b']}** — {verdict} ({len(worse)} of {len(pairs)} levels at ≤ 51% "
                   f"remaining; reinit minus ticket, points: {gaps}).")
        if "random_prune" in table:
            pr = [(t, level_at(table["random_prune"], t["percent_remaining"])) for t in tickets
                  if t["percent_remaining"] <= 51.5]
            pr = [(t, r) for t, r in pr if r is not None]
            worse_pr = [p for p in pr if p[1]["test_acc_mean"] < p[0]["test_acc_mean"]]
            out.append(f"Random pruning is below the ticket at {len(worse_pr)} of {len(pr)} such levels "
                       "(random minus ticket, points: " + ", ".join(
                           f"{t['percent_remaining']:.1f}%: {100 * (r['test_acc_mean'] - t['test_acc_mean']):+.2f}"
                           for t, r in pr) + ").")

    # (c) Iterative pruning finds better small tickets than one-shot.
    if "oneshot" in table:
        small = [(t, level_at(table["oneshot"], t["percent_remaining"])) for t in tickets
                 if t["percent_remaining"] <= 21.5]
        small = [(t, o) for t, o in small if o is not None]
        better = [p for p in small if p[0]["test_acc_mean"] > p[1]["test_acc_mean"]]
        verdict = ("not measured (no common level)" if not small
                   else "reproduced" if len(better) == len(small)
                   else "partly reproduced" if better else "not reproduced")
        out.append(f"**(c) {paper['c']}** — {verdict} (iterative above one-shot at {len(better)} of "
                   f"{len(small)} common levels ≤ 21% remaining; iterative minus one-shot, points: " +
                   ", ".join(f"{t['percent_remaining']:.1f}%: {100 * (t['test_acc_mean'] - o['test_acc_mean']):+.2f}"
                             for t, o in small) + ").")

    # (d) Accuracy falls below dense only at very small sizes.
    below = [t for t in tickets if t["test_acc_mean"] < d_acc - d_std]
    if "d" in paper:
        first = max(below, key=lambda t: t["percent_remaining"]) if below else None
        smallest = tickets[-1]["percent_remaining"] if tickets else 100
        text = (f"first level below dense − std: {first['percent_remaining']:.1f}% remaining "
                f"({100 * first['test_acc_mean']:.2f}%)" if first else
                f"no level down to {smallest:.1f}% falls below dense − std")
        verdict = ("reproduced" if first is None or first["percent_remaining"] <= 5.0
                   else "not reproduced")
        out.append(f"**(d) {paper['d']}** — {verdict} (rule: no level above 5% remaining "
                   f"falls below dense − std; {text}).")
    return "\n\n".join(out)
