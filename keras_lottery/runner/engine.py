"""The lottery procedure: rounds of train -> prune -> rewind, with controls.

One engine serves the presets and models of your own. Round 0 trains the
dense network from θ0 (and, with late rewinding, keeps its weights after
`rewind_step` steps as θk). Round r >= 1 prunes (from the previous round's
trained weights in iterative mode, from the dense trained weights in
one-shot mode), resets the survivors to the rewind point and trains again
with a fresh optimizer. Each control (`runner.branches.CONTROLS`) is a
separate branch on the same round's mask; branches never feed later rounds.

What trains a branch is a *trainer* (`runner.trainer.Trainer`: its state,
evaluation records and divergence rule) made by the caller: `FitTrainer`
(`model.fit`, any model, any backend) for a model of your own,
`LoopTrainer` (a custom `tf.distribute` loop) for the presets. Everything
else (masks, rewinding, controls, Early-Bird, the run directory, resume,
TensorBoard, what a divergence does to the run) is here, once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_lottery import compat, pruners
from keras_lottery.pruners import AT_INIT, BETWEEN_ROUNDS, DURING_TRAINING, PruneRequest
from keras_lottery.pruning import (
    align_masks,
    get_masks,
    rates_by_key,
    set_masks,
    sparsity,
    sparsity_by_layer,
)
from keras_lottery.rewind import WeightSnapshot, restore_weights, rewindable_weights, snapshot_weights
from keras_lottery.runner import branches, instability
from keras_lottery.runner.branches import TICKET, BranchStart, branch_seed
from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.early_bird import EarlyBird
from keras_lottery.runner.early_stop import early_stop
from keras_lottery.runner.errors import DivergedError
from keras_lottery.runner.reports import table
from keras_lottery.runner.rundir import RunDir, round_ticket
from keras_lottery.runner.tensorboard import BranchLog, write_run_summary
from keras_lottery.runner.trainer import Trainer


TrainerFactory = Callable[[int, str], Trainer]
"""(start step, "round R, branch B") -> a fresh trainer (fresh optimizer)."""


@dataclasses.dataclass
class LotteryResult:
    """What a lottery run found.

    Attributes:
        config: the run's configuration.
        run_dir: the run directory.
        rows: metrics of every branch (ticket and controls), one dict each:
            `round`, `branch`, `percent_remaining`, `early_stop_step`,
            `<split>_<metric>_at_early_stop` and `..._final` for every
            evaluation key, `sparsity_by_layer`, `history`, and `diverged`
            / `diverged_at_step` / `diverged_cause` for a branch whose loss
            or weights became NaN or infinite.
        masks: the last round's ticket masks.
        metric: the metric the table shows (`"accuracy"` for the presets;
            the first compiled metric of a model of your own).
        build: makes a fresh masked model of the run's architecture (for
            `ticket`; set by `find_ticket` and `LotterySearch.fit`).
    """

    config: LotteryConfig
    run_dir: str
    rows: list[dict[str, Any]]
    masks: dict[str, np.ndarray]
    metric: str = "accuracy"
    build: Callable[[], keras.Model] | None = dataclasses.field(default=None, repr=False)

    def branch(self, name: str = TICKET) -> list[dict[str, Any]]:
        """The rows of one branch (`"ticket"` or a control), by round."""
        return sorted((r for r in self.rows if r["branch"] == name), key=lambda r: r["round"])

    def table(self) -> str:
        """The per-round table as text."""
        return table(self.rows, metric=self.metric, pruner=self.config.pruner_name)

    def ticket(self, round: int | None = None) -> keras.Model:  # noqa: A002 - Keras-style name
        """The ticket of a completed round: masked model, trained weights.

        Args:
            round: the round (default: the last one).

        Returns:
            A masked Keras model; `keras_lottery.save_ticket` writes it.
        """
        if self.build is None:
            raise ValueError("This result has no model builder (LotteryResult.build): rebuild "
                             "the ticket with keras_lottery.runner.rebuild.load_ticket.")
        rounds = sorted({row["round"] for row in self.rows})
        return round_ticket(RunDir.load(self.run_dir), rounds[-1] if round is None else round,
                            self.build)


class Engine:
    """Runs (or resumes) the rounds of one lottery run.

    Args:
        config: the run's configuration.
        model: the masked model at θ0, built (and for `FitTrainer`
            compiled) under the strategy's scope.
        make_trainer: makes the trainer of each branch.
        run_dir: the run's directory (`RunDir.open(config)`).
        chief: whether this process writes files and prints (with several
            workers, only the chief does).
        metric: the metric the table and summaries show; None picks the
            first non-loss metric that evaluation produces.
        agree: optional check that every worker sees the same run
            progress (multi-worker runs).
        batches: n -> n training batches `(x, y)`, for pruners that score
            by gradients (SNIP, GraSP, RigL).
        loss: the training loss `(y_true, y_pred) -> scalar`, for them.
        seeded: whether the model's builder is seeded, so that θ0 is
            rebuilt bit for bit (the presets); otherwise θ0 is stored in
            the run's `init.npz` and a resumed run reads it back.

    θ0 is the model's weights as given, or the run's stored `init.npz`
    once it has one (unless `seeded`).
    """

    def __init__(self, config: LotteryConfig, model: keras.Model, make_trainer: TrainerFactory,
                 run_dir: RunDir, chief: bool = True, metric: str | None = "accuracy",
                 agree: Callable[[int], None] | None = None,
                 batches: pruners.base.Batches | None = None,
                 loss: Callable[[Any, Any], Any] | None = None, seeded: bool = False):
        self.config, self.model, self.make_trainer = config, model, make_trainer
        self.seeded = seeded
        self.pruner = pruners.get(config.pruner_name, config.pruner_options)
        self.batches, self.loss = batches, loss
        self.run_dir, self.chief, self._metric = run_dir, chief, metric
        self.verbose = config.verbose if chief else 0
        self.agree = agree
        self.rates = rates_by_key(self.model, config.rates)
        self.dense_masks = get_masks(self.model)
        self.theta0 = self._initialization()
        self.rewind_point = self.run_dir.rewind_point()
        if config.masks_from is not None and self.rewind_point is None:
            self.rewind_point = self._transferred_rewind_point()
            self.run_dir.save_rewind_point(self.rewind_point)
        if config.rewind_step == 0 and self.rewind_point is None:
            self.rewind_point = self.theta0
            self.run_dir.save_rewind_point(self.theta0)
        # The step rounds r >= 1 rewind to; with rewind_step="auto", chosen
        # after the dense round (`runner.instability.choose_rewind_step`).
        self.rewind_step: int | None = None if config.rewind_step == "auto" else config.rewind_step
        self._rewind_choice: dict[str, Any] | None = None
        self._trained: dict[int, WeightSnapshot] = {}
        self._first_row: dict[str, Any] | None = None
        self.n_rounds = config.rounds if config.mode == "iterative" else len(config.sparsities)

    def request(self, r: int, seed: int = 0) -> PruneRequest:
        """What the pruner is asked for round r (r >= 1): prune
        `prune_fraction` (and `rates`) of the remaining weights in iterative
        mode; else reach the round's target in `sparsities` from dense, each
        layer at the sparsity iterative pruning gives it after as many
        rounds (`LotteryConfig.round_fraction`)."""
        config = self.config
        if config.mode == "iterative":
            fraction, rates = config.prune_fraction, self.rates
        else:
            target = config.sparsities[r - 1] / 100
            fraction = config.round_fraction(config.prune_fraction, target)
            rates = {k: config.round_fraction(v, target) for k, v in self.rates.items()}
        return PruneRequest(self.model, fraction, rates, config.scope, config.granularity,
                            seed=seed or branch_seed(config.seed, r), batches=self.batches,
                            loss=self.loss)
    def _initialization(self) -> WeightSnapshot:
        """θ0: the built model's weights; unless its builder is seeded, the
        run's stored `init.npz` once it has one, so that a resumed run
        trains from the same θ0."""
        if self.seeded:  # rebuilt bit for bit
            return snapshot_weights(self.model)
        stored = self.run_dir.initialization()
        if stored is not None:
            restore_weights(self.model, stored)
            return stored
        theta0 = snapshot_weights(self.model)
        self.run_dir.save_initialization(theta0)
        return theta0

    @property
    def metric(self) -> str:
        """The metric tables show: as given, or the first non-loss metric of
        the first evaluation record (`"loss"` if there is none)."""
        if self._metric is None:
            if self._first_row is None or not self._first_row.get("history"):
                return "loss"
            record = self._first_row["history"][0]
            names = [k.partition("_")[2] for k in record if k.startswith(("test_", "val_"))]
            self._metric = next((n for n in names if n != "loss"), "loss")
        return self._metric

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
        """Runs every round; completed branches are read back, not retrained.

        The caller holds the run directory's lock (`lock.run_lock`)."""
        if self.agree is not None:
            progress = (len(self.run_dir.all_metrics()), len(self.run_dir.completed_rounds()))
            self.agree(1000 * progress[0] + progress[1])
        rows: list[dict[str, Any]] = []
        masks = self.dense_masks
        for r in range(self.n_rounds + 1):
            if r == 1 and self.rewind_step is None:
                self._choose_rewind_step()
            masks = self._masks(r, masks)
            rows += self._round(r, masks)
            if self.chief:
                self._write_summary(rows)
            diverged = [row for row in rows if row["round"] == r and row.get("diverged")]
            if diverged and self.config.on_divergence == "stop":
                self._save_result(rows, masks)
                row = diverged[0]
                raise DivergedError(
                    f"round {row['round']}, branch {row['branch']!r}: "
                    f"{row.get('diverged_cause', 'the loss became NaN or infinite')} at step "
                    f"{row['diverged_at_step']}; the run stops there "
                    "(on_divergence='stop'). Everything before is saved in "
                    f"{self.run_dir.path}; use on_divergence='continue' to go on."
                )
        result = self._save_result(rows, masks)
        if self.verbose:
            print(result.table())
        return result

    def _save_result(self, rows: list[dict[str, Any]],
                     masks: dict[str, np.ndarray]) -> LotteryResult:
        result = LotteryResult(self.config, self.run_dir.path, rows, masks, self.metric)
        saved = {"rows": [{k: v for k, v in row.items() if k != "history"} for row in rows],
                 "metric": self.metric}
        if self._rewind_choice is not None:
            saved["rewind_auto"] = self._rewind_choice
        self.run_dir.save_result(saved)
        return result

    def _write_summary(self, rows: list[dict[str, Any]]) -> None:
        self.run_dir.reset_summary()
        write_run_summary(self.run_dir.summary_dir, self.config.run_name, self.config.to_dict(),
                          rows, metric=self.metric)

    def _masks(self, r: int, previous: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Round r's masks: stored, or pruned from the right trained weights."""
        stored = self.run_dir.masks(r)
        if stored is not None:
            return align_masks(self.model, stored)
        config, when = self.config, self.pruner.when
        if r and when == DURING_TRAINING and self.run_dir.metrics(r, TICKET) is not None:
            warnings.warn(f"Round {r}'s network is trained but its final masks.npz is missing "
                          "or damaged: it trains again.", stacklevel=3)
            self.run_dir.forget(r, TICKET)
        if r == 0:
            masks = self.dense_masks
        elif config.masks_from is not None:
            source, round_index = self._source()
            transferred = source.masks(round_index)
            if transferred is None:
                raise ValueError(
                    f"masks_from names round {round_index} of {source.path}, whose masks.npz "
                    "is missing or damaged; rerun that search to rebuild it."
                )
            try:
                masks = align_masks(self.model, transferred)
            except ValueError as error:
                raise ValueError(
                    f"The masks of {config.masks_from} do not fit this model: the "
                    f"architecture (and number of classes) must be the same. {error}"
                ) from None
        elif when == BETWEEN_ROUNDS:
            source = r - 1 if config.mode == "iterative" else 0
            set_masks(self.model, previous if config.mode == "iterative" else self.dense_masks)
            restore_weights(self.model, self.trained(source))
            masks = self.pruner.masks(self.request(r))
        else:  # at initialization, or the start of a training that prunes
            set_masks(self.model, self.dense_masks)
            restore_weights(self.model, self._rewind_point())
            masks = (self.pruner.masks if when == AT_INIT else self.pruner.start_masks)(
                self.request(r))
            if when == DURING_TRAINING:  # masks.npz: the masks the training ends with
                return masks
        set_masks(self.model, masks)
        self.run_dir.save_masks(r, self._stored_names(masks))
        return masks

    def _stored_names(self, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Masks keyed as the run directory first stored them, so every
        `masks.npz` of a run uses one set of layer names (automatic names
        differ between builds of one architecture in one process)."""
        stored = self.run_dir.masks(0)
        names = list(stored) if stored is not None and len(stored) == len(masks) else list(masks)
        return dict(zip(names, masks.values()))

    def trained(self, r: int) -> WeightSnapshot:
        """Round r's trained ticket weights (from memory or the run dir).

        A damaged `weights.npz` makes the round's ticket train again.
        """
        if r not in self._trained:
            weights = self.run_dir.weights(r)
            if weights is None:  # damaged: the round's ticket trains again
                self.run_dir.forget(r, TICKET)
                self._branch(r, TICKET, self.run_dir.masks(r), self._start(r))
            else:
                self._trained[r] = weights
        return self._trained[r]

    def _start(self, r: int) -> int:
        if r and self.rewind_step is None:
            self._choose_rewind_step()
        return self.rewind_step if r else 0

    def _choose_rewind_step(self) -> None:
        """rewind_step="auto": the smallest stable candidate becomes the
        rewind step and its θk the rewind point (see `runner.instability`)."""
        choice = self._rewind_choice = instability.choose_rewind_step(self)
        self.rewind_step = choice["rewind_step"]
        if self.rewind_point is None or self.rewind_point.step != self.rewind_step:
            self.rewind_point = self.weights_at(self.rewind_step)
            self.run_dir.save_rewind_point(self.rewind_point)

    def weights_at(self, step: int) -> WeightSnapshot:
        """The dense network's weights after `step` steps of the run's
        data order from θ0: θ0, the rewind point when it was taken at
        `step`, a stored `theta_k<step>.npz`, or trained now (and stored)."""
        if step == 0:
            return self.theta0
        if self.rewind_point is not None and self.rewind_point.step == step:
            return self.rewind_point
        stored = self.run_dir.dense_weights_at(step)
        if stored is not None:
            return stored
        set_masks(self.model, self.dense_masks)
        restore_weights(self.model, self.theta0)
        trainer = self.make_trainer(0, f"dense weights at step {step}")
        trainer.run(on_eval=None, on_checkpoint=None, at_step={step: [lambda: True]},
                    on_progress=None)
        return self._save_theta(step)

    def _keep_theta(self, step: int) -> None:
        """An `at_step` hook of the dense round: stores θ_step, trains on."""
        self._save_theta(step)

    def _save_theta(self, step: int) -> WeightSnapshot:
        snapshot = snapshot_weights(self.model, step=step)
        self.run_dir.save_dense_weights_at(snapshot)
        return snapshot

    def train_branch(self, r: int, branch: str, masks: dict[str, np.ndarray],
                     weights: WeightSnapshot, data_seed: int) -> WeightSnapshot:
        """Trains (or reads back) an extra branch of round r: from `weights`
        (under `masks`) at step `weights.step` to the config's `steps`, with
        the training data in the order of `data_seed`. Resumable like every
        branch; its trained weights are the branch's `weights.npz`.

        Args:
            r: the round the branch belongs to (its directory's parent).
            branch: the branch name, e.g. `"instability_k500_copy1"`.
            masks: the masks it trains under.
            weights: where it starts (θk).
            data_seed: seed of the training order (the presets' pipeline
                seed; the NumPy order of a model of your own).

        Returns:
            The trained weights. A damaged `weights.npz` makes the branch
            train again.
        """
        self._branch(r, branch, masks, weights.step, start_from=weights, data_seed=data_seed)
        trained = self.run_dir.weights(r, branch)
        if trained is None:  # damaged: the branch trains again
            self.run_dir.forget(r, branch)
            self._branch(r, branch, masks, weights.step, start_from=weights, data_seed=data_seed)
            trained = self.run_dir.weights(r, branch)
        return trained

    def _round(self, r: int, masks: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        config = self.config
        rows = [self._branch(r, TICKET, masks, self._start(r))]
        if self._first_row is None:
            self._first_row = rows[0]  # the metric of the table comes from it
        if r and self.pruner.when == DURING_TRAINING:  # controls take the final masks
            masks = align_masks(self.model, self.run_dir.masks(r))
        if r:
            for index, name in enumerate(config.controls):
                rows.append(self._branch(r, name, masks, self._start(r),
                                         branch_seed(config.seed, r, index)))
        if self.verbose:
            self._print_round(r, rows)
        return rows

    def _rewind_point(self) -> WeightSnapshot:
        if self.rewind_point is None:
            raise ValueError(
                f"The run in {self.run_dir.path} has no rewind point (step "
                f"{self.rewind_step}); its dense round never reached it."
            )
        return self.rewind_point

    def _prepare(self, r: int, branch: str, masks: dict[str, np.ndarray], seed: int) -> None:
        """Sets the masks and initial weights a branch starts from."""
        if r == 0:
            set_masks(self.model, masks)
            restore_weights(self.model, self.theta0)
            return
        source = r - 1 if self.config.mode == "iterative" else 0
        start = BranchStart(self.model, masks, r, seed, self._rewind_point(),
                            lambda: self.trained(source), self.config.granularity,
                            scores=(lambda: self._scores_at_init(r))
                            if self.pruner.when == AT_INIT else None)
        (branches.ticket if branch == TICKET else branches.CONTROLS[branch])(start)

    def _branch(self, r: int, branch: str, masks: dict[str, np.ndarray], start: int,
                seed: int = 0, start_from: WeightSnapshot | None = None,
                data_seed: int | None = None) -> dict[str, Any]:
        done = self.run_dir.metrics(r, branch)
        if done is not None and self._weights_kept(r, branch, stores_weights=(
                branch == TICKET or start_from is not None)):
            return done
        config, run_dir = self.config, self.run_dir
        began = time.time()
        if start_from is None:
            self._prepare(r, branch, masks, seed)
        else:
            set_masks(self.model, masks)
            restore_weights(self.model, start_from)
        trainer = self.make_trainer(start, f"round {r}, branch {branch!r}")
        if data_seed is not None:
            trainer.reseed(data_seed)
        state = run_dir.checkpoint(r, branch)
        run_dir.clear_events(r, branch)
        log = BranchLog(run_dir.branch_dir(r, branch), enabled=self.chief)
        log.model_state(self.model, start, weights=False)
        if state is not None:
            trainer.restore(state)
            for record in state.history:
                log.record(record)
        at_step: dict[int, list] = {}
        dense = r == 0 and branch == TICKET
        if dense and config.rewind_step == "auto":
            for k in config.rewind_candidates:  # θk of every candidate, on the way
                if k and run_dir.dense_weights_at(k) is None:
                    at_step[k] = [lambda k=k: self._keep_theta(k)]
        elif dense and config.rewind_step and self.rewind_point is None:
            at_step[config.rewind_step] = [self._take_rewind_point]
        early_bird = None
        if dense and config.eb_every:
            early_bird = EarlyBird(self.model, config, log, self.pruner, dataclasses.replace(
                self.request(1), fraction=config.prune_fraction, rates=self.rates))
            if state is not None:
                early_bird.restore(state.extra)
            for step in range(config.eb_every, config.steps, config.eb_every):
                at_step.setdefault(step, []).append(lambda step=step: early_bird.draw(step))
        pruning = r > 0 and branch == TICKET and self.pruner.when == DURING_TRAINING
        if pruning:
            if state is not None:  # the masks it had reached
                set_masks(self.model, _masks_in(state.extra, get_masks(self.model)))
            request = self.request(r)
            for step in self.pruner.update_steps(start, config.steps):
                at_step.setdefault(step, []).append(
                    lambda step=step: self._update_masks(step, start, request, log))
            trainer.count_from(self.pruner.settled_from(start, config.steps))

        def checkpoint(state: BranchState) -> None:
            if early_bird is not None:
                state = dataclasses.replace(state, extra=early_bird.state())
            if pruning:
                state = dataclasses.replace(state, extra=_masks_extra(get_masks(self.model)))
            run_dir.save_checkpoint(r, branch, state)

        progress = self._progress(r, branch, trainer.step, config.steps)
        history = trainer.run(on_eval=log.record, on_checkpoint=checkpoint,
                              at_step=at_step, on_progress=progress)
        if trainer.diverged_at is not None:
            log.diverged(trainer.diverged_at)
            if trainer.last_finite is not None:
                restore_weights(self.model, trainer.last_finite)
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
            "training_steps": self._cost(r, start),
            **early_stop(history, config.monitor, config.maximize,
                         from_step=self.pruner.settled_from(start, config.steps)
                         if pruning else 0),
            "history": history,
        }
        if trainer.diverged_at is not None:
            metrics.update(diverged=True, diverged_at_step=trainer.diverged_at,
                           diverged_cause=trainer.divergence or "the loss became NaN or infinite")
        if early_bird is not None:
            metrics["early_bird"] = early_bird.summary()
        weights = None
        if pruning:  # the masks the training ended with are the round's
            run_dir.save_masks(r, self._stored_names(get_masks(self.model)))
        if branch == TICKET:
            weights = self._trained[r] = snapshot_weights(self.model, step=trainer.step)
        elif start_from is not None:
            weights = snapshot_weights(self.model, step=trainer.step)
        run_dir.complete(r, branch, metrics, weights)
        return metrics

    def _weights_kept(self, r: int, branch: str, stores_weights: bool) -> bool:
        """Whether a completed branch's trained weights are still there and
        fit the model (a ticket's: what later rounds prune and `report` and
        `export` read). If not, the branch is marked not completed, with a
        warning, and trains again: nothing found is lost for good."""
        if not stores_weights:
            return True
        weights = self.run_dir.weights(r, branch)
        if weights is not None and _fits(self.model, weights):
            if branch == TICKET:
                self._trained.setdefault(r, weights)
            return True
        path = os.path.join(self.run_dir.branch_dir(r, branch), "weights.npz")
        what = "missing" if weights is None and not os.path.exists(path) else (
            "damaged" if weights is None else "not this model's weights")
        warnings.warn(f"Round {r}, branch {branch!r} is complete but its trained weights "
                      f"{path} are {what}: the branch trains again.", stacklevel=3)
        if branch == TICKET:
            self._trained.pop(r, None)
        self.run_dir.forget(r, branch)
        return False

    def _scores_at_init(self, r: int) -> dict[str, np.ndarray]:
        """The pruner's scores of the rewind point's weights under dense
        masks, as it scored them to make round r's masks."""
        set_masks(self.model, self.dense_masks)
        restore_weights(self.model, self._rewind_point())
        return self.pruner.scores(self.request(r))

    def _update_masks(self, step: int, start: int, request: PruneRequest, log: BranchLog) -> None:
        """A step hook of a branch whose pruner acts during training: the
        masks from the weights after `step` (TensorBoard: the share left)."""
        compat.sync_training_state(self.model)
        set_masks(self.model, self.pruner.update(step, start, self.config.steps, request))
        log.scalar("pruning/percent_remaining", 100.0 * (1.0 - sparsity(self.model)), step)

    def _cost(self, r: int, start: int) -> int:
        """Training steps spent on a branch of round r and on finding its
        masks: its own training, plus for IMP the trainings its masks were
        pruned from (every earlier round iteratively, the dense round
        one-shot); pruning at initialization or during training needs none."""
        own = self.config.steps - start
        if r == 0 or self.pruner.when != BETWEEN_ROUNDS or self.config.masks_from is not None:
            return own
        if self.config.mode == "iterative":
            return own + self._cost(r - 1, self._start(r - 1))
        return own + self.config.steps

    def _take_rewind_point(self) -> None:
        self.rewind_point = snapshot_weights(self.model, step=self.config.rewind_step)
        self.run_dir.save_rewind_point(self.rewind_point)

    def _progress(self, r: int, branch: str, step: int, end: int):
        if self.verbose != 1:
            return None
        print(f"round {r}/{self.n_rounds} {branch}: steps {step}-{end}")
        if not sys.stdout.isatty():  # a log file gets the round lines only
            return None
        bar = keras.utils.Progbar(end, stateful_metrics=["loss", self.metric])
        bar.update(step)
        return lambda s, values: bar.update(s, values=list(values.items()))

    def _print_round(self, r: int, rows: list[dict[str, Any]]) -> None:
        ticket, dense = rows[0], self.run_dir.metrics(0, TICKET)
        key = f"test_{self.metric}_at_early_stop"
        if key not in ticket:
            key = f"{self.config.monitor}_at_early_stop"
        label = _label(key)
        line = (
            f"round {r}/{self.n_rounds}  {ticket['percent_remaining']:.1f}% remaining  "
            f"early-stop {ticket['early_stop_step']}  {label} {ticket[key]:.3f}"
        )
        if r and dense is not None and key in dense:
            line += f" (dense {dense[key]:.3f})"
        if ticket.get("diverged"):
            line += f"  DIVERGED at step {ticket['diverged_at_step']}"
        print(line)
        for row in rows[1:]:
            note = f"  DIVERGED at step {row['diverged_at_step']}" if row.get("diverged") else ""
            print(f"    {row['branch']:<14} early-stop {row['early_stop_step']}  "
                  f"{label} {row.get(key, float('nan')):.3f}{note}")


_MASK = "pruning_mask_"  # checkpoint arrays of a branch's current masks


def _masks_extra(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{_MASK}{i}": m for i, m in enumerate(masks.values())}


def _masks_in(extra: dict[str, np.ndarray], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The masks `_masks_extra` stored, keyed like `like` (the model's)."""
    if f"{_MASK}0" not in extra:
        return like
    return {key: extra[f"{_MASK}{i}"] for i, key in enumerate(like)}


def _fits(model: keras.Model, snapshot: WeightSnapshot) -> bool:
    """Whether a snapshot holds one array of the right shape per weight."""
    weights = rewindable_weights(model)
    return len(weights) == len(snapshot.values) and all(
        tuple(w.shape) == v.shape for w, v in zip(weights, snapshot.values))


def _label(key: str) -> str:
    """`test_accuracy_at_early_stop` -> `test acc`; other keys spelled out."""
    name = key[: -len("_at_early_stop")]
    split, _, metric = name.partition("_")
    return f"{split} {'acc' if metric == 'accuracy' else metric}"
