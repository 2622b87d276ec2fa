"""Mask wrappers: `MaskedLayer` and `prunable()`.

A `MaskedLayer` owns one non-trainable mask variable per prunable kernel of
the layer it wraps. Its forward pass substitutes `kernel * mask` for the
kernel, so a pruned weight contributes exactly zero to the output and
receives exactly zero gradient (and so its optimizer state stays zero).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import keras

from keras_lottery import compat

# Layer classes whose kernels can be pruned, with the public attribute names
# of those kernels. Biases, normalization parameters and everything else are
# never pruned. `register_prunable` adds a user's own layer classes.
PRUNABLE_KERNELS: dict[type[keras.layers.Layer], tuple[str, ...]] = {
    keras.layers.Dense: ("kernel",),
    keras.layers.EinsumDense: ("kernel",),
    keras.layers.Conv1D: ("kernel",),
    keras.layers.Conv2D: ("kernel",),
    keras.layers.Conv3D: ("kernel",),
    keras.layers.Conv1DTranspose: ("kernel",),
    keras.layers.Conv2DTranspose: ("kernel",),
    keras.layers.Conv3DTranspose: ("kernel",),
    keras.layers.DepthwiseConv1D: ("kernel",),
    keras.layers.DepthwiseConv2D: ("kernel",),
    keras.layers.SeparableConv1D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.SeparableConv2D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.Embedding: ("embeddings",),
}


def register_prunable(
    layer_class: type[keras.layers.Layer], kernel_names: str | Iterable[str]
) -> None:
    """Makes a layer class prunable: `MaskedLayer` will mask these kernels.

    The open counterpart of the built-in list (like TFMOT's `PrunableLayer`):
    each name must be an attribute of the built layer holding a plain
    `keras.Variable` (or a property returning one that is stored on the
    layer), which the layer's `call()` reads. Subclasses of `layer_class`
    are prunable too, unless registered themselves; registering a class
    again replaces its kernel names. Register before `prunable()` and before
    loading a saved model that wraps the class.

    Args:
        layer_class: a subclass of `keras.layers.Layer` (not `MaskedLayer`).
        kernel_names: the attribute name of one kernel, or several names.

    Raises:
        TypeError: if `layer_class` is not a Layer subclass, or
            `kernel_names` is not a string or strings.
        ValueError: if `layer_class` is a `MaskedLayer`, or `kernel_names`
            is empty, repeats a name or holds one that is not an identifier.

    Example:
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.kernel = self.add_weight(shape=input_shape[1:])
    ...     def call(self, x):
    ...         return x * self.kernel
    >>> register_prunable(Scale, "kernel")
    >>> kernel_names(Scale())
    ('kernel',)
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "layer_class must be a subclass of keras.layers.Layer. "
            f"Received: layer_class={layer_class!r}"
        )
    if issubclass(layer_class, MaskedLayer):
        raise ValueError(
            "layer_class cannot be a MaskedLayer; register the layer it wraps. "
            f"Received: layer_class={layer_class.__name__}"
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
            "kernel_names must name at least one kernel attribute, each once, "
            f"as Python identifiers. Received: kernel_names={kernel_names!r}"
        )
    PRUNABLE_KERNELS[layer_class] = names


def kernel_names(layer: keras.layers.Layer) -> tuple[str, ...]:
    """Names of the prunable kernels of `layer`; empty if it has none.

    Args:
        layer: any Keras layer.

    Returns:
        The attribute names (e.g. `("kernel",)`) of the kernels that
        `MaskedLayer` masks for this layer type.

    Example:
    >>> kernel_names(keras.layers.SeparableConv2D(4, 3))
    ('depthwise_kernel', 'pointwise_kernel')
    """
    if isinstance(layer, MaskedLayer):
        return ()
    for cls in type(layer).__mro__:
        if cls in PRUNABLE_KERNELS:
            return PRUNABLE_KERNELS[cls]
    return ()


def _supported() -> str:
    return ", ".join(cls.__name__ for cls in PRUNABLE_KERNELS)


def is_prunable(layer: keras.layers.Layer) -> bool:
    """Whether `MaskedLayer` can wrap `layer` (its type has prunable kernels)."""
    return bool(kernel_names(layer))


