"""Every private Keras/TensorFlow behaviour keras-lottery relies on, and
the helper that imports TensorFlow where it is optional.

Keras 3 has no public API for some things the library must do: list a
layer's sublayers, swap a kernel for one call, add variables to a built
layer and hide them from its saving, clone without compiling, find an optimizer's slots for a variable, read the
arguments of `compile()`, ask a strategy whether it spans several workers,
edit a converted TFLite file's tensors, know whether a layer call is a
training call, walk a functional graph's nodes.
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
    return isinstance(model, (keras.Sequential, functional_class()))


def functional_class() -> type[keras.Model]:
    """The class `keras.Model(inputs, outputs)` returns (see
    `is_functional_or_sequential`): `keras.src.models.functional.Functional`.

    Example:
    >>> type(keras.Model(inp, out)) is functional_class()
    True
    """
    from keras.src.models.functional import Functional

    return Functional



def in_training_call() -> bool:
    """Whether the layer call running now is a training call.

    Relies on Keras 3.15's call context: `Layer.__call__` stores a
    `CallContext` as the global attribute `"current_call_ctx"`
    (`keras.src.backend.common.global_state`) for the duration of the
    outermost call, with the resolved `training` argument, which the layers
    it calls read, those whose `call` takes no `training` argument included.
    Keras has no public way to ask for it.

    Returns:
        True inside a call with `training=True` (e.g. `fit`'s train step,
        while it is traced or runs eagerly); False outside any layer call.

    Example:
    >>> class Probe(keras.layers.Layer):
    ...     def call(self, x):
    ...         self.seen = in_training_call()
    ...         return x
    """
    from keras.src.backend.common import global_state

    context = global_state.get_global_attribute("current_call_ctx")
    return bool(context is not None and context.get_value("training"))


def set_input_shape_argument(layer: keras.layers.Layer, shape: tuple[int, ...]) -> None:
    """Gives an unbuilt layer the `input_shape=` argument of its constructor.

    Relies on Keras 3.15's `Layer.__init__` keeping `input_shape` in the
    attribute `_input_shape_arg`, which `Sequential` reads to put an
    `InputLayer` of that shape before its first layer (the legacy
    `Sequential([Dense(4, input_shape=(3,))])` idiom). Set untracked.

    Example:
    >>> dense = keras.layers.Dense(4)
    >>> set_input_shape_argument(dense, (3,))
    >>> keras.Sequential([dense]).built
    True
    """
    set_attribute_untracked(layer, "_input_shape_arg", tuple(shape))


def inbound_operations(operation: Any) -> list[Any]:
    """The operations (layers, Keras ops) whose outputs feed `operation` in
    the functional graphs it is called in, with repeats.

    Relies on Keras 3.15's `Operation._inbound_nodes`: one `Node` per call
    of the operation on symbolic tensors, whose `parent_nodes` are the
    nodes that made its inputs, each with its `operation`.

    Example:
    >>> [op.name for op in inbound_operations(model.get_layer("fc2"))]
    ['fc1']
    """
    return [parent.operation for node in operation._inbound_nodes  # noqa: SLF001
            for parent in node.parent_nodes]


def outbound_operations(operation: Any) -> list[Any]:
    """The operations that take an output of `operation` in the functional
    graphs it is called in, one per call, in call order.

    Relies on Keras 3.15's `Operation._outbound_nodes`: the `Node` of every
    call that consumes one of `operation`'s outputs, with its `operation`.

    Example:
    >>> [op.name for op in outbound_operations(model.get_layer("fc1"))]
    ['fc2']
    """
    return [node.operation for node in operation._outbound_nodes]  # noqa: SLF001


def producing_operation(tensor: Any) -> Any:
    """The operation (layer, `InputLayer` or Keras op) that made a symbolic
    tensor of a functional model (`model.inputs`, `model.outputs`).

    Relies on Keras 3.15's `KerasTensor._keras_history`, a
    `(operation, node_index, tensor_index)` record.

    Example:
    >>> producing_operation(model.outputs[0]).name
    'output'
    """
    return tensor._keras_history.operation  # noqa: SLF001

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


def storage_attribute(layer: keras.layers.Layer, variable: keras.Variable) -> str | None:
    """The instance attribute of `layer` that stores `variable`, or None.

    Keras 3.15 stores some kernels behind a property that handles LoRA and
    quantization (`Dense`, `EinsumDense`, `Conv1D/2D/3D` keep `_kernel`,
    `Embedding` keeps `_embeddings`), others as plain attributes (the
    transposed, depthwise, separable and recurrent layers). The layer's
    `call()` reads the stored attribute, so swapping it (with
    `set_attribute_untracked`) changes the forward pass; this finds it by
    identity among the layer's instance attributes (`vars(layer)`).

    Args:
        layer: a built layer.
        variable: one of its variables.

    Returns:
        The attribute name holding that very object, e.g. `"_kernel"` for
        a Dense kernel; None if no attribute holds it (a variable kept in
        a list or dict).

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> storage_attribute(dense, dense.kernel)
    '_kernel'
    """
    for attr, stored in vars(layer).items():
        if stored is variable:
            return attr
    return None


def conv_lstm_cell_class() -> type[keras.layers.Layer]:
    """The cell class of `ConvLSTM1D/2D/3D`, whose kernels are prunable.

    Keras 3.15 exports the ConvLSTM layers but not their cell: this imports
    `keras.src.layers.rnn.conv_lstm.ConvLSTMCell`, which holds `kernel` and
    `recurrent_kernel` as plain attributes.

    Example:
    >>> conv_lstm_cell_class().__name__
    'ConvLSTMCell'
    """
    from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

    return ConvLSTMCell


@contextlib.contextmanager
def unlocked(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Lets a built layer take new variables inside the block.

    Keras 3 locks a layer's `_tracker` once it is built ("You cannot add
    new elements of state"); Keras itself unlocks it the same way to add
    LoRA weights to a built `Dense` (`Dense.enable_lora`). The lock is put
    back as it was.

    Example:
    >>> with unlocked(model):
    ...     mask = model.add_weight(shape=(4, 2), initializer="ones", trainable=False)
    """
    tracker = layer._tracker  # noqa: SLF001
    locked = tracker.locked
    tracker.unlock()
    try:
        yield layer
    finally:
        if locked:
            tracker.lock()


