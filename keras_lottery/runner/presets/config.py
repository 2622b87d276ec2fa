"""`PresetConfig`: a run of one of the paper's networks, with its recipe.

A model of your own comes compiled with its optimizer and brings its data;
a preset run builds both, so its config adds the training recipe to the
generic `LotteryConfig`: the dataset, optimizer, learning-rate schedule,
dropout, augmentation and splits. Its `model` is a key of
`presets.models.models.ARCHITECTURES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from keras_lottery.masking import prunable

from keras_lottery.runner.config import (
    LotteryConfig,
    RunInfo,
    check_fraction,
    check_integer,
    is_import_path,
)
from keras_lottery.runner.presets import models
from keras_lottery.runner.presets.recipes import PRESETS
from keras_lottery.runner.settings import documented, setting


DATASETS = ("mnist", "fashion_mnist", "cifar10")
OPTIMIZERS = ("adam", "sgd")


@documented
@dataclasses.dataclass
class PresetConfig(LotteryConfig):
    """The settings of a preset run: `LotteryConfig`'s and the recipe.

    Start from a preset with `PresetConfig.from_preset("lenet300",
    steps=2000)`; every setting can be overridden. The run directory is
    named model_dataset_mode_<config hash>.
    """

    model: str = setting(
        "lenet300", "a preset's architecture (lenet300, conv2, conv4, conv6, vgg19, "
                    "resnet20) or your own: 'module:function' returning a compiled Keras "
                    "model")
    dataset: str = setting("mnist", "the preset's dataset", choices=DATASETS)
    optimizer: str = setting("adam", "the optimizer (sgd with momentum)", choices=OPTIMIZERS)
    learning_rate: float = setting(1.2e-3, "peak learning rate")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(0.0, "decoupled weight decay of the optimizer")
    lr_milestones: tuple[int, ...] = setting(
        (), "steps where the learning rate is multiplied by lr_gamma, e.g. 20000,25000")
    lr_gamma: float = setting(0.1, "the factor applied at each of lr_milestones")
    warmup_steps: int = setting(0, "linear warmup from 0 to learning_rate (0 = none)")
    train_eval_examples: int = setting(
        5000, "size of the fixed training subset evaluated alongside, for train-vs-test "
              "accuracy (0 = none)")
    dropout: float = setting(0.0, "dropout rate of the model (0 = none)")
    augment: bool = setting(False, "random flips and 4-pixel shifted crops (the CIFAR-10 "
                                   "recipe)")
    validation: int = setting(5000, "examples held out of the training set for validation")
    classes: tuple[int, ...] = setting(
        (), "keep only these classes of the dataset, relabelled 0..k-1, e.g. 0,1,2,3,4 "
            "(for ticket transfer)")
    data_dir: str | None = setting(
        None, "directory with dataset files (IDX files, CIFAR batches), searched first",
        hashed=False)
    threads: int = setting(
        0, "TensorFlow's threads per op and, unless --inter-op-threads says otherwise, for "
           "ops side by side (0 = its default, one per core); applied if TensorFlow has not "
           "run an op yet",
        hashed=False)
    inter_op_threads: int = setting(
        0, "TensorFlow's threads for ops side by side (0 = as many as --threads, or its "
           "default where that is 0 too); applied if TensorFlow has not run an op yet",
        hashed=False)

    def __post_init__(self):
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        self.classes = tuple(int(c) for c in self.classes)
        super().__post_init__()

    @classmethod
    def describes(cls, values: Mapping[str, Any]) -> bool:
        """Whether stored settings are a preset run's (`model` is no import path)."""
        return not is_import_path(values.get("model", cls.model))

    @classmethod
    def recipe_settings(cls) -> tuple[str, ...]:
        """The settings a preset adds to `LotteryConfig` (its recipe)."""
        generic = {f.name for f in dataclasses.fields(LotteryConfig)}
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in generic)

    @classmethod
    def from_preset(cls, preset: str, /, **overrides: Any) -> PresetConfig:
        """The preset `preset` with settings replaced by `overrides`.

        Args:
            preset: a key of `PRESETS` (e.g. `"lenet300"`, `"conv2"`).
            **overrides: any setting, e.g. `steps=2000`.

        Returns:
            A validated `PresetConfig`.

        Example:
        >>> PresetConfig.from_preset("lenet300", steps=2000).learning_rate
        0.0012
        """
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}. Accepted: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[preset].values, **overrides})

    def masked_model(self, input_shape: Sequence[int], num_classes: int) -> keras.Model:
        """The preset's masked model at θ0 (seeded: the same on every call).

        Args:
            input_shape: the shape of one input example, e.g. `(28, 28, 1)`.
            num_classes: the number of classes.

        Returns:
            The model, wrapped for pruning with `ignore` left unpruned.
        """
        base = models.build(self.model, tuple(input_shape), num_classes, seed=self.seed,
                            dropout=self.dropout)
        return prunable(base, ignore=self.ignore)

    def registered_builder(self, run: RunInfo) -> Callable[[], keras.Model]:
        """The preset's model, rebuilt from the registry with the run's data shape."""
        info = run.data_info
        return lambda: self.masked_model(info["input_shape"], info["num_classes"])

    @property
    def run_name(self) -> str:
        """The run directory's name: `name`, or model_dataset_mode_hash."""
        if self.name:
            return self.name
        return f"{self.model}_{self.dataset}_{self.mode}_{self.run_hash()}"

    def validate(self) -> None:
        """Raises ValueError naming the first invalid setting."""
        super().validate()
        if (self.granularity == "unit" and "output" not in self.ignore
                and self.rates.get("output", self.prune_fraction) > 0):
            raise ValueError(
                "granularity='unit' cannot remove units of the output layer 'output': its units "
                "are the model's outputs. Give it rate 0 (rates={..., 'output': 0}; on the "
                "command line --rates ...,output=0) or ignore it. Received: "
                f"granularity='unit', rates={self.rates!r}, ignore={list(self.ignore)!r}"
            )
        check_fraction("dropout", self.dropout)
        check_integer("warmup_steps", self.warmup_steps, minimum=0)
        check_integer("train_eval_examples", self.train_eval_examples, minimum=0)
        check_integer("validation", self.validation, minimum=1)
        check_integer("threads", self.threads, minimum=0)
        check_integer("inter_op_threads", self.inter_op_threads, minimum=0)
        if self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate must be > 0. Received: learning_rate={self.learning_rate}"
            )

    def _check_model(self) -> None:
        """A preset's architecture, which trains on `dataset`, not `data`."""
        if self.model not in models.ARCHITECTURES:
            raise ValueError(
                f"model must be one of {sorted(models.ARCHITECTURES)} or the import path "
                "'module:function' of a function returning a compiled Keras model. "
                f"Received: model={self.model!r}"
            )
        if self.data is not None:
            raise ValueError(
                "data goes with a model of your own (model='module:function'); a "
                f"preset model trains on dataset=... Received: model={self.model!r}, "
                f"data={self.data!r}"
            )
