"""Every private Keras/TensorFlow behaviour keras-lottery relies on, and
the helper that imports TensorFlow where it is optional.

Keras 3 has no public API for some things the library must do: list a
layer's sublayers, swap a kernel for one call, replace a sublayer in place,
clone without compiling, find an optimizer's slots for a variable, read the
arguments of `compile()`, ask a strategy whether it spans several workers,
edit a converted TFLite file's tensors.
Each is done here, in one small function whose docstring names the version
behaviour it relies on (checked against Keras 3.15 and TensorFlow 2.21);
`tests/test_compat.py` pins each of them, so a Keras or TensorFlow upgrade
that changes one fails there first. No other module touches a private name.

TensorFlow is optional: the library and `LotterySearch` run on any Keras 3
backend. What only TensorFlow provides (`tf.distribute` strategies, the
presets' driver and its `tf.data` pipeline, SavedModel export) gets it
through `import_tensorflow`, which fails with one message naming what to
install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import keras

if TYPE_CHECKING:
    import tensorflow as tf

# How to get TensorFlow for the features that need it.
TENSORFLOW_INSTALL = 'pip install "keras-lottery[tensorflow]"'


def import_tensorflow(feature: str):
    """Imports TensorFlow for `feature`, or says what to install.

    Args:
        feature: what needs it, as the error message names it (e.g.
            `"tf.distribute strategies"`).

    Returns:
        The `tensorflow` module.

    Raises:
        ImportError: if TensorFlow is not installed, naming `feature` and
            the install command. An installed TensorFlow that fails to
            import raises its own error.

    Example:
    >>> tf = import_tensorflow("SavedModel export")
    """
    try:
        import tensorflow as tf
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed. Install it with: "
            f"{TENSORFLOW_INSTALL} (or pip install tensorflow-cpu)."
        ) from None
    return tf


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers `layer` tracks directly (not recursively), in order.

    Relies on Keras 3's `Layer._layers`: the list its tracker fills with
    every sublayer assigned to an attribute (subclassed layers, in
    assignment order), with `Sequential`'s layers (its `InputLayer` first)
    and with a functional model's layers in graph order (`InputLayer`s
    included). The public `Model.layers` exists only on models and drops the
    `InputLayer`s; plain layers with sublayers have no public listing.

    Args:
        layer: any Keras layer or model.

    Returns:
        A new list of the direct sublayers.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> [type(sub).__name__ for sub in sublayers(model)]
    ['InputLayer', 'Dense']
    """
    return list(layer._layers)  # noqa: SLF001


def is_functional_or_sequential(model: keras.layers.Layer) -> bool:
    """Whether `model` is a Sequential or functional model (a layer graph).

    These are the models `keras.models.clone_model` rebuilds layer by layer;
    a subclassed model is neither. Keras 3 exports no `Functional` class:
    this imports `keras.src.models.functional.Functional`, the class that
    `keras.Model(inputs, outputs)` returns and that `clone_model` itself
    tests for. In Keras 3.15 `Sequential` is not a subclass of it.

    Args:
        model: any Keras layer or model.

    Returns:
        True for Sequential and functional models (their subclasses too).

    Example:
    >>> is_functional_or_sequential(keras.Sequential([keras.layers.Dense(3)]))
    True
    """
    from keras.src.models.functional import Functional

    return isinstance(model, (keras.Sequential, Functional))


def is_distribution(value: Any) -> bool:
    """Whether `value` is a `keras.distribution` distribution (`DataParallel`,
    `ModelParallel`).

    Keras 3.15 exports the subclasses but not their base class: this imports
    `keras.src.distribution.distribution_lib.Distribution`, the class whose
    `scope()` makes Keras build variables with its layouts and shard the
    input batches (on JAX).

    Example:
    >>> is_distribution(keras.distribution.DataParallel(devices=["cpu:0"]))
    True
    """
    from keras.src.distribution.distribution_lib import Distribution

    return isinstance(value, Distribution)


