"""Instability analysis of a run's rounds, and the automatic rewind step.

A network is *stable to SGD noise* at rewind step k (Frankle, Dziugaite,
Roy & Carbin, ICML 2020) when two copies trained from θk with different
data orders end in minima joined by a linear path of no higher error.
For round N of a run and each k, this module trains the two copies as
branches of the run, `round_NN/instability_k<K>_copy1/` and `..._copy2/`
(resumable like every branch), from θk under the round's masks (dense for
round 0) to the run's `steps`, then evaluates the linear path between
them (`keras_lottery.interpolation`) on every evaluation split and writes
`round_NN/instability_k<K>.json` and TensorBoard events under
`RUN_DIR/instability/`.

θk is the dense network after k steps of the run's own data order from
θ0: θ0 for k = 0, the run's rewind point when it was taken at k, the
`theta_k<K>.npz` the dense round stored (with `rewind_step="auto"`), or
else trained now from θ0 with the run's seed and stored. The masks are
the round's, whatever k: the instability of the ticket this run found,
rewound to k.

Copy c of (round N, step k) trains on the order of seed
`branch_seed(run seed, 7919, N, k, c)`: neither copy sees the run's own
order after k, and the two differ from each other.

`rewind_step="auto"`: after the dense round, the candidates are measured
on the dense network in increasing order; the first whose validation
error barrier (test when there is no validation split) is at most
`stability_threshold` percentage points is the rewind step. If none is,
the least unstable candidate is taken (the smallest such k on ties). The
choice and every measured instability go to `RUN_DIR/rewind_auto.json`
and the run's `result.json`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import keras

from keras_lottery.files import read_json, write_json
from keras_lottery.interpolation import InterpolationCurve, instability, interpolation_curve
from keras_lottery.pruning import align_masks
from keras_lottery.rewind import WeightSnapshot
from keras_lottery.runner.branches import branch_seed
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.rundir import RunDir


class Branches(Protocol):
    """What the analysis needs of a run's engine (`runner.engine.Engine`):
    its config, model, directory and trainers, the dense weights after k
    steps, and extra branches of a round trained like the others."""

    config: LotteryConfig
    model: keras.Model
    run_dir: RunDir
    verbose: int
    make_trainer: Callable[[int, str], Any]

    def weights_at(self, step: int) -> WeightSnapshot: ...

    def train_branch(self, r: int, branch: str, masks: dict, weights: WeightSnapshot,
                     data_seed: int) -> WeightSnapshot: ...

# Mixed into the copies' seeds so they differ from the controls' seeds.
_SALT = 7919


def branch_name(rewind_step: int, copy: int) -> str:
    """`instability_k<K>_copy<c>`: the branch of one copy."""
    return f"instability_k{rewind_step}_copy{copy}"


def copy_seed(seed: int, round_index: int, rewind_step: int, copy: int) -> int:
    """The data-order seed of one copy (see the module docstring)."""
    return branch_seed(seed, _SALT, round_index, rewind_step, copy)


def _curve_path(run_dir: RunDir, round_index: int, rewind_step: int) -> str:
    return os.path.join(run_dir.branch_dir(round_index), f"instability_k{rewind_step}.json")


def _evaluator(engine: Branches) -> Callable[[keras.Model], dict[str, float]]:
    """Evaluation of the engine's model on every split, as its trainer does
    (the trainer evaluates that same model, whatever weights it holds)."""
    trainer = engine.make_trainer(0, "instability evaluation")
    return lambda model: trainer.evaluate()


def barriers(curve: InterpolationCurve) -> dict[str, float]:
    """Instability (error barrier, a fraction) of every `<split>_error`."""
    return {key[: -len("_error")]: instability(curve, key)
            for key in sorted(curve.metrics) if key.endswith("_error")}


def measure(engine: Branches, round_index: int, rewind_step: int,
            points: int | None = None) -> dict[str, Any]:
    """The instability of round `round_index` of the engine's run at step k.

    Args:
        engine: the run's engine (its masks and trainers).
        round_index: a round whose masks exist (0: dense).
        rewind_step: k, the step the copies start from.
        points: points along the path (default: the config's
            `stability_points`).

    Returns:
        A dict: `round`, `rewind_step`, `seeds`, `percent_remaining`,
        `instability` (split -> barrier, a fraction) and `curve`
        (`InterpolationCurve.to_dict()`), as stored in
        `round_NN/instability_k<K>.json`.

    Example:
    >>> measure(engine, 0, 500)["instability"]["test"]
    0.004
    """
    config, run_dir = engine.config, engine.run_dir
    if isinstance(rewind_step, bool) or not isinstance(rewind_step, int) or not (
            0 <= rewind_step < config.steps):
        raise ValueError(f"rewind_steps must be integers in [0, {config.steps}) (the run's "
                         f"steps). Received: rewind_step={rewind_step!r}")
    path = _curve_path(run_dir, round_index, rewind_step)
    if os.path.exists(path):
        return read_json(path)
    stored = run_dir.masks(round_index)
    if stored is None:
        raise ValueError(f"round must be a round whose masks exist in {run_dir.path}, one of "
                         f"{run_dir.completed_rounds()}. Received: round={round_index}")
    masks = align_masks(engine.model, stored)
    theta_k = engine.weights_at(rewind_step)
    seeds = [copy_seed(config.seed, round_index, rewind_step, c) for c in (1, 2)]
    copies = [engine.train_branch(round_index, branch_name(rewind_step, c), masks, theta_k, s)
              for c, s in zip((1, 2), seeds)]
    curve = interpolation_curve(engine.model, *copies, masks=masks,
                                points=points or config.stability_points,
                                evaluate=_evaluator(engine))
    kept = sum(float(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    result = {"round": round_index, "rewind_step": rewind_step, "seeds": seeds,
              "percent_remaining": 100.0 * kept / total,
              "instability": barriers(curve), "curve": curve.to_dict()}
    if run_dir.writable:
        write_json(path, result)
    return result


def analyze(engine: Branches, round_index: int, rewind_steps: Sequence[int],
            points: int | None = None) -> list[dict[str, Any]]:
    """`measure` at every k, then the TensorBoard events of the run's analyses.

    Returns:
        One `measure` result per k, in the order given.
    """
    results = [measure(engine, round_index, k, points) for k in rewind_steps]
    _write_events(engine.run_dir)
    return results


def _write_events(run_dir: RunDir) -> None:
    """The TensorBoard events of every stored instability result."""
    from keras_lottery.runner.tensorboard import write_instability_summaries

    if run_dir.writable:
        write_instability_summaries(run_dir.path, load_results(run_dir.path))


def load_results(run_dir: str) -> list[dict[str, Any]]:
    """Every stored instability result of a run, by round and k."""
    found = glob.glob(os.path.join(run_dir, "round_*", "instability_k*.json"))
    return sorted((read_json(p) for p in found), key=lambda r: (r["round"], r["rewind_step"]))


def choose(instabilities: Sequence[tuple[int, float]], threshold: float) -> dict[str, Any]:
    """The smallest stable k, from (k, instability in percentage points).

    Args:
        instabilities: measured candidates (any order).
        threshold: the largest instability, in percentage points, that
            counts as stable.

    Returns:
        `{"rewind_step": k, "stable": bool, "reason": str}`: the smallest k
        with instability <= threshold, else the least unstable one.

    Example:
    >>> choose([(0, 9.0), (100, 1.5), (500, 0.2)], threshold=2.0)["rewind_step"]
    100
    """
    if not instabilities:
        raise ValueError("instabilities must hold at least one (k, instability). Received: []")
    ordered = sorted(instabilities)
    for k, value in ordered:
        if value <= threshold:
            return {"rewind_step": k, "stable": True,
                    "reason": f"smallest candidate with instability {value:.2f} <= "
                              f"{threshold:g} percentage points"}
    k, value = min(ordered, key=lambda item: (item[1], item[0]))
    return {"rewind_step": k, "stable": False,
            "reason": f"no candidate is stable (instability <= {threshold:g} percentage "
                      f"points); the least unstable is taken ({value:.2f})"}


def choose_rewind_step(engine: Branches) -> dict[str, Any]:
    """`rewind_step="auto"`: measures the dense round's candidates in
    increasing order until one is stable, and records the choice.

    Returns:
        The record written to `RUN_DIR/rewind_auto.json`: `rewind_step`,
        `stable`, `reason`, `split`, `threshold` and `candidates` (k and
        instability of each split, in percentage points, for the measured
        candidates).
    """
    config, run_dir = engine.config, engine.run_dir
    path = os.path.join(run_dir.path, "rewind_auto.json")
    if os.path.exists(path):
        return read_json(path)
    measured, rows = [], []
    split = None
    for k in sorted(config.rewind_candidates):
        result = measure(engine, 0, k)
        split = split or ("val" if "val" in result["instability"] else "test")
        if split not in result["instability"]:
            raise ValueError(
                "rewind_step='auto' measures the error along the path: the model needs an "
                "accuracy metric evaluated on validation or test data. Received: evaluation "
                f"keys {sorted(result['curve']['metrics'])}"
            )
        points = {s: 100.0 * v for s, v in result["instability"].items()}
        rows.append({"rewind_step": k, "instability_pp": points})
        measured.append((k, points[split]))
        if points[split] <= config.stability_threshold:
            break
    record = {**choose(measured, config.stability_threshold), "split": split,
              "threshold": config.stability_threshold, "candidates": rows}
    if run_dir.writable:
        write_json(path, record)
    _write_events(run_dir)
    if engine.verbose:
        print(f"rewind step auto: {record['rewind_step']} ({record['reason']}, {split} error)")
    return record


def summary_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per (round, k): instability of each split in points."""
    lines = []
    for result in results:
        parts = "  ".join(f"{split} {100 * v:.2f}" for split, v in result["instability"].items())
        lines.append(f"round {result['round']}  {result['percent_remaining']:.1f}% remaining  "
                     f"k={result['rewind_step']:<6} instability (pp): {parts}")
    return lines
