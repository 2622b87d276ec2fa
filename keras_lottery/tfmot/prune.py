"""TFMOT's `prune_low_magnitude`, `strip_pruning` and `prune_scope` on Keras 3.

Where TFMOT wraps each layer in a `PruneLowMagnitude` wrapper that owns a
mask and a threshold per weight, `prune_low_magnitude` here makes the
layers' weights maskable with `keras_lottery.prunable` (one mask variable
per weight, the layer reads `weight * mask`) and records on each layer its
pruning parameters and step (`LayerPruning`). `UpdatePruningStep` moves
the step and, when the schedule says so, computes the masks from the
weights with TFMOT's math (`keras_lottery.tfmot.masks`) and assigns them
as `keras_lottery.set_masks` does, zeroing the pruned weights and their
optimizer slots. A pruned weight is therefore exactly zero in the forward
pass and gets exactly zero gradient, on every backend.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.export import strip
from keras_lottery.masking import MaskSlot, mask_slots, prunable, walk
from keras_lottery.prunable_registry import declares_prunable, prunable_weights
from keras_lottery.tfmot import masks as tfmot_masks
from keras_lottery.tfmot.schedule import ConstantSparsity, PolynomialDecay, PruningSchedule

# The schedules' own `__call__`s, whose `should_prune` is `_should_prune_in_step`
# of their parameters (a subclass that overrides `__call__` is called instead).
_BUILT_IN_CALLS = (ConstantSparsity.__call__, PolynomialDecay.__call__)

# The attribute of a pruned layer holding its `LayerPruning`.
_STATE = "_keras_lottery_tfmot"

CALLBACK_ERROR = (
    "Prune() wrapper requires the UpdatePruningStep callback to be provided during "
    "training. Please add it as a callback to your model.fit call: "
    "model.fit(..., callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])."
)

# Weights TFMOT 0.8's registry leaves unpruned, left unpruned here too so
# that a migrated model reaches TFMOT's sparsity per layer: depthwise kernels.
_TFMOT_UNPRUNED = {
    keras.layers.DepthwiseConv1D: ("kernel",),
    keras.layers.DepthwiseConv2D: ("kernel",),
    keras.layers.SeparableConv1D: ("depthwise_kernel",),
    keras.layers.SeparableConv2D: ("depthwise_kernel",),
}


class PrunableLayer:
    """TFMOT's protocol for a layer of your own: say which weights to prune.

    Subclass it with your `keras.layers.Layer` (or just define the method):
    `get_prunable_weights()` returns the layer's variables to prune, each
    stored as an attribute of the layer (`self.kernel = self.add_weight(...)`).
    keras-lottery's `prunable()` reads the same method.

    Example:
    >>> class Scale(keras.layers.Layer, PrunableLayer):
    ...     def build(self, input_shape):
    ...         self.kernel = self.add_weight(shape=(input_shape[-1], 4))
    ...     def call(self, x):
    ...         return x @ self.kernel
    ...     def get_prunable_weights(self):
    ...         return [self.kernel]
    """

    def get_prunable_weights(self):
        """The list of the layer's weights to prune."""
        raise NotImplementedError("Must be implemented in subclasses.")


