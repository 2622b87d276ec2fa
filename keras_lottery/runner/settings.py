"""Settings defined once: a dataclass field with its help text beside it.

A run's settings are dataclass fields (`LotteryConfig`, `PresetConfig`), as
open_lth's hyperparameter dataclasses are. Each is declared with
`setting(default, help)`, and everything that describes the settings reads
that one declaration: the `Attributes:` list of the config's docstring
(`documented`), the `Args:` list of `LotterySearch` (`describe`), the
`keras-lottery run` flags, their `choices` and their help, and whether a
setting is part of a run's identity (its directory hash).
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Callable, Collection, Iterable
from typing import Any

_HELP, _CHOICES, _HASHED, _FLAG = "help", "choices", "hashed", "flag"


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            factory: Callable[[], Any] | None = None,
            choices: Collection[Any] | Callable[[], Collection[Any]] | None = None,
            hashed: bool = True, flag: bool = True) -> Any:
    """A dataclass field of a run's settings.

    Args:
        default: the default value (or leave it out and give `factory`, or
            neither for a required setting).
        help: one or two sentences saying what the setting does; the
            docstrings and the command line show it.
        factory: makes the default of a mutable setting (a dict).
        choices: the accepted values (of each item, for a tuple setting),
            or a function returning them (a registry that grows).
        hashed: whether the setting is part of the run's identity: False
            for settings that do not change what a run computes (where
            it writes, how much it prints, how many rounds it runs).
        flag: whether `keras-lottery run` has a flag for it.

    Returns:
        A `dataclasses.field`.

    Example:
    >>> @dataclasses.dataclass
    ... class Recipe:
    ...     steps: int = setting(100, "training steps per round")
    >>> help_of(Recipe, "steps")
    'training steps per round'
    """
    if not help:
        raise ValueError("Every setting needs its help text. Received: help=''")
    metadata = {_HELP: " ".join(help.split()), _CHOICES: choices, _HASHED: hashed,
                _FLAG: flag}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field(cls: type, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"{cls.__name__} has no setting {name!r}. Accepted: {sorted(fields)}")
    return fields[name]


def help_of(cls: type, name: str) -> str:
    """The help text of setting `name` of the settings dataclass `cls`."""
    return _field(cls, name).metadata.get(_HELP, "")


def choices_of(cls: type, name: str) -> tuple[Any, ...] | None:
    """The accepted values of setting `name`, or None if any value of its
    type may do."""
    choices = _field(cls, name).metadata.get(_CHOICES)
    if callable(choices):
        choices = choices()
    return None if choices is None else tuple(choices)


def default_of(field: dataclasses.Field) -> Any:
    """The default value of a field (`MISSING` for a required one)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def hashed(field: dataclasses.Field) -> bool:
    """Whether a field is part of the run's identity."""
    return field.metadata.get(_HASHED, True)


def flagged(field: dataclasses.Field) -> bool:
    """Whether `keras-lottery run` has a flag for the field."""
    return field.metadata.get(_FLAG, True) and _HELP in field.metadata


def describe(cls: type, names: Iterable[str] | None = None, indent: int = 8) -> str:
    """The `name: help` lines of settings of `cls`, for a docstring.

    Args:
        cls: a settings dataclass.
        names: the settings to list, in order (default: all of them).
        indent: spaces before each entry (continuation lines get 4 more).

    Returns:
        The lines, wrapped at 79 columns.
    """
    names = [f.name for f in dataclasses.fields(cls)] if names is None else list(names)
    lines = []
    for name in names:
        text = help_of(cls, name)
        entry = f"{name}: {text}" + ("" if text.endswith(".") else ".")
        choices = choices_of(cls, name)
        if choices and len(choices) <= 8 and not all(str(c) in text for c in choices):
            entry += " One of " + ", ".join(f"`{c!r}`" for c in choices) + "."
        lines.append(textwrap.fill(entry, 79, initial_indent=" " * indent,
                                   subsequent_indent=" " * (indent + 4)))
    return "\n".join(lines)


def documented(cls: type) -> type:
    """Appends the `Attributes:` list of a settings dataclass to its docstring.

    Example:
    >>> @documented
    ... @dataclasses.dataclass
    ... class Recipe:
    ...     '''A recipe.'''
    ...     steps: int = setting(100, "training steps per round")
    >>> print(Recipe.__doc__.splitlines()[-1].strip())
    steps: training steps per round
    """
    own = [f.name for f in dataclasses.fields(cls) if _HELP in f.metadata]
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n    Attributes:\n{describe(cls, own)}\n"
    return cls


def keyword_parameters(cls: type, names: Iterable[str]) -> list[inspect.Parameter]:
    """Keyword-only parameters for settings `names` of `cls`, with their
    defaults and types: the signature of a function taking them as
    `**settings` (`LotterySearch`), for `help()` and editors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                              default=default_of(fields[name]), annotation=hints[name])
            for name in names]


def insert_arguments(doc: str, cls: type, names: Iterable[str], before: str = "Example:") -> str:
    """`doc` with the `name: help` lines of settings `names` of `cls` added
    at the end of its `Args:` list (just before the `before` section)."""
    head, sep, tail = doc.partition(f"\n    {before}")
    return f"{head.rstrip()}\n{describe(cls, names)}\n{sep}{tail}"
