"""Model-level pruning: read and write masks, prune, measure sparsity.

These helpers are thin: they gather kernels and masks from a model's mask
slots (`keras_lottery.masking`), call the pure functions of
`keras_lottery.mask_math`, and assign the result. Assigning a mask also
zeros the pruned weights, so a pruned weight is zero in the variable as well
as in the forward pass.

Masks are keyed by the weight's unique path (`"dense/kernel"`,
`"encoder/block_1/query/kernel"`); wherever a function takes layer names
(`rates`, `ignore`), a layer name stands for every masked weight of the
layers of that name, and a key for that one weight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_lottery import compat, mask_math
from keras_lottery.masking import MaskSlot, mask_slots


def _slots(model: keras.Model) -> dict[str, MaskSlot]:
    """Mask key -> slot, for every masked weight of the model."""
    slots = mask_slots(model)
    if not slots:
        raise ValueError(
            f"Model {model.name!r} has no masked weights. Make it prunable "
            "first: model = keras_lottery.prunable(model)."
        )
    return {slot.key: slot for slot in slots}


def get_masks(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's masks as boolean arrays (True = weight kept).

    Args:
        model: a model made `prunable()`.

    Returns:
        Mask key -> boolean array of the kernel's shape.

    Example:
    >>> model = prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    >>> {k: v.shape for k, v in get_masks(model).items()}
    {'dense': (4, 2)}
    """
    return {key: keras.ops.convert_to_numpy(s.mask) != 0 for key, s in _slots(model).items()}


def align_masks(model: keras.Model, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks keyed for `model`, when they were stored under other layer names.

    Layers named automatically (`dense`, `dense_1`...) get other names when
    the same architecture is built again in one process, and keras-lottery
    0.2 keyed masks by layer name (`"dense"`, `"sep/depthwise_kernel"`).
    Masks whose keys are the model's are returned as they are; masks keyed
    by 0.2's layer names are renamed by name; masks of the same kernels in
    the same order under other names are renamed in that order.

    Args:
        model: a model made `prunable()`.
        masks: mask key -> mask, e.g. read from a run directory.

    Returns:
        The masks keyed like `get_masks(model)`.

    Raises:
        ValueError: if the masks do not fit the model's kernels.
    """
    slots = _slots(model)
    shapes = {key: tuple(s.mask.shape) for key, s in slots.items()}
    if set(masks) == set(shapes):
        return dict(masks)
    legacy = _legacy_keys(list(slots.values()))
    if set(masks) == set(legacy) and len(legacy) == len(slots):
        return {key: masks[old] for old, key in legacy.items()}
    stored = list(masks.items())
    if len(stored) != len(shapes) or any(
            np.shape(value) != shape for (_, value), shape in zip(stored, shapes.values())):
        raise ValueError(
            "The masks do not fit the model: they cover "
            f"{[(k, np.shape(v)) for k, v in stored]} but the model's prunable kernels are "
            f"{list(shapes.items())}."
        )
    return {key: value for key, (_, value) in zip(shapes, stored)}


def _legacy_keys(slots: list[MaskSlot]) -> dict[str, str]:
    """keras-lottery 0.2's mask key (the layer's name, `"<layer>/<kernel>"`
    for a layer with several kernels) -> today's key."""
    per_layer: dict[int, list[MaskSlot]] = {}
    for slot in slots:
        per_layer.setdefault(id(slot.layer), []).append(slot)
    legacy = {}
    for group in per_layer.values():
        for slot in group:
            name = slot.layer.name
            legacy[name if len(group) == 1 else f"{name}/{slot.kernel.name}"] = slot.key
    return legacy


