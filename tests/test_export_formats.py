"""Deployment formats: each written, loaded back and checked on real inputs."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery import deploy, tflite
from keras_lottery.runner import cli
from keras_lottery.runner.presets import pipeline
from tests.conftest import tiny_config

# TFLite conversions of every format (`pytest -m slow`; CI runs it).
pytestmark = pytest.mark.slow

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def ticket_and_inputs(fashion):
    """A LeNet-300-100 trained a little, pruned to 5%, and real inputs."""
    mean, std = pipeline.normalizer(fashion.x_train[:2000])
    x = ((fashion.x_train[:2000] / 255.0 - mean) / std).astype("float32")
    model = kl.prunable(kl.models.lenet300(fashion.input_shape, 10, seed=0))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, fashion.y_train[:2000], batch_size=100, epochs=1, verbose=0)
    kl.prune_by_magnitude(model, 0.95, scope="layerwise")
    x_test = ((fashion.x_test[:300] / 255.0 - mean) / std).astype("float32")
    return model, x_test, x[:200]


def test_every_format_agrees_with_the_masked_model(ticket_and_inputs, tmp_path):
    model, x, calibration = ticket_and_inputs
    results = {r.format: r for r in deploy.export_all(model, str(tmp_path), deploy.FORMATS, x,
                                                      calibration)}
    assert set(results) == set(deploy.FORMATS)
    for name, result in results.items():
        assert os.path.exists(result.path) and result.bytes > 0
        assert result.examples == 300
        if name.endswith("int8"):
            assert result.agreement > 0.9 and result.max_abs_diff > 0  # lossy, but close
        else:
            assert result.max_abs_diff < 1e-3 and result.agreement == 1.0, name
    sizes = {name: r.bytes for name, r in results.items()}
    dense = len(tflite.convert(kl.strip(kl.prunable(kl.models.lenet300((28, 28, 1), 10)))))
    assert dense > 1_000_000  # 266K float32 weights
    assert sizes["tflite_sparse"] * 5 < dense  # the zeros are not stored
    assert sizes["tflite_sparse_int8"] * 15 < dense
    assert sizes["tflite_sparse_int8"] < sizes["tflite_sparse"]
    assert sizes["keras"] > 1_000_000  # the stripped .keras stores its zeros


def test_unit_ticket_compacts_in_every_tflite_format(ticket_and_inputs, tmp_path):
    model, x, calibration = ticket_and_inputs
    unit = kl.prunable(kl.models.lenet300((28, 28, 1), 10, seed=1))
    kl.prune_by_magnitude(unit, 0.75, scope="layerwise", granularity="unit", ignore=["output"])
    result = deploy.export(unit, str(tmp_path / "u.tflite"), "tflite", x)
    assert result.compacted and result.agreement == 1.0
    # 75 + 25 hidden units: 784*75 + 75*25 + 25*10 weights, float32
    assert result.bytes < 4 * (784 * 75 + 75 * 25 + 25 * 10) * 1.1


def test_a_disagreeing_artifact_is_refused(ticket_and_inputs, tmp_path, monkeypatch):
    model, x, _ = ticket_and_inputs
    other = kl.strip(kl.prunable(kl.models.lenet300((28, 28, 1), 10, seed=5)))
    real_convert = tflite.convert
    monkeypatch.setattr(tflite, "convert", lambda m, **kw: real_convert(other, **kw))
    with pytest.raises(ValueError, match="does not reproduce the masked model"):
        deploy.export(model, str(tmp_path / "bad.tflite"), "tflite", x)
    with pytest.raises(ValueError, match="format must be one of"):
        deploy.export(model, str(tmp_path / "x"), "onnx", x)
    with pytest.raises(ValueError, match="int8=True needs calibration"):
        tflite.convert(other, int8=True)


def test_cli_export_formats(tmp_path, fashion_small, capsys):
    result = kl.find_ticket(tiny_config(tmp_path, rounds=1), fashion_small)
    out = str(tmp_path / "out")
    code = cli.main(["export", result.run_dir, "--round", "1", out,
                               "--format", "compact,tflite_sparse"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "compact " in printed and "tflite_sparse " in printed
    assert "top-1 agreement 100.00%" in printed
    assert os.path.exists(os.path.join(out, "ticket_tflite_sparse.tflite"))
    assert cli.main(["export", result.run_dir, "--round", "1", out,
                               "--format", "zip"]) == 2
