"""`LotterySearch`: the lottery procedure for a Keras model of your own.

The shape is `model.fit`'s (and KerasTuner's `tuner.search`): configure the
search, then `fit` it on your data. Everything the presets have comes with
it: iterative and one-shot pruning, global or layer-wise scope with
per-layer rates and `ignore`, θ0 or θk rewinding, the controls, Early-Bird,
hash-named and resumable run directories, TensorBoard, divergence handling,
`tf.distribute.MirroredStrategy`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_lottery import compat
from keras_lottery.files import CorruptFileError, atomic_path, check_zip
from keras_lottery.masking import leaf_layers, prunable
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.engine import Engine, LotteryResult
from keras_lottery.runner.lock import run_lock
from keras_lottery.runner.fit_trainer import FitTrainer
from keras_lottery.runner.inputs import SearchData
from keras_lottery.runner.rundir import RunDir
from keras_lottery.runner.settings import insert_arguments, keyword_parameters

ModelSource = Callable[[], keras.Model] | keras.Model

# The settings of `LotteryConfig` that `fit` (its data, steps, batches) or
# the search itself (the model's identity, the strategy) sets.
_NOT_SEARCH_SETTINGS = ("model", "data", "architecture", "steps", "eval_every", "batch_size",
                        "eval_batch_size", "strategy")
# `LotterySearch`'s settings: the other settings of `LotteryConfig`.
SEARCH_SETTINGS = tuple(f.name for f in dataclasses.fields(LotteryConfig)
                        if f.name not in _NOT_SEARCH_SETTINGS)


def model_identity(model: ModelSource) -> str:
    """The import path of a model builder, `"module:qualname"`, or
    `"python:<class>"` for a model instance."""
    if isinstance(model, keras.Model):
        return f"python:{type(model).__name__}"
    module = getattr(model, "__module__", None) or "python"
    return f"{module}:{getattr(model, '__qualname__', type(model).__name__)}"


def architecture_fingerprint(model: keras.Model) -> str:
    """A short hash of what a compiled model computes, weights aside.

    It covers every leaf layer's class, config (name aside) and weight
    shapes, and the optimizer's, loss's and metrics' configs, so editing
    the architecture or the training recipe changes it, while the random
    initial values (which a builder need not seed) do not.

    Args:
        model: a built, compiled model.

    Returns:
        12 hex digits.
    """
    parts: list[Any] = []
    for layer in leaf_layers(model):
        try:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
        except NotImplementedError:
            config = {}
        parts.append([f"{type(layer).__module__}.{type(layer).__qualname__}", config,
                      [[list(w.shape), str(w.dtype)] for w in layer.weights]])
    args = compat.compile_arguments(model) or {}
    optimizer = {k: v for k, v in model.optimizer.get_config().items() if k != "name"}
    parts.append(["optimizer", type(model.optimizer).__name__, optimizer])
    for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
        parts.append([key, _describe_object(args.get(key))])
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _describe_object(value: Any) -> Any:
    """A JSON-ready description of a loss or metric (or a structure of them)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe_object(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe_object(v) for k, v in value.items()}
    try:
        return keras.saving.serialize_keras_object(value)
    except Exception:  # noqa: BLE001 - a plain function or lambda
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"


