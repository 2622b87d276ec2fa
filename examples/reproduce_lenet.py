"""Reproduce the paper's LeNet-300-100 results on real Fashion-MNIST.

Frankle & Carbin (2019), Figures 3-5: iterative pruning (fc 20%, output 10%
per round) with random-reinitialization and random-pruning controls, and
one-shot pruning to the same sizes, over several seeds. Writes
`docs/results/lenet.{json,csv,md}` and two PNG plots.

    python examples/reproduce_lenet.py --steps 10000 --rounds 16 --seeds 0 1 2

Every run is resumable: re-running the command continues where it stopped.
"""

from __future__ import annotations

import argparse
import os

import reproduction

import keras_lottery as kl

PAPER = {
    "a": "Tickets down to ~10-21% remaining match or beat the dense test accuracy and stop earlier",
    "b": "Randomly reinitialized tickets are worse at the same sparsity",
    "c": "Iterative pruning finds better small tickets than one-shot pruning",
    "d": "Accuracy falls below the dense level only at very small sizes (paper: ~3.6% on MNIST)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--steps", type=int, default=10_000, help="iterations per round (paper: 50000)")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--oneshot-every", type=int, default=2,
                        help="one-shot targets at the sizes of every k-th iterative round")
    parser.add_argument("--logdir", default=os.path.join("runs", "reproduce_lenet"))
    args = parser.parse_args()

    common = dict(dataset=args.dataset, steps=args.steps, logdir=args.logdir, verbose=2)
    targets = tuple(round(100 * 0.8**r, 4) for r in range(args.oneshot_every, args.rounds + 1,
                                                           args.oneshot_every))
    configs = [kl.PresetConfig.from_preset("lenet300", rounds=args.rounds, seed=seed,
                                            controls=("random_reinit", "random_prune"), **common)
               for seed in args.seeds]
    configs += [kl.PresetConfig.from_preset("lenet300", mode="oneshot", sparsities=targets,
                                             seed=seed, **common) for seed in args.seeds]
    results = reproduction.run_all(configs)

    table = {branch: reproduction.aggregate(rows)
             for branch, rows in reproduction.rows_by_branch(results).items()}
    reproduction.write_tables("lenet", table)
    title = f"LeNet-300-100, {args.dataset}, {args.steps} it/round, {len(args.seeds)} seeds"
    plots = reproduction.plot("lenet", table, title)
    text = [
        f"# LeNet-300-100 on {args.dataset}",
        f"Command: `{reproduction.command_line()}`",
        f"Budget: {args.steps} iterations per round at batch 60 (the paper: 50,000), "
        f"evaluation every 100 iterations, seeds {args.seeds}; mean ± std over seeds.",
        reproduction.markdown_table(table),
        *[f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots],
        "## The paper's claims",
        reproduction.claims(table, PAPER),
    ]
    with open(os.path.join(reproduction.RESULTS, "lenet.md"), "w") as f:
        f.write("\n\n".join(text) + "\n")
    print("\n\n".join(text))


if __name__ == "__main__":
    main()
