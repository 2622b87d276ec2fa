"""Pruning methods, one module each, in one registry (`PRUNERS`).

`LotterySearch(pruner=...)`, `keras-lottery run --pruner` and Early-Bird
all take a name of this registry. A new method is one module defining a
`@register`-ed `Pruner` subclass, plus its import line below.
"""

from keras_lottery.pruners.base import (
    AT_INIT,
    BETWEEN_ROUNDS,
    DATA_FREE,
    DURING_TRAINING,
    GRADIENTS,
    PRUNERS,
    WEIGHTS,
    Pruner,
    PruneRequest,
    describe,
    get,
    masks_from_scores,
    ranks,
    register,
)

# The registry: one import line per method.
from keras_lottery.pruners import magnitude  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import gradual  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import snip  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import grasp  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import synflow  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import random_init  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import magnitude_init  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import sparse_evolutionary  # noqa: E402,F401  isort: skip
from keras_lottery.pruners import rigl  # noqa: E402,F401  isort: skip

__all__ = ["AT_INIT", "BETWEEN_ROUNDS", "DATA_FREE", "DURING_TRAINING", "GRADIENTS", "PRUNERS",
           "WEIGHTS", "Pruner", "PruneRequest", "describe", "get", "masks_from_scores", "ranks",
           "register"]
