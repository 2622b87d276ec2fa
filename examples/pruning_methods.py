"""Pruning methods side by side: IMP tickets, random reinit and other pruners.

On real Fashion-MNIST, for LeNet-300-100 and Conv-2, per seed:

- `imp`: the iterative lottery search (magnitude pruning between rounds,
  rewinding to θ0), with the random-reinit control of every round;
- any other registered pruner (`gradual`: gradual magnitude pruning;
  `snip`, `grasp`, `synflow`, `random`, `magnitude_init`: pruning at
  initialization; `set`, `rigl`: dynamic sparse training), one network per
  level, at the IMP rounds' per-layer sparsities.

Every run of a model and seed shares one dense round (the other runs adopt
IMP's round 0, trained once). The table gives each method's test accuracy
at its early-stop step (mean over seeds, and each seed) and its cost in
training steps.

    python examples/pruning_methods.py --models lenet300 conv2 --methods imp gradual \
        --seeds 0 1

Writes `docs/results/pruning_methods.json` and `.md` (merged with earlier
results of other models and methods). Every run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import keras_lottery as kl
from keras_lottery import pruners
from keras_lottery.runner.rundir import RunDir

# Per model: steps per training and the IMP schedule (layer-wise; conv and
# output layers at their own rate), and the IMP rounds whose sparsities are
# the levels compared. Conv-2 trains about 10x slower than LeNet on 2 CPU
# cores: about one epoch per training and larger pruning steps.
BUDGETS = {
    "lenet300": dict(settings=dict(steps=2000, eval_every=100, prune_fraction=0.2,
                                   rates={"output": 0.1}),
                     levels=(3, 7, 10, 13, 17)),
    "conv2": dict(settings=dict(steps=800, eval_every=100, prune_fraction=0.5,
                                rates={"conv1": 0.25, "conv2": 0.25, "output": 0.25},
                                train_eval_examples=0),
                  levels=(1, 2, 3)),
}
HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(os.path.dirname(HERE), "docs", "results")


def base_config(model: str, seed: int, logdir: str, levels: tuple[int, ...],
                **overrides) -> kl.LotteryConfig:
    """The IMP config of one model and seed (every method starts from it)."""
    budget = BUDGETS[model]
    return kl.PresetConfig.from_preset(
        model, dataset="fashion_mnist", scope="layerwise", seed=seed, logdir=logdir,
        verbose=2, rounds=max(levels), controls=("random_reinit",),
        **{**budget["settings"], **overrides})


def method_config(imp: kl.LotteryConfig, method: str, levels: tuple[int, ...],
                  controls: tuple[str, ...] = ()) -> kl.LotteryConfig:
    """A pruner's config: one network per IMP level, at its per-layer sparsity,
    with `controls` (the sanity checks) beside it."""
    when = pruners.PRUNERS[method].when
    mode = "gradual" if when == pruners.DURING_TRAINING else "oneshot"
    targets = tuple(100 * (1 - imp.prune_fraction) ** r for r in levels)
    values = {**imp.to_dict(), "mode": mode, "pruner": method, "rounds": 0,
              "sparsities": targets, "controls": controls}
    return kl.LotteryConfig.from_dict(values)


def run(model: str, seed: int, methods: list[str], levels: tuple[int, ...],
        logdir: str, controls: tuple[str, ...] = ()) -> list[dict]:
    """Trains (or resumes) every method of one model and seed; their rows."""
    imp = base_config(model, seed, logdir, levels)
    result = kl.find_ticket(imp)
    rows = [_row(model, seed, "dense", r, 0) for r in result.branch("ticket")[:1]]
    if "imp" in methods:
        for branch, name in (("ticket", "imp"), ("random_reinit", "imp_reinit")):
            rows += [_row(model, seed, name, row, row["round"]) for row in result.branch(branch)
                     if row["round"] in levels]
    for method in methods:
        if method == "imp":
            continue
        config = method_config(imp, method, levels, controls)
        RunDir.open(config).adopt_dense_round(RunDir.load(result.run_dir))
        other = kl.find_ticket(config)
        for branch in ("ticket", *controls):
            name = method if branch == "ticket" else f"{method}/{branch}"
            rows += [_row(model, seed, name, row, levels[row["round"] - 1])
                     for row in other.branch(branch) if row["round"]]
    return rows


def _row(model: str, seed: int, method: str, row: dict, level: int) -> dict:
    return {"model": model, "seed": seed, "method": method, "level": level,
            "percent_remaining": row["percent_remaining"],
            "early_stop_step": row["early_stop_step"],
            "test_accuracy": row["test_accuracy_at_early_stop"],
            "test_accuracy_final": row["test_accuracy_final"],
            "training_steps": row.get("training_steps"),
            "diverged": bool(row.get("diverged"))}


def table(rows: list[dict]) -> str:
    """Per model: one line per level, one column per method (mean test
    accuracy at early stop over seeds; each seed in brackets), its cost;
    then the sanity checks (`method/control` columns) in a table of their own."""
    main = [r for r in rows if "/" not in r["method"]]
    checks = [r for r in rows if "/" in r["method"] or (
        r["method"] in {c["method"].split("/")[0] for c in rows if "/" in c["method"]}
        and (r["model"], r["level"], r["seed"]) in {
            (c["model"], c["level"], c["seed"]) for c in rows if "/" in c["method"]})]
    text = _table(main)
    if checks:
        text += "\n#### Sanity checks (Frankle et al. 2021)\n\n" + _table(
            checks + [r for r in rows if r["method"] in ("dense", "imp", "imp_reinit") and (
                r["model"], r["seed"]) in {(c["model"], c["seed"]) for c in checks}
                and (r["method"] == "dense" or r["level"] in {c["level"] for c in checks})])
    return text


def _table(rows: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        methods = list(dict.fromkeys(r["method"] for r in mine if r["method"] != "dense"))
        dense = [r["test_accuracy"] for r in mine if r["method"] == "dense"]
        seeds = sorted({r["seed"] for r in mine})
        lines += [f"### {model} (dense: test acc {np.mean(dense):.4f}, seeds {seeds})", "",
                  "| % remaining | " + " | ".join(methods) + " | best |",
                  "|---|" + "---|" * (len(methods) + 1)]
        for level in sorted({r["level"] for r in mine if r["method"] != "dense"}):
            at = [r for r in mine if r["level"] == level and r["method"] != "dense"]
            percent = np.mean([r["percent_remaining"] for r in at])
            cells, means = [], {}
            for method in methods:
                values = [r for r in at if r["method"] == method]
                if not values:
                    cells.append("-")
                    continue
                accs = [r["test_accuracy"] for r in sorted(values, key=lambda r: r["seed"])]
                means[method] = float(np.mean(accs))
                cost = values[0]["training_steps"]
                cells.append(f"{means[method]:.4f} ({', '.join(f'{a:.4f}' for a in accs)}; "
                             f"{cost} steps)")
            best = max(means, key=means.get) if means else "-"
            lines.append(f"| {percent:.1f} | " + " | ".join(cells) + f" | {best} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], out: str) -> list[str]:
    """One figure per model: test accuracy (mean over seeds) against the
    share of weights left, one line per method; the dense network dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and "/" not in r["method"]]
        figure = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for method in dict.fromkeys(r["method"] for r in mine if r["method"] != "dense"):
            levels = sorted({r["level"] for r in mine if r["method"] == method})
            x = [np.mean([r["percent_remaining"] for r in mine
                          if r["method"] == method and r["level"] == v]) for v in levels]
            y = [np.mean([r["test_accuracy"] for r in mine
                          if r["method"] == method and r["level"] == v]) for v in levels]
            axes.plot(x, y, marker="o", label=method,
                      linestyle=":" if method == "imp_reinit" else "-")
        dense = np.mean([r["test_accuracy"] for r in mine if r["method"] == "dense"])
        axes.axhline(dense, color="gray", linestyle="--", label="dense")
        axes.set_xscale("log")
        axes.invert_xaxis()
        axes.set_xlabel("% of weights remaining")
        axes.set_ylabel("test accuracy at early stop")
        axes.set_title(f"{model}, Fashion-MNIST")
        axes.legend(fontsize=7, ncol=2)
        path = os.path.join(out, f"pruning_methods_{model}.png")
        figure.savefig(path, dpi=110, bbox_inches="tight")
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet300", "conv2"],
                        choices=sorted(BUDGETS))
    parser.add_argument("--methods", nargs="+", default=["imp", "gradual"],
                        choices=["imp", *pruners.PRUNERS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--levels", nargs="+", type=int, default=None,
                        help="IMP rounds whose sparsities are compared (default: per model)")
    parser.add_argument("--controls", nargs="*", default=[],
                        help="controls of the other methods' runs (the sanity checks: "
                             "random_prune random_reinit inverted_scores)")
    parser.add_argument("--logdir", default=os.path.join("runs", "pruning_methods"))
    parser.add_argument("--out", default=DOCS)
    args = parser.parse_args(argv)
    path = os.path.join(args.out, "pruning_methods.json")
    stored = json.load(open(path)) if os.path.exists(path) else {"commands": [], "rows": []}
    rows = stored["rows"]
    for model in args.models:
        levels = tuple(args.levels or BUDGETS[model]["levels"])
        for seed in args.seeds:
            new = run(model, seed, args.methods, levels, args.logdir, tuple(args.controls))
            fresh = {(r["model"], r["seed"], r["method"], r["level"]) for r in new}
            rows = [r for r in rows
                    if (r["model"], r["seed"], r["method"], r["level"]) not in fresh] + new
    command = " ".join(["python", *sys.argv])
    commands = [c for c in stored["commands"] if c != command] + [command]
    text = table(rows)
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"commands": commands, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, "pruning_methods.md"), "w") as f:
        f.write("Commands:\n\n" + "".join(f"    {c}\n" for c in commands) + "\n" + text)
    print(text)
    print("plots:", ", ".join(plot(rows, args.out)))


if __name__ == "__main__":
    main()
