"""`tfmot.sparsity`: the pruning API lives in `tfmot.sparsity.keras`."""

from keras_lottery.tfmot.sparsity import keras

__all__ = ["keras"]