def set_attribute_untracked(obj: object, name: str, value: Any) -> None:
    """Sets `obj.<name> = value` without Keras or TensorFlow tracking it.

    Relies on plain `object.__setattr__` bypassing Keras 3's
    `Layer.__setattr__`, which sends every assigned value through the
    layer's tracker (refusing new variables or layers once the layer is
    built: "You cannot add new elements of state") and, on the TensorFlow
    backend, through `KerasAutoTrackable`'s checkpoint-dependency
    bookkeeping. Needed where a value is swapped in briefly (a masked kernel
    for one call, inside traced train steps too) or where tracking was
    already updated by hand (`replace_sublayer`), so tracking must see no
    new state.

    Args:
        obj: the object, usually a layer.
        name: the attribute name, e.g. `"_kernel"`.
        value: the new value.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> set_attribute_untracked(dense, "note", [1])
    >>> dense.note
    [1]
    """
    object.__setattr__(obj, name, value)


def kernel_attribute(layer: keras.layers.Layer, name: str) -> str:
    """The instance attribute of `layer` that stores the variable `name` reads.

    Keras 3.15 stores some kernels behind a property that handles LoRA and
    quantization (`Dense`, `EinsumDense`, `Conv1D/2D/3D` read `_kernel`,
    `Embedding` reads `_embeddings`), others as plain attributes (the
    transposed, depthwise and separable convolutions). The layer's `call()`
    reads the stored attribute, so swapping it (with
    `set_attribute_untracked`) changes the forward pass; this finds it by
    identity among the layer's instance attributes.

    Args:
        layer: a built layer.
        name: the public name of a kernel, e.g. `"kernel"`.

    Returns:
        The attribute name holding the very variable `getattr(layer, name)`
        returns, e.g. `"_kernel"` for Dense.

    Raises:
        ValueError: if no attribute of `layer` holds that object.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> kernel_attribute(dense, "kernel")
    '_kernel'
    """
    value = getattr(layer, name)
    for attr, stored in vars(layer).items():
        if stored is value:
            return attr
    raise ValueError(
        f"{name} must be stored as a plain attribute of layer {layer.name!r} "
        f"({type(layer).__name__}) to be masked, but no attribute holds it. "
        f"Received: name={name!r}"
    )


def replace_sublayer(
    parent: keras.layers.Layer, old: keras.layers.Layer, new: keras.layers.Layer
) -> None:
    """Points every reference `parent` holds to sublayer `old` at `new`.

    Relies on Keras 3's `Layer._tracker.replace_tracked_value("layers", ...)`,
    which swaps `old` for `new` at its position in the tracked layer list
    (so weights, saving and `sublayers` see `new`), and on the attributes,
    lists and dicts of `parent` (`vars(parent)`) holding the references its
    `call()` uses. These are rebound with `object.__setattr__`,
    `list.__setitem__` and `dict.__setitem__`, bypassing Keras's tracked
    containers, because the tracker was already updated.

    Args:
        parent: the layer or subclassed model holding `old`.
        old: a sublayer tracked by `parent`.
        new: the layer to put in its place (e.g. `MaskedLayer(old)`).

    Raises:
        ValueError: if `parent` does not track `old`.

    Example:
    >>> replace_sublayer(net, net.fc, MaskedLayer(net.fc))
    """
    parent._tracker.replace_tracked_value("layers", old, new)  # noqa: SLF001
    for attr, value in list(vars(parent).items()):
        if value is old:
            set_attribute_untracked(parent, attr, new)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    list.__setitem__(value, i, new)
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is old:
                    dict.__setitem__(value, key, new)


@contextlib.contextmanager
def uncompiled(model: keras.Model) -> Iterator[keras.Model]:
    """Makes `model` look uncompiled inside the block, then restores it.

    Keras 3's `keras.models.clone_model` compiles the clone like its source
    when `model.compiled` is true (through `get_compile_config()`), which
    builds a fresh optimizer. Setting the undocumented `compiled` flag to
    False for the duration of the clone yields an uncompiled clone; the
    source's optimizer and compile state are untouched.

    Args:
        model: a compiled or uncompiled model.

    Returns:
        A context manager yielding `model`.

    Example:
    >>> with uncompiled(model):
    ...     clone = keras.models.clone_model(model)
    >>> clone.compiled
    False
    """
    compiled = model.compiled
    model.compiled = False
    try:
        yield model
    finally:
        model.compiled = compiled