@keras.saving.register_keras_serializable(package="keras_lottery")
class MaskedLayer(keras.layers.Wrapper):
    """Wraps a layer so that its kernels are multiplied by binary masks.

    The wrapper takes the name and dtype policy of the layer it wraps, so a
    model's layer names are unchanged by `prunable()`. Masks are
    non-trainable variables of the kernels' shapes, initialised to ones,
    created in `build()` and saved with the model.

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D, their Transpose
    variants, DepthwiseConv1D/2D (the depthwise kernel), SeparableConv1D/2D
    (both kernels), Embedding, and the classes added with
    `register_prunable`. LoRA-enabled and quantized layers are rejected.

    Args:
        layer: the layer to wrap.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:
    >>> masked = MaskedLayer(keras.layers.Dense(3))
    >>> y = masked(np.ones((2, 4), "float32"))
    >>> masked.masks[0].shape
    (4, 3)
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        names = kernel_names(layer)
        if not names:
            raise ValueError(
                "MaskedLayer can only wrap layers with prunable kernels "
                f"({_supported()}; add your own with register_prunable()). "
                f"Received: layer={layer.name!r} of type {type(layer).__name__}"
            )
        if getattr(layer, "lora_enabled", False) or getattr(
            layer, "quantization_mode", None
        ):
            raise ValueError(
                "MaskedLayer cannot wrap a LoRA-enabled or quantized layer. "
                f"Received: layer={layer.name!r}"
            )
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.kernel_names = names
        self.supports_masking = layer.supports_masking
        self.masks: list = []

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Wrapper.from_config pops "layer"; leave the caller's dict intact.
        return super().from_config(dict(config), custom_objects)

    def build(self, input_shape=None):
        super().build(input_shape)
        self._kernel_slots = [self._storage_slot(n) for n in self.kernel_names]
        self.masks = [
            self.add_weight(
                name=f"{name}_mask",
                shape=tuple(kernel.shape),
                dtype=kernel.dtype,
                initializer="ones",
                trainable=False,
            )
            for name, (_, kernel) in zip(self.kernel_names, self._kernel_slots)
        ]

    def _storage_slot(self, name: str) -> tuple[str, keras.Variable]:
        """The attribute of the wrapped layer storing kernel `name`, and the
        kernel; the forward pass swaps that attribute."""
        kernel = getattr(self.layer, name)
        if not isinstance(kernel, keras.Variable):
            raise ValueError(
                f"The kernels of layer {self.layer.name!r} must be keras.Variable "
                f"attributes of the built layer. Received: {name}={kernel!r}"
            )
        return compat.kernel_attribute(self.layer, name), kernel

    @property
    def kernels(self) -> list[keras.Variable]:
        """The wrapped layer's prunable kernel variables, in mask order."""
        return [kernel for _, kernel in self._kernel_slots]

    def mask_keys(self) -> list[str]:
        """Keys naming this layer's masks in `get_masks()` dictionaries.

        A layer with one kernel is keyed by its name; a layer with several
        (SeparableConv) by `"<name>/<kernel name>"`.
        """
        if len(self.kernel_names) == 1:
            return [self.name]
        return [f"{self.name}/{n}" for n in self.kernel_names]

    @contextlib.contextmanager
    def _masked_kernels(self) -> Iterator[None]:
        swapped = []
        try:
            for (attr, kernel), mask in zip(self._kernel_slots, self.masks):
                masked = keras.ops.multiply(kernel, mask)
                compat.set_attribute_untracked(self.layer, attr, masked)
                swapped.append((attr, kernel))
            yield
        finally:
            for attr, kernel in swapped:
                compat.set_attribute_untracked(self.layer, attr, kernel)

    def call(self, inputs, *args, **kwargs):
        with self._masked_kernels():
            return self.layer(inputs, *args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def masked_kernel_values(self) -> list:
        """The kernels with the masks applied, as NumPy arrays."""
        return [
            keras.ops.convert_to_numpy(kernel) * keras.ops.convert_to_numpy(mask)
            for kernel, mask in zip(self.kernels, self.masks)
        ]


def walk_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields every layer nested in `layer` (depth first), `layer` excluded.

    The layers wrapped by a `MaskedLayer` are not yielded separately.
    """
    for sub in compat.sublayers(layer):
        yield sub
        if not isinstance(sub, MaskedLayer):
            yield from walk_layers(sub)


def masked_layers(model: keras.layers.Layer) -> list[MaskedLayer]:
    """The `MaskedLayer`s of `model`, nested ones included, in order."""
    return [layer for layer in walk_layers(model) if isinstance(layer, MaskedLayer)]


def leaf_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Layers of `model` without sublayers, seen through `MaskedLayer`s.

    A masked layer is represented by the layer it wraps, so a model and its
    `prunable()` version have the same leaf layers, in the same order.
    """
    leaves, seen = [], set()
    for layer in walk_layers(model):
        layer = layer.layer if isinstance(layer, MaskedLayer) else layer
        if not compat.sublayers(layer) and id(layer) not in seen:
            seen.add(id(layer))
            leaves.append(layer)
    return leaves


def copy_weights(
    source: keras.layers.Layer, target: keras.layers.Layer, bake_masks: bool = False
) -> None:
    """Copies leaf-layer weights between two versions of one architecture.

    Args:
        source: the model to copy from.
        target: a model with the same leaf layers (for example its
            `prunable()` clone, or its stripped version).
        bake_masks: whether to multiply `source`'s masked kernels by their
            masks on the way (used by `strip()`). Masks themselves are
            copied where both models mask the same layer.

    Raises:
        ValueError: if the two models' leaf layers do not correspond.
    """
    baked = {}
    if bake_masks:
        for wrapper in masked_layers(source):
            for kernel, value in zip(wrapper.kernels, wrapper.masked_kernel_values()):
                baked[id(kernel)] = value
    source_wrappers = {id(w.layer): w for w in masked_layers(source)}
    target_wrappers = {id(w.layer): w for w in masked_layers(target)}
    sources, targets = leaf_layers(source), leaf_layers(target)
    for src, dst in zip(sources, targets):
        if type(src) is not type(dst) or len(src.weights) != len(dst.weights):
            raise ValueError(
                f"Layer {src.name!r} ({type(src).__name__}) does not match "
                f"layer {dst.name!r} ({type(dst).__name__}); cannot copy weights."
            )
        if src.weights and not dst.built:
            raise ValueError(f"Layer {dst.name!r} is not built; cannot copy weights.")
        pairs = list(zip(src.weights, dst.weights))
        if id(src) in source_wrappers and id(dst) in target_wrappers:
            pairs += zip(source_wrappers[id(src)].masks, target_wrappers[id(dst)].masks)
        for s, d in pairs:
            # Copy through NumPy: assigning one variable to another would share
            # its buffer on JAX, where training donates (deletes) buffers.
            d.assign(baked.get(id(s), keras.ops.convert_to_numpy(s)))
    if len(sources) != len(targets):
        raise ValueError(
            f"The models have {len(sources)} and {len(targets)} leaf layers; "
            "cannot copy weights."
        )


def _check_ignore(model: keras.layers.Layer, ignore: Iterable[str]) -> set[str]:
    if isinstance(ignore, str):
        ignore = (ignore,)
    ignore = set(ignore)
    names = [layer.name for layer in walk_layers(model)]
    unknown = sorted(ignore.difference(names))
    if unknown:
        raise ValueError(
            f"ignore names layers that are not in the model: {unknown}. "
            f"The model's layers are: {names}"
        )
    return ignore


def prunable(model: keras.Model, ignore: Iterable[str] = ()) -> keras.Model:
    """Wraps every prunable layer of `model` in a `MaskedLayer`.

    Sequential and functional models (nested ones included) are cloned: the
    result is a new model whose layers carry the original weights, and the
    original model is left untouched. Subclassed models cannot be cloned, so
    their prunable sublayers are wrapped **in place** and the same model is
    returned. Layers that are already masked are kept as they are, so
    `prunable(prunable(m))` wraps nothing twice.

    Args:
        model: a Keras model.
        ignore: names of layers to leave unwrapped (never pruned).

    Returns:
        The model with prunable layers wrapped.

    Raises:
        ValueError: if `ignore` names a layer the model does not have, or
            the model has no prunable layer left to wrap.

    Example:
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = prunable(base)
    >>> type(model.layers[0]).__name__
    'MaskedLayer'
    """
    ignore = _check_ignore(model, ignore)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        clone = layer.__class__.from_config(layer.get_config())
        if isinstance(clone, MaskedLayer) or layer.name in ignore:
            return clone
        if is_prunable(clone):
            return MaskedLayer(clone)
        _wrap_in_place(clone, ignore)
        return clone

    if compat.is_functional_or_sequential(model):
        result = keras.models.clone_model(model, clone_function=wrap, recursive=True)
        copy_weights(model, result)
    else:
        _wrap_in_place(model, ignore)
        result = model
    if not masked_layers(result):
        raise ValueError(
            f"The model has no prunable layer. prunable() wraps {_supported()} "
            f"layers; ignore={sorted(ignore)}. Received: model={model.name!r}"
        )
    return result


def _wrap_in_place(layer: keras.layers.Layer, ignore: set[str]) -> None:
    """Wraps the prunable sublayers of a non-clonable layer in place."""
    for sub in compat.sublayers(layer):
        if isinstance(sub, MaskedLayer) or sub.name in ignore:
            continue
        if is_prunable(sub):
            wrapper = MaskedLayer(sub)
            if sub.built:
                wrapper.build()
            compat.replace_sublayer(layer, sub, wrapper)
        else:
            _wrap_in_place(sub, ignore)
