"""strip(), .keras round trips, SavedModel export and save_ticket()."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import compile_for_test, mlp, toy_data


def _pruned_conv_model():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(8, 3, name="conv")(x_in)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.SeparableConv2D(8, 3, name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.prunable(keras.Model(x_in, keras.layers.Dense(4, name="out")(h)))
    x = np.random.default_rng(0).normal(size=(16, 12, 12, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 4, 16)
    compile_for_test(model).fit(x, y, epochs=1, verbose=0)
    kl.prune_by_magnitude(model, 0.7, scope="layerwise")
    return model, x


def test_strip_gives_plain_layers_and_identical_predictions():
    model, x = _pruned_conv_model()
    masks, kernels = kl.get_masks(model), kl.get_kernels(model)
    plain = kl.strip(model)
    assert plain is not model and not kl.mask_slots(plain)
    assert not any(isinstance(vars(l).get("call"), kl.masking._MaskedCall) for l in plain.layers)
    assert [type(l) for l in plain.layers] == [type(l) for l in model.layers]
    assert len(plain.weights) == len(model.weights) - len(masks)
    assert np.abs(plain.predict(x, verbose=0) - model.predict(x, verbose=0)).max() <= 1e-6
    kernel = plain.get_layer("conv").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.7, abs=0.01)
    # The original keeps its masks and kernels.
    assert sorted(kl.get_masks(model)) == sorted(masks) == ["conv/kernel", "out/kernel", "sep/depthwise_kernel", "sep/pointwise_kernel"]
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)
    assert all(np.array_equal(kl.get_kernels(model)[k], kernels[k]) for k in kernels)
    assert [l.name for l in plain.layers] == [l.name for l in model.layers]


def test_keras_file_round_trips_masks_and_predictions(tmp_path):
    model, x = _pruned_conv_model()
    path = tmp_path / "ticket.keras"
    model.save(path)
    loaded = kl.load_model(path)
    assert type(loaded.get_layer("sep")) is keras.layers.SeparableConv2D
    before, after = kl.get_masks(model), kl.get_masks(loaded)
    assert len(before) == 4
    assert sorted(before) == sorted(after)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # The masks are an asset beside the weights: plain Keras loads the file unmasked.
    assert list(kl.saved_masks(path)) == [model.name]  # the model holds its masks
    assert sorted(kl.saved_masks(path)[model.name]) == sorted(before)
    plain = keras.models.load_model(path)
    assert not kl.mask_slots(plain)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_savedmodel_serves_without_keras_lottery(tmp_path):
    model, x = _pruned_conv_model()
    export_dir = str(tmp_path / "ticket_savedmodel")
    kl.strip(model).export(export_dir, verbose=False)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    script = f"""
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
served = tf.saved_model.load({export_dir!r})
out = served.serve(np.load({str(tmp_path / 'x.npy')!r})).numpy()
diff = np.abs(out - np.load({str(tmp_path / 'y.npy')!r})).max()
print("diff", diff, "imported", "keras_lottery" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    diff = float(out.stdout.split("diff ")[1].split()[0])
    assert diff <= 1e-6
    assert "imported False" in out.stdout


@pytest.mark.parametrize("name", ["ticket.keras", "ticket_dir"])
def test_save_ticket_reports_dense_and_compressed_size(tmp_path, name):
    model = compile_for_test(kl.prunable(mlp()))
    kl.prune_by_magnitude(model, 0.9)
    size = kl.save_ticket(model, tmp_path / name)
    assert os.path.exists(size.path)
    assert size.compressed_bytes < size.dense_bytes
    assert size.zero_fraction > 0.85
    assert "zip-compressed" in str(size)
    if name.endswith(".keras"):
        plain = keras.models.load_model(size.path)
        assert not kl.mask_slots(plain) and kl.saved_masks(size.path) == {}
        assert len(plain.weights) == len(kl.rewind.rewindable_weights(model))


def test_sparser_ticket_compresses_better(tmp_path):
    ratios = []
    for fraction in (0.0, 0.5, 0.95):
        model = kl.prunable(mlp(inputs=200))
        if fraction:
            kl.prune_by_magnitude(model, fraction)
        ratios.append(kl.save_ticket(model, tmp_path / f"t{fraction}.keras").ratio)
    assert ratios[0] < ratios[1] < ratios[2]


def test_ticket_of_compiled_model_carries_no_optimizer(tmp_path):
    model = compile_for_test(kl.prunable(mlp(inputs=4000)))
    x, y = toy_data(n=64, inputs=4000)
    model.fit(x, y, epochs=1, verbose=0)
    assert not kl.strip(model).compiled and model.compiled
    size = kl.save_ticket(model, tmp_path / "t.keras")
    param_bytes = 4 * model.count_params() - 4 * sum(s.mask.numpy().size for s in kl.mask_slots(model))
    assert size.dense_bytes < 1.5 * param_bytes  # Adam state would triple it
