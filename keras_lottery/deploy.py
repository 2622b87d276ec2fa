"""Deployment formats of a ticket, each checked against the masked model.

`export(model, path, format, x)` writes one format and checks it: the file
is loaded back (Keras, TF SavedModel, or the LiteRT interpreter), run on
real inputs `x`, and compared with the masked model's outputs. The
returned `Exported` states the size on disk, the largest output
difference and the top-1 agreement. Float formats must agree within
`tolerance` (otherwise `ValueError`); the int8 format is lossy by design
and reports its agreement.

| format | what is written |
|---|---|
| `keras` | the stripped model (zeros stored), `.keras` |
| `savedmodel` | the stripped model as a TF SavedModel directory |
| `compact` | `compact(model)`: dead units/channels removed, `.keras` |
| `tflite` | TFLite, dense weights |
| `tflite_sparse` | TFLite, sparse weight encoding (`EXPERIMENTAL_SPARSITY`) |
| `tflite_sparse_int8` | the same plus int8 post-training quantization, calibrated on `calibration` |

The TFLite formats convert the compacted model (the same outputs, fewer
units), or the stripped one if compaction cannot follow the model.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_lottery import tflite
from keras_lottery.compact import compact
from keras_lottery.export import _files, strip

FORMATS = ("keras", "savedmodel", "compact", "tflite", "tflite_sparse", "tflite_sparse_int8")
_SUFFIX = {"keras": ".keras", "savedmodel": "", "compact": ".keras", "tflite": ".tflite",
           "tflite_sparse": ".tflite", "tflite_sparse_int8": ".tflite"}


@dataclasses.dataclass(frozen=True)
class Exported:
    """One written format and how well it agrees with the masked model.

    Attributes:
        format: a key of `FORMATS`.
        path: the file or directory written.
        bytes: size on disk.
        max_abs_diff: largest |artifact output - masked model output| on
            the check inputs.
        agreement: share of check inputs with the same top-1 output.
        examples: number of check inputs.
        compacted: whether the written model is the compacted one.
        note: anything worth knowing (delegate used, compaction fallback).
    """

    format: str
    path: str
    bytes: int
    max_abs_diff: float
    agreement: float
    examples: int
    compacted: bool
    note: str = ""

    def __str__(self) -> str:
        text = (f"{self.format:<19} {self.path}: {self.bytes / 1e3:,.1f} KB; on {self.examples} "
                f"real inputs: max |diff| {self.max_abs_diff:.2e}, top-1 agreement "
                f"{100 * self.agreement:.2f}%")
        return text + (f" ({self.note})" if self.note else "")


def default_path(out_dir: str, format: str) -> str:  # noqa: A002 - the format's name
    """`OUT/<format>` with the format's file suffix."""
    return os.path.join(out_dir, f"ticket_{format}{_SUFFIX[format]}" if format != "savedmodel"
                        else "savedmodel")


def export(model: keras.Model, path: str | os.PathLike, format: str,  # noqa: A002
           x: np.ndarray, calibration: np.ndarray | None = None,
           tolerance: float = 1e-4) -> Exported:
    """Writes one deployment format of a ticket and checks it on real inputs.

    Args:
        model: a masked model (or a plain one).
        path: where to write (a file; a directory for `savedmodel`).
        format: a key of `FORMATS`.
        x: real inputs to check the artifact's outputs on (e.g. test
            examples).
        calibration: real training inputs for `tflite_sparse_int8`
            (a few hundred are plenty).
        tolerance: largest output difference a float format may have,
            relative to the largest output magnitude.

    Returns:
        An `Exported`; `print()` it for a one-line summary.

    Raises:
        ValueError: for an unknown format, or a float format whose
            outputs differ from the masked model's beyond `tolerance`.

    Example:
    >>> print(export(ticket, "ticket.tflite", "tflite_sparse", x_test[:500]))
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}. Received: format={format!r}")
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    x = np.asarray(x, np.float32)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0))
    plain, compacted, note = strip(model), False, ""
    if format == "keras":
        plain.save(path)
        outputs = keras.saving.load_model(path, compile=False).predict(x, batch_size=256,
                                                                       verbose=0)
    elif format == "savedmodel":
        import tensorflow as tf

        plain.export(path, verbose=False)
        served = tf.saved_model.load(path)
        outputs = np.concatenate([served.serve(x[i:i + 256]).numpy()
                                  for i in range(0, len(x), 256)])
    elif format == "compact":
        compact(plain).save(path)
        compacted = True
        outputs = keras.saving.load_model(path, compile=False).predict(x, batch_size=256,
                                                                       verbose=0)
    else:
        try:
            source, compacted = compact(plain), True
        except ValueError as error:
            source, note = plain, f"not compacted: {error}"
        content = tflite.convert(source, sparse=format != "tflite",
                                 int8=format.endswith("int8"), calibration=calibration)
        with open(path, "wb") as f:
            f.write(content)
        runner = tflite.Runner(content, batch=min(256, len(x)))
        outputs = runner.predict(x)
        if runner.delegate != "default (XNNPACK)":
            note = "; ".join(filter(None, [note, runner.delegate]))
    outputs = np.asarray(outputs)
    diff = float(np.max(np.abs(outputs - reference)))
    result = Exported(
        format=format, path=path, bytes=sum(os.path.getsize(f) for f in _files(path)),
        max_abs_diff=diff,
        agreement=float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
        examples=len(x), compacted=compacted, note=note)
    scale = max(1.0, float(np.max(np.abs(reference))))
    if not format.endswith("int8") and diff > tolerance * scale:
        raise ValueError(f"The {format} export does not reproduce the masked model: {result}. "
                         f"Accepted: max |diff| <= {tolerance} x {scale:.3g}")
    return result


def export_all(model: keras.Model, out_dir: str, formats=FORMATS, x: np.ndarray | None = None,
               calibration: np.ndarray | None = None) -> list[Exported]:
    """`export` of several formats into `out_dir` (see `default_path`)."""
    return [export(model, default_path(out_dir, f), f, x, calibration) for f in formats]