class LotterySearch:
    """Finds lottery tickets in a Keras model of your own.

    Args:
        model: a function returning a compiled Keras model (Sequential,
            functional with any inputs and outputs, or subclassed), called
            once per search under the strategy's scope; or a compiled model
            instance, whose current weights are θ0. Every branch trains
            with a fresh optimizer built from the compiled one's config and
            with the model's own loss and metrics.
        strategy: None (one device), `"mirrored"` or a
            `tf.distribute.MirroredStrategy` instance.
        **settings: the search's settings, each a `LotteryConfig` setting of
            the same name and default:
    Example:
    >>> search = LotterySearch(build_model, rounds=3, controls=("random_reinit",))
    >>> result = search.fit((x, y), validation_data=(x_val, y_val), steps=2000,
    ...                     eval_every=100, batch_size=64)
    >>> print(result.table())
    >>> ticket = result.ticket(round=3)
    """

    def __init__(self, model: ModelSource, *, strategy: Any = None, **settings: Any):
        if not (callable(model) or isinstance(model, keras.Model)):
            raise ValueError(
                "model must be a function returning a compiled keras.Model, or a compiled "
                f"keras.Model. Received: model of type {type(model).__name__}"
            )
        unknown = sorted(set(settings).difference(SEARCH_SETTINGS))
        if unknown:
            where = [name for name in unknown if name in _NOT_SEARCH_SETTINGS]
            raise ValueError(
                f"LotterySearch got unknown settings {unknown}"
                + (f" ({where} are given to fit() or set by the search)" if where else "")
                + f". Accepted: {sorted(SEARCH_SETTINGS)}")
        self.model = model
        self.strategy = strategy
        for name in ("rates", "pruner_options"):  # None as for the Keras-style {} default
            if settings.get(name, {}) is None:
                settings[name] = {}
        defaults = {f.name: f.default for f in dataclasses.fields(LotteryConfig)}
        steps = _steps_to_validate(settings.get("rewind_step", defaults["rewind_step"]),
                                   settings.get("rewind_candidates",
                                                defaults["rewind_candidates"]))
        # Validated now, so a bad argument fails before any data is read;
        # the steps and the data's identity come with `fit`.
        self._config = LotteryConfig(model=model_identity(model), data="python:data",
                                     steps=steps, **settings)

    def fit(self, train: Any, validation_data: Any = None, test_data: Any = None, *,
            steps: int, eval_every: int = 100, batch_size: int | None = 32,
            eval_batch_size: int | None = None,
            callbacks: Sequence[keras.callbacks.Callback] = (),
            data_name: str = "python:data") -> LotteryResult:
        """Runs (or resumes) the search on your data.

        Args:
            train: NumPy `(x, y)` (x and y may be lists or dicts of arrays)
                with `batch_size`, a `tf.data.Dataset` of `(inputs,
                targets)` batches (shuffled with a seed, so that a resumed
                run sees the same order), or a `keras.utils.PyDataset`.
            validation_data: evaluated every `eval_every` steps (`val_*`).
            test_data: evaluated alongside (`test_*`).
            steps: training steps (batches) per round.
            eval_every: steps between evaluations; also the length of one
                `model.fit` epoch as your callbacks see it.
            batch_size: batch size of NumPy training data.
            eval_batch_size: batch size of NumPy evaluation data (as
                `validation_batch_size` in Keras's `fit`); None:
                max(256, batch_size). Larger batches evaluate faster where
                memory allows (docs/speed.md); the metrics' last bits depend
                on it, so a value other than None is part of the run's
                identity.
            callbacks: Keras callbacks run in every branch of every round.
            data_name: how the run's identity names the data (the CLI passes
                the data function's import path); a fingerprint of the
                data itself is always added.

        Returns:
            A `LotteryResult`: `.table()`, `.rows`, `.branch(name)`,
            `.ticket(round)`.

        Raises:
            ValueError: for bad arguments or data (what was wrong, what is
                accepted), a model without prunable layers, or a run
                directory that holds another search.
            MonitorError: if evaluation does not produce `monitor`.
            BranchFailedError: if training a branch fails (the message names
                the round and branch and keeps Keras's message).
            DivergedError: with `on_divergence="stop"`, when a loss becomes
                NaN or infinite.
            RunLockedError: if another process is running the same search.
        """
        config, model, compile_args, data, strategy = self._prepare(
            train, validation_data, test_data, steps, eval_every, batch_size, eval_batch_size,
            data_name)
        with run_lock(config):
            engine = self._engine(config, model, compile_args, data, strategy, callbacks)
            if config.verbose:
                print(f"run directory: {engine.run_dir.path}")
            result = engine.run()
        result.build = (lambda: self._ticket_model(strategy, data)) if not isinstance(
            self.model, keras.Model) else (lambda: model)
        return result

    def instability(self, train: Any, validation_data: Any = None, test_data: Any = None, *,
                    round: int, rewind_steps: Sequence[int], steps: int, eval_every: int = 100,
                    batch_size: int | None = 32, eval_batch_size: int | None = None,
                    points: int | None = None,
                    callbacks: Sequence[keras.callbacks.Callback] = (),
                    data_name: str = "python:data") -> list[dict[str, Any]]:
        """The instability analysis of a round of this search's run.

        For each k, two copies train from θk under the round's masks (dense
        for round 0) with different data orders, as branches of the run
        (resumable), and the error along the linear path between them is
        evaluated on every split (`runner.instability`). The arguments
        after `round`, `rewind_steps` and `points` are `fit`'s and must be
        the ones the run was found with: they name its directory.

        Args:
            train, validation_data, test_data: as for `fit`.
            round: a completed round of the run (0: the dense network).
            rewind_steps: the k to measure, each in [0, steps).
            steps, eval_every, batch_size, eval_batch_size, callbacks,
            data_name: as for `fit`.
            points: points along the path (default: `stability_points`).

        Returns:
            One result per k (`runner.instability.measure`): `instability`
            (split -> error barrier, a fraction), `curve`, `seeds`,
            `percent_remaining`; also in `round_NN/instability_k<K>.json`,
            TensorBoard `RUN_DIR/instability/` and `keras-lottery report`.

        Raises:
            ValueError: if the run has no such round (run `fit` first, with
                the same arguments), or for a bad rewind step.

        Example:
        >>> search.fit((x, y), validation_data=(x_val, y_val), steps=2000)
        >>> results = search.instability((x, y), validation_data=(x_val, y_val),
        ...                              steps=2000, round=3, rewind_steps=[0, 500])
        >>> [r["instability"]["val"] for r in results]
        """
        from keras_lottery.runner.instability import analyze

        config, model, compile_args, data, strategy = self._prepare(
            train, validation_data, test_data, steps, eval_every, batch_size, eval_batch_size,
            data_name)
        path = os.path.join(config.logdir, config.run_name)
        exists = os.path.exists(os.path.join(path, "config.json"))
        done = RunDir.load(path).completed_rounds() if exists else []
        if round not in done:
            raise ValueError(
                f"instability measures a round of an existing run: {path} has completed "
                f"rounds {done}. Run fit() with the same model, data and arguments first. "
                f"Received: round={round!r}"
            )
        with run_lock(config):
            engine = self._engine(config, model, compile_args, data, strategy, callbacks)
            return analyze(engine, round, rewind_steps, points)

    def _prepare(self, train: Any, validation_data: Any, test_data: Any, steps: int,
                 eval_every: int, batch_size: int | None, eval_batch_size: int | None,
                 data_name: str):
        """Checks the data, builds the masked model and the run's config.

        Returns:
            `(config, model, compile_args, data, strategy)`.
        """
        base = self._config
        data = SearchData.of(train, validation_data, test_data, batch_size, base.seed,
                             eval_batch_size)
        if base.monitor.startswith(("val_", "test_")) and base.monitor.split("_")[0] not in (
                "val" if "val" in data.evals else "", "test" if "test" in data.evals else ""):
            split = "validation_data" if base.monitor.startswith("val_") else "test_data"
            raise ValueError(
                f"monitor={base.monitor!r} needs {split}; pass it to fit(), or monitor a key "
                "of the data you pass (e.g. 'train_loss')."
            )
        strategy = _strategy(self.strategy)
        if strategy is not None and isinstance(self.model, keras.Model):
            raise ValueError(
                "A distributed search builds its model under the strategy's scope: pass a "
                "function that builds and compiles the model, not a model instance. "
                f"Received: model={self.model.name!r} with strategy={self.strategy!r}"
            )
        model, compile_args = self._masked_model(strategy, data)
        values = {**base.to_dict(), "steps": steps, "eval_every": eval_every,
                  "data": f"{data_name}#{data.fingerprint()}",
                  "architecture": architecture_fingerprint(model),
                  "strategy": "mirrored" if strategy is not None else "default"}
        if data.train.kind == "arrays":
            values["batch_size"] = batch_size
        if eval_batch_size is not None:
            values["eval_batch_size"] = eval_batch_size
        return LotteryConfig.from_dict(values), model, compile_args, data.for_model(model), strategy

    def _engine(self, config: LotteryConfig, model: keras.Model, compile_args: dict[str, Any],
                data: SearchData, strategy, callbacks) -> Engine:
        """The engine of the run, its directory opened (the caller holds
        its lock), training every branch through `model.fit`."""
        run_dir = RunDir.open(config)
        run_dir.save_data_info({"train": data.train.kind, "evaluated": sorted(data.evals),
                                "fingerprint": data.fingerprint()})
        _save_model(model, run_dir)
        scope = strategy.scope if strategy is not None else None
        compiled: dict = {}  # one optimizer per offset, traced functions (FitTrainer)

        def make_trainer(start: int, label: str) -> FitTrainer:
            return FitTrainer(model, compile_args, data, steps=config.steps,
                              eval_every=config.eval_every, start=start,
                              checkpoint_every=config.checkpoint_every, callbacks=callbacks,
                              label=label, monitor=config.monitor, verbose=config.verbose,
                              scope=scope, maximize=config.maximize,
                              test_curves=config.test_curves, compiled=compiled)

        return Engine(config, model, make_trainer, run_dir, metric=None,
                      batches=lambda n: data.train.batches(n), loss=_loss(compile_args))

    def _masked_model(self, strategy, data: SearchData) -> tuple[keras.Model, dict[str, Any]]:
        """Builds (or takes) the user's model and wraps it for pruning."""
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            user = self.model if isinstance(self.model, keras.Model) else self.model()
            if not isinstance(user, keras.Model):
                raise ValueError(
                    f"model() must return a keras.Model. Received: {type(user).__name__} "
                    f"from {model_identity(self.model)}"
                )
            args = compat.compile_arguments(user)
            if args is None:
                raise ValueError(
                    f"The model from {model_identity(self.model)} is not compiled: compile it "
                    "with its optimizer, loss and metrics before handing it to the search "
                    "(model.compile(optimizer=..., loss=..., metrics=[...]))."
                )
            if not user.built:  # a subclassed model never called yet
                user(_first_inputs(data))
            if not isinstance(args["optimizer"], keras.optimizers.Optimizer):
                args["optimizer"] = user.optimizer  # compiled by name ("adam")
            model = prunable(user, ignore=self._config.ignore)
            if model is not user:  # a clone: compile it like the user's model
                model.compile(**{**args, "optimizer": _fresh(user.optimizer)})
        return model, args

    def _ticket_model(self, strategy, data: SearchData) -> keras.Model:
        model, _ = self._masked_model(strategy, data)
        return model


