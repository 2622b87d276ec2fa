"""`LotteryConfig`: everything that defines a lottery run, and the presets.

A run is described entirely by its config (and the data): the run directory
is named after a hash of the config, so the same experiment lands in the
same place and resumes there. Presets carry the paper's hyperparameters
(Frankle & Carbin, ICLR 2019, Figure 2 and Appendices G-I); every field
can be overridden.

The same config describes a search on a model of your own: `model` is then
the import path of the function that builds it (`"mypkg.nets:build"`) and
`data` the import path of the function that loads its data (or a
description of data passed from Python); the preset-only fields (optimizer,
learning rate, dataset, augmentation...) do not apply, since the model comes
compiled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from keras_lottery import pruners
from keras_lottery.mask_math import SCOPES, parse_granularity
from keras_lottery.runner.branches import CONTROLS

MODES = ("iterative", "oneshot", "gradual")
# The mode each kind of pruner works in, and the pruner a mode uses by default.
_MODES_OF = {pruners.BETWEEN_ROUNDS: ("iterative", "oneshot"), pruners.AT_INIT: ("oneshot",),
             pruners.DURING_TRAINING: ("gradual",)}
_DEFAULT_PRUNER = {"iterative": "magnitude", "oneshot": "magnitude", "gradual": "gradual"}
MONITOR_MODES = ("auto", "min", "max")
ON_DIVERGENCE = ("continue", "stop")
OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
DATASETS = ("mnist", "fashion_mnist", "cifar10")

# Fields that are not part of a run's identity (its directory hash): they do
# not change what a round computes. `rounds` and `controls` are among them so
# that asking for more rounds or another control extends an existing run.
_NOT_HASHED = ("logdir", "data_dir", "strategy", "verbose", "name", "checkpoint_every",
               "rounds", "controls", "on_divergence", "test_curves")
# Fields that only a preset's recipe uses: a model of your own comes compiled
# with its own optimizer, and brings its own data.
PRESET_ONLY = ("dataset", "optimizer", "learning_rate", "momentum", "weight_decay",
               "lr_milestones", "lr_gamma", "warmup_steps", "train_eval_examples", "dropout",
               "augment", "validation", "classes", "data_dir")


@dataclasses.dataclass
class LotteryConfig:
    """The configuration of one lottery-ticket run.

    Attributes:
        model: architecture, a key of `keras_lottery.runner.models.ARCHITECTURES`.
        dataset: `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
        mode: `"iterative"` (prune `prune_fraction` of the remaining weights
            per round, `rounds` times), `"oneshot"` (one network per target
            of `sparsities`, its masks made once: from the trained dense
            network, or at initialization by an at-init pruner) or
            `"gradual"` (one network per target, pruned while it trains:
            gradual magnitude pruning, or SET / RigL).
        pruner: the pruning method, a key of `keras_lottery.pruners.PRUNERS`
            (`"magnitude"`, `"gradual"`, `"snip"`...); None uses the mode's
            (`"magnitude"`, and `"gradual"` for mode `"gradual"`).
        pruner_options: the pruner's options by name (e.g. `{"end": 0.75}`
            for `"gradual"`; see each pruner's `Options`).
        rounds: number of pruning rounds after the dense round (iterative).
        prune_fraction: share of the remaining weights pruned per round.
        sparsities: one-shot targets, in percent of weights *remaining* (the
            paper's Pm), e.g. `(50, 20, 10)`.
        scope: `"global"` (one threshold) or `"layerwise"`.
        granularity: what one pruned item is: `"weight"` (the paper),
            `"unit"` (whole Dense units and Conv filters, ranked by the
            norm of their weights; `prune_fraction` and `rates` are then
            shares of the remaining units; the output layer must get rate
            0 or be ignored) or `"N:M"` like `"2:4"` (at most N nonzeros
            in every M consecutive input weights).
        rates: layer name -> own per-round pruning rate (the paper prunes
            output layers at half rate).
        ignore: names of layers that are never pruned.
        rewind_step: 0 rewinds to the initialization θ0; k > 0 rewinds to the
            weights after k steps of the dense run (late rewinding);
            `"auto"` rewinds to the smallest of `rewind_candidates` at which
            the dense network is stable to SGD noise (Frankle et al. 2020;
            see `keras_lottery.runner.instability`).
        rewind_candidates: the steps `rewind_step="auto"` tries, smallest
            first.
        stability_threshold: the largest instability (error barrier on the
            validation set, in percentage points) that counts as stable
            (2, as in Frankle et al. 2020).
        stability_points: points along the linear path between the two
            copies at which the instability analysis evaluates.
        controls: extra branches per round: `"random_reinit"` (same mask,
            fresh init), `"random_prune"` (random mask, same per-layer
            sparsity), `"lr_rewind"` (keep trained weights, replay the
            learning-rate schedule from `rewind_step`; Renda et al. 2020).
        optimizer: `"adam"` or `"sgd"` (with `momentum`).
        learning_rate: peak learning rate.
        momentum: SGD momentum.
        weight_decay: decoupled weight decay of the optimizer.
        lr_milestones: steps at which the rate is multiplied by `lr_gamma`.
        lr_gamma: the factor applied at each milestone.
        warmup_steps: linear warmup from 0 to `learning_rate` (0 = none).
        batch_size: global batch size (split across replicas).
        steps: training iterations per round.
        eval_every: evaluate validation and test sets every this many steps.
        train_eval_examples: size of the fixed training subset evaluated
            alongside (for train-vs-test accuracy); 0 disables it.
        test_curves: evaluate every split (test and the training
            subset too) at every evaluation, for their per-step curves in
            TensorBoard and the history. By default (False) only the
            monitored split (validation) is evaluated every `eval_every`
            steps and the others only at the early-stop step and the last
            step, from the weights kept in memory: the same metrics and
            table, from a fraction of the evaluation work.
        dropout: dropout rate of the model (0 = none).
        augment: random flips and 4-pixel shifted crops (CIFAR-10 recipe).
        validation: examples held out of the training set for validation.
        classes: keep only these classes of the dataset, relabelled 0..k-1
            (e.g. `(0, 1, 2, 3, 4)` to find a ticket for ticket transfer).
        masks_from: `"RUN_DIR:ROUND"`: take round 1's masks and the rewind
            point from that round of another run instead of pruning (ticket
            transfer, Morcos et al. 2019). Round 0 trains the dense network
            on this run's data as the baseline.
        eb_every: draw the magnitude mask every this many steps of the
            dense round to detect an Early-Bird ticket (0 = off).
        eb_threshold: largest normalized Hamming distance between the last
            `eb_window` masks that counts as settled (You et al. 2020: 0.1).
        eb_window: number of consecutive settled masks required.
        eb_stop: stop the dense round at the Early-Bird step and prune from
            the weights there.
        monitor: the evaluation key early stopping follows (`"val_loss"`,
            `"val_auc"`, `"val_mean_absolute_error"`...).
        monitor_mode: `"min"`, `"max"`, or `"auto"` (max for accuracy-like
            metrics: accuracy, auc, precision, recall, f1, iou, r2; else min).
        on_divergence: what a branch whose loss becomes NaN or infinite
            does to the run: `"continue"` (it is stopped and recorded as
            diverged, the run goes on; a diverged ticket passes its last
            finite weights to the next round) or `"stop"` (the same, then
            the run stops with `DivergedError`).
        seed: seed of initialization, data order, and controls.
        strategy: `"default"`, `"mirrored"`, `"multiworker"` or `"tpu"`.
        logdir: parent directory of run directories.
        data_dir: where to look for dataset files first.
        name: run directory name; default derived from the config hash.
        checkpoint_every: mid-round checkpoint interval in steps (0 = only
            round boundaries).
        verbose: 0 silent, 1 progress bar and round lines, 2 round lines.
    """

    model: str = "lenet300"
    dataset: str = "mnist"
    data: str | None = None
    architecture: str | None = None
    mode: str = "iterative"
    pruner: str | None = None
    pruner_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    rounds: int = 5
    prune_fraction: float = 0.2
    sparsities: tuple[float, ...] = ()
    scope: str = "global"
    granularity: str = "weight"
    rates: dict[str, float] = dataclasses.field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    rewind_step: int | str = 0
    rewind_candidates: tuple[int, ...] = (0, 100, 250, 500, 1000, 2000)
    stability_threshold: float = 2.0
    stability_points: int = 30
    controls: tuple[str, ...] = ()
    optimizer: str = "adam"
    learning_rate: float = 1.2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    batch_size: int = 60
    steps: int = 50_000
    eval_every: int = 100
    train_eval_examples: int = 5000
    test_curves: bool = False
    dropout: float = 0.0
    augment: bool = False
    validation: int = 5000
    classes: tuple[int, ...] = ()
    masks_from: str | None = None
    eb_every: int = 0
    eb_threshold: float = 0.1
    eb_window: int = 5
    eb_stop: bool = False
    monitor: str = "val_loss"
    monitor_mode: str = "auto"
    on_divergence: str = "continue"
    seed: int = 0
    strategy: str = "default"
    logdir: str = "runs"
    data_dir: str | None = None
    name: str | None = None
    checkpoint_every: int = 1000
    verbose: int = 1

    def __post_init__(self):
        self.sparsities = tuple(float(s) for s in self.sparsities)
        # One name as a string is one name, not its characters.
        self.ignore = (self.ignore,) if isinstance(self.ignore, str) else tuple(self.ignore)
        self.controls = (self.controls,) if isinstance(self.controls, str) else tuple(self.controls)
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        self.classes = tuple(int(c) for c in self.classes)
        self.rewind_candidates = tuple(self.rewind_candidates)
        self.rates = dict(self.rates)
        self.pruner_options = dict(self.pruner_options)
        self.validate()

    @classmethod
    def from_preset(cls, preset: str, /, **overrides: Any) -> LotteryConfig:
        """The preset `preset` with fields replaced by `overrides`.

        Args:
            preset: a key of `PRESETS` (e.g. `"lenet300"`, `"conv2"`).
            **overrides: any field, e.g. `steps=2000`.

        Returns:
            A validated `LotteryConfig`.

        Example:
        >>> LotteryConfig.from_preset("lenet300", steps=2000).learning_rate
        0.0012
        """
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}. Accepted: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[preset].values, **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LotteryConfig:
        """Builds a config from a dict (e.g. a run's `config.json`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values).difference(known))
        if unknown:
            raise ValueError(
                f"Unknown config fields {unknown}. Accepted: {sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain values."""
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def identity(self) -> dict[str, Any]:
        """The fields that define what a run computes (see `run_hash`).

        Like open_lth, only fields that differ from the dataclass defaults
        count, so a field added in a later version (with a default that
        keeps the old behaviour) leaves existing run directories valid.
        """
        defaults = LotteryConfig.__new__(LotteryConfig)
        for field in dataclasses.fields(self):
            default = (field.default_factory() if field.default is dataclasses.MISSING
                       else field.default)
            setattr(defaults, field.name, default)
        base = {k: list(v) if isinstance(v, tuple) else v
                for k, v in vars(defaults).items()}
        return {k: v for k, v in self.to_dict().items()
                if k not in _NOT_HASHED and v != base[k]}

    def run_hash(self) -> str:
        """8 hex digits identifying what this config computes."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def is_preset_model(self) -> bool:
        """Whether `model` names a preset architecture (not a model of your own)."""
        return not is_import_path(self.model)

    @property
    def run_name(self) -> str:
        """The run directory's name: `name`, or model_data_mode_hash."""
        if self.name:
            return self.name
        if self.is_preset_model:
            return f"{self.model}_{self.dataset}_{self.mode}_{self.run_hash()}"
        return f"{_short(self.model)}_{_short(self.data or 'data')}_{self.mode}_{self.run_hash()}"

    @property
    def pruner_name(self) -> str:
        """The pruner the run uses: `pruner`, or the mode's default."""
        return self.pruner or _DEFAULT_PRUNER[self.mode]

    @property
    def maximize(self) -> bool:
        """Whether a larger `monitor` value is better."""
        if self.monitor_mode != "auto":
            return self.monitor_mode == "max"
        return monitor_is_maximized(self.monitor)

    def round_fraction(self, layer_rate: float, target_remaining: float) -> float:
        """One-shot fraction for a layer pruned at `layer_rate` per round.

        One-shot pruning to `target_remaining` (a fraction) gives each layer
        the sparsity iterative pruning would give it after the same number
        of rounds, so both modes have the same per-layer profile.
        """
        rounds = math.log(target_remaining) / math.log(1 - self.prune_fraction)
        return 1 - (1 - layer_rate) ** rounds

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        from keras_lottery.runner.models import ARCHITECTURES

        if self.is_preset_model:
            if self.model not in ARCHITECTURES:
                raise ValueError(
                    f"model must be one of {sorted(ARCHITECTURES)} or the import path "
                    "'module:function' of a function returning a compiled Keras model. "
                    f"Received: model={self.model!r}"
                )
            if self.data is not None:
                raise ValueError(
                    "data goes with a model of your own (model='module:function'); a "
                    f"preset model trains on dataset=... Received: model={self.model!r}, "
                    f"data={self.data!r}"
                )
        else:
            if self.data is None:
                raise ValueError(
                    "A model of your own needs its data: data='module:function' (a "
                    "function returning (train, validation) or (train, validation, test)). "
                    f"Received: model={self.model!r}, data=None"
                )
            self._check_no_preset_fields()
        _choice("dataset", self.dataset, DATASETS)
        _choice("monitor_mode", self.monitor_mode, MONITOR_MODES)
        _choice("on_divergence", self.on_divergence, ON_DIVERGENCE)
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(
                "monitor must be an evaluation key such as 'val_loss' or 'val_auc'. "
                f"Received: monitor={self.monitor!r}"
            )
        _choice("mode", self.mode, MODES)
        self._check_pruner()
        _choice("scope", self.scope, SCOPES)
        parse_granularity(self.granularity)
        if (self.granularity == "unit" and self.is_preset_model and "output" not in self.ignore
                and self.rates.get("output", self.prune_fraction) > 0):
            raise ValueError(
                "granularity='unit' cannot remove units of the output layer 'output': its units "
                "are the model's outputs. Give it rate 0 (rates={..., 'output': 0}; on the "
                "command line --rates ...,output=0) or ignore it. Received: "
                f"granularity='unit', rates={self.rates!r}, ignore={list(self.ignore)!r}"
            )
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("strategy", self.strategy, STRATEGIES)
        for control in self.controls:
            _choice("controls", control, CONTROLS)
        _fraction("prune_fraction", self.prune_fraction)
        for layer, rate in self.rates.items():
            _fraction(f"rates[{layer!r}]", rate)
        _fraction("dropout", self.dropout)
        if self.rewind_step != "auto":
            _integer("rewind_step", self.rewind_step, minimum=0)
        self._check_stability_fields()
        for name in ("rounds", "warmup_steps", "seed", "checkpoint_every",
                     "eb_every"):
            _integer(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "steps", "eval_every"):
            _integer(name, getattr(self, name), minimum=1)
        _integer("train_eval_examples", self.train_eval_examples, minimum=0)
        _integer("eb_window", self.eb_window, minimum=2)
        if not 0 < self.eb_threshold <= 1:
            raise ValueError(
                f"eb_threshold must be in (0, 1]. Received: eb_threshold={self.eb_threshold!r}"
            )
        if not isinstance(self.test_curves, bool):
            raise ValueError(
                f"test_curves must be True or False. Received: test_curves={self.test_curves!r}"
            )
        if self.eb_stop and not self.eb_every:
            raise ValueError("eb_stop=True needs eb_every > 0 (how often to draw the mask).")
        if self.masks_from is not None:
            path, sep, round_index = self.masks_from.rpartition(":")
            if not sep or not path or not round_index.isdigit():
                raise ValueError(
                    "masks_from must be 'RUN_DIR:ROUND', e.g. 'runs/lenet300_x:5'. "
                    f"Received: masks_from={self.masks_from!r}"
                )
            if self.mode != "iterative" or self.rounds != 1:
                raise ValueError(
                    "masks_from trains one transferred ticket: it needs mode='iterative' "
                    f"and rounds=1. Received: mode={self.mode!r}, rounds={self.rounds}"
                )
        _integer("validation", self.validation, minimum=1)
        if self.rewind_step != "auto" and self.rewind_step >= self.steps:
            raise ValueError(
                "rewind_step must be smaller than steps. Received: "
                f"rewind_step={self.rewind_step}, steps={self.steps}"
            )
        if self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate must be > 0. Received: learning_rate={self.learning_rate}"
            )
        if self.mode != "iterative":
            if not self.sparsities:
                raise ValueError(
                    f"mode={self.mode!r} needs sparsities: percents of weights "
                    "remaining, e.g. sparsities=(50, 20, 10)."
                )
            for s in self.sparsities:
                if not 0 < s < 100:
                    raise ValueError(
                        "sparsities are percents of weights remaining, in "
                        f"(0, 100). Received: sparsities={list(self.sparsities)}"
                    )
            if self.prune_fraction == 0:
                raise ValueError(f"mode={self.mode!r} needs prune_fraction > 0.")
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={self.verbose}")

    def _check_pruner(self) -> None:
        """The pruner exists, takes its options, and fits the mode."""
        if self.pruner is not None and self.pruner not in pruners.PRUNERS:
            raise ValueError(f"pruner must be one of {sorted(pruners.PRUNERS)}. "
                             f"Received: pruner={self.pruner!r}")
        if not isinstance(self.pruner_options, dict):
            raise ValueError("pruner_options must be a dict of option name -> value. "
                             f"Received: pruner_options={self.pruner_options!r}")
        when = pruners.get(self.pruner_name, self.pruner_options).when
        if self.mode not in _MODES_OF[when]:
            what = {pruners.AT_INIT: "prunes at initialization, once per target",
                    pruners.DURING_TRAINING: "prunes while the network trains, once per target",
                    pruners.BETWEEN_ROUNDS: "prunes trained weights"}[when]
            raise ValueError(
                f"pruner {self.pruner_name!r} {what}: it needs mode in "
                f"{list(_MODES_OF[when])} (with sparsities=...). Received: mode={self.mode!r}"
            )
        if when != pruners.BETWEEN_ROUNDS:
            for name, given in (("eb_every", self.eb_every), ("masks_from", self.masks_from),
                                ("rewind_step='auto'", self.rewind_step == "auto")):
                if given:
                    raise ValueError(
                        f"{name} goes with a pruner of trained weights (between rounds); "
                        f"pruner {self.pruner_name!r} does not prune them. Received: "
                        f"pruner={self.pruner_name!r} with {name}")
        if "inverted_scores" in self.controls and (
                when != pruners.AT_INIT or self.granularity != "weight"):
            raise ValueError(
                "The inverted_scores control inverts the per-weight scores of a pruner at "
                "initialization (snip, grasp, synflow, random, magnitude_init). Received: "
                f"pruner={self.pruner_name!r}, granularity={self.granularity!r}")
        if when == pruners.DURING_TRAINING and parse_granularity(self.granularity)[0] == "n:m":
            raise ValueError(
                "N:M granularity has one fixed sparsity, which a pruner acting during "
                f"training cannot reach gradually. Received: pruner={self.pruner_name!r}, "
                f"granularity={self.granularity!r}")

    def _check_stability_fields(self) -> None:
        if not self.rewind_candidates or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 0
                for k in self.rewind_candidates):
            raise ValueError(
                "rewind_candidates must be a non-empty list of integers >= 0. Received: "
                f"rewind_candidates={list(self.rewind_candidates)!r}"
            )
        if self.rewind_step == "auto":
            if max(self.rewind_candidates) >= self.steps:
                raise ValueError(
                    "rewind_candidates must be smaller than steps. Received: "
                    f"rewind_candidates={list(self.rewind_candidates)}, steps={self.steps}"
                )
            if self.masks_from is not None:
                raise ValueError(
                    "rewind_step='auto' chooses the rewind point of this run's dense round; a "
                    "transferred ticket takes its rewind point from masks_from. Received: "
                    f"rewind_step='auto', masks_from={self.masks_from!r}"
                )
        if (isinstance(self.stability_threshold, bool)
                or not isinstance(self.stability_threshold, (int, float))
                or not 0 <= self.stability_threshold <= 100):
            raise ValueError(
                "stability_threshold must be a number of percentage points in [0, 100]. "
                f"Received: stability_threshold={self.stability_threshold!r}"
            )
        _integer("stability_points", self.stability_points, minimum=2)

    def _check_no_preset_fields(self) -> None:
        defaults = {f.name: f for f in dataclasses.fields(self)}
        given = []
        for name in PRESET_ONLY:
            field = defaults[name]
            default = (field.default_factory() if field.default is dataclasses.MISSING
                       else field.default)
            value = getattr(self, name)
            if (list(value) if isinstance(value, tuple) else value) != (
                    list(default) if isinstance(default, tuple) else default):
                given.append(name)
        if given:
            raise ValueError(
                f"{given[0]} is part of a preset's recipe and does not apply to a model of "
                "your own, which comes compiled with its own optimizer and brings its own "
                f"data. Received: model={self.model!r} with {given}"
            )


def is_import_path(text: str) -> bool:
    """Whether `text` is `"module:function"` (or `"python:<name>"`).

    Example:
    >>> is_import_path("mypkg.nets:build"), is_import_path("lenet300")
    (True, False)
    """
    module, sep, attr = str(text).partition(":")
    return bool(sep and module and attr)


def _short(path: str) -> str:
    """The function name of an import path, safe for a directory name."""
    name = path.partition("#")[0].rpartition(":")[2].rpartition(".")[2]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "model"


_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "top_k", "cosine")


def monitor_is_maximized(monitor: str) -> bool:
    """Whether a larger value of the evaluation key `monitor` is better.

    Example:
    >>> monitor_is_maximized("val_auc"), monitor_is_maximized("val_mean_absolute_error")
    (True, False)
    """
    name = monitor.lower()
    if "loss" in name or "error" in name:
        return False
    return any(part in name for part in _MAXIMIZED)


def _choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"{name} must be one of {list(accepted)}. Received: {name}={value!r}")


def _fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1). Received: {name}={value!r}")


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}. Received: {name}={value!r}"
        )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of config values and where they come from."""

    values: dict[str, Any]
    source: str


def _conv_preset(model: str, lr: float, steps: int, conv_rate: float, convs: int,
                 dropout: float = 0.0) -> Preset:
    rates = {f"conv{i}": conv_rate for i in range(1, convs + 1)}
    variant = " with dropout 0.5 (Appendix H)" if dropout else ""
    return Preset(
        values=dict(
            model=model, dataset="cifar10", optimizer="adam", learning_rate=lr,
            batch_size=60, steps=steps, scope="layerwise", prune_fraction=0.2,
            rates={**rates, "output": 0.1}, dropout=dropout,
        ),
        source=(
            f"{model}{variant}: Adam {lr}, batch 60, {steps} iterations; prunes "
            f"conv layers {conv_rate:.0%}, fc 20%, output 10% per round, "
            "layer-wise (Frankle & Carbin 2019, Figure 2 and Appendix H)."
        ),
    )


_VGG19 = Preset(
    values=dict(
        model="vgg19", dataset="cifar10", optimizer="sgd", learning_rate=0.1,
        momentum=0.9, weight_decay=1e-4, batch_size=64, steps=112_000,
        lr_milestones=(56_000, 84_000), scope="global", prune_fraction=0.2,
        ignore=("output",), rewind_step=500, augment=True,
    ),
    source=(
        "VGG-19 on CIFAR-10: SGD 0.1, momentum 0.9, weight decay 1e-4, batch "
        "64, 112K iterations (160 epochs), rate /10 at epochs 80 and 120; "
        "flip + pad-crop augmentation; 20% global pruning of conv layers, "
        "output not pruned (Frankle & Carbin 2019, Figure 2, Appendix I). "
        "Rewinds to step 500 (late rewinding, Frankle et al. 2020) instead "
        "of warmup; see vgg19_warmup for the 2019 recipe."
    ),
)

_RESNET20 = Preset(
    values=dict(
        model="resnet20", dataset="cifar10", optimizer="sgd", learning_rate=0.1,
        momentum=0.9, weight_decay=1e-4, batch_size=128, steps=30_000,
        lr_milestones=(20_000, 25_000), scope="global", prune_fraction=0.2,
        ignore=("output", "stage2_block0_shortcut", "stage3_block0_shortcut"),
        rewind_step=500, augment=True,
    ),
    source=(
        "ResNet-20 (the paper's 'Resnet-18') on CIFAR-10: SGD 0.1, momentum "
        "0.9, weight decay 1e-4, batch 128, 30K iterations, rate /10 at 20K "
        "and 25K; flip + pad-crop; 20% global pruning of conv layers, output "
        "and 1x1 downsampling layers not pruned (Frankle & Carbin 2019, "
        "Figure 2, Appendix I). Rewinds to step 500 (Frankle et al. 2020) "
        "instead of warmup; see resnet20_warmup for the 2019 recipe."
    ),
)


def _warmup_variant(base: Preset, name: str, rate: float, warmup: int) -> Preset:
    """The paper's 2019 recipe for a deep network: warmup, rewind to θ0."""
    return Preset(
        values={**base.values, "learning_rate": rate, "warmup_steps": warmup,
                "rewind_step": 0},
        source=(
            f"{name} as in its base preset, but at rate {rate} with linear "
            f"learning-rate warmup over {warmup} iterations and rewinding to "
            "θ0: the paper's recipe for finding tickets at this rate (Frankle "
            "& Carbin 2019, Section 4, Appendix I)."
        ),
    )


PRESETS: dict[str, Preset] = {
    "lenet300": Preset(
        values=dict(
            model="lenet300", dataset="mnist", optimizer="adam", learning_rate=1.2e-3,
            batch_size=60, steps=50_000, scope="layerwise", prune_fraction=0.2,
            rates={"output": 0.1},
        ),
        source=(
            "LeNet-300-100 on MNIST: Adam 1.2e-3, batch 60, 50K iterations; "
            "prunes fc layers 20% and the output layer 10% per round, "
            "layer-wise (Frankle & Carbin 2019, Figure 2 and Appendix G)."
        ),
    ),
    "conv2": _conv_preset("conv2", 2e-4, 20_000, 0.1, 2),
    "conv4": _conv_preset("conv4", 3e-4, 25_000, 0.1, 4),
    "conv6": _conv_preset("conv6", 3e-4, 30_000, 0.15, 6),
    "conv2_dropout": _conv_preset("conv2", 3e-4, 60_000, 0.1, 2, dropout=0.5),
    "conv4_dropout": _conv_preset("conv4", 2e-4, 75_000, 0.1, 4, dropout=0.5),
    "conv6_dropout": _conv_preset("conv6", 2e-4, 90_000, 0.15, 6, dropout=0.5),
    "vgg19": _VGG19,
    "vgg19_warmup": _warmup_variant(_VGG19, "VGG-19", 0.1, 10_000),
    "resnet20": _RESNET20,
    "resnet20_warmup": _warmup_variant(_RESNET20, "ResNet-20", 0.03, 20_000),
}
