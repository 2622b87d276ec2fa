"""`LotteryConfig`: everything that defines a lottery run.

A run is described entirely by its config (and the data): the run directory
is named after a hash of the config, so the same experiment lands in the
same place and resumes there. `model` is the import path of the function
that builds a compiled model (`"mypkg.nets:build"`) and `data` the import
path of the function that loads its data (or a description of data passed
from Python). The presets add the paper's training recipe (optimizer,
learning rate, dataset...) as another kind of config, `PresetConfig`,
which a run's `config.json` is read back as when it describes one
(`LotteryConfig.from_dict`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from keras_lottery import pruners
from keras_lottery.mask_math import SCOPES, parse_granularity
from keras_lottery.runner.branches import CONTROLS
from keras_lottery.runner.settings import choices_of, default_of, documented, hashed, setting

if TYPE_CHECKING:
    import keras


class RunInfo(Protocol):
    """What a kind of config reads of a run directory to rebuild its model."""

    @property
    def data_info(self) -> dict[str, Any]:
        """The run's `data.json` (input shape, class count...)."""

MODES = ("iterative", "oneshot", "gradual")
# The mode each kind of pruner works in, and the pruner a mode uses by default.
_MODES_OF = {pruners.BETWEEN_ROUNDS: ("iterative", "oneshot"), pruners.AT_INIT: ("oneshot",),
             pruners.DURING_TRAINING: ("gradual",)}
_DEFAULT_PRUNER = {"iterative": "magnitude", "oneshot": "magnitude", "gradual": "gradual"}
MONITOR_MODES = ("auto", "min", "max")
ON_DIVERGENCE = ("continue", "stop")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")

