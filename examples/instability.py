"""Instability (linear mode connectivity) of LeNet-300-100 on Fashion-MNIST,
and tickets found with rewind_step="auto" against θ0 rewinding.

Part 1: an iterative run (`--steps`, `--rounds`), then the instability of
the dense round and of two sparsity levels at every `--rewind-steps` k
(two copies from θk with different data orders, error along the linear
path between them, Frankle et al. 2020).
Part 2: for each seed, a run with `rewind_step="auto"` and one with θ0
rewinding, both with the random-reinit control; their tickets at the
same rounds (same sparsity) side by side.

Usage (the command in docs/instability.md):
    python examples/instability.py --steps 2000 --rounds 3 --rewind-steps 0,500 \
        --sparse-rounds 3 --seeds 0,1 --logdir runs/instability
"""

from __future__ import annotations

import argparse

from keras_lottery.runner import instability
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.presets import find_ticket


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lenet300")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rewind-steps", type=_ints, default=(0, 100, 500))
    parser.add_argument("--sparse-rounds", type=_ints, default=(2, 3),
                        help="rounds (besides the dense round 0) whose instability is measured")
    parser.add_argument("--candidates", type=_ints, default=(0, 100, 250, 500, 1000))
    parser.add_argument("--seeds", type=_ints, default=(0, 1), help="seeds of part 2 (empty: skip)")
    parser.add_argument("--points", type=int, default=15)
    parser.add_argument("--logdir", default="runs/instability")
    args = parser.parse_args()

    common = dict(dataset=args.dataset, steps=args.steps, rounds=args.rounds,
                  logdir=args.logdir, verbose=2, stability_points=args.points)
    run = find_ticket(LotteryConfig.from_preset(args.preset, **common))
    for r in (0, *args.sparse_rounds):
        results = instability.preset_instability(run.run_dir, r, args.rewind_steps, args.points)
        print("\n".join(instability.summary_lines(results)))

    print("\n| seed | rewind | chosen k | round | % remaining | ticket test acc | "
          "random reinit test acc |\n|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for rewind in ("auto", 0):
            config = LotteryConfig.from_preset(
                args.preset, **common, seed=seed, rewind_step=rewind,
                rewind_candidates=args.candidates, controls=("random_reinit",))
            result = find_ticket(config)
            for r in range(1, args.rounds + 1):
                rows = {row["branch"]: row for row in result.rows if row["round"] == r}
                ticket, reinit = rows["ticket"], rows["random_reinit"]
                print(f"| {seed} | {rewind} | {ticket['start_step']} | {r} | "
                      f"{ticket['percent_remaining']:.1f} | "
                      f"{ticket['test_accuracy_at_early_stop']:.4f} | "
                      f"{reinit['test_accuracy_at_early_stop']:.4f} |")


if __name__ == "__main__":
    main()
