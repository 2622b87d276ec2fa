"""Compaction: a ticket's dead units and channels physically removed.

A ticket stores its pruned weights as zeros, so it is exactly as large and
as slow as the dense network. `compact(model)` returns a smaller dense
Keras model with the same outputs: every unit of a Dense layer and every
filter of a Conv layer that is *dead* is removed, together with the
weights that read it. A unit is dead if

- all its incoming weights are pruned: it outputs a constant (its activated
  bias, carried through activations, BatchNormalization and pooling), which
  is folded into the bias of the next Dense or Conv layer (a Conv layer
  with `padding="same"` cannot absorb a nonzero constant exactly, because
  its zero padding sees 0 at the borders; such channels are kept), or
- all its outgoing weights are pruned: nothing reads it.

Between a layer and the next Dense/Conv layer, channel-wise layers are
followed: activations, Dropout, BatchNormalization (its four vectors are
cut alike), max/average pooling, global pooling and Flatten (one channel
becomes every `C`-th feature). Removing a unit can kill the next layer's
units, so the passes repeat until nothing changes.

A channel that reaches a merge (Add, Concatenate...), several consumers, a
model output or any other layer is *tied*: removing it would have to
remove the same channel from the other branches of the skip connection.
Such channels are kept, and `compact_report(model).refused` says per layer
which dead channels were kept and why (`compact(model, strict=True)`
raises with that message instead).

Only functional and Sequential models with channels-last layers are
compacted; the graph is read through the public `layer.input` /
`layer.output` of each layer (and the model's config), so a layer called
more than once is refused.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.masking import mask_slots

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_KERNEL = (keras.layers.Dense, *_CONV)
_POOL = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
         keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
         keras.layers.AveragePooling3D, keras.layers.GlobalAveragePooling1D,
         keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D,
         keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
         keras.layers.GlobalMaxPooling3D)
_ACTIVATION = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
               keras.layers.ELU, keras.layers.Softmax)
_IDENTITY = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
             keras.layers.SpatialDropout3D, keras.layers.GaussianNoise,
             keras.layers.GaussianDropout, keras.layers.AlphaDropout)


@dataclasses.dataclass
class CompactReport:
    """What `compact_report` removed and what it had to keep.

    Attributes:
        model: the compacted model (uncompiled).
        units: layer name -> (units after, units before) of every Dense
            and Conv layer.
        refused: layer name -> why some of its dead channels were kept.
        params_before: parameters of the (stripped) input model.
        params_after: parameters of the compacted model.
        nonzero_before: nonzero kernel weights before.
        nonzero_after: nonzero kernel weights after (the ticket's
            effective size: dead units' outgoing weights are gone too).
    """

    model: keras.Model
    units: dict[str, tuple[int, int]]
    refused: dict[str, str]
    params_before: int
    params_after: int
    nonzero_before: int
    nonzero_after: int

    def __str__(self) -> str:
        units = ", ".join(f"{k} {a}/{b}" for k, a_b in self.units.items() for a, b in [a_b])
        text = (f"compacted: {self.params_before:,} -> {self.params_after:,} parameters "
                f"({self.params_before / max(1, self.params_after):.1f}x fewer); units {units}")
        for name, reason in self.refused.items():
            text += f"\n  kept in {name}: {reason}"
        return text


def compact(model: keras.Model, strict: bool = False) -> keras.Model:
    """A smaller dense model with every dead unit and channel removed.

    Args:
        model: a masked model (it is stripped first) or a plain functional
            or Sequential model.
        strict: raise if any dead channel has to be kept (tied by a skip
            connection, a conv's zero padding, ...) instead of keeping it.

    Returns:
        A new, uncompiled Keras model whose outputs equal the model's
        within float tolerance.

    Raises:
        ValueError: for a subclassed model, a layer called more than once,
            channels-first data, or (with `strict`) a dead channel that
            cannot be removed; the message names the layer and channels.

    Example:
    >>> small = compact(ticket)
    >>> small.count_params() < strip(ticket).count_params()
    True
    """
    report = compact_report(model)
    if strict and report.refused:
        raise ValueError("compact(strict=True) cannot remove every dead channel:\n"
                         + "\n".join(f"{k}: {v}" for k, v in report.refused.items()))
    return report.model


def compact_report(model: keras.Model) -> CompactReport:
    """Compacts the model and reports what was removed (see `compact`).

    Returns:
        A `CompactReport`; `print()` it for a summary.
    """
    if mask_slots(model):
        from keras_lottery.export import strip

        model = strip(model)
    if not compat.is_functional_or_sequential(model):
        raise ValueError(
            f"compact needs a functional or Sequential model, whose graph it can follow. "
            f"Received: {type(model).__name__} {model.name!r} (subclassed)"
        )
    graph = _Graph(model)
    weights = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
    kernel_layers = [layer for layer in model.layers if isinstance(layer, _KERNEL)]
    for layer in kernel_layers:
        _check_layer(layer)
    before = {layer.name: weights[layer.name][0].shape[-1] for layer in kernel_layers}
    nonzero_before = sum(int(np.count_nonzero(weights[k.name][0])) for k in kernel_layers)
    add_bias: set[str] = set()
    refused: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for layer in kernel_layers:
            changed |= _compact_outputs(layer, graph, weights, add_bias, refused)
    units = {layer.name: (weights[layer.name][0].shape[-1], before[layer.name])
             for layer in kernel_layers}
    compacted = _rebuild(model, weights, units, add_bias)
    return CompactReport(
        model=compacted, units=units, refused=refused,
        params_before=model.count_params(), params_after=compacted.count_params(),
        nonzero_before=nonzero_before,
        nonzero_after=sum(int(np.count_nonzero(weights[k.name][0])) for k in kernel_layers),
    )


class _Graph:
    """Producers and consumers of each layer, from public layer.input/output."""

    def __init__(self, model: keras.Model):
        self.model = model
        if not isinstance(model, keras.Sequential):  # the config lists each layer's calls
            for entry in model.get_config().get("layers", []):
                if len(entry.get("inbound_nodes", [])) > 1:
                    raise ValueError(
                        f"compact follows each layer's single input; layer {entry['name']!r} "
                        f"has several (it is called {len(entry['inbound_nodes'])} times).")
        producer: dict[int, keras.layers.Layer] = {}
        for layer in model.layers:
            producer[id(_single(layer, "output"))] = layer
        self.consumers: dict[str, list[keras.layers.Layer]] = {l.name: [] for l in model.layers}
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            inputs = _single(layer, "input")
            for tensor in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
                source = producer.get(id(tensor))
                if source is not None:
                    self.consumers[source.name].append(layer)
        self.outputs = {producer[id(t)].name for t in model.outputs if id(t) in producer}


def _single(layer: keras.layers.Layer, what: str):
    try:
        return getattr(layer, what)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"compact follows each layer's single {what}; layer {layer.name!r} has several "
            f"(it is called more than once) or none ({error})."
        ) from None


def _check_layer(layer: keras.layers.Layer) -> None:
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last" or config.get("groups", 1) != 1:
        raise ValueError(
            f"compact handles channels-last, ungrouped layers. Received: layer {layer.name!r} "
            f"with data_format={config.get('data_format')!r}, groups={config.get('groups')!r}"
        )


def _chain(layer: keras.layers.Layer, graph: _Graph):
    """(channel-wise layers, next kernel layer) after `layer`, or
    (layers, None, reason) when its channels are tied."""
    path, current = [], layer
    while True:
        consumers = graph.consumers[current.name]
        if current.name in graph.outputs:
            return path, None, f"reaches the model output at {current.name!r}"
        if len(consumers) != 1:
            names = [c.name for c in consumers]
            return path, None, f"the output of {current.name!r} is read by {len(names)} layers {names}"
        nxt = consumers[0]
        if isinstance(nxt, _KERNEL):
            _check_layer(nxt)
            return path, nxt, None
        if isinstance(nxt, keras.layers.BatchNormalization) and nxt.axis not in (
                -1, len(nxt.input.shape) - 1):
            return path, None, f"{nxt.name!r} normalizes axis {nxt.axis}, not the channels"
        if isinstance(nxt, (*_POOL, *_ACTIVATION, *_IDENTITY, keras.layers.BatchNormalization,
                            keras.layers.Flatten)):
            if isinstance(nxt, keras.layers.Softmax):
                return path, None, f"{nxt.name!r} (softmax) mixes the channels"
            path.append(nxt)
            current = nxt
            continue
        others = [p for p in _producers(nxt, graph) if p is not current]
        return path, None, (
            f"{nxt.name!r} ({type(nxt).__name__}) ties them to "
            + (f"the same channels of {[p.name for p in others]}" if others else "its other inputs")
            + " (a skip connection or merge); removing them needs the same channels removed "
            "there too")


def _producers(layer: keras.layers.Layer, graph: _Graph) -> list[keras.layers.Layer]:
    return [graph.model.get_layer(name) for name, consumers in graph.consumers.items()
            if any(c is layer for c in consumers)]


def _constant(layer, path, weights, channels: np.ndarray) -> np.ndarray:
    """The constant value dead (input-less) channels carry to the next kernel."""
    bias = weights[layer.name][1][channels] if layer.use_bias else np.zeros(channels.size)
    value = _apply(layer.activation, bias)
    for step in path:
        if isinstance(step, keras.layers.BatchNormalization):
            value = _batchnorm(step, weights[step.name], value, channels)
        elif isinstance(step, _ACTIVATION):
            value = _apply(step, value)
    return value.astype(np.float64)


def _apply(fn, value: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(fn(np.asarray(value, np.float32)[None])))[0]


def _batchnorm(layer, values: list[np.ndarray], x: np.ndarray, channels) -> np.ndarray:
    named = dict(zip([w.path.rsplit("/", 1)[-1] for w in layer.weights], values))
    gamma = named["gamma"][channels] if "gamma" in named else 1.0
    beta = named["beta"][channels] if "beta" in named else 0.0
    return gamma * (x - named["moving_mean"][channels]) / np.sqrt(
        named["moving_variance"][channels] + layer.epsilon) + beta


def _rows(path) -> tuple[bool, int]:
    """(whether a Flatten lies between, positions per channel it flattens)."""
    for step in path:
        if isinstance(step, keras.layers.Flatten):
            return True, int(np.prod(step.input.shape[1:-1]))
    return False, 1


def _compact_outputs(layer, graph: _Graph, weights, add_bias: set[str],
                     refused: dict[str, str]) -> bool:
    """Removes `layer`'s dead output channels; True if any was removed."""
    kernel = weights[layer.name][0]
    channels = kernel.shape[-1]
    no_input = ~kernel.reshape(-1, channels).any(axis=0)
    path, nxt, reason = _chain(layer, graph)
    if nxt is None:
        if no_input.any() and layer.name not in graph.outputs:
            refused[layer.name] = (f"channels {np.flatnonzero(no_input).tolist()} have no "
                                   f"inputs, but {reason}")
        return False
    flat, per = _rows(path)
    nkernel = weights[nxt.name][0]
    if flat:  # Flatten: channel c is every `channels`-th feature of the Dense input
        reads = nkernel.reshape(per, channels, -1).transpose(1, 0, 2)
    else:  # (channels, spatial taps, outputs)
        reads = np.moveaxis(nkernel, -2, 0).reshape(channels, -1, nkernel.shape[-1])
    no_output = ~reads.reshape(channels, -1).any(axis=1)
    dead = no_output | no_input
    value = np.zeros(channels)
    fold = no_input & ~no_output
    if fold.any():
        value[fold] = _constant(layer, path, weights, np.flatnonzero(fold))
        nonzero = fold & (value != 0)
        if nonzero.any() and isinstance(nxt, _CONV) and nxt.padding != "valid":
            # Zero padding sees 0 at the borders, so a constant cannot become a
            # bias; but constant channels are all multiples of one: one of them
            # carries the others' weights, scaled, and the rest go.
            carrier, *others = np.flatnonzero(nonzero)
            if others:
                scale = value[others] / value[carrier]
                nkernel[..., carrier, :] += np.einsum("...co,c->...o", nkernel[..., others, :],
                                                      scale).astype(nkernel.dtype)
                nkernel[..., others, :] = 0
                reads = np.moveaxis(nkernel, -2, 0).reshape(channels, -1, nkernel.shape[-1])
            dead[carrier] = False
            fold &= ~nonzero
    if dead.all():
        dead[np.argmax(~no_output)] = False  # keep one channel: a layer cannot be empty
    if not dead.any():
        return False
    fold &= dead
    # the next layer's bias absorbs the constants of the removed channels
    contribution = np.einsum("cpo,c->o", reads, np.where(fold, value, 0.0))
    if np.any(contribution):
        if not nxt.use_bias and nxt.name not in add_bias:
            add_bias.add(nxt.name)
            weights[nxt.name].insert(1, np.zeros(nkernel.shape[-1], nkernel.dtype))
        weights[nxt.name][1] = (weights[nxt.name][1] + contribution).astype(nkernel.dtype)
    keep = ~dead
    weights[layer.name][0] = kernel[..., keep]
    if layer.use_bias:
        weights[layer.name][1] = weights[layer.name][1][keep]
    for step in path:
        if isinstance(step, keras.layers.BatchNormalization):
            weights[step.name] = [w[keep] for w in weights[step.name]]
    if flat:
        weights[nxt.name][0] = nkernel.reshape(per, channels, -1)[:, keep].reshape(
            -1, nkernel.shape[-1])
    else:
        weights[nxt.name][0] = nkernel[..., keep, :]
    return True


def _rebuild(model: keras.Model, weights, units: dict[str, tuple[int, int]],
             add_bias: set[str]) -> keras.Model:
    """The model built again with the new unit counts, weights set."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in units:
            config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = (
                units[layer.name][0])
            if layer.name in add_bias:
                config["use_bias"] = True
        return layer.__class__.from_config(config)

    with compat.uncompiled(model):
        new = keras.models.clone_model(model, clone_function=clone)
    for layer in new.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])
    return new