def optimizer_slots(
    optimizer: keras.optimizers.Optimizer, variable: keras.Variable
) -> list[keras.Variable]:
    """The optimizer variables that track `variable` (momentum, velocity...).

    Relies on Keras 3's `Optimizer.add_variable_from_reference`, which names
    a slot `"<variable.path with / as _>_<slot>"` with the variable's shape:
    `"fc1_kernel_momentum"` in a functional model, `"seq_fc1_kernel_momentum"`
    in a Sequential named "seq" (its variable paths start with its name).
    Keras keeps no public map from a variable to its slots.
    `LossScaleOptimizer.variables` includes the inner optimizer's slots. A
    variable whose path, with `/` as `_`, is a prefix of another's (layer
    `"fc"` beside layer `"fc_kernel"`) also collects that one's slots of the
    same shape.

    Args:
        optimizer: a Keras optimizer.
        variable: a model variable the optimizer may be training.

    Returns:
        The slot variables, in the optimizer's order; empty if it has none
        for `variable` (e.g. it is not built yet).

    Example:
    >>> [v.name for v in optimizer_slots(model.optimizer, kernel)]
    ['fc1_kernel_momentum', 'fc1_kernel_velocity']
    """
    prefix = variable.path.replace("/", "_") + "_"
    return [
        v
        for v in optimizer.variables
        if v.name.startswith(prefix) and tuple(v.shape) == tuple(variable.shape)
    ]


def compile_arguments(model: keras.Model) -> dict[str, Any] | None:
    """The arguments `model.compile` was last called with, as the original objects
    (not serialized): keys optimizer, loss, loss_weights, metrics, weighted_metrics,
    run_eagerly, steps_per_execution, jit_compile (whatever Keras 3.15 records),
    or None if the model was never compiled.

    Relies on Keras 3.15's `Trainer.compile` storing them in
    `model._compile_config`, a `SerializableDict` whose `.config` dict holds
    the objects themselves (serialized only by `get_compile_config()`). The
    optimizer is the one `keras.optimizers.get` made of the argument (a
    passed instance itself, not the `LossScaleOptimizer` that mixed
    precision may wrap it in), and `jit_compile` is the resolved value, not
    `"auto"`. Keras keeps no public record of them; they are needed to
    compile a clone or a rebuilt model exactly like its source.

    Args:
        model: a Keras model.

    Returns:
        A new dict of the compile arguments, or None.

    Example:
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> compile_arguments(model)["loss"]
    'mse'
    """
    config = getattr(model, "_compile_config", None)
    return None if config is None else dict(config.config)


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether a `tf.distribute` strategy spans several worker processes.

    Relies on TensorFlow 2.21's `strategy.extended._in_multi_worker_mode()`
    (False for the default, OneDevice and Mirrored strategies; for
    `MultiWorkerMirroredStrategy`, whether its cluster has more than one
    worker). TensorFlow has no public equivalent: `num_replicas_in_sync`
    counts devices, not processes.

    Args:
        strategy: a `tf.distribute.Strategy`.

    Returns:
        True if the strategy's cluster has several workers.

    Example:
    >>> in_multi_worker_mode(tf.distribute.get_strategy())
    False
    """
    return bool(strategy.extended._in_multi_worker_mode())  # noqa: SLF001


def tflite_flatbuffers() -> tuple[Any, Any]:
    """TensorFlow's TFLite flatbuffer schema and its object-API helpers.

    Relies on TensorFlow 2.21's `tensorflow.lite.python.schema_py_generated`
    (the generated object API of the TFLite schema: `ModelT`, `TensorT`,
    `SparsityParametersT`, `DimensionMetadataT`, `DimensionType`,
    `SparseIndexVector`, `Int32VectorT`/`Uint16VectorT`/`Uint8VectorT`) and
    `tensorflow.lite.tools.flatbuffer_utils` (`convert_bytearray_to_object`,
    `convert_object_to_bytearray`). Neither is public API; they are the only
    way to edit a converted model's tensors from Python.

    Returns:
        `(schema, flatbuffer_utils)` modules.

    Example:
    >>> schema, utils = tflite_flatbuffers()
    >>> model = utils.convert_bytearray_to_object(bytearray(content))
    """
    import_tensorflow("TFLite export")
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils
