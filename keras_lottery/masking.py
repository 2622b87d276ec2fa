"""Masks on a Keras model, in place: `prunable()` and the masks' slots.

`prunable(model)` leaves the model's layers, graph and variables as they
are. For every prunable weight (see `prunable_weights`) it adds one
non-trainable mask variable to the model, and makes the layer that reads the
weight read `weight * mask` instead for the duration of each of its calls:
the layer's `call` is replaced, on that one instance, by a `_MaskedCall`
that swaps the attribute storing the weight for the masked tensor and puts
the variable back afterwards. So a pruned weight contributes exactly zero
to the output and receives exactly zero gradient on every backend, traced
or eager, and the model stays the model the user built: Sequential,
functional graphs with Keras ops, nested and subclassed models, keras-hub
tasks, recurrent layers (whose `RNN` layer swaps its cells' kernels once
per sequence, so the fused cuDNN path sees them too).

Masks are keyed by the weight's path of layer names below the model
(`"dense/kernel"`, `"block/attention/query/kernel"`): unique in the model,
and stable through `.keras` saving and cloning, unlike a variable's
`.path`, which depends on the name scope it was built in (a Sequential
built by `.keras` loading drops its own name from its weights' paths). The masks are the model's own variables, so `model.fit` on JAX
threads them through its state; they are left out of the model's own
saved variables, so a masked model's `.keras` file loads in plain Keras
(pruned weights are stored zeros), and written beside them as an asset
that `keras_lottery.load_model` reads back.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
import dataclasses
from dataclasses import dataclass

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.prunable_registry import declares_prunable, prunable_weights

# The asset file a masked model's `.keras` file keeps its masks in.
MASKS_ASSET = "keras_lottery_masks.npz"
# The attribute of a model holding masks that keeps its `_MaskHolder`.
_HOLDER = "_keras_lottery_masks"


@dataclass(eq=False)
class MaskSlot:
    """One masked weight.

    Attributes:
        key: the mask's key in `get_masks()`: the weight's path of layer
            names below the model, unique in the model.
        layer: the layer owning the weight.
        kernel: the weight (a `keras.Variable`).
        mask: its mask, a non-trainable variable of the same shape (1 =
            kept, 0 = pruned).
        attribute: the instance attribute of `layer` storing `kernel`,
            which the forward pass swaps.
    """

    key: str
    layer: keras.layers.Layer
    kernel: keras.Variable
    mask: keras.Variable
    attribute: str


class _MaskedCall:
    """A layer's `call`, with its slots' weights read as `weight * mask`."""

    def __init__(self, original):
        self.original = original
        self.slots: list[MaskSlot] = []

    def __call__(self, *args, **kwargs):
        swapped = []
        try:
            for slot in self.slots:
                stored = vars(slot.layer)[slot.attribute]
                masked = keras.ops.multiply(slot.kernel, slot.mask)
                compat.set_attribute_untracked(slot.layer, slot.attribute, masked)
                swapped.append((slot, stored))
            return self.original(*args, **kwargs)
        finally:
            for slot, stored in reversed(swapped):
                compat.set_attribute_untracked(slot.layer, slot.attribute, stored)


class _MaskHolder:
    """Saving hooks of the layer that holds masks as its own variables: the
    masks stay out of its saved variables and go to an asset instead."""

    def __init__(self, holder: keras.layers.Layer):
        self.slots: list[MaskSlot] = []
        self._save = holder.save_own_variables
        self._load = holder.load_own_variables
        self._save_assets = getattr(holder, "save_assets", None)
        self._holder = holder
        compat.set_attribute_untracked(holder, "save_own_variables", self.save_own_variables)
        compat.set_attribute_untracked(holder, "load_own_variables", self.load_own_variables)
        compat.set_attribute_untracked(holder, "save_assets", self.save_assets)

    def save_own_variables(self, store) -> None:
        with compat.without_own_variables(self._holder, [s.mask for s in self.slots]):
            self._save(store)

    def load_own_variables(self, store) -> None:
        with compat.without_own_variables(self._holder, [s.mask for s in self.slots]):
            self._load(store)

    def save_assets(self, dir_path: str) -> None:
        if self._save_assets is not None:
            self._save_assets(dir_path)
        held = {id(s.mask) for s in self.slots}
        slots = [s for s in mask_slots(self._holder) if id(s.mask) in held]
        arrays = {f"m{i:05d}": keras.ops.convert_to_numpy(s.mask) != 0
                  for i, s in enumerate(slots)}
        np.savez(os.path.join(dir_path, MASKS_ASSET), holder=np.array(self._holder.name),
                 keys=np.array([s.key for s in slots]), **arrays)


def walk(model: keras.layers.Layer) -> Iterator[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """Yields (layer, reader) for `model` and every layer nested in it, once
    each, depth first: `reader` is the layer whose call reads `layer`'s
    weights (the nearest enclosing `RNN` for a recurrent cell, else the
    layer itself)."""
    seen: set[int] = set()

    def visit(layer, rnn):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield layer, rnn if rnn is not None else layer
        inner = layer if rnn is None and isinstance(layer, keras.layers.RNN) else rnn
        for child in compat.sublayers(layer):
            yield from visit(child, inner)

    yield from visit(model, None)


def leaf_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Layers of `model` without sublayers, in model order (each once).

    The same for a model before and after `prunable()`, which adds no layer.
    """
    return [layer for layer, _ in walk(model) if layer is not model and not compat.sublayers(layer)]


def masks_of(model: keras.layers.Layer) -> set[int]:
    """Ids of the mask variables of `model` (to tell them from its weights)."""
    return {id(slot.mask) for slot in mask_slots(model)}


def mask_slots(model: keras.layers.Layer) -> list[MaskSlot]:
    """The masked weights of `model`, nested ones included, in model order.

    Args:
        model: any layer or model.

    Returns:
        One `MaskSlot` per masked weight, keyed relative to `model` (a
        layer masked on its own and then put in a model gets the model's
        key for it); empty if `prunable()` was never called on it (or on a
        layer inside it).

    Example:
    >>> [slot.key for slot in mask_slots(prunable(model))]
    ['dense/kernel', 'output/kernel']
    """
    slots, seen, taken = [], set(), set()
    below = layer_paths(model)
    for _, reader in walk(model):
        hook = vars(reader).get("call")
        if isinstance(hook, _MaskedCall) and id(hook) not in seen:
            seen.add(id(hook))
            for slot in hook.slots:
                key = _unique_key(slot.kernel, below.get(id(slot.layer), ""), taken)
                taken.add(key)
                slots.append(dataclasses.replace(slot, key=key))
    return slots


def _is_matrix(variable: keras.Variable) -> bool:
    """A weight matrix or tensor: at least two axes longer than one."""
    return sum(1 for n in variable.shape if n and n > 1) >= 2


def weight_status(
    model: keras.layers.Layer, ignore: set[str] = frozenset()
) -> Iterator[tuple[keras.Variable, keras.layers.Layer, str]]:
    """Why each weight of `model` is pruned or not.

    Yields (variable, owning layer, status) for every variable owned by a
    layer of `model` (masks excluded), status being one of `"pruned"`,
    `"prunable"` (not masked yet), `"ignored"`, `"not a matrix"`,
    `"not a kernel"` (a known layer's bias or state) and `"unknown
    layer"` (a weight matrix of a layer keras-lottery does not know).
    """
    slots = mask_slots(model)
    masked = {id(s.kernel) for s in slots}
    masks = {id(s.mask) for s in slots}
    ignored = _ignored_layers(model, ignore)
    below = layer_paths(model)
    for layer, _ in walk(model):
        own = [v for v in compat.own_variables(layer) if id(v) not in masks]
        kernels = {id(k) for k in prunable_weights(layer)} if (
            own and layer.built and _is_plain(layer)) else set()
        for variable in own:
            if id(variable) in masked:
                status = "pruned"
            elif id(layer) in ignored or variable.path in ignore or _key_of(
                    variable, layer, below) in ignore:
                status = "ignored"
            elif id(variable) in kernels:
                status = "prunable"
            elif not variable.trainable or not _is_matrix(variable):
                status = "not a matrix" if variable.trainable else "not a kernel"
            elif kernels or declares_prunable(layer):
                status = "not a kernel"
            else:
                status = "unknown layer"
            yield variable, layer, status


def join_key(prefix: str, name: str) -> str:
    """`name` below the layer path `prefix` ("" for the model itself)."""
    return f"{prefix}/{name}" if prefix else name


def _key_of(variable: keras.Variable, layer: keras.layers.Layer,
            below: dict[int, str]) -> str:
    return join_key(below.get(id(layer), ""), variable.name)


def _ignored_layers(model: keras.layers.Layer, ignore: set[str]) -> set[int]:
    """Ids of the layers named in `ignore` and of every layer inside them."""
    ignored: set[int] = set()
    for layer, _ in walk(model):
        if layer.name in ignore:
            ignored.update(id(sub) for sub, _ in walk(layer))
    return ignored


def _check_ignore(model: keras.layers.Layer, ignore: Iterable[str]) -> set[str]:
    if isinstance(ignore, str):
        ignore = (ignore,)
    ignore = set(ignore)
    names = {layer.name for layer, _ in walk(model)}
    below = layer_paths(model)
    paths = {v.path for v in model.weights}
    for layer, _ in walk(model):
        paths.update(_key_of(v, layer, below) for v in compat.own_variables(layer))
    unknown = sorted(ignore - names - paths)
    if unknown:
        raise ValueError(
            f"ignore names layers or weights that are not in the model: {unknown}. "
            f"ignore takes layer names ({sorted(names)}) or mask keys (weight paths)."
        )
    return ignore


def _unique_key(kernel: keras.Variable, layer_path: str, taken: set[str]) -> str:
    """The weight's path of layer names below the model (`"block/ff/kernel"`),
    made unique with `#2`, `#3`... where sibling layers share a name."""
    key = join_key(layer_path, kernel.name)
    index, unique = 2, key
    while unique in taken:
        unique = f"{key}#{index}"
        index += 1
    return unique


def layer_paths(model: keras.layers.Layer) -> dict[int, str]:
    """Each layer's path of layer names from `model` (excluded)."""
    paths = {id(model): ""}

    def visit(layer, prefix):
        for child in compat.sublayers(layer):
            if id(child) not in paths:
                paths[id(child)] = f"{prefix}{child.name}"
                visit(child, f"{prefix}{child.name}/")

    visit(model, "")
    return paths


def prunable(model: keras.layers.Layer, ignore: Iterable[str] = (),
             *, keys: Iterable[str] | None = None) -> keras.layers.Layer:
    """Makes every prunable weight of `model` maskable, in place.

    Adds one mask (all ones) per prunable weight and makes the layers read
    `weight * mask`; the model's layers, graph, names and variables are
    otherwise unchanged, and the same model is returned. Works on
    Sequential, functional (Keras ops between layers included), nested and
    subclassed models, keras-hub models and single layers. Weights already
    masked stay as they are, so `prunable(prunable(m))` masks nothing twice.
    A weight matrix of a layer keras-lottery does not know is named in a
    warning (see `inventory()` for the full list).

    Args:
        model: a built Keras model or layer.
        ignore: layer names (with everything inside them) or weight paths
            to leave unmasked (never pruned).
        keys: mask only the weights with these keys (used to restore a
            saved masked model).

    Returns:
        `model`, with masks.

    Raises:
        ValueError: if the model is not built, `ignore` names something the
            model does not have, a layer is LoRA-enabled or quantized, or
            the model has no prunable weight left to mask.

    Example:
    >>> model = prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    >>> [slot.key for slot in mask_slots(model)]
    ['dense/kernel']
    """
    if not model.built:
        raise ValueError(
            f"prunable() needs a built model: call it on a batch or build it first "
            f"(model.build(input_shape)). Received: unbuilt {type(model).__name__} "
            f"{model.name!r}"
        )
    ignore = _check_ignore(model, ignore)
    wanted = None if keys is None else set(keys)
    existing = mask_slots(model)
    taken = {s.key for s in existing}
    done = {id(s.kernel) for s in existing}
    below = layer_paths(model)
    found = []
    skipped = _ignored_layers(model, ignore)
    for layer, reader in walk(model):
        if id(layer) in skipped or not layer.built:
            continue
        if declares_prunable(layer):
            _check_plain(layer)
        for kernel in prunable_weights(layer):
            if id(kernel) in done:
                continue
            key = _unique_key(kernel, below.get(id(layer), ""), taken)
            if key in ignore or kernel.path in ignore or (
                    wanted is not None and key not in wanted):
                continue
            attribute = compat.storage_attribute(layer, kernel)
            if attribute is None:
                raise ValueError(
                    f"Weight {kernel.path!r} of layer {layer.name!r} must be stored as an "
                    "attribute of the layer (self.kernel = self.add_weight(...)) to be masked."
                )
            taken.add(key)
            done.add(id(kernel))
            found.append((key, layer, reader, kernel, attribute))
    if wanted is not None and len(found) != len(wanted):
        missing = sorted(wanted - {key for key, *_ in found})
        raise ValueError(f"The model has no prunable weights {missing}.")
    if not found and not existing:
        raise ValueError(
            f"The model has no prunable weight: prunable() masks the kernels of Dense, "
            "EinsumDense, convolutions, embeddings and recurrent layers, and the weights "
            "of layers registered with register_prunable() or implementing "
            f"get_prunable_weights(); ignore={sorted(ignore)}. Received: model={model.name!r}"
        )
    _attach(model, found)
    if wanted is None:
        _warn_unknown(model, ignore)
    return model


def _is_plain(layer: keras.layers.Layer) -> bool:
    """Neither LoRA-enabled nor quantized (whose kernel is composed at call time)."""
    return not (getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None))


def _check_plain(layer: keras.layers.Layer) -> None:
    if not _is_plain(layer):
        raise ValueError(
            "prunable() cannot mask a LoRA-enabled or quantized layer (its kernel is "
            f"composed at call time). Received: layer={layer.name!r}"
        )


def _attach(model: keras.layers.Layer, found: list) -> None:
    """Creates the masks on `model` and hooks the readers' calls."""
    if not found:
        return
    holder = vars(model).get(_HOLDER)
    if holder is None:
        holder = _MaskHolder(model)
        compat.set_attribute_untracked(model, _HOLDER, holder)
    with compat.unlocked(model):
        masks = [
            model.add_weight(
                name=key.replace("/", "_") + "_mask", shape=tuple(kernel.shape),
                dtype=kernel.dtype, initializer="ones", trainable=False,
            )
            for key, _, _, kernel, _ in found
        ]
    for (key, layer, reader, kernel, attribute), mask in zip(found, masks):
        hook = vars(reader).get("call")
        if not isinstance(hook, _MaskedCall):
            hook = _MaskedCall(reader.call)
            compat.set_attribute_untracked(reader, "call", hook)
        slot = MaskSlot(key, layer, kernel, mask, attribute)
        hook.slots.append(slot)
        holder.slots.append(slot)


def _warn_unknown(model: keras.layers.Layer, ignore: set[str]) -> None:
    unknown = {}
    for variable, layer, status in weight_status(model, ignore):
        if status == "unknown layer":
            unknown.setdefault(type(layer), []).append(variable.path)
    for cls, paths in unknown.items():
        warnings.warn(
            f"Not pruned: {paths} (layer class {cls.__name__}, which keras-lottery does not "
            f"know). To prune them, register_prunable({cls.__name__}, [attribute names]) or "
            "give the class a get_prunable_weights() method; to silence this, pass the "
            "layer names in ignore=[...]. keras_lottery.inventory(model) lists every weight.",
            stacklevel=3,
        )
