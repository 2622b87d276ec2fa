"""SynFlow at initialization (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020).

Iterative Synaptic Flow Pruning, data-free: every weight of the network
is replaced by its magnitude `|θ|` (kernels, biases, normalization
parameters and statistics: every float weight but the masks, as the
reference code's `linearize`), the network is called in inference mode
(batch normalization on its moving statistics) on one all-ones input,
and each masked weight is scored by `|θ ⊙ dR/dθ|`, `R` the sum of the
outputs. The lowest are pruned, and this repeats `iterations` times
(100 as the paper) with the kept share following the exponential
schedule `kept_k = kept ** (k / iterations)` down to the request's
target at the last one; scores are recomputed under the masks so far.
Afterwards the weights are restored, signs included, and only the masks
change. No batch and no loss is read: the masks do not depend on data.

Precision: `R` is a product of the layers' summed magnitudes and grows
exponentially with depth. The pass runs in the model's own dtype and the
scores are ranked in float64. A model built in float64 (as the paper
computes) is computed in float64 on TensorFlow; Keras 3.15 maps 64-bit
results to 32-bit ones on PyTorch (`result_type`), and JAX needs
`jax_enable_x64`. A pass that overflows (or underflows to all zeros)
raises a ValueError saying so rather than ranking infinities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.gradients import objective_gradients
from keras_lottery.masking import mask_slots, masks_of
from keras_lottery.pruners.base import (
    AT_INIT,
    DATA_FREE,
    Pruner,
    PruneRequest,
    check_count,
    masks_by_rank,
    register,
)


@dataclasses.dataclass(frozen=True)
class SynflowOptions:
    """Options of SynFlow.

    Attributes:
        iterations: scoring and pruning rounds to the target (100 as the
            paper; 1 is one-shot SynFlow).
        input_shape: the shape of one input example without the batch axis
            (a list of shapes for several inputs); None derives it from
            `model.inputs` or the shape the model was built on.
    """

    iterations: int = 100
    input_shape: Sequence | None = None

    def __post_init__(self):
        check_count("iterations", self.iterations)


@register
class Synflow(Pruner):
    """SynFlow at initialization: iterative, data-free synaptic flow (Tanaka et al. 2020)."""

    name = "synflow"
    when = AT_INIT
    needs = (DATA_FREE,)
    Options = SynflowOptions

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        """One SynFlow pass under the current masks: `|θ ⊙ dR/dθ|` (pruned
        weights score 0)."""
        with _linearized(request.model) as magnitudes:
            return _scores(request.model, magnitudes, request.masks_now(),
                           _ones_inputs(request.model, self.options.input_shape))

    def masks(self, request: PruneRequest) -> dict[str, np.ndarray]:
        model, n = request.model, self.options.iterations
        start = request.masks_now()
        inputs = _ones_inputs(model, self.options.input_shape)
        current = start
        with _linearized(model) as magnitudes:
            for k in range(1, n + 1):
                scores = _scores(model, magnitudes, current, inputs)
                # Weights pruned by an earlier iteration rank below all others
                # (scores are >= 0), so the masks only shrink.
                scores = {key: np.where(current[key], value, -1.0)
                          for key, value in scores.items()}
                fraction, rates = (request.fraction, dict(request.rates)) if k == n else (
                    _share(request.fraction, k, n),
                    {key: _share(rate, k, n) for key, rate in request.rates.items()})
                current = masks_by_rank(scores, start, fraction, rates, request.scope,
                                        request.granularity)
        return current


def _share(fraction: float, k: int, n: int) -> float:
    """The pruned share after iteration k of n: the kept share `1 - fraction`
    reached exponentially, `(1 - fraction) ** (k / n)`."""
    return 1.0 - (1.0 - fraction) ** (k / n)


class _linearized:
    """Every float weight of the model but the masks set to its magnitude
    for the block; all restored afterwards (signs included). Yields mask
    key -> |kernel|."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __enter__(self) -> dict[str, np.ndarray]:
        skip = masks_of(self.model)
        self.saved = [(v, keras.ops.convert_to_numpy(v)) for v in self.model.weights
                      if id(v) not in skip and "float" in str(v.dtype)]
        try:
            for variable, value in self.saved:
                variable.assign(np.abs(value))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return {s.key: np.abs(keras.ops.convert_to_numpy(s.kernel))
                for s in mask_slots(self.model)}

    def __exit__(self, *exc) -> None:
        for variable, value in self.saved:
            variable.assign(value)