LotterySearch.__doc__ = insert_arguments(LotterySearch.__doc__, LotteryConfig, SEARCH_SETTINGS)
LotterySearch.__init__.__signature__ = inspect.Signature([
    *list(inspect.signature(LotterySearch.__init__).parameters.values())[:3],
    *keyword_parameters(LotteryConfig, SEARCH_SETTINGS)])


def _loss(compile_args: dict[str, Any]) -> Callable[[Any, Any], Any] | None:
    """The compiled loss as `(y_true, y_pred) -> scalar`, for pruners that
    score by gradients; None for a loss they cannot call (several outputs)."""
    loss = compile_args.get("loss")
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if not callable(loss):
        return None
    return lambda y_true, y_pred: keras.ops.mean(loss(y_true, y_pred))


def _steps_to_validate(rewind_step: Any, candidates: Sequence[int]) -> int:
    """A step count that lets the arguments validate before `fit` gives
    the real one (which must exceed the rewind step or candidates)."""
    if rewind_step == "auto":
        return 1 + max((k for k in candidates if isinstance(k, int)), default=0)
    return max(1, rewind_step + 1) if isinstance(rewind_step, int) else 1


def _fresh(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    from keras_lottery.runner.fit_trainer import fresh_optimizer

    return fresh_optimizer(optimizer)


def _first_inputs(data: SearchData) -> Any:
    """The inputs of the first training batch (to build an unbuilt model)."""
    batch = next(iter(data.train.stream(0)))
    return batch[0]


def _strategy(strategy: Any):
    """None, a strategy name, a `keras.distribution.Distribution` (JAX's
    `DataParallel`...: the model is built and trained inside its `scope()`)
    or a `tf.distribute.Strategy` -> strategy or None."""
    if strategy is None or strategy == "default":
        return None
    if compat.is_distribution(strategy):
        return strategy
    if isinstance(strategy, str):
        if strategy != "mirrored":
            raise ValueError(
                "LotterySearch trains through model.fit, which supports strategy=None or "
                "'mirrored' (MultiWorkerMirroredStrategy fails in model.fit in Keras 3.15; "
                "the presets' custom loop supports it). Received: "
                f"strategy={strategy!r}"
            )
        from keras_lottery.runner.distribute import make_strategy

        return make_strategy("mirrored")
    if compat.in_multi_worker_mode(strategy):
        raise ValueError("LotterySearch does not support MultiWorkerMirroredStrategy "
                         "(model.fit fails under it in Keras 3.15).")
    return strategy


def _save_model(model: keras.Model, run_dir: RunDir) -> None:
    """Saves the masked model at θ0 as `model.keras` when Keras can, so
    `report` and `export` rebuild it without importing the user's code.
    A `model.keras` that is there but damaged is written again (warned)."""
    path = os.path.join(run_dir.path, "model.keras")
    if not run_dir.writable:
        return
    if os.path.exists(path):
        try:
            check_zip(path)
            return
        except CorruptFileError as error:
            warnings.warn(f"{error.path} is damaged ({error.reason}): it is written again.",
                          stacklevel=3)
    try:
        with atomic_path(path, suffix=".tmp.keras") as tmp:
            model.save(tmp)
    except Exception:  # noqa: BLE001 - a model Keras cannot serialize
        if os.path.exists(path):  # the damaged one must not stay
            os.remove(path)
