"""Models nobody on the team would write for a test: every layer kind and
model kind that `prunable()` must handle, on any backend, tiny."""

import keras
import numpy as np

# Layer kind -> (factory of a model containing the layer, input array, the
# owning-layer classes whose weights must all be masked).
_RNG = np.random.default_rng(0)


def _x(*shape):
    return _RNG.normal(size=(4, *shape)).astype("float32")


def _seq(layer, shape, head=True):
    layers = [keras.Input(shape), layer]
    if head:
        layers += [keras.layers.Flatten(), keras.layers.Dense(3)]
    return keras.Sequential(layers)


def _mha(shape):
    inp = keras.Input(shape)
    h = keras.layers.MultiHeadAttention(2, 4)(inp, inp)
    return keras.Model(inp, keras.layers.Dense(3)(keras.ops.mean(h, axis=1)))


LAYER_KINDS = {
    "Dense": (lambda: _seq(keras.layers.Dense(6), (5,)), _x(5)),
    "EinsumDense": (lambda: _seq(keras.layers.EinsumDense("ab,bc->ac", output_shape=6), (5,)), _x(5)),
    "Conv1D": (lambda: _seq(keras.layers.Conv1D(4, 3), (9, 3)), _x(9, 3)),
    "Conv2D": (lambda: _seq(keras.layers.Conv2D(4, 3), (8, 8, 2)), _x(8, 8, 2)),
    "Conv3D": (lambda: _seq(keras.layers.Conv3D(2, 2), (5, 5, 5, 2)), _x(5, 5, 5, 2)),
    "Conv1DTranspose": (lambda: _seq(keras.layers.Conv1DTranspose(3, 3), (6, 2)), _x(6, 2)),
    "Conv2DTranspose": (lambda: _seq(keras.layers.Conv2DTranspose(3, 3, strides=2), (5, 5, 2)),
                        _x(5, 5, 2)),
    "Conv3DTranspose": (lambda: _seq(keras.layers.Conv3DTranspose(2, 2), (4, 4, 4, 2)),
                        _x(4, 4, 4, 2)),
    "DepthwiseConv1D": (lambda: _seq(keras.layers.DepthwiseConv1D(3, depth_multiplier=2), (9, 3)),
                        _x(9, 3)),
    "DepthwiseConv2D": (lambda: _seq(keras.layers.DepthwiseConv2D(3), (8, 8, 3)), _x(8, 8, 3)),
    "SeparableConv1D": (lambda: _seq(keras.layers.SeparableConv1D(4, 3), (9, 3)), _x(9, 3)),
    "SeparableConv2D": (lambda: _seq(keras.layers.SeparableConv2D(4, 3), (8, 8, 3)), _x(8, 8, 3)),
    "Embedding": (lambda: _seq(keras.layers.Embedding(30, 4), (7,)),
                  _RNG.integers(0, 30, size=(4, 7))),
    "SimpleRNN": (lambda: _seq(keras.layers.SimpleRNN(5), (6, 3)), _x(6, 3)),
    "LSTM": (lambda: _seq(keras.layers.LSTM(5), (6, 3)), _x(6, 3)),
    "GRU": (lambda: _seq(keras.layers.GRU(5), (6, 3)), _x(6, 3)),
    "ConvLSTM1D": (lambda: _seq(keras.layers.ConvLSTM1D(2, 3), (4, 7, 2)), _x(4, 7, 2)),
    "Bidirectional": (lambda: _seq(keras.layers.Bidirectional(keras.layers.LSTM(4)), (6, 3)),
                      _x(6, 3)),
    "MultiHeadAttention": (lambda: _mha((5, 8)), _x(5, 8)),
}


@keras.saving.register_keras_serializable(package="zoo")
class Block(keras.layers.Layer):
    """Attention + feed-forward, sublayers named the same in every block."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
        self.ff = keras.layers.Dense(width, activation="relu", name="ff")
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        return self.norm(x + self.ff(self.attention(x, x)))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="zoo")
class Encoder(keras.Model):
    """A subclassed model with two same-named attention blocks inside."""

    def __init__(self, width=8, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.width, self.classes = width, classes
        self.first = Block(width, name="block")
        self.second = Block(width, name="block_b")
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x):
        return self.head(keras.ops.mean(self.second(self.first(x)), axis=1))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "classes": self.classes}


def functional_with_ops():
    """Keras ops between layers: a + b, slicing, keras.ops.* (as keras-hub is written)."""
    inp = keras.Input((8,))
    a = keras.layers.Dense(8, name="a")(inp)
    b = keras.layers.Dense(8, name="b")(inp)
    h = keras.ops.relu(a + b)
    h = keras.layers.Dense(6, name="c")(h[:, :6] * 2.0)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h), name="ops_net")


def nested():
    """A functional model inside a functional model, with a residual."""
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(8, name="fc")(inner_in), name="inner")
    inp = keras.Input((8,))
    h = keras.layers.Add()([inp, inner(inp)])
    return keras.Model(inp, keras.layers.Dense(3, name="fc_out")(h), name="outer")


def subclassed():
    model = Encoder(name="encoder")
    model(_x(5, 8))
    return model


def lstm_classifier():
    return keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(5),
                             keras.layers.Dense(3)], name="lstm_net")


# Model kind -> (factory, input array).
MODEL_KINDS = {
    "sequential": (lambda: keras.Sequential([keras.Input((8,)), keras.layers.Dense(8),
                                             keras.layers.BatchNormalization(),
                                             keras.layers.Dense(3)], name="seq"), _x(8)),
    "functional_ops": (functional_with_ops, _x(8)),
    "nested": (nested, _x(8)),
    "subclassed": (subclassed, _x(5, 8)),
    "lstm": (lstm_classifier, _x(6, 3)),
}
