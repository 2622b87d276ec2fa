"""`tfmot.sparsity.keras`: TFMOT 0.8's pruning API on Keras 3, any backend.

`import keras_lottery.tfmot as tfmot` in place of
`import tensorflow_model_optimization as tfmot`; see docs/tfmot.md for
what differs.
"""

from keras_lottery.tfmot.callbacks import PruningSummaries, UpdatePruningStep
from keras_lottery.tfmot.policy import PruneForLatencyOnXNNPack, PruningPolicy
from keras_lottery.tfmot.prune import (
    PrunableLayer,
    prune_low_magnitude,
    prune_scope,
    strip_pruning,
)
from keras_lottery.tfmot.schedule import ConstantSparsity, PolynomialDecay, PruningSchedule

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
]
