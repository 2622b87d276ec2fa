"""Running a preset: the paper's architectures on its datasets, through the engine.

A preset is a registered pair of a model (`presets.models.ARCHITECTURES`)
and a dataset (`presets.data`) with the paper's hyperparameters
(`presets.recipes.PRESETS`). It trains through `LoopTrainer`, the custom
`tf.distribute` loop that also runs under MultiWorkerMirroredStrategy,
and otherwise goes through the same `Engine` as a model of your own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_lottery.runner import instability
from keras_lottery.runner.distribute import (
    check_workers_agree,
    is_chief,
    make_strategy,
    use_threads,
)
from keras_lottery.runner.engine import Engine, LotteryResult
from keras_lottery.runner.lock import run_lock
from keras_lottery.runner.presets import data as data_lib
from keras_lottery.runner.presets.config import PresetConfig
from keras_lottery.runner.rundir import RunDir, config_at


def _strategy(config: PresetConfig):
    """The run's `tf.distribute` strategy, TensorFlow's thread pools set
    first (`config.threads`, `config.inter_op_threads`: they are fixed when
    TensorFlow starts)."""
    use_threads(config.threads, config.inter_op_threads)
    return make_strategy(config.strategy)


def find_ticket(config: PresetConfig, data: data_lib.Dataset | None = None) -> LotteryResult:
    """Runs the lottery procedure that a preset config describes.

    Completed branches found in the run directory are reused and an
    interrupted branch continues from its last checkpoint, so calling this
    again after a crash (or with more rounds) resumes the run.

    Args:
        config: the run's configuration (`PresetConfig.from_preset(...)`).
        data: the dataset; default `keras_lottery.data.load(config.dataset)`.

    Returns:
        A `LotteryResult`.

    Example:
    >>> config = PresetConfig.from_preset("lenet300", dataset="fashion_mnist",
    ...                                    steps=2000, rounds=3)
    >>> print(find_ticket(config).table())
    """
    if not isinstance(config, PresetConfig):
        raise ValueError(
            f"find_ticket runs the presets; for model={config.model!r} use "
            "keras_lottery.LotterySearch (or `keras-lottery run --model ... --data ...`)."
        )
    from keras_lottery.runner.presets.loop_trainer import LoopTrainer  # noqa: F401 (TensorFlow)

    strategy = _strategy(config)
    with run_lock(config, is_chief(strategy)):
        engine, build = preset_engine(config, data, strategy)
        result = engine.run()
    result.build = build
    return result


def preset_engine(config: PresetConfig, data: data_lib.Dataset | None = None, strategy=None):
    """The engine of a preset run, ready to `run()` (the caller holds the lock).

    Args:
        config: a preset config.
        data: the dataset (default: loaded as `config.dataset` says).
        strategy: the `tf.distribute` strategy (default: `config.strategy`).

    Returns:
        `(engine, build)`: the `Engine`, and a function building a fresh
        masked model of the run's architecture.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "The presets train through a tf.distribute loop, which needs the TensorFlow "
            f"backend (KERAS_BACKEND=tensorflow). Received: backend "
            f"{keras.backend.backend()!r}. On this backend, search a preset's architecture "
            "as a model of your own: keras_lottery.LotterySearch with a builder around "
            "keras_lottery.runner.presets.models.build(...), compiled."
        )
    from keras_lottery.runner.presets import pipeline
    from keras_lottery.runner.presets.loop_trainer import LoopTrainer, Splits

    strategy = strategy if strategy is not None else _strategy(config)
    chief = is_chief(strategy)
    run_dir = RunDir.open(config, writable=chief)
    if data is None:
        data = data_lib.load(config.dataset, data_dir=config.data_dir,
                             validation=config.validation, classes=config.classes or None)
    splits = Splits.from_dataset(data, config.train_eval_examples)
    run_dir.save_data_info({
        "input_shape": list(data.input_shape), "num_classes": data.num_classes,
        "source": data.source,
    })
    with strategy.scope():
        model = config.masked_model(data.input_shape, data.num_classes)

    compiled: dict = {}  # the traced step functions, shared by the branches

    def make_trainer(start: int, label: str) -> LoopTrainer:
        return LoopTrainer(model, config, strategy, splits, start=start, compiled=compiled)

    def agree(progress: int) -> None:
        check_workers_agree(strategy, progress, "the run's progress")

    def batches(n: int) -> list:
        """The first n training batches, standardized as training sees them."""
        count = n * config.batch_size
        return list(pipeline.eval_batches(data.x_train[:count], data.y_train[:count],
                                          splits.stats, batch_size=config.batch_size))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    engine = Engine(config, model, make_trainer, run_dir, chief=chief, agree=agree,
                    batches=batches, loss=loss, seeded=True)
    return engine, lambda: config.masked_model(data.input_shape, data.num_classes)


def preset_instability(run_dir: str, round_index: int, rewind_steps: Sequence[int],
                       points: int | None = None) -> list[dict[str, Any]]:
    """The instability analysis of a preset run's round, as branches of it.

    Args:
        run_dir: the run directory (of `find_ticket` / `keras-lottery run
            --preset`).
        round_index: a round whose masks exist.
        rewind_steps: the k to measure, each in [0, steps).
        points: points along the path (default: the config's).

    Returns:
        One `measure` result per k.

    Example:
    >>> results = preset_instability("runs/lenet300_fashion_mnist_iterative_d91f1bf1", 3,
    ...                              [0, 100, 500])
    >>> [r["instability"]["test"] for r in results]
    """
    config = config_at(run_dir)  # where the run is now, wherever it was made
    if not isinstance(config, PresetConfig):
        raise ValueError(f"preset_instability needs a preset run; {run_dir} holds model="
                         f"{config.model!r}. Received: run_dir={run_dir!r}")
    with run_lock(config):
        engine, _ = preset_engine(config)
        return instability.analyze(engine, round_index, rewind_steps, points)
