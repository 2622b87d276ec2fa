"""compact(): dead units and channels removed, outputs unchanged, refusals named."""

import keras
import numpy as np
import pytest

import keras_lottery as kl


def _same_outputs(model, small, shape, atol=1e-5):
    x = np.random.default_rng(1).normal(size=(8, *shape)).astype("float32")
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(model(x)), atol=atol, rtol=1e-5)


def _randomize(model, seed=0):
    """Nonzero biases and BatchNorm statistics, so constants really fold."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            n = inner.gamma.shape[0]
            inner.gamma.assign(rng.uniform(0.5, 1.5, n))
            inner.beta.assign(rng.normal(size=n))
            inner.moving_mean.assign(rng.normal(size=n))
            inner.moving_variance.assign(rng.uniform(0.5, 1.5, n))
        elif getattr(inner, "bias", None) is not None:
            inner.bias.assign(rng.normal(size=inner.bias.shape[0]))


def test_dense_chain_removes_input_less_and_output_less_units():
    x = keras.Input((12,))
    h = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.Dense(8, activation="tanh", name="fc2")(h)
    model = kl.prunable(keras.Model(x, keras.layers.Dense(3, name="output")(h)))
    _randomize(model)
    masks = kl.get_masks(model)
    masks["fc1/kernel"][:, :5] = False      # 5 units output tanh/relu(bias): folded
    masks["fc2/kernel"][[6, 7], :] = False  # 2 more fc1 units feed nothing
    masks["fc2/kernel"][:, 0] = False       # 1 fc2 unit constant
    kl.set_masks(model, masks)
    report = kl.compact_report(model)
    assert report.units == {"fc1": (9, 16), "fc2": (7, 8), "output": (3, 3)}
    assert report.params_after == 12 * 9 + 9 + 9 * 7 + 7 + 7 * 3 + 3
    assert report.nonzero_after == int(np.count_nonzero(report.model.get_layer("fc1").kernel)) \
        + int(np.count_nonzero(report.model.get_layer("fc2").kernel)) + 7 * 3
    assert not report.refused
    _same_outputs(model, report.model, (12,))


def test_conv_chain_with_batchnorm_pooling_and_flatten():
    x = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Conv2D(8, 3, padding="valid", name="c2")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10, activation="relu", name="fc")(h)
    model = kl.prunable(keras.Model(x, keras.layers.Dense(3, name="output")(h)))
    _randomize(model)
    masks = kl.get_masks(model)
    masks["c1/kernel"][..., :3] = False     # constant through BN into a valid conv: folded
    masks["c2/kernel"][:, :, 6, :] = False  # c1 channel 6 is read by nothing
    masks["c2/kernel"][..., :2] = False     # constant through ReLU, pool, Flatten into fc
    masks["fc/kernel"][:, :4] = False
    kl.set_masks(model, masks)
    small = kl.compact(model, strict=True)
    assert [small.get_layer(n).kernel.shape[-1] for n in ("c1", "c2", "fc")] == [4, 6, 6]
    assert small.get_layer("bn1").gamma.shape == (4,)
    _same_outputs(model, small, (10, 10, 3), atol=1e-4)


def test_conv2_unit_ticket_compacts_to_its_alive_units(tmp_path):
    model = kl.prunable(kl.models.conv2((28, 28, 1), 10, seed=0))
    _randomize(model)
    masks = kl.prune_by_magnitude(model, 0.75, scope="layerwise", granularity="unit",
                                  rates={"output": 0})
    report = kl.compact_report(model)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        mask = masks[f"{name}/kernel"]
        alive = int(mask.reshape(-1, mask.shape[-1]).any(axis=0).sum())
        carrier = 1 if name == "conv1" else 0  # constants into conv2's zero padding
        assert report.units[name][0] == alive + carrier, name
    masks_size = sum(m.size for m in masks.values())  # the masks are the model's variables
    assert report.params_after < (model.count_params() - masks_size) / 10
    _same_outputs(model, report.model, (28, 28, 1), atol=1e-4)
    # the compacted model saves and loads as a plain .keras
    path = str(tmp_path / "small.keras")
    report.model.save(path)
    _same_outputs(model, keras.saving.load_model(path), (28, 28, 1), atol=1e-4)


def test_sequential_model():
    model = kl.prunable(keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="a"),
                                          keras.layers.Dense(2, name="b")]))
    masks = kl.get_masks(model)
    masks["b/kernel"][1, :] = False
    kl.set_masks(model, masks)
    small = kl.compact(model)
    assert small.get_layer("a").kernel.shape == (6, 4)
    _same_outputs(model, small, (6,))


def test_residual_network_keeps_tied_channels_and_names_them():
    model = kl.prunable(kl.models.resnet20((16, 16, 3), 10, seed=0))
    _randomize(model)
    kl.prune_by_magnitude(model, 0.5, scope="layerwise", granularity="unit", ignore=["output"])
    report = kl.compact_report(model)
    tied = report.refused["stage1_block0_conv2"]
    assert "'stage1_block0_add' (Add) ties them to the same channels of ['conv1_relu']" in tied
    assert tied.startswith("channels [") and "have no inputs" in tied
    assert report.units["stage1_block0_conv2"] == (16, 16)
    # inside a block the first conv feeds the second through BN and ReLU: its
    # dead filters carry nonzero constants into a zero-padded conv, so one of
    # them is kept and carries the others' weights
    assert report.units["stage1_block0_conv1"] == (9, 16)
    assert "stage1_block0_conv1" not in report.refused
    _same_outputs(model, report.model, (16, 16, 3), atol=1e-4)
    with pytest.raises(ValueError, match=r"(?s)strict=True.*stage1_block0_conv2: channels \["):
        kl.compact(model, strict=True)


def test_refuses_subclassed_and_shared_layers():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="functional or Sequential.*subclassed"):
        kl.compact(net)
    shared = keras.layers.Dense(3, name="shared")
    x = keras.Input((3,))
    with pytest.raises(ValueError, match="'shared' has several.*called 2 times"):
        kl.compact(keras.Model(x, shared(shared(x))))