@dataclass(eq=False)
class LayerPruning:
    """A pruned layer's parameters and pruning state.

    Attributes:
        pruning_schedule: when to prune and to which sparsity.
        block_size: (height, width) of the pruned blocks; (1, 1): weights.
        block_pooling_type: `"AVG"` or `"MAX"`, how a block is scored.
        sparsity_m_by_n: (m, n): m zeros in every n input weights, or None.
        step: TFMOT's `pruning_step`: -1 until `UpdatePruningStep` starts
            training, then the number of training steps taken.
        thresholds: mask key -> the threshold of the last mask update.
    """

    pruning_schedule: PruningSchedule
    block_size: tuple[int, int] = (1, 1)
    block_pooling_type: str = "AVG"
    sparsity_m_by_n: tuple[int, int] | None = None
    step: int = -1
    thresholds: dict[str, float] = field(default_factory=dict)
    refused: bool = False  # a training call was refused (no UpdatePruningStep)

    def should_update(self) -> bool:
        """Whether the masks are recomputed at the current step."""
        if self.sparsity_m_by_n is not None:
            return self.step == 1  # M-by-N masks are set once, at the first step
        schedule = self.pruning_schedule
        if type(schedule).__call__ in _BUILT_IN_CALLS:  # their should_prune, without the sparsity
            return bool(schedule._should_prune_in_step(
                self.step, schedule.begin_step, schedule.end_step, schedule.frequency))
        return bool(schedule(self.step)[0])

    def mask(self, key: str, kernel: np.ndarray) -> np.ndarray:
        """The new mask of one weight at the current step."""
        if self.sparsity_m_by_n is not None:
            self.thresholds[key] = 999.0  # TFMOT's placeholder for M-by-N masks
            return tfmot_masks.m_by_n_mask(kernel, self.sparsity_m_by_n)
        sparsity = self.pruning_schedule(self.step)[1]
        mask, threshold = tfmot_masks.block_mask(kernel, sparsity, self.block_size,
                                                 self.block_pooling_type)
        self.thresholds[key] = threshold
        return mask

    def check_weight(self, slot_key: str, shape: tuple[int, ...]) -> None:
        """Raises if the weight cannot take these parameters."""
        try:
            if self.sparsity_m_by_n is not None:
                tfmot_masks.check_m_by_n_shape(shape)
            else:
                tfmot_masks.check_block(shape, self.block_size)
        except ValueError as error:
            raise ValueError(f"{error} (weight {slot_key!r})") from None


def layer_pruning(layer: keras.layers.Layer) -> LayerPruning | None:
    """The `LayerPruning` of a layer `prune_low_magnitude` pruned, else None."""
    return vars(layer).get(_STATE)


def pruned_slots(model: keras.layers.Layer) -> list[tuple[MaskSlot, LayerPruning]]:
    """Every weight `prune_low_magnitude` masked in `model`, with its layer's
    pruning, in model order."""
    return [(slot, state) for slot in mask_slots(model)
            if (state := layer_pruning(slot.layer)) is not None]


