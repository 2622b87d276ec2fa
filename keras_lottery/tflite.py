"""TFLite conversion of a ticket, and running it through LiteRT.

A ticket's zeros only save bytes in a format that stores them sparsely.
TFLite's `EXPERIMENTAL_SPARSITY` optimization encodes a sparse weight
tensor in a compressed (CSR-like) layout; with `int8=True` the weights are
also quantized to 8 bits after calibration on real inputs. Files run through
the LiteRT interpreter (`ai-edge-litert`; `tf.lite.Interpreter` is
deprecated), installed with `pip install keras-lottery[tflite]`.
"""

from __future__ import annotations

import os
import tempfile
import keras
import numpy as np

from keras_lottery.tflite_encoding import prefer_smaller_layout


def convert(model: keras.Model, sparse: bool = False, int8: bool = False,
            calibration: np.ndarray | None = None) -> bytes:
    """A plain Keras model as a TFLite flatbuffer.

    Args:
        model: a model without masks (`strip()` or `compact()` it).
        sparse: encode sparse weight tensors sparsely
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`), each float tensor in
            the smaller of TFLite's two layouts
            (`tflite_encoding.prefer_smaller_layout`).
        int8: post-training int8 quantization of the weights and
            activations (float inputs and outputs kept), calibrated on
            `calibration`.
        calibration: real input examples, needed with `int8`.

    Returns:
        The `.tflite` file's bytes.

    Example:
    >>> data = convert(compact(ticket), sparse=True)
    """
    import tensorflow as tf

    if int8 and (calibration is None or len(calibration) == 0):
        raise ValueError("int8=True needs calibration inputs (real training examples). "
                         "Received: calibration=None")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "savedmodel")
        model.export(path, verbose=False)  # freezes the variables for the converter
        converter = tf.lite.TFLiteConverter.from_saved_model(path)
        optimizations = []
        if int8:
            optimizations.append(tf.lite.Optimize.DEFAULT)
            examples = np.asarray(calibration, np.float32)
            converter.representative_dataset = lambda: ([examples[i:i + 1]]
                                                        for i in range(len(examples)))
        if sparse:
            optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
        converter.optimizations = optimizations
        content = converter.convert()
    if sparse:  # the converter's 1x4 blocks are larger for a ticket's random sparsity
        content, _ = prefer_smaller_layout(content)
    return content


class Runner:
    """Runs a TFLite model through LiteRT at a fixed batch size.

    The default delegate (XNNPACK on CPU) is tried first; a model it
    cannot prepare (LiteRT 2.3's XNNPACK refuses sparse int8 fully
    connected layers) runs on the built-in kernels, and `delegate` says so.

    Args:
        content: the `.tflite` bytes, or a path to the file.
        batch: the batch size the interpreter is sized for.
        threads: interpreter threads (None: LiteRT's default).

    Example:
    >>> outputs = Runner(convert(plain), batch=64)(x[:64])
    """

    def __init__(self, content: bytes | str | os.PathLike, batch: int, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as error:
            raise ImportError("Running TFLite files needs the LiteRT interpreter: "
                              "pip install ai-edge-litert (or keras-lottery[tflite]).") from error
        if not isinstance(content, bytes):
            with open(content, "rb") as f:
                content = f.read()
        self.batch, self.delegate = batch, "default (XNNPACK)"
        try:
            self._interpreter = self._make(Interpreter, content, threads, None)
            self._check()
        except RuntimeError as error:
            self.delegate = f"built-in kernels (default delegate refused: {str(error)[:80]})"
            self._interpreter = self._make(
                Interpreter, content, threads, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def _make(self, interpreter, content, threads, resolver):
        kwargs = {"model_content": content, "num_threads": threads}
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver
        it = interpreter(**kwargs)
        self._input = it.get_input_details()[0]
        self._output = it.get_output_details()[0]
        it.resize_tensor_input(self._input["index"], (self.batch, *self._input["shape"][1:]))
        it.allocate_tensors()
        return it

    def _check(self) -> None:
        self._interpreter.set_tensor(self._input["index"], np.zeros(
            (self.batch, *self._input["shape"][1:]), np.float32))
        self._interpreter.invoke()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for exactly `batch` examples."""
        self._interpreter.set_tensor(self._input["index"], np.asarray(x, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for any number of examples (the last batch padded)."""
        out = []
        for start in range(0, len(x), self.batch):
            part = np.asarray(x[start:start + self.batch], np.float32)
            n = len(part)
            if n < self.batch:
                part = np.concatenate([part, np.zeros((self.batch - n, *part.shape[1:]),
                                                      np.float32)])
            out.append(self(part)[:n])
        return np.concatenate(out)
