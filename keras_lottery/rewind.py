"""Rewinding: snapshot a model's weights, restore them under the masks.

The lottery procedure resets the surviving weights of a pruned network to
their values at initialization (θ0) or after k training steps (θk, "late
rewinding"). `RewindCallback` takes that snapshot during `model.fit`;
`restore_weights` puts it back while keeping the masks, and `reinitialize`
draws a fresh initialization under the same masks (the paper's
random-reinitialization control).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np

from keras_lottery.files import read_npz, write_npz
from keras_lottery import compat
from keras_lottery.masking import leaf_layers, mask_slots, masks_of, walk


@dataclass(frozen=True)
class WeightSnapshot:
    """Values of a model's weights (masks excluded), in `model.weights` order.

    Attributes:
        paths: the variables' paths, for error messages.
        values: one array per variable, in the variables' own dtype.
        step: the training step the snapshot was taken at.
    """

    paths: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    step: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the snapshot's arrays."""
        return sum(v.nbytes for v in self.values)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the snapshot to an `.npz` file, atomically."""
        arrays = {f"w{i:05d}": v for i, v in enumerate(self.values)}
        arrays["paths"] = np.array(self.paths)
        arrays["step"] = np.array(self.step)
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WeightSnapshot:
        """Reads a snapshot written by `save`."""
        data = read_npz(path)
        count = len(data["paths"])
        return cls(
            paths=tuple(str(p) for p in data["paths"]),
            values=tuple(data[f"w{i:05d}"] for i in range(count)),
            step=int(data["step"]),
        )


def rewindable_weights(model: keras.Model) -> list[keras.Variable]:
    """All of `model.weights` except mask variables."""
    masks = masks_of(model)
    return [w for w in model.weights if id(w) not in masks]


def snapshot_weights(model: keras.Model, step: int = 0) -> WeightSnapshot:
    """Copies every weight of `model` except its masks.

    Args:
        model: a built model.
        step: the training step the weights belong to (recorded only).

    Returns:
        A `WeightSnapshot`.

    Example:
    >>> snap = snapshot_weights(model)
    >>> restore_weights(model, snap)
    """
    weights = rewindable_weights(model)
    return WeightSnapshot(
        paths=tuple(w.path for w in weights),
        # A variable's value is read into a new, immutable tensor: its NumPy
        # view needs no second copy.
        values=tuple(keras.ops.convert_to_numpy(w) for w in weights),
        step=step,
    )


def _assign_under_masks(model: keras.Model, weights, values) -> None:
    """Assigns `values` to `weights`, zeroing what the masks prune."""
    masks = {id(s.kernel): keras.ops.convert_to_numpy(s.mask) for s in mask_slots(model)}
    for weight, value in zip(weights, values):
        mask = masks.get(id(weight))
        weight.assign(value if mask is None else value * mask)


def restore_weights(model: keras.Model, snapshot: WeightSnapshot) -> None:
    """Sets `model`'s weights to `snapshot`, keeping its masks.

    Surviving weights get their snapshot values bit for bit; pruned weights
    are set to zero. Under a `tf.distribute` strategy, call this outside
    `strategy.run`: every replica is restored.

    Args:
        model: the model the snapshot was taken from (or one with the same
            architecture).
        snapshot: a `WeightSnapshot`.

    Raises:
        ValueError: if the snapshot does not fit the model.
    """
    weights = rewindable_weights(model)
    if len(weights) != len(snapshot.values):
        raise ValueError(
            f"The snapshot holds {len(snapshot.values)} weights but the model "
            f"has {len(weights)}; it was taken from another architecture."
        )
    for weight, path, value in zip(weights, snapshot.paths, snapshot.values):
        if tuple(weight.shape) != value.shape:
            raise ValueError(
                f"Snapshot weight {path!r} has shape {value.shape}, but the "
                f"model's {weight.path!r} has shape {tuple(weight.shape)}."
            )
    _assign_under_masks(model, weights, snapshot.values)


def _seeded_config(config, seed: int):
    """`config` with the seed of every serialized initializer set to `seed`."""
    if isinstance(config, dict):
        out = {k: _seeded_config(v, seed) for k, v in config.items()}
        if "initializers" in str(config.get("module", "")) and isinstance(
            out.get("config"), dict
        ) and "seed" in out["config"]:
            out["config"] = {**out["config"], "seed": seed}
        return out
    if isinstance(config, list):
        return [_seeded_config(v, seed) for v in config]
    return config


def reinitialize(model: keras.Model, seed: int) -> None:
    """Draws a fresh random initialization under the current masks.

    Each layer is re-initialized with its own initializers (seeded from
    `seed` and the layer's position, so equal seeds give equal weights):
    the layers without sublayers first, then those that hold weights of
    their own beside sublayers (a keras-hub embedding's class token).
    Masks are kept and pruned weights stay zero. This is the paper's
    random-reinitialization control.

    Args:
        model: a built model.
        seed: integer seed.

    Raises:
        ValueError: if a layer holding weights cannot be rebuilt from its
            config.

    Example:
    >>> reinitialize(model, seed=1)
    """
    leaves = leaf_layers(model)
    masks = masks_of(model)
    inner = [layer for layer, _ in walk(model) if layer not in leaves and any(
        id(v) not in masks for v in compat.own_variables(layer))]
    seeds = np.random.SeedSequence(seed).spawn(len(leaves) + len(inner))
    fresh_values = {}
    for layer, child in zip(leaves + inner, seeds):
        own = [v for v in compat.own_variables(layer) if id(v) not in masks]
        if not own:
            continue
        config = _seeded_config(layer.get_config(), int(child.generate_state(1)[0] >> 1))
        try:
            fresh = layer.__class__.from_config(config)
            fresh.build_from_config(layer.get_build_config())
        except Exception as error:
            raise ValueError(
                f"Cannot re-initialize the weights of layer {layer.name!r} "
                f"({type(layer).__name__}): it does not rebuild from its own config "
                f"({error}). Re-initializing needs every layer holding weights to "
                "rebuild from get_config(); use another control (random_prune) for this model."
            ) from error
        for weight, value in zip(own, compat.own_variables(fresh)):
            fresh_values[id(weight)] = keras.ops.convert_to_numpy(value)
    weights = rewindable_weights(model)
    missing = [w.path for w in weights if id(w) not in fresh_values]
    if missing:
        raise ValueError(
            f"Cannot re-initialize weights {missing}: no layer of the model creates them "
            "when rebuilt from its config."
        )
    _assign_under_masks(model, weights, [fresh_values[id(w)] for w in weights])


class RewindCallback(keras.callbacks.Callback):
    """Snapshots the weights during `fit` so a pruned model can rewind to them.

    With `rewind_step=0` the snapshot is θ0, taken at `on_train_begin`; with
    `rewind_step=k` it is θk, taken after exactly k training batches (late
    rewinding). The snapshot is taken once: later `fit` calls (later pruning
    rounds) keep it. Masks are never part of the snapshot.

    Args:
        rewind_step: number of training batches before the snapshot (>= 0).
        path: optional `.npz` file. The snapshot is written there when taken;
            if the file already exists, it is loaded instead, so a later
            process can rewind without retraining.

    Example:
    >>> rewind = RewindCallback(rewind_step=0)
    >>> model.fit(x, y, epochs=2, callbacks=[rewind])
    >>> prune_by_magnitude(model, 0.2)
    >>> rewind.rewind(model)
    """

    def __init__(self, rewind_step: int = 0, path: str | os.PathLike | None = None):
        super().__init__()
        if isinstance(rewind_step, bool) or not isinstance(
            rewind_step, (int, np.integer)
        ) or rewind_step < 0:
            raise ValueError(
                "rewind_step must be an integer >= 0. "
                f"Received: rewind_step={rewind_step!r}"
            )
        self.rewind_step = int(rewind_step)
        self.path = os.fspath(path) if path is not None else None
        self.snapshot: WeightSnapshot | None = None
        if self.path is not None and os.path.exists(self.path):
            self.snapshot = WeightSnapshot.load(self.path)
        self._steps = 0

    def _take(self) -> None:
        self.snapshot = snapshot_weights(self.model, step=self.rewind_step)
        if self.path is not None:
            self.snapshot.save(self.path)

    def on_train_begin(self, logs=None):
        if self.snapshot is not None:
            return
        per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self.rewind_step % per_call:
            raise ValueError(
                f"rewind_step={self.rewind_step} is not a multiple of the "
                f"model's steps_per_execution={per_call}; the callback only "
                "sees every steps_per_execution-th batch. Compile with a "
                "steps_per_execution that divides rewind_step."
            )
        self._per_call = per_call
        self._steps = 0
        if self.rewind_step == 0:
            self._take()

    def on_train_batch_end(self, batch, logs=None):
        if self.snapshot is not None:
            return
        self._steps += self._per_call
        if self._steps == self.rewind_step:
            self._take()

    def on_train_end(self, logs=None):
        if self.snapshot is None:
            raise ValueError(
                f"Training ended after {self._steps} batches, before "
                f"rewind_step={self.rewind_step}: no snapshot was taken. "
                "Train longer or lower rewind_step."
            )

    def rewind(self, model: keras.Model | None = None) -> None:
        """Restores the snapshot into `model` (default: the fitted model).

        Surviving weights return to their snapshot values; masks are kept and
        pruned weights are zero.
        """
        if self.snapshot is None:
            raise ValueError(
                "RewindCallback has no snapshot yet: pass it to model.fit "
                "(callbacks=[rewind]) before calling rewind()."
            )
        restore_weights(model if model is not None else self.model, self.snapshot)

    def reinitialize(self, model: keras.Model | None = None, seed: int = 0) -> None:
        """Random-reinit control: fresh initialization, same masks."""
        reinitialize(model if model is not None else self.model, seed)
