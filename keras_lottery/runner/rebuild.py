"""Rebuilding a run's model from its directory (report, export, transfer).

A preset's model is rebuilt from the registry (it is seeded). A model of
your own is loaded from the run's `model.keras` (saved at θ0 when Keras
can serialize it), or else built again by importing its builder
(`config.model`, `"module:function"`) from the current directory or
`PYTHONPATH`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import keras

from keras_lottery.masking import prunable
from keras_lottery.pruning import align_masks, set_masks
from keras_lottery.rewind import restore_weights
from keras_lottery.saving import load_model
from keras_lottery.runner.rundir import RunDir


def import_object(path: str, what: str = "model") -> Any:
    """The object an import path `"module:attribute"` names.

    The current directory is searched too, as `python -m` would.

    Args:
        path: e.g. `"mypkg.nets:build"` (attributes may be dotted).
        what: what it is for, in error messages (`"model"`, `"data"`).

    Returns:
        The object.

    Raises:
        ValueError: if the module or attribute cannot be found.

    Example:
    >>> import_object("keras_lottery.runner.models:lenet300").__name__
    'lenet300'
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"--{what} must be an import path 'module:function', e.g. 'mypkg.nets:build'. "
            f"Received: {path!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"--{what} {path!r}: cannot import module {module_name!r} ({error}). It is "
            "imported from the current directory or PYTHONPATH."
        ) from error
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise ValueError(f"--{what} {path!r}: module {module_name!r} has no {attribute!r}.")
        target = getattr(target, name)
    return target


def masked_model(run: RunDir) -> keras.Model:
    """The run's masked model as initialized (all masks ones).

    Args:
        run: a run directory.

    Returns:
        The masked model.

    Raises:
        ValueError: if a model of your own can be neither loaded from the
            run's `model.keras` nor imported.
    """
    config = run.config
    if config.is_preset_model:
        from keras_lottery.runner.presets import preset_model

        info = run.data_info
        return preset_model(config, info["input_shape"], info["num_classes"])
    saved = os.path.join(run.path, "model.keras")
    if os.path.exists(saved):
        return load_model(saved, compile=False)
    if config.model.startswith(("python:", "__main__:")):
        raise ValueError(
            f"The model of {run.path} was passed from Python ({config.model}) and could not be "
            "saved as model.keras; rebuild it in Python and call LotteryResult.ticket()."
        )
    return prunable(import_object(config.model)(), ignore=config.ignore)


def load_ticket(run_dir: str, round_index: int,
                build: Callable[[], keras.Model] | None = None) -> keras.Model:
    """The masked model of a completed round, its trained weights in.

    Args:
        run_dir: a run directory.
        round_index: a completed round.
        build: makes a fresh masked model (default: `masked_model(run)`).

    Returns:
        The round's ticket.
    """
    run = RunDir.load(run_dir)
    done = run.completed_rounds()
    if round_index not in done:
        raise ValueError(
            f"round must be a completed round of {run_dir}. "
            f"Received: round={round_index}; completed: {done}"
        )
    model = build() if build is not None else masked_model(run)
    set_masks(model, align_masks(model, run.masks(round_index)))
    restore_weights(model, run.weights(round_index))
    return model
