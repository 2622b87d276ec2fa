"""TFMOT's pruning policies: which layers of a model `prune_low_magnitude` prunes.

`PruningPolicy` is TFMOT's abstract class; `PruneForLatencyOnXNNPack`
prunes only the 1x1 Conv2D layers of a model whose graph XNNPACK's sparse
inference can run (a 3x3 stride-2 Conv2D on the 3-channel input after a
`ZeroPadding2D`, through supported layers, to a `GlobalAveragePooling2D`),
walking the Keras 3 functional graph as TFMOT walks tf_keras's.
"""

from __future__ import annotations

import abc

import keras

from keras_lottery import compat


class PruningPolicy(abc.ABC):
    """Chooses the layers of a model to prune, and checks the model first.

    Pass one as `prune_low_magnitude(model, pruning_policy=...)`.

    Example:
    >>> class DenseOnly(PruningPolicy):
    ...     def allow_pruning(self, layer):
    ...         return isinstance(layer, keras.layers.Dense)
    ...     def ensure_model_supports_pruning(self, model):
    ...         pass
    """

    @abc.abstractmethod
    def allow_pruning(self, layer) -> bool:
        """Whether `layer`'s weights are pruned."""
        raise NotImplementedError

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model) -> None:
        """Raises ValueError if the policy cannot prune `model`."""
        raise NotImplementedError


def _producers(layer) -> set:
    return set(compat.inbound_operations(layer))


def _consumers(layer) -> list:
    def unpack(op):
        return unpack(op.layers[0]) if isinstance(op, keras.Sequential) else op

    return [unpack(op) for op in compat.outbound_operations(layer)]


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only the 1x1 Conv2D layers, in a model XNNPACK runs sparse.

    TFMOT's policy (Elsen et al., Fast Sparse ConvNets, 2019): the model must
    start, on every input branch, with `ZeroPadding2D(1)` and a 3x3
    stride-2 `valid` Conv2D on 3 channels, and end, on every output branch,
    at a `GlobalAveragePooling2D(keepdims=True)`, with only layers XNNPACK's
    sparse inference supports between them.

    Example:
    >>> pruned = prune_low_magnitude(mobilenet, pruning_policy=PruneForLatencyOnXNNPack())
    """

    def allow_pruning(self, layer) -> bool:
        return isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)

    def _lookup_layers(self, sources, stop_fn, next_fn) -> set:
        to_visit, used, found = set(sources), set(sources), set()
        while to_visit:
            layer = to_visit.pop()
            if stop_fn(layer):
                found.add(layer)
                continue
            following = next_fn(layer)
            if not following:
                return set()
            for item in following:
                if item not in used:
                    used.add(item)
                    to_visit.add(item)
        return found

    def _start_layer_stop_fn(self, layer) -> bool:
        if not isinstance(layer, keras.layers.Conv2D) or isinstance(
                layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose)):
            return False
        producers = list(_producers(layer))
        return (tuple(layer.kernel.shape[:3]) == (3, 3, 3) and tuple(layer.strides) == (2, 2)
                and layer.padding.lower() == "valid" and len(producers) == 1
                and isinstance(producers[0], keras.layers.ZeroPadding2D)
                and tuple(map(tuple, producers[0].padding)) == ((1, 1), (1, 1)))

    def _end_layer_stop_fn(self, layer) -> bool:
        return isinstance(layer, keras.layers.GlobalAveragePooling2D)

    def _check_layer_support(self, layer) -> bool:
        layers = keras.layers
        if isinstance(layer, (layers.Add, layers.Multiply, layers.ZeroPadding2D, layers.ReLU,
                              layers.LeakyReLU, layers.ELU, layers.Dropout)):
            return True
        if isinstance(layer, layers.DepthwiseConv2D):
            padding = layer.padding.lower()
            producers = list(_producers(layer))
            zero = producers[0] if len(producers) == 1 and isinstance(
                producers[0], layers.ZeroPadding2D) else None
            zero_padding = tuple(map(tuple, zero.padding)) if zero is not None else None
            size, strides = tuple(layer.kernel_size), tuple(layer.strides)
            cases = (
                size == (3, 3) and strides == (1, 1) and padding == "same",
                size == (3, 3) and strides in ((1, 1), (2, 2)) and padding == "valid"
                and zero_padding == ((1, 1), (1, 1)),
                size == (5, 5) and strides == (1, 1) and padding == "same",
                size == (5, 5) and strides in ((1, 1), (2, 2)) and padding == "valid"
                and zero_padding == ((2, 2), (2, 2)),
            )
            return (layer.depth_multiplier == 1 and tuple(layer.dilation_rate) == (1, 1)
                    and any(cases))
        if isinstance(layer, layers.Conv2D):
            return (layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
                    and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1))
        if isinstance(layer, layers.GlobalAveragePooling2D):
            return bool(layer.keepdims)
        if isinstance(layer, layers.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            return list(axis) in ([3], [-1])
        if isinstance(layer, layers.UpSampling2D):
            return layer.interpolation == "bilinear"
        if isinstance(layer, layers.Activation):
            name = keras.activations.serialize(layer.activation)
            name = name if isinstance(name, str) else name.get("config", {}).get("name", "")
            return name in ("relu", "relu6", "leaky_relu", "elu", "sigmoid")
        if not isinstance(layer, layers.Layer):
            # Keras ops between layers (x + y, x * y) stand where tf_keras
            # had TFOpLambda layers, of which TFMOT accepts these.
            return type(layer).__name__ in ("Add", "Subtract", "Multiply", "Identity")
        return False

    def ensure_model_supports_pruning(self, model) -> None:
        if not compat.is_functional_or_sequential(model):
            raise ValueError("Subclassed models are not supported currently.")
        if not model.built:
            raise ValueError("Unbuilt models are not supported currently.")
        inputs = {compat.producing_operation(tensor) for tensor in model.inputs}
        starts = self._lookup_layers(inputs, self._start_layer_stop_fn, _consumers)
        if not starts:
            raise ValueError(
                "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3` and "
                "`VALID` padding and preceding `ZeroPadding2D` with `padding == 1` in all "
                "input branches of the model"
            )
        outputs = {compat.producing_operation(tensor) for tensor in model.outputs}
        ends = self._lookup_layers(outputs, self._end_layer_stop_fn, _producers)
        if not ends:
            raise ValueError(
                "Could not find a `GlobalAveragePooling2D` layer in all output branches"
            )

        def visit(layer):
            if layer not in ends and not self._check_layer_support(layer):
                raise ValueError(
                    f"Layer {type(layer).__name__} is not supported for the "
                    f"{type(self).__name__} pruning policy"
                )
            return layer in ends

        self._lookup_layers(sum((_consumers(layer) for layer in starts), []), visit, _consumers)
