"""TFLite sparse layouts: a ticket's random sparsity is stored as CSR over
single weights, not the converter's larger 1x4 blocks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from keras_lottery import compat, tflite
from keras_lottery.tflite_encoding import densify, prefer_smaller_layout, single_weight_csr

pytest.importorskip("ai_edge_litert")
SCHEMA, UTILS = compat.tflite_flatbuffers()


def _sparse_lenet(remaining: float) -> keras.Model:
    """LeNet-300-100 with `remaining` of each kernel's weights kept at random."""
    model = kl.strip(kl.prunable(kl.models.lenet300((28, 28, 1), 10, seed=0)))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel = layer.kernel.numpy()
            layer.kernel.assign(kernel * (rng.random(kernel.shape) < remaining))
    return model


def _converter_output(model: keras.Model, tmp_path) -> bytes:
    """What TensorFlow's converter alone writes with EXPERIMENTAL_SPARSITY."""
    model.export(str(tmp_path / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def _sparse_tensors(content: bytes) -> dict[str, tuple]:
    model = UTILS.convert_bytearray_to_object(bytearray(content))
    out = {}
    for tensor in model.subgraphs[0].tensors:
        if tensor.sparsity is not None:
            values = np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)),
                                   np.float32)
            dense = densify(SCHEMA, tuple(tensor.shape), tensor.sparsity, values)
            blocks = tensor.sparsity.blockMap
            out[tuple(tensor.shape)] = (blocks is not None and len(blocks) > 0, dense)
    return out


@pytest.mark.parametrize("shape", [(7, 300), (4, 3, 3, 5), (1, 2)])
def test_single_weight_csr_round_trips_through_densify(shape):
    rng = np.random.default_rng(1)
    dense = (rng.normal(size=shape) * (rng.random(shape) < 0.2)).astype(np.float32)
    sparsity, values, index_bytes = single_weight_csr(SCHEMA, dense)
    assert len(values) == np.count_nonzero(dense) and index_bytes > 0
    np.testing.assert_array_equal(densify(SCHEMA, shape, sparsity, values), dense)


def test_block_encoded_tensors_are_rewritten_smaller_with_the_same_outputs(tmp_path):
    model = _sparse_lenet(0.03)
    raw = _converter_output(model, tmp_path)
    before = _sparse_tensors(raw)
    # At 3% random sparsity TensorFlow's converter picks 1x4 blocks (the
    # behaviour this module exists for; if an upgrade stops that, this fails).
    assert before[(300, 784)][0] is True
    content, rewritten = prefer_smaller_layout(raw)
    after = _sparse_tensors(content)
    assert rewritten >= 1 and after[(300, 784)][0] is False
    kernel = model.get_layer("fc1").kernel.numpy().T  # TFLite stores (units, inputs)
    for layout in (before, after):  # both layouts decode to the kernel itself
        np.testing.assert_array_equal(layout[(300, 784)][1], kernel)
    nonzero = sum(np.count_nonzero(layer.kernel) for layer in model.layers
                  if isinstance(layer, keras.layers.Dense))
    assert len(content) < 0.6 * len(raw)
    assert len(content) < nonzero * 6 + 20_000  # 4-byte value + 2-byte index each, + the rest
    x = np.random.default_rng(2).random((16, 28, 28, 1), np.float32)
    expected = model.predict(x, verbose=0)
    for data in (raw, content):
        np.testing.assert_allclose(tflite.Runner(data, batch=16)(x), expected, atol=1e-5)


def test_a_3_percent_ticket_is_over_10x_smaller_than_dense_and_a_dense_file_is_unchanged():
    dense_model = _sparse_lenet(1.0)
    dense = tflite.convert(dense_model)
    assert prefer_smaller_layout(dense) == (dense, 0)
    sparse = tflite.convert(_sparse_lenet(0.03), sparse=True)
    assert len(dense) > 10 * len(sparse), (len(dense), len(sparse))
