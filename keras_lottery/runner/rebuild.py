"""Rebuilding a run's model from its directory (report, export, transfer).

A preset's model is rebuilt from its registry (it is seeded: the
config's `registered_builder`). A model of your own is loaded from the run's `model.keras` (saved at θ0 when Keras
can serialize it) under Keras's safe mode, which deserializes no Python
code. Opening a run directory never runs code from it: the builder a
run's `config.json` names is imported only when the caller passes it
(`build`, or `--model` on the command line), never because the run names
it, since run directories are shared and downloaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import keras

from keras_lottery.files import CorruptFileError, check_zip
from keras_lottery.masking import prunable
from keras_lottery.saving import load_model
from keras_lottery.runner.rundir import RunDir, round_ticket


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
    >>> import_object("keras_lottery.runner.presets.models:lenet300").__name__
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


def masked_model(run: RunDir, build: Callable[[], keras.Model] | None = None) -> keras.Model:
    """The run's masked model as initialized (all masks ones).

    Args:
        run: a run directory.
        build: makes a fresh masked model (a model of your own whose
            `model.keras` is missing or damaged); the run's own
            `config.model` is never imported.

    Returns:
        The masked model.

    Raises:
        ValueError: if a model of your own can be neither loaded from the
            run's `model.keras` nor built by `build` (what to do is said).
    """
    config = run.config
    build = config.registered_builder(run) or build  # a preset's own, whatever is named
    if build is not None:
        return build()
    saved = os.path.join(run.path, "model.keras")
    try:
        check_zip(saved)
        return load_model(saved, compile=False, safe_mode=True)
    except FileNotFoundError:
        problem = f"{saved} is missing"
    except CorruptFileError as error:
        problem = f"{saved} is damaged ({error.reason})"
    except Exception as error:  # noqa: BLE001 - Keras raises many types
        problem = f"{saved} cannot be loaded in safe mode ({type(error).__name__}: {error})"
    if config.model.startswith(("python:", "__main__:")):
        how = ("it was passed from Python, so rerun the search (LotterySearch.fit with the "
               "same model and data writes model.keras again) or rebuild it in Python and "
               "call LotteryResult.ticket()")
    else:
        how = ("rerun the search (keras-lottery run with the same --model and --data writes "
               f"model.keras again), or name its builder yourself: --model {config.model} "
               "(a run directory's own code is never imported unasked)")
    raise ValueError(f"The model of {run.path} cannot be rebuilt: {problem}; {how}.")


def builder(path: str, ignore: tuple[str, ...] = ()) -> Callable[[], keras.Model]:
    """A `build` for `masked_model` from a builder the user names.

    Args:
        path: `"module:function"`, imported when called.
        ignore: layer names never pruned (the run's `ignore`).

    Returns:
        A function making the builder's model, wrapped for pruning.

    Example:
    >>> build = builder("keras_lottery.runner.presets.models:lenet300")
    """
    return lambda: prunable(import_object(path)(), ignore=ignore)


def load_ticket(run_dir: str, round_index: int,
                build: Callable[[], keras.Model] | None = None) -> keras.Model:
    """The masked model of a completed round, its trained weights in.

    Args:
        run_dir: a run directory.
        round_index: a completed round.
        build: makes a fresh masked model (default: `masked_model(run)`).

    Returns:
        The round's ticket.

    Raises:
        ValueError: if the round is not complete, or its masks or trained
            weights are missing or damaged (rerunning the search rebuilds
            them), or the model cannot be rebuilt.
    """
    run = RunDir.load(run_dir)
    return round_ticket(run, round_index, lambda: masked_model(run, build))
