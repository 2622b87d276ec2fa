"""What `prunable()` does to each weight of a model, one call away.

`inventory(model)` lists every weight with its path, shape, layer class and
whether it is pruned, and why not when it is not: the table to read before
trusting a sparsity figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import keras

from keras_lottery.masking import weight_status

# What each status of `masking.weight_status` means, for the table.
REASONS = {
    "pruned": "pruned (masked)",
    "prunable": "prunable, not masked yet: call prunable(model)",
    "ignored": "not pruned: ignored",
    "not a matrix": "not pruned: bias, scale or other vector",
    "not a kernel": "not pruned: not a kernel of its layer (bias, state)",
    "unknown layer": "NOT PRUNED: unknown layer; register_prunable() or get_prunable_weights()",
}


@dataclass(frozen=True)
class WeightRow:
    """One weight of a model.

    Attributes:
        path: the variable's path.
        shape: its shape.
        layer: the class name of the layer owning it.
        status: a key of `REASONS`.
    """

    path: str
    shape: tuple[int, ...]
    layer: str
    status: str

    @property
    def pruned(self) -> bool:
        """Whether the weight is masked."""
        return self.status == "pruned"


@dataclass(frozen=True)
class Inventory:
    """Every weight of a model and what pruning does to it; `print()` it.

    Attributes:
        rows: one `WeightRow` per weight, in model order.
    """

    rows: tuple[WeightRow, ...]

    def count(self, status: str) -> int:
        """Number of parameters whose weight has this status."""
        return sum(_size(row.shape) for row in self.rows if row.status == status)

    def __str__(self) -> str:
        width = max([len(r.path) for r in self.rows] + [6])
        lines = [f"{'weight':<{width}}  {'shape':<18} {'layer':<22} status"]
        for row in self.rows:
            lines.append(f"{row.path:<{width}}  {str(row.shape):<18} {row.layer:<22} "
                         f"{REASONS[row.status]}")
        total = sum(_size(r.shape) for r in self.rows)
        lines.append(f"{self.count('pruned'):,} of {total:,} parameters are masked; "
                     f"{self.count('unknown layer'):,} sit in weight matrices of unknown layers.")
        return "\n".join(lines)


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for n in shape:
        size *= int(n)
    return size


def inventory(model: keras.layers.Layer, ignore: Iterable[str] = ()) -> Inventory:
    """Lists every weight of `model`: path, shape, layer, pruned or why not.

    Args:
        model: a built model, before or after `prunable()`.
        ignore: the `ignore` argument given (or to give) to `prunable()`.

    Returns:
        An `Inventory`.

    Example:
    >>> print(inventory(prunable(model)))
    weight          shape    layer   status
    dense/kernel    (4, 3)   Dense   pruned (masked)
    dense/bias      (3,)     Dense   not pruned: bias, scale or other vector
    ...
    """
    ignore = {ignore} if isinstance(ignore, str) else set(ignore)
    return Inventory(tuple(
        WeightRow(v.path, tuple(int(n) for n in v.shape), type(layer).__name__, status)
        for v, layer, status in weight_status(model, ignore)
    ))
