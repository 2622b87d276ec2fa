"""Instability (linear mode connectivity) of a preset on Fashion-MNIST,
and tickets found with rewind_step="auto" against θ0 rewinding.

Part 1: an iterative run (`--steps`, `--rounds`), then the instability of
the dense round at every `--rewind-steps` k and of the `--sparse-rounds` at
every `--sparse-rewind-steps` k (two copies from θk with different data
orders, error along the linear path between them, Frankle et al. 2020).
Part 2: for each seed, a run with θ0 rewinding and one with
`rewind_step="auto"`, both with the random-reinit control, `--search-rounds`
rounds; their tickets at the same rounds (same sparsity) side by side. The
auto run adopts the θ0 run's dense round (the same training: same seed,
data order and θ0), and the θ0 run of part 1's seed *is* part 1's run
(controls are not part of a run's identity), so no dense round is trained
twice.

Usage (the commands in docs/instability.md):
    python examples/instability.py --steps 2000 --rounds 3 --rewind-steps 0,500 \
        --sparse-rounds 2,3 --seeds 0,1 --logdir runs/instability
    python examples/instability.py --preset conv2 --steps 800 --eval-every 200 \
        --train-eval-examples 0 --scope layerwise --prune-fraction 0.5 \
        --rates conv1=0.2,conv2=0.2,output=0 --rounds 4 --search-rounds 2 \
        --rewind-steps 0,100,500 --sparse-rounds 2,4 --sparse-rewind-steps 0,500 \
        --candidates 0,100,500 --points 11 --seeds 0,1 --logdir runs/structured
    python examples/instability.py --optimizer sgd --learning-rate 0.1 --momentum 0.9 \
        --steps 2000 --rounds 8 --rewind-steps 0,100,500,1000 --sparse-rounds 2,4,8 \
        --sparse-rewind-steps 0,100,1000 --candidates 0,100,500,1000 --points 15 \
        --seeds 0,1 --logdir runs/unstable --out docs/results/instability_lenet300_sgd.md

Prints the tables and writes them, with the command, to `--out`
(default `docs/results/instability_<preset>.md`).
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_lottery.runner import instability
from keras_lottery.runner.presets import PresetConfig, find_ticket, preset_instability
from keras_lottery.runner.rundir import RunDir

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "results")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def _rates(text: str) -> dict[str, float]:
    pairs = (item.split("=") for item in text.split(",") if item.strip())
    return {name.strip(): float(value) for name, value in pairs}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lenet300")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--train-eval-examples", type=int, default=None)
    parser.add_argument("--scope", default=None)
    parser.add_argument("--prune-fraction", type=float, default=None)
    parser.add_argument("--rates", type=_rates, default=None, help="e.g. conv1=0.2,output=0")
    parser.add_argument("--optimizer", default=None, help="adam or sgd (default: the preset's)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 1's run")
    parser.add_argument("--search-rounds", type=int, default=None,
                        help="rounds of part 2's runs (default: --rounds)")
    parser.add_argument("--rewind-steps", type=_ints, default=(0, 100, 500),
                        help="k measured on the dense round")
    parser.add_argument("--sparse-rounds", type=_ints, default=(2, 3),
                        help="rounds (besides the dense round 0) whose instability is measured")
    parser.add_argument("--sparse-rewind-steps", type=_ints, default=None,
                        help="k measured on the sparse rounds (default: --rewind-steps)")
    parser.add_argument("--candidates", type=_ints, default=(0, 100, 250, 500, 1000))
    parser.add_argument("--seeds", type=_ints, default=(0, 1), help="seeds of part 2 (empty: skip)")
    parser.add_argument("--points", type=int, default=15)
    parser.add_argument("--logdir", default="runs/instability")
    parser.add_argument("--out", default=None,
                        help="markdown file (default: docs/results/instability_<preset>.md)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    optional = {"eval_every": args.eval_every, "train_eval_examples": args.train_eval_examples,
                "scope": args.scope, "prune_fraction": args.prune_fraction, "rates": args.rates,
                "optimizer": args.optimizer, "learning_rate": args.learning_rate,
                "momentum": args.momentum}
    common = dict(dataset=args.dataset, steps=args.steps, logdir=args.logdir, verbose=2,
                  **{k: v for k, v in optional.items() if v is not None})
    # Only the auto runs get the analysis settings: they are part of a run's
    # identity, and the θ0 runs must stay the runs they are.
    auto = dict(rewind_candidates=args.candidates, stability_points=args.points)
    rounds = max(args.rounds, *args.sparse_rounds)
    run = find_ticket(PresetConfig.from_preset(args.preset, **common, rounds=rounds))
    lines = ["| round | % remaining | k | instability test (pp) | val (pp) |",
             "|---|---|---|---|---|"]
    sparse_ks = args.sparse_rewind_steps or args.rewind_steps
    for r, ks in ((0, args.rewind_steps), *((r, sparse_ks) for r in args.sparse_rounds)):
        results = preset_instability(run.run_dir, r, ks, args.points)
        print("\n".join(instability.summary_lines(results)))
        lines += [f"| {x['round']} | {x['percent_remaining']:.1f} | {x['rewind_step']} | "
                  f"{100 * x['instability']['test']:.2f} | "
                  f"{100 * x['instability'].get('val', float('nan')):.2f} |" for x in results]

    lines += ["", "| seed | rewind | chosen k | round | % remaining | ticket test acc | "
              "random reinit test acc |", "|---|---|---|---|---|---|---|"]
    search_rounds = args.search_rounds or args.rounds
    for seed in args.seeds:
        theta0_dir = None
        for rewind in (0, "auto"):
            config = PresetConfig.from_preset(
                args.preset, **common, rounds=search_rounds, seed=seed, rewind_step=rewind,
                controls=("random_reinit",), **(auto if rewind == "auto" else {}))
            if theta0_dir is not None:
                RunDir.open(config).adopt_dense_round(RunDir.load(theta0_dir))
            result = find_ticket(config)
            theta0_dir = result.run_dir
            for r in range(1, search_rounds + 1):
                rows = {row["branch"]: row for row in result.rows if row["round"] == r}
                ticket, reinit = rows["ticket"], rows["random_reinit"]
                lines.append(f"| {seed} | {rewind} | {ticket['start_step']} | {r} | "
                             f"{ticket['percent_remaining']:.1f} | "
                             f"{ticket['test_accuracy_at_early_stop']:.4f} | "
                             f"{reinit['test_accuracy_at_early_stop']:.4f} |")
    text = "\n".join(lines)
    print(text)
    out = args.out or os.path.join(DOCS, f"instability_{args.preset}.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(f"Command: `python {' '.join(sys.argv)}`\n\n{text}\n")


if __name__ == "__main__":
    main()