def pruned_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers of `model` (itself included) that `prune_low_magnitude` pruned."""
    return [layer for layer, _ in walk(model) if layer_pruning(layer) is not None]


class _RequiresStep:
    """A layer call that refuses to train before `UpdatePruningStep` ran, as
    TFMOT's wrapper does (checked when the train step is traced, or at
    every eager call)."""

    def __init__(self, original, states: list[LayerPruning]):
        self.original = original
        self.states = states

    def __call__(self, *args, **kwargs):
        if compat.in_training_call() and any(state.step < 0 for state in self.states):
            for state in self.states:
                state.refused = True
            raise RuntimeError(CALLBACK_ERROR)
        return self.original(*args, **kwargs)


def _require_step(model: keras.layers.Layer, slots: list[MaskSlot],
                  states: dict[int, LayerPruning]) -> None:
    """Makes the calls reading these slots check for `UpdatePruningStep`.

    Wraps the `original` call of the `_MaskedCall` that `prunable()` put on
    each reading layer (the masking stays outermost, so `mask_slots()`
    still finds it).
    """
    ids = {id(slot.mask) for slot in slots}
    for _, reader in walk(model):
        hook = vars(reader).get("call")
        mine = [s for s in getattr(hook, "slots", ()) if id(s.mask) in ids]
        if not mine:
            continue
        new = [states[id(s.layer)] for s in mine]
        if isinstance(hook.original, _RequiresStep):
            hook.original.states.extend(s for s in new if s not in hook.original.states)
        else:
            hook.original = _RequiresStep(hook.original, list(dict.fromkeys(new)))


def _has_update_callback(callbacks) -> bool:
    """Whether `callbacks` hold an `UpdatePruningStep` (which says so with
    `advances_pruning_step`; this module cannot import its own caller)."""
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    return any(getattr(c, "advances_pruning_step", False) for c in callbacks or ())


def _check_fit(model: keras.Model) -> None:
    """Makes `model.fit` refuse, before it starts, a first training without
    `UpdatePruningStep` (the train-step check behind it would fire only once
    fit has begun: on JAX, Keras's trainer has by then taken the variables'
    values into its loop and does not put them back when a step fails)."""
    if getattr(vars(model).get("fit"), "_keras_lottery_tfmot", False):
        return
    original = model.fit
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(*args, **kwargs):
        callbacks = signature.bind_partial(*args, **kwargs).arguments.get("callbacks")
        if not _has_update_callback(callbacks) and any(
                state.step < 0 for _, state in pruned_slots(model)):
            raise RuntimeError(CALLBACK_ERROR)
        return original(*args, **kwargs)

    fit._keras_lottery_tfmot = True
    compat.set_attribute_untracked(model, "fit", fit)


def _unpruned_by_tfmot(model: keras.layers.Layer) -> set[str]:
    """Paths of the weights TFMOT does not prune (depthwise kernels)."""
    paths = set()
    for layer, _ in walk(model):
        for cls, names in _TFMOT_UNPRUNED.items():
            if isinstance(layer, cls) and layer.built:
                paths.update(getattr(layer, name).path for name in names
                             if isinstance(getattr(layer, name, None), keras.Variable))
    return paths


def _mask_layers(model: keras.layers.Layer, params: dict, ignore: set[str]) -> None:
    """Masks the prunable weights of `model` not yet masked, and records
    `params` on their layers."""
    before = {id(slot.mask) for slot in mask_slots(model)}
    candidates = [(layer, w) for layer, _ in walk(model) if layer.built
                  and layer_pruning(layer) is None for w in prunable_weights(layer)
                  if w.path not in ignore]
    state_of: dict[int, LayerPruning] = {}
    for layer, weight in candidates:  # refuse bad shapes before masking anything
        state = state_of.setdefault(id(layer), LayerPruning(**params))
        state.check_weight(weight.path, tuple(weight.shape))
    prunable(model, ignore=ignore)
    new = [slot for slot in mask_slots(model) if id(slot.mask) not in before]
    states = {}
    for slot in new:
        state = states.setdefault(id(slot.layer),
                                  state_of.get(id(slot.layer)) or LayerPruning(**params))
        compat.set_attribute_untracked(slot.layer, _STATE, state)
    _require_step(model, new, states)


def _no_weights_to_prune(layer: keras.layers.Layer) -> ValueError:
    return ValueError(
        "prune_low_magnitude: layer has no weights to prune (prune_low_magnitude prunes "
        "the kernels of Dense, convolutions (not depthwise kernels, as TFMOT), "
        "embeddings and recurrent cells, and what get_prunable_weights() returns). "
        f"Received: {type(layer).__name__} {layer.name!r}"
    )


def _never_prunable(layer: keras.layers.Layer) -> bool:
    """Whether an unbuilt layer cannot have weights to prune once built: it
    declares none (registry, `get_prunable_weights`), keeps Keras's default
    `build` (which creates nothing) and holds no variables or sublayers
    (Flatten, Dropout, pooling...)."""
    return (not declares_prunable(layer) and type(layer).build is keras.layers.Layer.build
            and not layer.weights and not compat.sublayers(layer))


def _prune_built_layer(layer: keras.layers.Layer, params: dict) -> keras.layers.Layer:
    ignore = _unpruned_by_tfmot(layer)
    # The layer's own prunable weights and its sublayers' (an LSTM's cell,
    # MultiHeadAttention's projections, the Dense layers of a custom block).
    names = {w.path for sub, _ in walk(layer) if sub.built
             for w in prunable_weights(sub)} - ignore
    if not names and not mask_slots(layer):
        raise _no_weights_to_prune(layer)
    _mask_layers(layer, params, ignore)
    return layer


def _mark_unbuilt(layer: keras.layers.Layer, params: dict) -> keras.layers.Layer:
    """Returns `layer` itself, masked as soon as it is built."""
    if getattr(vars(layer).get("build"), "_keras_lottery_tfmot", False):
        return layer
    original = layer.build

    @functools.wraps(original)  # Keras binds the build's signature to the input shapes
    def build(*args, **kwargs):
        original(*args, **kwargs)
        compat.set_attribute_untracked(layer, "build", original)
        _prune_built_layer(layer, params)

    build._keras_lottery_tfmot = True
    compat.set_attribute_untracked(layer, "build", build)
    return layer


def _check_params(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n) -> dict:
    if not isinstance(pruning_schedule, PruningSchedule):
        raise ValueError(
            "pruning_schedule must be a keras_lottery.tfmot.sparsity.keras.PruningSchedule "
            "(ConstantSparsity, PolynomialDecay or a subclass; not a schedule of "
            "tensorflow_model_optimization itself). "
            f"Received: pruning_schedule={pruning_schedule!r}"
        )
    try:
        block = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block = ()
    if len(block) != 2 or min(block) < 1:
        raise ValueError(
            "block_size must be (height, width), two positive integers. "
            f"Received: block_size={block_size!r}"
        )
    if block_pooling_type not in tfmot_masks.POOLING_TYPES:
        raise ValueError(f"Unsupported pooling type '{block_pooling_type}'. "
                         "Should be 'AVG' or 'MAX'.")
    m_by_n = None if not sparsity_m_by_n else tfmot_masks.check_m_by_n(sparsity_m_by_n)
    return {"pruning_schedule": pruning_schedule, "block_size": block,
            "block_pooling_type": block_pooling_type, "sparsity_m_by_n": m_by_n}


def _copy_model(model: keras.Model) -> keras.Model:
    """A copy of a Sequential or functional model with the same weights, its
    already pruned layers shared (as TFMOT keeps its wrappers)."""

    def clone(layer):
        if layer_pruning(layer) is not None or mask_slots(layer):
            return layer
        return layer.__class__.from_config(layer.get_config())

    with compat.uncompiled(model):
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def prune_low_magnitude(to_prune, pruning_schedule=ConstantSparsity(0.5, 0),
                        block_size=(1, 1), block_pooling_type="AVG", pruning_policy=None,
                        sparsity_m_by_n=None, **kwargs):
    """Makes a layer or model prune its smallest weights during training.

    TFMOT's function, on Keras 3 and any backend. Train with
    `UpdatePruningStep` among the callbacks; `strip_pruning` then returns
    the plain model with the pruned weights as zeros.

    - A Sequential or functional model is copied (weights included, the
      original untouched, the optimizer removed: compile the copy), as in
      TFMOT; every prunable weight of the copy is pruned.
    - Beyond TFMOT, any other model (subclassed, keras-hub) is pruned in
      place and returned.
    - A layer: a built layer is pruned in place and returned; an unbuilt
      one is returned marked, and pruned when it is built (in a model).
    - A list of layers: each one, as above.

    Which weights: the kernels of Dense, EinsumDense, convolutions (but,
    as TFMOT, not the depthwise kernels of DepthwiseConv and SeparableConv),
    Embedding and recurrent cells, and what a layer's
    `get_prunable_weights()` returns.

    Args:
        to_prune: a layer, a list of layers or a model.
        pruning_schedule: a `PruningSchedule` (default
            `ConstantSparsity(0.5, 0)`).
        block_size: (height, width) of the blocks pruned together in 2-D
            kernels; (1, 1) prunes single weights.
        block_pooling_type: `"AVG"` or `"MAX"`: a block's score.
        pruning_policy: a `PruningPolicy` choosing the layers to prune.
        sparsity_m_by_n: (m, n) for m zeros in every n consecutive input
            weights (masks set at the first training step), or None.
        **kwargs: for a single layer, `input_shape` (as TFMOT's wrapper
            takes it for the first layer of a Sequential).

    Returns:
        The pruned layer, list or model.

    Raises:
        ValueError: for a bad parameter, an object that is neither a layer
            nor a model, or a layer without prunable weights.

    Example:
    >>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    >>> pruned = prune_low_magnitude(model, pruning_schedule=schedule)
    >>> pruned.compile("adam", "mse")
    >>> pruned.fit(x, y, callbacks=[UpdatePruningStep()])
    """
    params = _check_params(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n)
    if isinstance(to_prune, (list, tuple)):
        return [layer if isinstance(layer, keras.layers.InputLayer)
                else _prune_layer(layer, params, {}) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        model = to_prune
        if (type(model) in (keras.Sequential, compat.functional_class())
                and not compat.own_variables(model)):  # (masks of its own: pruned in place)
            model = _copy_model(model)
        elif not model.built:
            raise ValueError(
                "prune_low_magnitude needs a built model: call it on a batch or build it "
                f"first. Received: unbuilt {type(model).__name__} {model.name!r}"
            )
        ignore = _unpruned_by_tfmot(model)
        if pruning_policy is not None:
            for layer, _ in walk(model):
                if layer is not model and not compat.sublayers(layer) and layer.built \
                        and not pruning_policy.allow_pruning(layer):
                    ignore.update(w.path for w in prunable_weights(layer))
        _mask_layers(model, params, ignore)
        _check_fit(model)
        return model
    if isinstance(to_prune, keras.layers.Layer):
        return _prune_layer(to_prune, params, kwargs)
    raise ValueError(
        "`prune_low_magnitude` can only prune an object of the following types: "
        "keras.models.Sequential, keras functional model, keras.layers.Layer, list of "
        "keras.layers.Layer (and, beyond TFMOT, any other keras.Model). You passed an "
        f"object of type: {type(to_prune).__name__}."
    )


def _prune_layer(layer: keras.layers.Layer, params: dict, kwargs: dict) -> keras.layers.Layer:
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            "Please initialize `Prune` layer with a `Layer` instance. "
            f"You passed: {layer!r}"
        )
    shape = kwargs.pop("input_shape", None)
    if "input_dim" in kwargs:
        shape = (kwargs.pop("input_dim"),)
    if kwargs:
        raise ValueError(
            f"prune_low_magnitude takes input_shape or input_dim for a layer. Received "
            f"other keyword arguments: {sorted(kwargs)}"
        )
    if shape is not None:
        if layer.built:
            raise ValueError(f"input_shape is given for layer {layer.name!r}, which is "
                             "already built.")
        compat.set_input_shape_argument(layer, shape)
    if layer_pruning(layer) is not None:
        return layer
    if isinstance(layer, keras.Model):
        return prune_low_magnitude(layer, **params)
    if layer.built:
        return _prune_built_layer(layer, params)
    if _never_prunable(layer):  # said now, not when a model builds it
        raise _no_weights_to_prune(layer)
    return _mark_unbuilt(layer, params)


def strip_pruning(model):
    """Returns the plain model: no masks, the pruned weights stored as zeros.

    TFMOT's function. Sequential and functional models are cloned, others
    rebuilt from their config (`keras_lottery.strip`); the pruned model is
    left as it is.

    Args:
        model: a `keras.Model` pruned by `prune_low_magnitude`.

    Returns:
        A new, uncompiled Keras model with identical predictions.

    Raises:
        ValueError: if `model` is not a `keras.Model`, or not pruned.

    Example:
    >>> final = strip_pruning(pruned)
    >>> final.save("pruned.keras")
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected model to be a `keras.Model` instance but got: {model!r}"
        )
    if not mask_slots(model):
        raise ValueError(
            f"strip_pruning got a model that is not pruned: {model.name!r} has no pruned "
            "weights. Pass the model prune_low_magnitude returned (or a model containing "
            "layers it pruned)."
        )
    return strip(model)


@contextlib.contextmanager
def prune_scope() -> Iterator[None]:
    """TFMOT's scope for loading pruned models; nothing is needed here.

    A pruned model saved to `.keras` loads with plain `keras.models.load_model`
    (inside this scope or not) as the plain model, its pruned weights
    zeros; `keras_lottery.load_model` loads it with its masks. Neither
    restores the pruning schedule: call `prune_low_magnitude` on the loaded
    model to go on pruning.

    Example:
    >>> with prune_scope():
    ...     loaded = keras.models.load_model("pruned.keras")
    """
    yield
