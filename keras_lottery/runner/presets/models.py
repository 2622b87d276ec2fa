"""The paper's architectures (Frankle & Carbin 2019, Figure 2), seeded.

Every builder returns an unmasked functional Keras model whose weights are
fully determined by `seed` (each layer's initializer gets its own seed;
nothing global is touched). Layer names are stable so presets can address
them: the last layer is always `"output"`, and ResNet's 1x1 downsampling
convolutions are `"*_shortcut"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import keras
from keras import layers


def _seeds(seed: int) -> Iterator[int]:
    """An endless stream of per-layer seeds derived from `seed`."""
    i = 0
    while True:
        yield (seed * 1_000_003 + i) % (2**31 - 1)
        i += 1


def _dense(units: int, seeds: Iterator[int], name: str, activation="relu"):
    return layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotNormal(next(seeds)),
        name=name,
    )


def _conv(filters: int, seeds: Iterator[int], name: str, activation="relu", **kwargs):
    kwargs.setdefault("kernel_size", 3)
    kwargs.setdefault("padding", "same")
    return layers.Conv2D(
        filters,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotNormal(next(seeds)),
        name=name,
        **kwargs,
    )


def _head(
    x, seeds: Iterator[int], fc: Sequence[int], num_classes: int, dropout: float
) -> keras.KerasTensor:
    for i, units in enumerate(fc, start=1):
        x = _dense(units, seeds, f"fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, seed=next(seeds), name=f"dropout_fc{i}")(x)
    return _dense(num_classes, seeds, "output", activation=None)(x)


def lenet300(input_shape, num_classes: int, seed: int = 0, dropout: float = 0.0):
    """LeNet-300-100: fc 300, 100, output (266K weights on MNIST).

    Args:
        input_shape: shape of one example, e.g. `(28, 28, 1)`.
        num_classes: number of output logits.
        seed: seed of the initialization.
        dropout: dropout rate after each hidden layer (0 = none).

    Returns:
        An unmasked `keras.Model` producing logits.

    Example:
    >>> lenet300((28, 28, 1), 10).count_params()
    266610
    """
    seeds = _seeds(seed)
    x_in = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(x_in)
    return keras.Model(x_in, _head(x, seeds, (300, 100), num_classes, dropout), name="lenet300")


def _conv_net(name: str, blocks: Sequence[int]) -> Callable[..., keras.Model]:
    """Conv-2/4/6: pairs of 3x3 convs then max-pool, then fc 256, 256."""

    def build(input_shape, num_classes: int, seed: int = 0, dropout: float = 0.0):
        seeds = _seeds(seed)
        x_in = keras.Input(input_shape, name="image")
        x = x_in
        n = 0
        for filters in blocks:
            for _ in range(2):
                n += 1
                x = _conv(filters, seeds, f"conv{n}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{n // 2}")(x)
        x = layers.Flatten(name="flatten")(x)
        if dropout:
            x = layers.Dropout(dropout, seed=next(seeds), name="dropout_flatten")(x)
        return keras.Model(x_in, _head(x, seeds, (256, 256), num_classes, dropout), name=name)

    build.__name__ = name
    build.__doc__ = (
        f"{name}: {len(blocks)} blocks of two 3x3 convs {list(blocks)} with max-pool, "
        "fc 256, 256, output (paper, Figure 2). Same arguments as `lenet300`. "
        "Built exactly as the table lists its layers, Conv-6 has 2.26M weights "
        "on CIFAR-10 (its conv part, 1.1M, matches the paper; the paper's "
        "total of 1.7M does not follow from the listed layers)."
    )
    return build


conv2 = _conv_net("conv2", (64,))
conv4 = _conv_net("conv4", (64, 128))
conv6 = _conv_net("conv6", (64, 128, 256))

_VGG19 = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, 256, "pool",
          512, 512, 512, 512, "pool", 512, 512, 512, 512)


def vgg19(input_shape, num_classes: int, seed: int = 0, dropout: float = 0.0):
    """VGG-19 for CIFAR-10: 16 3x3 convs with BatchNorm, avg-pool, fc output.

    Args:
        input_shape: shape of one example, e.g. `(32, 32, 3)`.
        num_classes: number of output logits.
        seed: seed of the initialization.
        dropout: unused (the paper trains VGG-19 without dropout); must be 0.

    Returns:
        An unmasked `keras.Model` (20.0M weights on CIFAR-10).
    """
    _no_dropout("vgg19", dropout)
    seeds = _seeds(seed)
    x_in = keras.Input(input_shape, name="image")
    x = x_in
    n = 0
    for spec in _VGG19:
        if spec == "pool":
            x = layers.MaxPooling2D(2, name=f"pool{n}")(x)
            continue
        n += 1
        x = _conv(spec, seeds, f"conv{n}", activation=None, use_bias=False)(x)
        x = layers.BatchNormalization(name=f"bn{n}")(x)
        x = layers.ReLU(name=f"relu{n}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(x_in, _dense(num_classes, seeds, "output", None)(x), name="vgg19")


def resnet20(input_shape, num_classes: int, seed: int = 0, dropout: float = 0.0):
    """ResNet-20 for CIFAR-10 (the paper's "Resnet-18"; He et al. 2016).

    conv 16, then 3 stages of 3 residual blocks (16, 32, 64 filters) of two
    3x3 convs with BatchNorm; 1x1 convolutions (`"*_shortcut"`) downsample
    the shortcut where the shape changes; global avg-pool and fc output.

    Args:
        input_shape: shape of one example, e.g. `(32, 32, 3)`.
        num_classes: number of output logits.
        seed: seed of the initialization.
        dropout: unused; must be 0.

    Returns:
        An unmasked `keras.Model` (274K parameters on CIFAR-10, as in the
        paper).
    """
    _no_dropout("resnet20", dropout)
    seeds = _seeds(seed)

    def conv_bn(x, filters, name, strides=1, kernel_size=3, relu=True):
        x = _conv(filters, seeds, name, activation=None, use_bias=False,
                  strides=strides, kernel_size=kernel_size)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    x_in = keras.Input(input_shape, name="image")
    x = conv_bn(x_in, 16, "conv1")
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(3):
            name = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 0 else 1
            shortcut = x
            y = conv_bn(x, filters, f"{name}_conv1", strides=strides)
            y = conv_bn(y, filters, f"{name}_conv2", relu=False)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = conv_bn(shortcut, filters, f"{name}_shortcut",
                                   strides=strides, kernel_size=1, relu=False)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(x_in, _dense(num_classes, seeds, "output", None)(x), name="resnet20")


def _no_dropout(name: str, dropout: float) -> None:
    if dropout:
        raise ValueError(f"{name} is trained without dropout. Received: dropout={dropout}")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "lenet300": lenet300,
    "conv2": conv2,
    "conv4": conv4,
    "conv6": conv6,
    "vgg19": vgg19,
    "resnet20": resnet20,
}


def build(name: str, input_shape, num_classes: int, seed: int = 0, dropout: float = 0.0):
    """Builds architecture `name` (a key of `ARCHITECTURES`).

    Args:
        name: `"lenet300"`, `"conv2"`, `"conv4"`, `"conv6"`, `"vgg19"` or
            `"resnet20"`.
        input_shape: shape of one example.
        num_classes: number of output logits.
        seed: seed of the initialization.
        dropout: dropout rate (Conv and LeNet only).

    Returns:
        An unmasked `keras.Model`.

    Example:
    >>> build("conv2", (32, 32, 3), 10).count_params()
    4301642
    """
    if name not in ARCHITECTURES:
        raise ValueError(
            f"Unknown model {name!r}. Accepted: {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[name](input_shape, num_classes, seed=seed, dropout=dropout)