@documented
@dataclasses.dataclass
class LotteryConfig:
    """The settings of one lottery-ticket run on a model of your own.

    A preset run adds the paper's training recipe to these
    (`keras_lottery.runner.presets.PresetConfig`). Every setting is
    declared once below with its help text, which this list, the
    arguments of `LotterySearch` and the `keras-lottery run` flags show.
    """

    model: str = setting(
        help="the import path 'module:function' of a function returning a compiled Keras "
             "model (or a preset's architecture, with a preset)")
    data: str | None = setting(
        None, "with a model of your own: 'module:function' returning (train, validation) or "
              "(train, validation, test), each a tf.data.Dataset of (inputs, targets) "
              "batches or a NumPy (x, y) pair")
    architecture: str | None = setting(
        None, "a fingerprint of the model's architecture and compile settings, set by the "
              "search", flag=False)
    mode: str = setting(
        "iterative", "how the pruned networks relate: iterative (rounds of prune and "
                     "rewind), oneshot (one network per target of sparsities, its masks "
                     "made once, from the trained dense network or at initialization) or "
                     "gradual (one network per target, pruned while it trains)",
        choices=MODES)
    pruner: str | None = setting(
        None, "the pruning method, a key of keras_lottery.pruners.PRUNERS; unset: "
              "magnitude, or gradual with mode gradual",
        choices=lambda: tuple(pruners.PRUNERS))
    pruner_options: dict[str, Any] = setting(
        help="the pruner's options by name, e.g. end=0.75,frequency=50 for gradual (see "
             "each pruner's Options)", factory=dict)
    rounds: int = setting(
        5, "pruning rounds after the dense round (iterative mode)", hashed=False)
    prune_fraction: float = setting(0.2, "share of the remaining weights pruned per round")
    sparsities: tuple[float, ...] = setting(
        (), "targets of the oneshot and gradual modes, in percent of weights REMAINING "
            "(the paper's Pm), e.g. 50,20,10")
    scope: str = setting("global", "one threshold for the whole model (global) or one per "
                                   "layer (layerwise)", choices=SCOPES)
    granularity: str = setting(
        "weight", "what one pruned item is: weight (the paper), unit (whole Dense units and "
                  "Conv filters, ranked by the norm of their weights; prune_fraction and "
                  "rates are then shares of the remaining units, and the output layer must "
                  "get rate 0 or be ignored) or N:M like 2:4 (at most N nonzeros in every M "
                  "consecutive input weights)")
    rates: dict[str, float] = setting(
        help="layer name -> own per-round pruning rate, e.g. output=0.1,conv1=0.1 (the "
             "paper prunes output layers at half rate)", factory=dict)
    ignore: tuple[str, ...] = setting((), "names of layers that are never pruned, e.g. output")
    rewind_step: int | str = setting(
        0, "0 rewinds to the initialization θ0; k > 0 to the weights after k steps of the "
           "dense run (late rewinding); auto to the smallest of rewind_candidates at which "
           "the dense network is stable to SGD noise (Frankle et al. 2020)")
    rewind_candidates: tuple[int, ...] = setting(
        (0, 100, 250, 500, 1000, 2000), "the steps rewind_step auto tries, smallest first")
    stability_threshold: float = setting(
        2.0, "the largest instability (error barrier on the validation set, in percentage "
             "points) that counts as stable")
    stability_points: int = setting(
        30, "points along the linear path between the two copies at which the instability "
            "analysis evaluates")
    controls: tuple[str, ...] = setting(
        (), "extra branches per round: random_reinit (same mask, fresh init), random_prune "
            "(random mask, same per-layer sparsity), lr_rewind (keep the trained weights, "
            "replay the learning-rate schedule from rewind_step; Renda et al. 2020), "
            "inverted_scores (an at-init pruner's lowest-scored weights kept)",
        choices=lambda: tuple(CONTROLS), hashed=False)
    batch_size: int = setting(60, "global batch size (split across replicas)")
    steps: int = setting(50_000, "training steps per round")
    eval_every: int = setting(100, "evaluate the validation split every this many steps")
    eval_batch_size: int | None = setting(
        None, "examples per evaluation batch (a preset's splits, a search's NumPy splits); "
              "unset: 1000 for a preset, max(256, batch_size) for a model of your own. "
              "Larger batches evaluate faster where memory allows; the metrics' last bits "
              "depend on it")
    test_curves: bool = setting(
        False, "evaluate every split (test and a training subset too) at every evaluation, "
               "for their per-step curves in TensorBoard; by default only the monitored "
               "split is, and the others only at the early-stop and last steps, from the "
               "weights kept in memory: the same metrics and table", hashed=False)
    masks_from: str | None = setting(
        None, "RUN_DIR:ROUND: take round 1's masks and the rewind point from that round of "
              "another run instead of pruning (ticket transfer, Morcos et al. 2019)")
    eb_every: int = setting(
        0, "draw the pruner's mask every this many steps of the dense round to detect an "
           "Early-Bird ticket (You et al. 2020; 0 = off)")
    eb_threshold: float = setting(
        0.1, "largest normalized Hamming distance between the last eb_window masks that "
             "counts as settled")
    eb_window: int = setting(5, "number of consecutive settled masks required")
    eb_stop: bool = setting(
        False, "stop the dense round at the Early-Bird step and prune from the weights there")
    monitor: str = setting(
        "val_loss", "the evaluation key early stopping follows, e.g. val_loss, val_auc")
    monitor_mode: str = setting(
        "auto", "min, max, or auto (max for accuracy-like keys: accuracy, auc, precision, "
                "recall, f1, iou, r2; else min)", choices=MONITOR_MODES)
    on_divergence: str = setting(
        "continue", "what a branch whose loss becomes NaN or infinite does to the run: "
                    "continue (it is recorded as diverged and the run goes on; a diverged "
                    "ticket passes its last finite weights to the next round) or stop (the "
                    "same, then the run stops with DivergedError)",
        choices=ON_DIVERGENCE, hashed=False)
    seed: int = setting(0, "seed of initialization, data order and controls")
    strategy: str = setting("default", "the tf.distribute strategy", choices=STRATEGIES,
                            hashed=False)
    logdir: str = setting("runs", "parent directory of run directories", hashed=False)
    name: str | None = setting(
        None, "run directory name (default: model_data_mode_<config hash>)", hashed=False)
    checkpoint_every: int = setting(
        1000, "mid-round checkpoint interval in steps (0 = only round boundaries)",
        hashed=False)
    verbose: int = setting(1, "0 silent, 1 progress bars and round lines, 2 round lines",
                           hashed=False)

    # The other kinds of config (`PresetConfig`), which `from_dict` may build.
    _kinds: ClassVar[list[type]] = []

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        LotteryConfig._kinds.append(cls)

    def __post_init__(self):
        self.sparsities = tuple(float(s) for s in self.sparsities)
        # One name as a string is one name, not its characters.
        self.ignore = (self.ignore,) if isinstance(self.ignore, str) else tuple(self.ignore)
        self.controls = (self.controls,) if isinstance(self.controls, str) else tuple(self.controls)
        self.rewind_candidates = tuple(self.rewind_candidates)
        self.rates = dict(self.rates)
        self.pruner_options = dict(self.pruner_options)
        self.validate()

    @classmethod
    def describes(cls, values: Mapping[str, Any]) -> bool:
        """Whether the stored settings `values` are of this kind of config:
        here, a run of a model of your own (`model` is an import path)."""
        return is_import_path(values.get("model", ""))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LotteryConfig:
        """Builds a config from a dict (e.g. a run's `config.json`).

        Called on `LotteryConfig`, it builds the kind of config the values
        describe (a `PresetConfig` for a preset run). Settings of another
        kind at that kind's default are dropped: keras-lottery 0.3 wrote
        every kind's settings into every run's `config.json`.

        Args:
            values: setting name -> value.

        Returns:
            The validated config.

        Raises:
            ValueError: for a name that is no setting of the kind, or a bad
                value.
        """
        kind = cls
        if cls is LotteryConfig:
            kind = next((k for k in cls._kinds if k.describes(values)), cls)
        known = {f.name for f in dataclasses.fields(kind)}
        unknown = sorted(k for k in set(values).difference(known)
                         if not _another_kinds_default(k, values[k]))
        if unknown:
            raise ValueError(f"Unknown config fields {unknown}. Accepted: {sorted(known)}")
        return kind(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain values."""
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """The settings that define what a run computes (see `run_hash`).

        Like open_lth, only settings that differ from their defaults count,
        so a setting added in a later version (with a default that keeps
        the old behaviour) leaves existing run directories valid.
        """
        values = self.to_dict()
        return {f.name: values[f.name] for f in dataclasses.fields(self)
                if hashed(f) and values[f.name] != _plain(default_of(f))}

    def run_hash(self) -> str:
        """8 hex digits identifying what this config computes."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def run_name(self) -> str:
        """The run directory's name: `name`, or builder_data_mode_hash."""
        if self.name:
            return self.name
        return f"{_short(self.model)}_{_short(self.data or 'data')}_{self.mode}_{self.run_hash()}"

    def registered_builder(self, run: RunInfo) -> Callable[[], keras.Model] | None:
        """How run `run` of this config rebuilds its masked model at θ0
        from a registry of seeded architectures, without code of the run
        directory; None for a model of your own (`runner.rebuild` loads
        its `model.keras` in safe mode)."""
        return None

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
        """Raises ValueError naming the first invalid setting."""
        self._check_model()
        self._check_choices()
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(
                "monitor must be an evaluation key such as 'val_loss' or 'val_auc'. "
                f"Received: monitor={self.monitor!r}"
            )
        self._check_pruner()
        parse_granularity(self.granularity)
        check_fraction("prune_fraction", self.prune_fraction)
        for layer, rate in self.rates.items():
            check_fraction(f"rates[{layer!r}]", rate)
        if self.rewind_step != "auto":
            check_integer("rewind_step", self.rewind_step, minimum=0)
        self._check_stability_fields()
        for name in ("rounds", "seed", "checkpoint_every", "eb_every"):
            check_integer(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "steps", "eval_every"):
            check_integer(name, getattr(self, name), minimum=1)
        if self.eval_batch_size is not None:
            check_integer("eval_batch_size", self.eval_batch_size, minimum=1)
        check_integer("eb_window", self.eb_window, minimum=2)
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
        self._check_masks_from()
        if self.rewind_step != "auto" and self.rewind_step >= self.steps:
            raise ValueError(
                "rewind_step must be smaller than steps. Received: "
                f"rewind_step={self.rewind_step}, steps={self.steps}"
            )
        self._check_sparsities()
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={self.verbose}")

    def _check_model(self) -> None:
        """A model of your own: an import path, and its data."""
        if not is_import_path(self.model):
            raise ValueError(
                "model must be the import path 'module:function' of a function returning a "
                "compiled Keras model (the presets' architectures run as "
                f"keras_lottery.PresetConfig). Received: model={self.model!r}"
            )
        if self.data is None:
            raise ValueError(
                "A model of your own needs its data: data='module:function' (a "
                "function returning (train, validation) or (train, validation, test)). "
                f"Received: model={self.model!r}, data=None"
            )

    def _check_choices(self) -> None:
        """Each setting declared with `choices` holds one of them (each
        item of a tuple setting; None where None is the default)."""
        for field in dataclasses.fields(self):
            accepted = choices_of(type(self), field.name)
            value = getattr(self, field.name)
            if accepted is None or (value is None and field.default is None):
                continue
            for item in value if isinstance(value, tuple) else (value,):
                check_choice(field.name, item, accepted)

    def _check_pruner(self) -> None:
        """The pruner takes its options and fits the mode."""
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
        check_integer("stability_points", self.stability_points, minimum=2)

    def _check_masks_from(self) -> None:
        if self.masks_from is None:
            return
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

    def _check_sparsities(self) -> None:
        if self.mode == "iterative":
            return
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


def _plain(value: Any) -> Any:
    """A setting's value as JSON holds it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _another_kinds_default(name: str, value: Any) -> bool:
    """Whether `name` is a setting of another kind of config, at its default."""
    for kind in LotteryConfig._kinds:
        fields = {f.name: f for f in dataclasses.fields(kind)}
        if name in fields and _plain(default_of(fields[name])) == _plain(value):
            return True
    return False


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


def check_choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"{name} must be one of {list(accepted)}. Received: {name}={value!r}")


def check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1). Received: {name}={value!r}")


def check_integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}. Received: {name}={value!r}"
        )


