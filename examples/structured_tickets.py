"""Structured (unit-granularity) tickets vs random reinit and weight tickets.

On real Fashion-MNIST, for LeNet-300-100 and Conv-2: one dense round, then
iterative pruning two ways from the same trained dense network (the unit
run adopts the weight run's round 0):

- `weight` granularity (the paper): single weights, with the random-reinit
  control;
- `unit` granularity: whole Dense units and Conv filters ranked by the norm
  of their weights, with its random-reinit control (same architecture,
  fresh weights: Liu et al. 2019's "train the pruned architecture from
  scratch").

Both prune `--prune-fraction` per round (of the weights, or of the units),
layer-wise, conv layers at `--conv-rate`, the output layer not at all (a unit
ticket cannot drop classes; the weight runs do the same so both start from
one dense run). A unit ticket is compared with a weight ticket at the same
number of *effective* parameters: the kernel weights left after
`keras_lottery.compact` removes the dead units (for a unit ticket the
outgoing weights of removed units go too, so it has fewer parameters than
its mask count says).

    python examples/structured_tickets.py --models lenet300 conv2

Writes `docs/results/structured.json` and `docs/results/structured.md`.
Every run is resumable: re-running the command continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import keras_lottery as kl
from keras_lottery.runner.rundir import RunDir

# Per model: steps per round, evaluation, pruning schedule, number of convs.
# Conv-2 trains ~10x slower than LeNet on 2 CPU cores: fewer steps (800, about
# one epoch) and fewer, larger pruning steps (50% per round, 5 rounds).
BUDGETS = {
    "lenet300": dict(steps=3000, eval_every=100, train_eval_examples=2000, convs=0,
                     prune_fraction=0.35, rounds=8),
    "conv2": dict(steps=800, eval_every=200, train_eval_examples=0, convs=2,
                  prune_fraction=0.5, rounds=5),
}
HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(os.path.dirname(HERE), "docs", "results")


def configs(model: str, args) -> dict[str, kl.LotteryConfig]:
    """The weight and unit configs of one model (same everything else)."""
    budget = dict(BUDGETS[model])
    for name in ("steps", "rounds", "prune_fraction"):
        if getattr(args, name):
            budget[name] = getattr(args, name)
    convs = budget.pop("convs")
    rates = {**{f"conv{i}": args.conv_rate for i in range(1, convs + 1)}, "output": 0.0}
    out = {}
    for granularity in ("weight", "unit"):
        out[granularity] = kl.PresetConfig.from_preset(
            model, dataset="fashion_mnist", scope="layerwise", rates=rates,
            granularity=granularity, controls=("random_reinit",), seed=args.seed,
            logdir=args.logdir, verbose=2, **budget)
    return out


def run(model: str, args) -> dict[str, kl.LotteryResult]:
    """Trains (or resumes) both runs of one model."""
    cfgs = configs(model, args)
    if args.dense_from:  # a run with the same dense round (e.g. another schedule)
        RunDir.open(cfgs["weight"]).adopt_dense_round(RunDir.load(args.dense_from))
    results = {"weight": kl.find_ticket(cfgs["weight"])}
    RunDir.open(cfgs["unit"]).adopt_dense_round(RunDir.load(results["weight"].run_dir))
    results["unit"] = kl.find_ticket(cfgs["unit"])
    return results


def effective_parameters(result: kl.LotteryResult, round_index: int) -> tuple[int, int, dict]:
    """(nonzero kernel weights after compaction, dense kernel weights, units left)."""
    ticket = result.ticket(round_index)
    dense = sum(int(np.prod(m.shape)) for m in kl.get_masks(ticket).values())
    report = kl.compact_report(ticket)
    return report.nonzero_after, dense, report.units


def rows(model: str, results: dict[str, kl.LotteryResult]) -> list[dict]:
    out = []
    for granularity, result in results.items():
        for branch in ("ticket", "random_reinit"):
            for row in result.branch(branch):
                if granularity == "unit" and row["round"] == 0:
                    continue  # the same dense round as the weight run
                nonzero, dense, units = effective_parameters(result, row["round"])
                out.append({
                    "model": model, "granularity": granularity, "branch": branch,
                    "round": row["round"], "percent_remaining": row["percent_remaining"],
                    "percent_effective": 100 * nonzero / dense, "effective_parameters": nonzero,
                    "units": units, "early_stop_step": row["early_stop_step"],
                    "test_accuracy": row["test_accuracy_at_early_stop"],
                    "test_accuracy_final": row["test_accuracy_final"],
                })
    return out


def table(all_rows: list[dict]) -> str:
    """Per model: each unit round beside its reinit and the weight ticket
    with the nearest effective parameter count."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in all_rows):
        mine = [r for r in all_rows if r["model"] == model]
        weight = [r for r in mine if r["granularity"] == "weight" and r["branch"] == "ticket"]
        weight_reinit = {r["round"]: r for r in mine
                         if r["granularity"] == "weight" and r["branch"] == "random_reinit"}
        reinit = {r["round"]: r for r in mine
                  if r["granularity"] == "unit" and r["branch"] == "random_reinit"}
        dense = next(r for r in weight if r["round"] == 0)
        lines += [f"### {model} (dense: test acc {dense['test_accuracy']:.4f})", "",
                  "| round | unit: % params (mask / effective) | hidden units left | unit ticket "
                  "| unit reinit | ticket - reinit | weight ticket at ~same params: round, % "
                  "params | its test acc | its reinit |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in mine if r["granularity"] == "unit"
                         and r["branch"] == "ticket"), key=lambda r: r["round"]):
            match = min(weight, key=lambda w: abs(np.log(w["percent_effective"])
                                                  - np.log(r["percent_effective"])))
            re = reinit.get(r["round"])
            wre = weight_reinit.get(match["round"])
            units = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in r["units"].items())
            lines.append(
                f"| {r['round']} | {r['percent_remaining']:.1f} / {r['percent_effective']:.1f} "
                f"| {units} | {r['test_accuracy']:.4f} | "
                + (f"{re['test_accuracy']:.4f} | {r['test_accuracy'] - re['test_accuracy']:+.4f}"
                   if re else "- | -")
                + f" | {match['round']}, {match['percent_effective']:.1f} | "
                f"{match['test_accuracy']:.4f} | "
                + (f"{wre['test_accuracy']:.4f}" if wre else "-") + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet300", "conv2"],
                        choices=sorted(BUDGETS))
    parser.add_argument("--rounds", type=int, default=0, help="override the per-model budget")
    parser.add_argument("--prune-fraction", type=float, default=0.0,
                        help="override the per-model budget")
    parser.add_argument("--conv-rate", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=0, help="override the per-model budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default=os.path.join("runs", "structured"))
    parser.add_argument("--out", default=DOCS)
    parser.add_argument("--dense-from", default=None,
                        help="adopt the dense round of this run directory (same model and budget)")
    args = parser.parse_args(argv)
    all_rows = []
    for model in args.models:
        all_rows += rows(model, run(model, args))
    text = table(all_rows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "structured.json"), "w") as f:
        json.dump({"command": " ".join(["python", *sys.argv]), "rows": all_rows}, f, indent=1)
    with open(os.path.join(args.out, "structured.md"), "w") as f:
        f.write(f"Command: `python {' '.join(sys.argv)}`\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
