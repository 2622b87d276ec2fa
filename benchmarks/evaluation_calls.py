"""How long each evaluation of a search takes, and its training between them.

Runs a search script (the open_lth comparison's, say) in this process with
timers around `EvalData.evaluate` and `FitTrainer._train`, then prints, per
split size, the number of evaluations, their total and median time and the
first three calls, and the training time less the evaluations inside it.
`KL_KERAS_EVAL_LOOP=1` keeps Keras's own evaluation loop everywhere (no
`split_eval` traced loop), to compare the two in the same code (docs/speed.md,
"Eleventh round").

    KERAS_BACKEND=tensorflow python <checkout>/benchmarks/evaluation_calls.py \\
        <checkout>/benchmarks/open_lth/kl_search_jax.py /tmp/r_eval

It measures the checkout it lies in (`common` puts that on `sys.path`; set no PYTHONPATH).
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import time

import common  # noqa: F401 - first: sets TF_CPP_MIN_LOG_LEVEL and sys.path
from keras_lottery.runner import fit_trainer, inputs, split_eval

CALLS: list[tuple[int, float]] = []  # (examples in the split, wall seconds)
TRAIN = [0.0]


def _timed_evaluate(original):
    def evaluate(self, model, batch_size):
        began = time.perf_counter()
        try:
            return original(self, model, batch_size)
        finally:
            size = len(self.source[1]) if self.kind == "arrays" else -1
            CALLS.append((size, time.perf_counter() - began))
    return evaluate


def _timed_train(original):
    def train(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            TRAIN[0] += time.perf_counter() - began
    return train


def report() -> None:
    loop = "Keras's loop" if os.environ.get("KL_KERAS_EVAL_LOOP") else "split_eval where it applies"
    print(f"evaluations ({loop}):", file=sys.stderr)
    for size in sorted({size for size, _ in CALLS}):
        times = [t for s, t in CALLS if s == size]
        ordered = sorted(times)
        print(f"  split of {size}: {len(times)} calls, total {sum(times):.2f} s, median "
              f"{1000 * ordered[len(ordered) // 2]:.1f} ms, first {[round(1000 * t) for t in times[:3]]} ms",
              file=sys.stderr)
    print(f"training less its evaluations: {TRAIN[0] - sum(t for _, t in CALLS):.2f} s", file=sys.stderr)


def main() -> None:
    if os.environ.get("KL_KERAS_EVAL_LOOP"):
        split_eval._loop_applies = lambda model: False
    inputs.EvalData.evaluate = _timed_evaluate(inputs.EvalData.evaluate)
    fit_trainer.FitTrainer._train = _timed_train(fit_trainer.FitTrainer._train)
    atexit.register(report)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
