"""Leaving keras-lottery: plain models with the masks baked in, and files.

`strip()` turns a masked model into the same network built from plain Keras
layers whose pruned weights are stored zeros, so it saves, exports and
serves without keras-lottery. `save_ticket()` writes it and tells how much
smaller it gets once compressed: the zeros only save bytes under
compression, which is why an uncompressed file is not smaller.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.masking import leaf_layers, mask_slots, walk
from keras_lottery.rewind import rewindable_weights


def strip(model: keras.Model) -> keras.Model:
    """Returns a plain copy of the model, its kernels = kernel * mask.

    The original model is left unchanged. The copy is the same model built
    again from its config without masks, as `.keras` loading builds it
    (Sequential, functional with Keras ops, subclassed, keras-hub tasks): a
    subclassed model must implement `get_config()`.

    Args:
        model: a model, usually made `prunable()`.

    Returns:
        A new, uncompiled model without masks and with identical
        predictions.

    Raises:
        ValueError: if the model cannot be rebuilt from its config, or the
            copy's weights do not match the model's.

    Example:
    >>> plain = strip(model)
    >>> plain.export("ticket_savedmodel")
    """
    plain = _plain_copy(model)
    source, target = rewindable_weights(model), plain.weights
    if [tuple(w.shape) for w in source] != [tuple(w.shape) for w in target]:
        raise ValueError(
            f"strip() rebuilt {model.name!r} with other weights ({len(target)} instead of "
            f"{len(source)}, or other shapes); its get_config() does not describe it."
        )
    _called_once(plain)
    baked = {id(s.kernel): keras.ops.convert_to_numpy(s.kernel) * keras.ops.convert_to_numpy(
        s.mask) for s in mask_slots(model)}
    for src, dst in zip(source, target):
        # Copy through NumPy: assigning one variable to another would share
        # its buffer on JAX, where training donates (deletes) buffers.
        dst.assign(baked.get(id(src), keras.ops.convert_to_numpy(src)))
    return plain


def _called_once(plain: keras.Model) -> None:
    """Calls a rebuilt subclassed model once on zeros of its build shape.

    Keras builds it from its build config by running it symbolically, which
    creates every weight but leaves it `built=False` and "never called", so
    SavedModel export refuses it; one real call settles both. A model whose
    inputs are not one float tensor is left as it is.
    """
    if compat.is_functional_or_sequential(plain):
        return
    shape = (plain.get_build_config() or {}).get("input_shape")
    if not (isinstance(shape, (list, tuple)) and all(
            isinstance(n, int) or n is None for n in shape)):
        return
    plain(np.zeros([n or 1 for n in shape], "float32"))


def _plain_copy(model: keras.Model) -> keras.Model:
    """The model built again from its config, uncompiled, unmasked.

    A Sequential model is cloned; any other is rebuilt with `from_config`,
    which keeps every name (a clone of a functional model renames its Input
    layers after their tensors); the classes of the model's own layers are
    given to it by name, so layers and models that are not registered
    serializable rebuild too.
    """
    if type(model) is keras.Sequential:
        # Sequential.from_config calls each layer twice (two graph nodes,
        # which compact() cannot follow); a clone calls them once and keeps
        # the names. clone_model compiles the clone like its source.
        with compat.uncompiled(model):
            return keras.models.clone_model(model)
    classes = {type(layer).__name__: type(layer) for layer, _ in walk(model)}
    try:
        with keras.saving.custom_object_scope(classes):
            plain = model.__class__.from_config(model.get_config())
        if not plain.built:
            plain.build_from_config(model.get_build_config())
    except Exception as error:
        if type(model) is compat.functional_class():
            # Keras 3.15 cannot rebuild some graphs from their config
            # (MobileNetV3's `x + 3.0`); a clone runs the graph again (and
            # names the Input layers after their tensors).
            with compat.uncompiled(model):
                return keras.models.clone_model(model)
        raise ValueError(
            f"Cannot rebuild model {model.name!r} of type {type(model).__name__} from "
            f"its config ({error}). Implement get_config()/from_config() so that strip() "
            "can rebuild it."
        ) from error
    return plain


@dataclass(frozen=True)
class TicketSize:
    """What `save_ticket` wrote and how well its zeros compress.

    Attributes:
        path: the file or SavedModel directory written.
        dense_bytes: bytes on disk as written.
        compressed_bytes: bytes after zip (deflate) compression.
        zero_fraction: share of the stripped model's weights that are zero.
    """

    path: str
    dense_bytes: int
    compressed_bytes: int
    zero_fraction: float

    @property
    def ratio(self) -> float:
        """How many times smaller the compressed ticket is."""
        return self.dense_bytes / self.compressed_bytes

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.dense_bytes / 1e6:.2f} MB as written, "
            f"{self.compressed_bytes / 1e6:.2f} MB zip-compressed "
            f"({self.ratio:.1f}x smaller; {100 * self.zero_fraction:.1f}% of "
            "weights are zero)"
        )


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names
    )


def save_ticket(model: keras.Model, path: str | os.PathLike) -> TicketSize:
    """Writes the stripped ticket and reports its dense and compressed size.

    Args:
        model: a masked (or already stripped) model.
        path: a `.keras` file, or a directory for a TF SavedModel (needs
            TensorFlow, on any backend).

    Returns:
        A `TicketSize`; `print()` it for a one-line summary.

    Example:
    >>> size = save_ticket(model, "ticket.keras")
    >>> print(size)  # ticket.keras: 1.07 MB as written, 0.23 MB zip-compressed ...
    """
    path = os.fspath(path)
    plain = strip(model)
    if path.endswith(".keras"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        plain.save(path)
    else:
        compat.import_tensorflow("SavedModel export (save_ticket to a directory)")
        plain.export(path, verbose=False)
    files = _files(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(name, os.path.relpath(name, os.path.dirname(path) or "."))
    weights = [
        keras.ops.convert_to_numpy(w) for layer in leaf_layers(plain) for w in layer.weights
    ]
    return TicketSize(
        path=path,
        dense_bytes=sum(os.path.getsize(name) for name in files),
        compressed_bytes=len(buffer.getvalue()),
        zero_fraction=sum(int(np.count_nonzero(w == 0)) for w in weights)
        / max(1, sum(w.size for w in weights)),
    )
