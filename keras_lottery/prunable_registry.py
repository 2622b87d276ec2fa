"""Which weights of a layer are prunable: the registry and the protocol.

A layer's prunable weights are its weight matrices and tensors that carry
connections (kernels, embeddings, recurrent kernels); biases, normalization
parameters and everything else are never pruned. A layer declares them in
one of two ways, checked in this order:

1. the layer itself answers `get_prunable_weights()` with a list of its
   variables (TFMOT's `PrunableLayer` protocol; no registration needed);
2. its class (or a base class) is in `PRUNABLE_KERNELS`, the built-in table
   that `register_prunable` extends, as attribute names of the built layer.

Layers of keras-hub are known by their class path, so that keras-hub is
never imported here.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras

from keras_lottery import compat

_KERNEL = ("kernel",)
_RECURRENT = ("kernel", "recurrent_kernel")

# Layer classes whose weights are pruned, with the public attribute names
# of those weights on the built layer.
PRUNABLE_KERNELS: dict[type[keras.layers.Layer], tuple[str, ...]] = {
    keras.layers.Dense: _KERNEL,
    keras.layers.EinsumDense: _KERNEL,
    keras.layers.Conv1D: _KERNEL,
    keras.layers.Conv2D: _KERNEL,
    keras.layers.Conv3D: _KERNEL,
    keras.layers.Conv1DTranspose: _KERNEL,
    keras.layers.Conv2DTranspose: _KERNEL,
    keras.layers.Conv3DTranspose: _KERNEL,
    keras.layers.DepthwiseConv1D: _KERNEL,
    keras.layers.DepthwiseConv2D: _KERNEL,
    keras.layers.SeparableConv1D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.SeparableConv2D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.Embedding: ("embeddings",),
    keras.layers.SimpleRNNCell: _RECURRENT,
    keras.layers.LSTMCell: _RECURRENT,
    keras.layers.GRUCell: _RECURRENT,
    compat.conv_lstm_cell_class(): _RECURRENT,
}

# Layers of other libraries, by "module.Class", with weights that only some
# instances have (ReversibleEmbedding's untied output matrix).
_EXTERNAL_KERNELS: dict[str, tuple[str, ...]] = {
    "keras_hub.src.layers.modeling.reversible_embedding.ReversibleEmbedding": (
        "embeddings", "reverse_embeddings"),
    "keras_hub.src.layers.modeling.position_embedding.PositionEmbedding": (
        "position_embeddings",),
}


def register_prunable(
    layer_class: type[keras.layers.Layer], kernel_names: str | Iterable[str]
) -> None:
    """Makes a layer class prunable: `prunable()` will mask these weights.

    The open counterpart of the built-in table. A layer can instead
    implement `get_prunable_weights()` (TFMOT's `PrunableLayer` protocol)
    and needs no registration. Each name must be an attribute of the built
    layer holding a `keras.Variable` that the layer's `call()` reads
    through that attribute (directly or through a property). Subclasses of
    `layer_class` are prunable too, unless registered themselves;
    registering a class again replaces its names. Register before
    `prunable()`.

    Args:
        layer_class: a subclass of `keras.layers.Layer`.
        kernel_names: the attribute name of one weight, or several names.

    Raises:
        TypeError: if `layer_class` is not a Layer subclass, or
            `kernel_names` is not a string or strings.
        ValueError: if `kernel_names` is empty, repeats a name, holds one
            that is not an identifier, or names an attribute that the class
            defines as something other than a weight (a method, a
            constant).

    Example:
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.kernel = self.add_weight(shape=input_shape[1:])
    ...     def call(self, x):
    ...         return x * self.kernel
    >>> register_prunable(Scale, "kernel")
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "layer_class must be a subclass of keras.layers.Layer. "
            f"Received: layer_class={layer_class!r}"
        )
    names = (kernel_names,) if isinstance(kernel_names, str) else kernel_names
    names = tuple(names) if isinstance(names, Iterable) else (names,)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(
            "kernel_names must be an attribute name or a list of them (strings). "
            f"Received: kernel_names={kernel_names!r}"
        )
    if not names or len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise ValueError(
            "kernel_names must name at least one weight attribute, each once, "
            f"as Python identifiers. Received: kernel_names={kernel_names!r}"
        )
    for name in names:
        defined = getattr(layer_class, name, None)
        if defined is not None and not isinstance(defined, property):
            raise ValueError(
                f"kernel_names names {name!r}, which {layer_class.__name__} defines as a "
                f"{type(defined).__name__}, not a weight. Name the attributes its build() "
                f"assigns weights to. Received: kernel_names={kernel_names!r}"
            )
    PRUNABLE_KERNELS[layer_class] = names


def _registered(layer: keras.layers.Layer) -> tuple[tuple[str, ...], bool] | None:
    """The registered weight names of `layer`'s class, and whether every name
    must exist (False for the optional weights of external layers)."""
    for cls in type(layer).__mro__:
        if cls in PRUNABLE_KERNELS:
            return PRUNABLE_KERNELS[cls], True
    for cls in type(layer).__mro__:
        names = _EXTERNAL_KERNELS.get(f"{cls.__module__}.{cls.__qualname__}")
        if names is not None:
            return names, False
    return None


def declares_prunable(layer: keras.layers.Layer) -> bool:
    """Whether `layer` says which of its weights are prunable (by the
    protocol or the registry), even if it has none."""
    return callable(getattr(layer, "get_prunable_weights", None)) or _registered(
        layer) is not None


def prunable_weights(layer: keras.layers.Layer) -> list[keras.Variable]:
    """The prunable weights of a built layer.

    Args:
        layer: a built layer.

    Returns:
        The variables `prunable()` masks for this layer, empty if none.

    Raises:
        ValueError: if a registered name is not a variable of the built
            layer, or `get_prunable_weights()` returns something else than
            the layer's own variables.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> [w.name for w in prunable_weights(dense)]
    ['kernel']
    """
    declared = getattr(layer, "get_prunable_weights", None)
    if callable(declared):
        return _declared_weights(layer, declared())
    registered = _registered(layer)
    if registered is None:
        return []
    names, required = registered
    found = []
    for name in names:
        value = getattr(layer, name, None)
        if isinstance(value, keras.Variable):
            found.append(value)
        elif required:
            own = [w.name for w in layer.weights]
            raise ValueError(
                f"{type(layer).__name__} is registered as prunable with weight {name!r}, "
                f"but the built layer {layer.name!r} has no variable of that name "
                f"({name}={value!r}); its weights are {own}. Fix the names with "
                f"register_prunable({type(layer).__name__}, [...])."
            )
    return found


def _declared_weights(layer: keras.layers.Layer, weights) -> list[keras.Variable]:
    """Checks the variables that `layer.get_prunable_weights()` returned."""
    found = []
    for weight in weights:
        if not isinstance(weight, keras.Variable) or compat.storage_attribute(
                layer, weight) is None:
            raise ValueError(
                f"{type(layer).__name__}.get_prunable_weights() must return variables "
                f"that the layer stores as attributes (self.kernel = self.add_weight(...)). "
                f"Received: {weight!r} from layer {layer.name!r}"
            )
        found.append(weight)
    return found