def _sum_outputs(outputs):
    return sum(keras.ops.sum(o) for o in keras.tree.flatten(outputs))


def _scores(model: keras.Model, magnitudes: dict[str, np.ndarray],
            masks: dict[str, np.ndarray], inputs) -> dict[str, np.ndarray]:
    """|θ ⊙ dR/dθ| with the kernels at |θ| ⊙ mask (the rest already |θ|)."""
    slots = {s.key: s for s in mask_slots(model)}
    effective = {}
    for key, slot in slots.items():
        effective[key] = magnitudes[key] * (np.asarray(masks[key]) != 0)
        slot.kernel.assign(effective[key].astype(magnitudes[key].dtype))
    value, grads = objective_gradients(model, _sum_outputs, inputs, training=False)
    scores = {key: np.abs(effective[key].astype(np.float64) * grads[key]) for key in grads}
    dtype = keras.backend.standardize_dtype(next(iter(slots.values())).kernel.dtype)
    if not np.isfinite(value) or not all(np.isfinite(s).all() for s in scores.values()):
        raise ValueError(
            f"SynFlow's synaptic flow overflowed in {dtype} (R = {value}): the product of the "
            "layers' magnitudes is too large for this depth and width. Build the model in "
            "float64 (keras.config.set_floatx('float64') before building it; on JAX also "
            "jax.config.update('jax_enable_x64', True)).")
    if not any(s.any() for s in scores.values()):
        raise ValueError(
            f"SynFlow's scores are all zero in {dtype} (R = {value}): the synaptic flow "
            "underflowed or no masked weight reaches the output. Build the model in float64.")
    return scores


def _ones_inputs(model: keras.Model, input_shape):
    """One all-ones example (batch of 1) per model input, in the inputs'
    dtypes and structure (a dict of token ids and masks for keras-hub)."""
    shapes, dtypes = _input_specs(model)
    if input_shape is not None:
        given = list(input_shape)
        several = bool(given) and isinstance(given[0], (list, tuple))
        given = [tuple(s) for s in given] if several else [tuple(given)]
        dtypes = dtypes if len(dtypes) == len(given) else ["float32"] * len(given)
        shapes = given
    if not shapes or any(d is None for s in shapes for d in s):
        raise ValueError(
            "SynFlow calls the model on one all-ones input, but could not tell its shape "
            f"(found: {shapes or 'none'}). Give it: pruner_options={{'input_shape': "
            "[...]} (one example's shape without the batch axis; a list of shapes for "
            "several inputs, in the order of model.inputs), e.g. "
            "pruner_options={'input_shape': [[64], [64]]} for token ids and a padding mask "
            "of 64 tokens.")
    arrays = [np.ones((1, *s), d) for s, d in zip(shapes, dtypes)]
    return arrays[0] if len(arrays) == 1 else compat.pack_as_inputs(model, arrays)


def _input_specs(model: keras.Model) -> tuple[list[tuple], list[str]]:
    """The shapes (batch axis left out) and dtypes of the model's inputs, as
    far as `model.inputs` or the shapes it was built on tell them."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if inputs:
        return ([tuple(t.shape)[1:] for t in inputs],
                [keras.backend.standardize_dtype(t.dtype) for t in inputs])
    built = compat.built_input_shapes(model) or []
    return [s[1:] for s in built], ["float32"] * len(built)