def get_kernels(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's prunable kernels as NumPy arrays, keyed like `get_masks()`.

    Args:
        model: a model made `prunable()`.

    Returns:
        Mask key -> kernel values.
    """
    return {key: keras.ops.convert_to_numpy(s.kernel) for key, s in _slots(model).items()}


def set_masks(model: keras.Model, masks: Mapping[str, ArrayLike]) -> None:
    """Assigns masks and zeros the weights they prune.

    Masks not named in `masks` are left as they are. Under a
    `tf.distribute` strategy, call this outside `strategy.run` (in
    cross-replica context): the assignment reaches every replica.

    Args:
        model: a model made `prunable()`.
        masks: mask key -> array of the kernel's shape (nonzero = kept).

    Raises:
        ValueError: for an unknown key or a mask of the wrong shape.

    Example:
    >>> set_masks(model, {"dense": np.zeros((4, 2))})
    >>> sparsity(model)
    1.0
    """
    slots = _slots(model)
    unknown = sorted(set(masks).difference(slots))
    if unknown:
        raise ValueError(
            f"set_masks got masks for unknown weights {unknown}. "
            f"Accepted keys: {list(slots)}"
        )
    for key, value in masks.items():
        slot = slots[key]
        mask = np.asarray(value)
        if mask.shape != tuple(slot.mask.shape):
            raise ValueError(
                f"Mask {key!r} must have the kernel's shape "
                f"{tuple(slot.mask.shape)}. Received: shape {mask.shape}"
            )
        slot.mask.assign((mask != 0).astype(slot.mask.dtype))
        # Zeroed on the device: no copy of the weights to the host and back.
        for variable in [slot.kernel, *_optimizer_slots(model, slot.kernel)]:
            variable.assign(keras.ops.multiply(variable,
                                               keras.ops.cast(slot.mask, variable.dtype)))


def _optimizer_slots(model: keras.Model, kernel: keras.Variable) -> list:
    """The model's optimizer variables that track `kernel` (momentum, ...).

    Zeroing their pruned entries keeps the optimizer from moving pruned
    weights when one optimizer is kept across pruning rounds.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not optimizer.built:
        return []
    return compat.optimizer_slots(optimizer, kernel)


def _expand_layer_names(
    model: keras.Model, names: Mapping[str, float] | Iterable[str], arg: str
) -> dict[str, object]:
    """Maps layer names (or mask keys) to mask keys: a layer name stands for
    every masked weight of every layer of that name."""
    slots = _slots(model)
    by_layer: dict[str, list[str]] = {}
    for key, slot in slots.items():
        by_layer.setdefault(slot.layer.name, []).append(key)
    values = dict(names) if isinstance(names, Mapping) else dict.fromkeys(names)
    keys: dict[str, object] = {}
    for name, value in values.items():
        if name in slots:
            keys[name] = value
        elif name in by_layer:
            keys.update(dict.fromkeys(by_layer[name], value))
        else:
            raise ValueError(
                f"{arg} names {name!r}, which is neither a masked layer nor a mask key of "
                f"the model. Masked layers: {list(by_layer)}; keys: {list(slots)}"
            )
    return keys


def rates_by_key(model: keras.Model, rates: Mapping[str, float]) -> dict[str, float]:
    """Per-layer rates keyed by mask key: a layer name stands for every
    masked weight of the layers of that name, a key for itself.

    Args:
        model: a model made `prunable()`.
        rates: layer name or mask key -> rate.

    Returns:
        Mask key -> rate.

    Raises:
        ValueError: for a name that is neither a masked layer nor a key.
    """
    return _expand_layer_names(model, rates, "rates")


def prune_by_magnitude(
    model: keras.Model,
    fraction: float,
    scope: str = "global",
    rates: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
    granularity: str = "weight",
) -> dict[str, np.ndarray]:
    """Prunes the smallest-magnitude remaining weights of the model.

    Args:
        model: a model made `prunable()`.
        fraction: share of the *remaining* weights to prune, in [0, 1);
            three rounds of 0.2 leave 0.8**3 = 51.2%.
        scope: `"global"` (one threshold over all kernels) or
            `"layerwise"` (each kernel pruned by `fraction` on its own).
        rates: optional layer name -> own rate. With `scope="global"` the
            named layers are pruned at their rate and the rest share the
            global threshold.
        ignore: layer names whose masks are left unchanged.
        granularity: what one pruned item is (`mask_math.GRANULARITIES`):
            `"weight"` (single weights), `"unit"` (whole Dense units and
            Conv filters; `fraction` is then a share of the remaining
            units, and `keras_lottery.compact` removes them) or `"N:M"`
            such as `"2:4"` (at most N nonzeros in every M consecutive
            input weights). `"unit"` and `"N:M"` take Dense and
            Conv1D/2D/3D layers only, and `"unit"` refuses a layer whose
            units are the model's outputs (ignore it, or give it rate 0).

    Returns:
        The new masks, keyed like `get_masks()` (ignored layers included).

    Example:
    >>> masks = prune_by_magnitude(model, 0.2, rates={"dense_2": 0.1})
    >>> masks = prune_by_magnitude(model, 0.2, scope="layerwise", granularity="unit",
    ...                            ignore=["dense_2"])
    """
    if scope not in mask_math.SCOPES:
        raise ValueError(
            f"scope must be one of {tuple(mask_math.SCOPES)}. Received: scope={scope!r}"
        )
    key, _ = mask_math.parse_granularity(granularity)
    rates = _expand_layer_names(model, rates or {}, "rates")
    skip = _expand_layer_names(model, ignore, "ignore")
    masks = get_masks(model)
    kernels = {k: v for k, v in get_kernels(model).items() if k not in skip}
    rates = {k: r for k, r in rates.items() if k not in skip}
    if key != "weight":
        _check_structured(model, set(kernels), rates, granularity)
    new = mask_math.magnitude_masks(
        kernels, {k: masks[k] for k in kernels}, fraction, rates,
        scope=scope, granularity=granularity,
    )
    set_masks(model, new)
    return {**masks, **new}


# Layers whose kernels have units on the last axis and inputs on axis -2,
# as "unit" and "N:M" granularity assume.
STRUCTURED_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D,
                     keras.layers.Conv3D)