def training_keywords(model: keras.Model, training: bool) -> dict[str, bool]:
    """`training=` for `model.stateless_call`, which passes its keywords to
    `call` unfiltered: only where `call` takes it (a subclassed model's may
    not). Keras 3.15 records that on the layer as `_call_has_training_arg`.

    Args:
        model: a built model.
        training: the mode to call it in.

    Returns:
        `{"training": training}`, or `{}`.
    """
    return {"training": training} if getattr(model, "_call_has_training_arg", True) else {}


def built_input_shapes(model: keras.Model) -> list[tuple[int | None, ...]] | None:
    """The input shapes (batch axis included) a model without `inputs` (a
    subclassed one) was built on; Keras 3.15 records them on the layer as
    `_build_shapes_dict`. None where they are unknown or not all shapes.

    Args:
        model: a built model.

    Returns:
        One shape per input, or None.
    """
    built = getattr(model, "_build_shapes_dict", None) or {}
    shapes = [tuple(s) for s in built.values()
              if isinstance(s, (list, tuple)) and all(isinstance(d, (int, type(None)))
                                                       for d in s)]
    return shapes if shapes and len(shapes) == len(built) else None


def pack_as_inputs(model: keras.Model, arrays: list[Any]) -> Any:
    """`arrays`, one per `model.inputs`, in the structure the model takes
    them (a dict for keras-hub's token ids and masks); Keras 3.15 records
    that structure on a functional model as `_inputs_struct`.

    Args:
        model: a functional model (or any model: then `arrays` as given).
        arrays: the inputs, in the order of `model.inputs`.

    Returns:
        The inputs as the model's `call` takes them.
    """
    struct = getattr(model, "_inputs_struct", None)
    return keras.tree.pack_sequence_as(struct, arrays) if struct is not None else arrays


def sync_training_state(model: keras.Model) -> None:
    """Brings a model's variables up to date in the middle of `fit`.

    On JAX, `model.fit` holds the variables' values in its own state
    between batches and writes them back at the epoch's end; its
    `jax_state_sync()` (Keras 3.15, `JAXTrainer`) writes them now, and the
    loop reads the variables back before the next batch, so a callback may
    read weights and assign masks there. Other backends train the variables
    in place: nothing to do.

    Args:
        model: the model being trained (or any model).
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def own_variables(layer: keras.layers.Layer) -> list[keras.Variable]:
    """The variables `layer` created itself, not those of its sublayers.

    Relies on Keras 3.15's `Layer._trainable_variables` and
    `_non_trainable_variables`, the lists its tracker fills from
    `add_weight`; the public `weights` includes every sublayer's.

    Example:
    >>> [v.name for v in own_variables(dense)]
    ['kernel', 'bias']
    """
    return [*layer._trainable_variables, *layer._non_trainable_variables]  # noqa: SLF001


@contextlib.contextmanager
def without_own_variables(
    layer: keras.layers.Layer, variables: list[keras.Variable]
) -> Iterator[keras.layers.Layer]:
    """Hides some of `layer`'s own variables inside the block.

    Relies on Keras 3.15's `Layer._trainable_variables` and
    `_non_trainable_variables`: the lists that `save_own_variables` and
    `load_own_variables` read (and that the tracker fills). Removing
    variables from them for the duration of a save or load makes the layer
    save and load as if it had never had them; the lists are restored.

    Args:
        layer: a layer or model.
        variables: some of its own variables (masks).

    Example:
    >>> with without_own_variables(model, masks):
    ...     model.save_own_variables(store)
    """
    hidden = {id(v) for v in variables}
    lists = [layer._trainable_variables, layer._non_trainable_variables]  # noqa: SLF001
    saved = [list(items) for items in lists]
    try:
        for items in lists:
            items[:] = [v for v in items if id(v) not in hidden]
        yield layer
    finally:
        for items, before in zip(lists, saved):
            items[:] = before


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
