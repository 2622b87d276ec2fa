"""The lottery procedure: rounds of train -> prune -> rewind, with controls.

Round 0 trains the dense network from θ0 (and, with late rewinding, keeps
its weights after `rewind_step` steps as θk). Round r >= 1 prunes (from the
previous round's trained weights in iterative mode, from the dense trained
weights in one-shot mode), resets the survivors to the rewind point and
trains again with a fresh optimizer. Each control is a separate branch on
the same round's mask; branches never feed later rounds.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import keras
import numpy as np

from keras_lottery.runner import data as data_lib
from keras_lottery.runner import models
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.distribute import (
    check_workers_agree,
    is_chief,
    make_strategy,
    peer_failures_reported,
)
from keras_lottery.masked_layer import prunable
from keras_lottery.analysis import early_bird_step, hamming
from keras_lottery.mask_math import (
    global_magnitude_masks,
    layerwise_magnitude_masks,
    permuted_masks,
)
from keras_lottery.pruning import (
    _expand_layer_names,
    get_kernels,
    get_masks,
    prune_by_magnitude,
    set_masks,
    sparsity,
    sparsity_by_layer,
)
from keras_lottery.runner.reports import table
from keras_lottery.rewind import (
    WeightSnapshot,
    reinitialize,
    restore_weights,
    snapshot_weights,
)
from keras_lottery.runner.rundir import TICKET, RunDir
from keras_lottery.runner.tensorboard import BranchLog, write_run_summary
from keras_lottery.runner.loop_trainer import BranchState, Splits, Trainer, early_stop


@dataclasses.dataclass
class LotteryResult:
    """What a lottery run found.

    Attributes:
        config: the run's configuration.
        run_dir: the run directory.
        rows: metrics of every branch (ticket and controls), one dict each:
            `round`, `branch`, `percent_remaining`, `early_stop_step`,
            `test_accuracy_at_early_stop`, `test_accuracy_final`,
            `val_accuracy_at_early_stop`, `sparsity_by_layer`, `history`...
        masks: the last round's ticket masks.
    """

    config: LotteryConfig
    run_dir: str
    rows: list[dict[str, Any]]
    masks: dict[str, np.ndarray]

    def branch(self, name: str = TICKET) -> list[dict[str, Any]]:
        """The rows of one branch (`"ticket"` or a control), by round."""
        return sorted((r for r in self.rows if r["branch"] == name), key=lambda r: r["round"])

    def table(self) -> str:
        """The per-round table as text."""
        return table(self.rows)


def find_ticket(config: LotteryConfig, data: data_lib.Dataset | None = None) -> LotteryResult:
    """Runs the lottery procedure that `config` describes.

    Completed branches found in the run directory are reused and an
    interrupted branch continues from its last checkpoint, so calling this
    again after a crash (or with more rounds) resumes the run.

    Args:
        config: the run's configuration.
        data: the dataset; default `keras_lottery.runner.data.load(config.dataset)`.

    Returns:
        A `LotteryResult`.

    Example:
    >>> config = LotteryConfig.from_preset("lenet300", dataset="fashion_mnist",
    ...                                    steps=2000, rounds=3)
    >>> print(find_ticket(config).table())
    """
    return _LotteryRun(config, data).run()


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)


class _LotteryRun:
    def __init__(self, config: LotteryConfig, data: data_lib.Dataset | None):
        self.config = config
        self.strategy = make_strategy(config.strategy)
        self.chief = is_chief(self.strategy)
        self.verbose = config.verbose if self.chief else 0
        self.run_dir = RunDir.open(config, writable=self.chief)
        if data is None:
            data = data_lib.load(config.dataset, data_dir=config.data_dir,
                                 validation=config.validation, classes=config.classes or None)
        self.splits = Splits.from_dataset(data, config.train_eval_examples)
        self.run_dir.save_data_info({
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "source": data.source,
        })
        with self.strategy.scope():
            base = models.build(config.model, data.input_shape, data.num_classes,
                                seed=config.seed, dropout=config.dropout)
            self.model = prunable(base, ignore=config.ignore)
        _expand_layer_names(self.model, config.rates, "rates")
        self.dense_masks = get_masks(self.model)
        self.theta0 = snapshot_weights(self.model)
        self.rewind_point = self.run_dir.rewind_point()
        if config.masks_from is not None and self.rewind_point is None:
            self.rewind_point = self._transferred_rewind_point()
            self.run_dir.save_rewind_point(self.rewind_point)
        if config.rewind_step == 0 and self.rewind_point is None:
            self.rewind_point = self.theta0
            self.run_dir.save_rewind_point(self.theta0)
        self._trained: dict[int, WeightSnapshot] = {}
        self.n_rounds = config.rounds if config.mode == "iterative" else len(config.sparsities)

    def _source(self) -> tuple[RunDir, int]:
        path, _, round_index = self.config.masks_from.rpartition(":")
        source = RunDir.load(path)
        if int(round_index) not in source.completed_rounds():
            raise ValueError(
                f"masks_from names round {round_index} of {path}, which has completed "
                f"rounds {source.completed_rounds()}."
            )
        return source, int(round_index)

    def _transferred_rewind_point(self) -> WeightSnapshot:
        source, _ = self._source()
        snapshot = source.rewind_point()
        if snapshot is None:
            raise ValueError(f"masks_from run {source.path} has no rewind point.")
        return snapshot

    # The procedure -------------------------------------------------------
    def run(self) -> LotteryResult:
        progress = (len(self.run_dir.all_metrics()), len(self.run_dir.completed_rounds()))
        check_workers_agree(self.strategy, 1000 * progress[0] + progress[1], "the run's progress")
        rows: list[dict[str, Any]] = []
        masks = self.dense_masks
        for r in range(self.n_rounds + 1):
            masks = self._masks(r, masks)
            rows += self._round(r, masks)
            if self.chief:
                self.run_dir.reset_summary()
                write_run_summary(self.run_dir.summary_dir, self.config, rows)
        result = LotteryResult(self.config, self.run_dir.path, rows, masks)
        self.run_dir.save_result(
            {"rows": [{k: v for k, v in row.items() if k != "history"} for row in rows]}
        )
        if self.verbose:
            print(result.table())
        return result

    def _masks(self, r: int, previous: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Round r's masks: stored, or pruned from the right trained weights."""
        stored = self.run_dir.masks(r)
        if stored is not None:
            return stored
        config = self.config
        if r == 0:
            masks = self.dense_masks
        elif config.masks_from is not None:
            source, round_index = self._source()
            masks = source.masks(round_index)
            if sorted(masks) != sorted(self.dense_masks) or any(
                masks[k].shape != self.dense_masks[k].shape for k in masks
            ):
                raise ValueError(
                    f"The masks of {config.masks_from} do not fit this model: the "
                    "architecture (and number of classes) must be the same."
                )
        else:
            source = r - 1 if config.mode == "iterative" else 0
            set_masks(self.model, previous if config.mode == "iterative" else self.dense_masks)
            restore_weights(self.model, self.trained(source))
            if config.mode == "iterative":
                fraction, rates = config.prune_fraction, config.rates
            else:
                target = config.sparsities[r - 1] / 100
                fraction = config.round_fraction(config.prune_fraction, target)
                rates = {k: config.round_fraction(v, target) for k, v in config.rates.items()}
            masks = prune_by_magnitude(self.model, fraction, scope=config.scope, rates=rates)
        self.run_dir.save_masks(r, masks)
        return masks

    def trained(self, r: int) -> WeightSnapshot:
        """Round r's trained ticket weights (from memory or the run dir)."""
        if r not in self._trained:
            self._trained[r] = self.run_dir.weights(r)
        return self._trained[r]

    def _round(self, r: int, masks: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        config = self.config
        start = config.rewind_step if r else 0
        rows = [self._branch(r, TICKET, masks, start)]
        if r:
            for index, control in enumerate(config.controls):
                rows.append(self._branch(r, control, masks, start, _seed(config.seed, r, index)))
        if self.verbose:
            self._print_round(r, rows)
        return rows

    def _prepare(self, r: int, branch: str, masks: dict[str, np.ndarray], seed: int) -> None:
        """Sets the masks and initial weights a branch starts from."""
        if branch == "random_prune":
            masks = permuted_masks(masks, seed)
        set_masks(self.model, masks)
        if branch == "random_reinit":
            reinitialize(self.model, seed)
        elif branch == "lr_rewind":
            restore_weights(self.model, self.trained(r - 1 if self.config.mode == "iterative" else 0))
        elif r == 0:
            restore_weights(self.model, self.theta0)
        elif self.rewind_point is None:
            raise ValueError(
                f"The run in {self.run_dir.path} has no rewind point (step "
                f"{self.config.rewind_step}); its dense round never reached it."
            )
        else:
            restore_weights(self.model, self.rewind_point)

    def _branch(self, r: int, branch: str, masks: dict[str, np.ndarray], start: int,
                seed: int = 0) -> dict[str, Any]:
        done = self.run_dir.metrics(r, branch)
        if done is not None:
            return done
        config, run_dir = self.config, self.run_dir
        began = time.time()
        self._prepare(r, branch, masks, seed)
        trainer = Trainer(self.model, config, self.strategy, self.splits, start=start)
        state = run_dir.checkpoint(r, branch)
        run_dir.clear_events(r, branch)
        log = BranchLog(run_dir.branch_dir(r, branch), enabled=self.chief)
        log.model_state(self.model, start, weights=False)
        if state is not None:
            trainer.restore(state)
            for record in state.history:
                log.record(record)
        at_step: dict[int, list] = {}
        if r == 0 and config.rewind_step and self.rewind_point is None:
            at_step[config.rewind_step] = [self._take_rewind_point]
        early_bird = None
        if r == 0 and config.eb_every:
            early_bird = _EarlyBird(self.model, config, log)
            if state is not None:
                early_bird.restore(state.extra)
            for step in range(config.eb_every, config.steps, config.eb_every):
                at_step.setdefault(step, []).append(lambda step=step: early_bird.draw(step))

        def checkpoint(state: BranchState) -> None:
            if early_bird is not None:
                state = dataclasses.replace(state, extra=early_bird.state())
            run_dir.save_checkpoint(r, branch, state)

        progress = self._progress(r, branch, trainer.step, config.steps)
        with peer_failures_reported(self.strategy):
            history = trainer.run(
                on_eval=log.record,
                on_checkpoint=checkpoint,
                at_step=at_step,
                on_progress=progress,
            )
        log.model_state(self.model, trainer.step, weights=True)
        log.close()
        metrics = {
            "round": r,
            "branch": branch,
            "percent_remaining": 100.0 * (1.0 - sparsity(self.model)),
            "sparsity_by_layer": sparsity_by_layer(self.model),
            "start_step": start,
            "seconds": time.time() - began,
            "steps_per_second": trainer.steps_per_second,
            **early_stop(history),
            "history": history,
        }
        if early_bird is not None:
            metrics["early_bird"] = early_bird.summary()
        weights = None
        if branch == TICKET:
            weights = self._trained[r] = snapshot_weights(self.model, step=trainer.step)
        run_dir.complete(r, branch, metrics, weights)
        return metrics

    def _take_rewind_point(self) -> None:
        self.rewind_point = snapshot_weights(self.model, step=self.config.rewind_step)
        self.run_dir.save_rewind_point(self.rewind_point)

    def _progress(self, r: int, branch: str, step: int, end: int):
        if self.verbose != 1:
            return None
        print(f"round {r}/{self.n_rounds} {branch}: steps {step}-{end}")
        if not sys.stdout.isatty():  # a log file gets the round lines only
            return None
        bar = keras.utils.Progbar(end, stateful_metrics=["loss", "accuracy"])
        bar.update(step)
        return lambda s, values: bar.update(s, values=list(values.items()))

    def _print_round(self, r: int, rows: list[dict[str, Any]]) -> None:
        ticket, dense = rows[0], self.run_dir.metrics(0, TICKET)
        line = (
            f"round {r}/{self.n_rounds}  {ticket['percent_remaining']:.1f}% remaining  "
            f"early-stop {ticket['early_stop_step']}  "
            f"test acc {ticket['test_accuracy_at_early_stop']:.3f}"
        )
        if r and dense is not None:
            line += f" (dense {dense['test_accuracy_at_early_stop']:.3f})"
        print(line)
        for row in rows[1:]:
            print(f"    {row['branch']:<14} early-stop {row['early_stop_step']}  "
                  f"test acc {row['test_accuracy_at_early_stop']:.3f}")


class _EarlyBird:
    """Draws the round-1 magnitude mask during the dense round (You et al.).

    `draw(step)` returns True when training should stop there: the masks
    have settled and the config asks to stop at the Early-Bird step.
    """

    def __init__(self, model: keras.Model, config: LotteryConfig, log: BranchLog):
        self.model, self.config, self.log = model, config, log
        self.masks: list[dict[str, np.ndarray]] = []
        self.steps: list[int] = []
        self.distances: list[float] = []
        self.step: int | None = None

    def draw(self, step: int) -> bool:
        config = self.config
        prune = global_magnitude_masks if config.scope == "global" else layerwise_magnitude_masks
        rates = _expand_layer_names(self.model, config.rates, "rates")
        masks = prune(get_kernels(self.model), None, config.prune_fraction, rates)
        distance = hamming(masks, self.masks[-1]) if self.masks else 1.0
        self.masks.append(masks)
        self.steps.append(step)
        self.distances.append(distance)
        self.masks = self.masks[-config.eb_window:]
        self.steps = self.steps[-config.eb_window:]
        self.log.scalar("early_bird/mask_distance", distance, step)
        if self.step is None:
            self.step = early_bird_step(self.masks, self.steps, config.eb_threshold,
                                        config.eb_window)
            if self.step is not None:
                self.log.scalar("early_bird/step", self.step, step)
                return config.eb_stop
        return False

    def state(self) -> dict[str, np.ndarray]:
        """The detector's state as arrays, for a checkpoint."""
        arrays = {
            "eb_steps": np.array(self.steps, np.int64),
            "eb_distances": np.array(self.distances, np.float64),
            "eb_step": np.array(-1 if self.step is None else self.step),
        }
        for i, masks in enumerate(self.masks):
            arrays.update({f"eb_mask_{i}_{j}": m for j, m in enumerate(masks.values())})
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Continues from `state()`, so a resumed round detects the same step."""
        if "eb_steps" not in arrays:
            return
        names = list(get_kernels(self.model))
        self.steps = [int(s) for s in arrays["eb_steps"]]
        self.distances = [float(d) for d in arrays["eb_distances"]]
        self.step = None if int(arrays["eb_step"]) < 0 else int(arrays["eb_step"])
        self.masks = [{name: arrays[f"eb_mask_{i}_{j}"] for j, name in enumerate(names)}
                      for i in range(len(self.steps))]

    def summary(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "stopped": bool(self.config.eb_stop and self.step is not None),
            "every": self.config.eb_every,
            "distances": self.distances,
        }