def _check_structured(model: keras.Model, keys: set[str], rates: Mapping[str, float],
                      granularity: str) -> None:
    """Raises for layers that unit / n:m granularity cannot prune."""
    unit = granularity == "unit"
    slots = _slots(model)
    for key in keys:
        layer = slots[key].layer
        if not isinstance(layer, STRUCTURED_LAYERS):
            raise ValueError(
                f"granularity={granularity!r} prunes Dense and Conv1D/2D/3D kernels "
                f"(units on the last axis, inputs on axis -2); layer {layer.name!r} is a "
                f"{type(layer).__name__}. Ignore it (ignore=[{layer.name!r}]) or "
                "use granularity='weight'."
            )
    if unit:
        outputs = {id(layer) for layer in output_layers(model)}
        for key in keys:
            layer = slots[key].layer
            if id(layer) in outputs and rates.get(key, 1.0) > 0:
                raise ValueError(
                    f"granularity='unit' cannot remove units of {layer.name!r}: its "
                    "units are the model's outputs. Ignore it "
                    f"(ignore=[{layer.name!r}]) or give it rate 0 "
                    f"(rates={{{layer.name!r}: 0}})."
                )


def output_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The masked layers whose units are the model's outputs.

    Walks back from each output of a functional or Sequential model
    through layers without kernels (activations, dropout, reshapes) to the
    first masked layer. A subclassed model has no graph to walk: empty.
    """
    if not compat.is_functional_or_sequential(model):
        return []
    producers = {}
    for layer in model.layers:
        try:
            producers[id(layer.output)] = layer
        except (AttributeError, ValueError):
            continue
    masked = {id(slot.layer) for slot in mask_slots(model)}
    found, stack = [], list(model.outputs)
    while stack:
        layer = producers.get(id(stack.pop()))
        if layer is None:
            continue
        if id(layer) in masked:
            found.append(layer)
        elif not mask_slots(layer):
            try:
                inputs = layer.input
            except (AttributeError, ValueError):
                continue
            stack.extend(inputs if isinstance(inputs, (list, tuple)) else [inputs])
    return found


def prune_randomly(
    model: keras.Model,
    fraction: float,
    seed: int,
    rates: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """Prunes a random share of each layer's remaining weights.

    Args:
        model: a model made `prunable()`.
        fraction: share of each layer's remaining weights to prune, in [0, 1).
        seed: seed of the random choice.
        rates: optional layer name -> own rate.
        ignore: layer names whose masks are left unchanged.

    Returns:
        The new masks, keyed like `get_masks()`.

    Example:
    >>> masks = prune_randomly(model, 0.5, seed=0)
    """
    rates = _expand_layer_names(model, rates or {}, "rates")
    skip = _expand_layer_names(model, ignore, "ignore")
    masks = get_masks(model)
    current = {k: v for k, v in masks.items() if k not in skip}
    new = mask_math.random_masks(
        current, fraction, seed, {k: r for k, r in rates.items() if k not in skip}
    )
    set_masks(model, new)
    return {**masks, **new}


def sparsity_by_layer(model: keras.Model) -> dict[str, float]:
    """Fraction of pruned weights in each masked kernel.

    Args:
        model: a model made `prunable()`.

    Returns:
        Mask key -> share of that kernel's weights that are masked.
    """
    return {key: 1.0 - np.count_nonzero(m) / m.size for key, m in get_masks(model).items()}


def sparsity(model: keras.Model) -> float:
    """Fraction of all prunable weights that are masked (0 = dense).

    Args:
        model: a model made `prunable()`.

    Returns:
        Pruned weights over prunable weights.

    Example:
    >>> prune_by_magnitude(model, 0.2)
    >>> round(sparsity(model), 3)
    0.2
    """
    masks = get_masks(model).values()
    return 1.0 - sum(np.count_nonzero(m) for m in masks) / sum(m.size for m in masks)
