"""TFMOT's pruning API on Keras 3: `import keras_lottery.tfmot as tfmot`.

TensorFlow Model Optimization (TFMOT) 0.8 prunes only legacy `tf_keras`
models. This package offers its `tfmot.sparsity.keras` names (schedules,
`prune_low_magnitude`, the callbacks, `strip_pruning`, policies) on Keras 3
and every backend, built on keras-lottery's in-place masks: the schedules
(`schedule`), TFMOT's mask math in NumPy (`masks`), pruning a model
(`prune`), the callbacks (`callbacks`) and the policies (`policy`).

Example:
>>> import keras_lottery.tfmot as tfmot
>>> schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2000)
>>> model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
"""

from keras_lottery.tfmot import sparsity

__all__ = ["sparsity"]
