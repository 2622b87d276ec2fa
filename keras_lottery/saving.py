"""Loading a masked model's `.keras` file with its masks.

A model made `prunable()` saves with `model.save("m.keras")` as usual: its
layers and weights as Keras writes them (pruned weights are stored zeros),
so plain `keras.saving.load_model` loads it, unmasked, anywhere; and its
masks as one asset (`masking.MASKS_ASSET`), keyed by weight path, which
`load_model` here reads back onto the loaded model.
"""

from __future__ import annotations

import io
import os
import zipfile

import keras
import numpy as np

from keras_lottery.masking import MASKS_ASSET, prunable
from keras_lottery.pruning import set_masks


def saved_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The masks stored in a `.keras` file, empty for an unmasked model.

    Args:
        path: a `.keras` file.

    Returns:
        Mask key (weight path) -> boolean mask.

    Raises:
        ValueError: if the file is not a `.keras` zip archive, or was
            written by keras-lottery 0.2 (whose `MaskedLayer` wrappers this
            version no longer reads).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            config = archive.read("config.json").decode() if "config.json" in names else ""
            stored = [n for n in names if n.rsplit("/", 1)[-1] == MASKS_ASSET]
            blobs = [archive.read(n) for n in stored]
    except (zipfile.BadZipFile, OSError, KeyError) as error:
        raise ValueError(f"{os.fspath(path)} is not a readable .keras file ({error}).") from None
    if '"class_name": "MaskedLayer"' in config or "keras_lottery>MaskedLayer" in config:
        raise ValueError(
            f"{os.fspath(path)} holds a model masked by keras-lottery 0.2 (MaskedLayer "
            "wrappers), which 0.3 does not load. Export its ticket with 0.2 "
            "(keras_lottery.strip, or keras-lottery export), or rebuild the model, make it "
            "prunable() and set its masks from the run directory's masks.npz."
        )
    masks: dict[str, np.ndarray] = {}
    for name, blob in zip(stored, blobs):
        prefix = _key_prefix(name)
        with np.load(io.BytesIO(blob)) as data:
            keys = [str(k) for k in data["keys"]]
            masks.update({prefix + key: data[f"m{i:05d}"] for i, key in enumerate(keys)})
    return masks


def _key_prefix(asset: str) -> str:
    """The mask-key prefix of the layer whose assets folder holds `asset`.

    Keras writes a layer's assets under its saving path
    (`assets/layers/block/...`): the `layers` lists of Sequential and
    functional models, then attribute names, which are the layers' names
    for the layers keras-lottery keys masks by.
    """
    parts = asset.split("/")[1:-1]  # between "assets" and the file
    names = [part for part in parts if part != "layers"]
    return "".join(f"{name}/" for name in names)


def load_model(path: str | os.PathLike, **kwargs) -> keras.Model:
    """Loads a `.keras` file, masks included when it has them.

    Args:
        path: a `.keras` file, masked (saved after `prunable()`) or not.
        **kwargs: passed to `keras.saving.load_model` (`custom_objects`,
            `compile`, `safe_mode`).

    Returns:
        The model; if the file holds masks, made `prunable()` on exactly
        the weights it had masked, with those masks.

    Raises:
        ValueError: see `saved_masks`, or if the masks name weights the
            loaded model does not have.

    Example:
    >>> model.save("masked.keras")
    >>> again = load_model("masked.keras")
    >>> all(np.array_equal(get_masks(again)[k], m) for k, m in get_masks(model).items())
    True
    """
    masks = saved_masks(path)
    model = keras.saving.load_model(path, **kwargs)
    if masks:
        prunable(model, keys=masks)
        set_masks(model, masks)
    return model



