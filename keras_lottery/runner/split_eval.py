"""A whole evaluation split of arrays in one compiled call (TensorFlow).

`model.evaluate` on a `tf.data.Dataset` runs Keras's test function one
batch after another: each batch's `test_step` waits for the one before it
(the iterator and the metrics' updates are ordered), so no two forward
passes overlap, and each batch also pays for the iterator and a function
call. `evaluate_tensors` runs the model's own `test_step` over slices of the
split's tensors in one traced loop, two batches at a time: their forward
passes are independent, so TensorFlow's inter-op threads can run them at
once, while the metrics still add up batch after batch in the order Keras's
loop adds them, so the logs are the same values (the tests compare them
with `model.evaluate` for equality). In the search of LeNet-300-100 on 2
cores a validation split took 0.55-0.65x the time of Keras's loop
(docs/speed.md, "Eleventh round").

Keras's own loop is kept for a model's first evaluation after each
`compile` (Keras builds the compiled metrics there), for a model compiled
with `jit_compile` or `run_eagerly`, for one under a distribution strategy,
and for a model whose `test_step` returns logs other than its metrics (as
Keras does, the last step's logs are then what evaluation returns).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras

_SIDE_BY_SIDE = 2  # batches of one loop iteration, whose forward passes may run at once

# model -> {"tracker": the loss tracker of the compile the entry belongs to,
#           "loop": the traced loop (False: Keras's loop only; absent: not made yet),
#           int: Keras's whole-split test function for that many batches}
_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluate_tensors(model: keras.Model, tensors: tuple, batch_size: int,
                     batches: Callable[[], Any]) -> dict[str, Any]:
    """`model.evaluate` of a split held as TensorFlow tensors, in one call.

    Args:
        model: a compiled Keras model (TensorFlow backend).
        tensors: the split, `(x, y)` or `(x, y, sample_weight)`, each a
            tensor or a structure of tensors with the examples along the
            first axis.
        batch_size: examples per batch (the last batch takes the rest).
        batches: returns the same split as a `tf.data.Dataset` of those
            batches, for Keras's own loop (called only when it runs).

    Returns:
        The compiled loss and metrics over the split, keyed as
        `model.evaluate(..., return_dict=True)` keys them (their values as
        floats from Keras's loop, as scalar tensors from the traced one).

    Example:
    >>> import tensorflow as tf
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> x, y = tf.ones((5, 2)), tf.zeros((5, 1))
    >>> batches = lambda: tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    >>> first = evaluate_tensors(model, (x, y), 2, batches)  # Keras's loop
    >>> float(evaluate_tensors(model, (x, y), 2, batches)["loss"]) == first["loss"]  # traced
    True
    """
    import tensorflow as tf

    entry, applies = _entry(model), _loop_applies(model)
    loop = entry.get("loop")
    if not loop or not applies:
        logs = _keras_loop(model, batches(), entry)
        if "loop" not in entry and applies:  # Keras has built the metrics now
            entry["loop"] = _traced_loop(model, tensors)
        return logs

    model.reset_metrics()
    loop(tensors, tf.constant(batch_size, tf.int32))
    logs = model.get_metrics_result()
    if set(logs) != set(loop.logs_keys):  # a `test_step` with logs of its own
        entry["loop"] = False
        return _keras_loop(model, batches(), entry)
    return logs


def _entry(model: keras.Model) -> dict:
    """The model's cached functions, emptied when it was compiled again
    (a new loss tracker)."""
    try:
        entry = _FUNCTIONS.setdefault(model, {})
    except TypeError:  # not weakly referenceable or hashable
        entry = {}
    tracker = getattr(model, "_loss_tracker", None)
    if entry.get("tracker") is not tracker:
        entry.clear()
        entry["tracker"] = tracker
    return entry


def _loop_applies(model: keras.Model) -> bool:
    """Whether the traced loop computes what Keras's test function would:
    no XLA (Keras compiles each step with it), no eager steps, no
    distribution strategy (Keras runs each step per replica)."""
    import tensorflow as tf

    return (not model.run_eagerly and not model.jit_compile and not tf.distribute.has_strategy()
            and model.distribute_strategy is tf.distribute.get_strategy())


def _traced_loop(model: keras.Model, tensors: tuple) -> Any:
    """A `tf.function(tensors, batch_size)` running `model.test_step` on
    every batch of the split in order, `_SIDE_BY_SIDE` batches an
    iteration, then the remaining batches one by one; traced once for
    splits of any length shaped like `tensors` (the first axis unknown),
    so that the validation and test splits share it. `logs_keys` are the
    keys of the logs `test_step` returns."""
    import tensorflow as tf

    def step(tensors, start, size):
        logs = model.test_step(tf.nest.map_structure(lambda t: t[start:start + size], tensors))
        traced.logs_keys = tuple(logs)

    def loop(tensors, size):
        n = tf.shape(tf.nest.flatten(tensors)[0])[0]
        paired_end = n // (_SIDE_BY_SIDE * size) * (_SIDE_BY_SIDE * size)
        for start in tf.range(0, paired_end, _SIDE_BY_SIDE * size):
            for offset in range(_SIDE_BY_SIDE):
                step(tensors, start + offset * size, size)
        for start in tf.range(paired_end, n, size):
            step(tensors, start, size)

    traced = tf.function(loop)
    traced.logs_keys = ()
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec((None, *t.shape[1:]), t.dtype), tensors)
    traced.get_concrete_function(specs, tf.TensorSpec((), tf.int32))
    return traced


def _keras_loop(model: keras.Model, batches: Any, entry: dict) -> dict[str, Any]:
    """`model.evaluate(batches)` (a dataset of known length) with all its
    batches in one call of Keras's test function (its own
    `steps_per_execution` loop, kept in `entry` per number of batches). The
    model's `steps_per_execution` and test function are put back after."""
    count = int(batches.cardinality())
    if count < 1:
        return model.evaluate(batches, verbose=0, return_dict=True)
    saved = model.steps_per_execution, model.test_function
    model.steps_per_execution, model.test_function = count, entry.get(count)
    try:
        logs = model.evaluate(batches, verbose=0, return_dict=True)
        entry[count] = model.test_function
    finally:
        model.steps_per_execution, model.test_function = saved
    return logs
