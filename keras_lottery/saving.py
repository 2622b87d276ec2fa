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

from keras_lottery.masking import MASKS_ASSET, join_key, layer_paths, prunable, walk
from keras_lottery.pruning import set_masks


def saved_masks(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """The masks stored in a `.keras` file, empty for an unmasked model.

    Args:
        path: a `.keras` file.

    Returns:
        The name of each layer holding masks (the saved model, or a layer
        masked on its own) -> its masks, mask key relative to that layer
        -> boolean mask.

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
    masks: dict[str, dict[str, np.ndarray]] = {}
    for blob in blobs:
        with np.load(io.BytesIO(blob)) as data:
            keys = [str(k) for k in data["keys"]]
            masks.setdefault(str(data["holder"]), {}).update(
                {key: data[f"m{i:05d}"] for i, key in enumerate(keys)})
    return masks


def _keyed_for(model: keras.Model, held: dict[str, dict[str, np.ndarray]]) -> dict:
    """The stored masks keyed for `model`: each set was keyed relative to
    the layer holding it (the saved model, or a layer masked on its own),
    found again by its name."""
    paths = layer_paths(model)
    by_name: dict[str, list] = {}
    for layer, _ in walk(model):
        by_name.setdefault(layer.name, []).append(layer)
    masks = {}
    for holder, stored in held.items():
        found = [model] if holder == model.name else by_name.get(holder, [])
        if len(found) != 1:
            raise ValueError(
                f"The masks of layer {holder!r} cannot be placed: the loaded model has "
                f"{len(found)} layers of that name.")
        prefix = paths[id(found[0])]
        masks.update({join_key(prefix, k): v for k, v in stored.items()})
    return masks


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
    held = saved_masks(path)
    model = keras.saving.load_model(path, **kwargs)
    if held:
        masks = _keyed_for(model, held)
        prunable(model, keys=masks)
        set_masks(model, masks)
    return model



