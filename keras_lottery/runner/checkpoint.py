"""Mid-branch checkpoints that keep the previous good one as a fallback.

A branch's checkpoint `checkpoint.npz` is replaced atomically every
`checkpoint_every` steps; the checkpoint it replaces is kept beside it as
`checkpoint.prev.npz`. If the newest one is found damaged when the branch
resumes, `load_latest` warns and resumes from the previous one; if both
are damaged, the branch restarts from its beginning.

Layout of a checkpoint `.npz` (one array per key):

    m00000, m00001, ...     model variables (`BranchState.model_values`)
    o00000, o00001, ...     optimizer variables
    x_<name>                the step hooks' arrays (`BranchState.extra`)
    step                    the step to continue from
    history                 the evaluation history, as a JSON string
    count_model             how many m* arrays there are
    count_optimizer         how many o* arrays there are

Checkpoints are stored uncompressed (`np.savez`): trained float32 weights
and optimizer moments hardly compress (LeNet-300-100's: 7 % smaller),
while deflating them took 60 times as long as writing them (0.12 s against
2 ms per checkpoint). The zip's CRC of every array still finds a damaged
one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings

import keras
import numpy as np

from keras_lottery.files import CorruptFileError, atomic_path, read_npz
from keras_lottery.masking import masks_of

_EXTRA = "x_"  # prefix of the `BranchState.extra` arrays


@dataclasses.dataclass
class BranchState:
    """Everything needed to continue a branch exactly where it stopped.

    Attributes:
        step: the training step the branch continues from.
        history: the evaluation records so far, one dict per evaluation.
        model_values: the model's variables (weights and RNG states, not
            masks), in the trainer's order.
        optimizer_values: the optimizer's variables, in its order.
        extra: state of the branch's step hooks (e.g. the Early-Bird mask
            window), by name.

    Example:
    >>> state = BranchState(step=100, history=[{"step": 100, "val_loss": 0.5}],
    ...                     model_values=[np.zeros(3)], optimizer_values=[])
    >>> state.save("checkpoint.npz")
    >>> BranchState.load("checkpoint.npz").step
    100
    """

    step: int
    history: list[dict[str, float]]
    model_values: list[np.ndarray]
    optimizer_values: list[np.ndarray]
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @classmethod
    def capture(cls, model, optimizer, step: int,
                history: list[dict[str, float]]) -> BranchState:
        """The state of a branch training `model` with `optimizer` at `step`.

        Args:
            model: the (masked) model; its masks are not part of the state.
            optimizer: the branch's optimizer.
            step: the global step.
            history: the evaluation records so far (copied).

        Returns:
            A `BranchState`.
        """
        return cls(
            step=step,
            history=[dict(h) for h in history],
            model_values=[keras.ops.convert_to_numpy(v) for v in _state_variables(model)],
            optimizer_values=[keras.ops.convert_to_numpy(v) for v in optimizer.variables],
        )

    def restore(self, model, optimizer) -> None:
        """Assigns the model's and the optimizer's variables from this state."""
        for variable, value in zip(_state_variables(model), self.model_values):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, self.optimizer_values):
            variable.assign(value)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the state to `path` atomically, keeping the one it replaces.

        The new file is written completely first; then an intact checkpoint
        at `path` is renamed to `previous_path(path)` (a damaged one is
        dropped, keeping the older good one), and the new file is renamed
        onto `path`. A crash at any moment leaves a good checkpoint at
        `path` or at `previous_path(path)`.

        Args:
            path: the checkpoint file, e.g. `round_01/checkpoint.npz`.
        """
        path = os.fspath(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self._arrays())
            if os.path.exists(path):
                try:
                    read_npz(path)
                except CorruptFileError as error:
                    warnings.warn(f"Dropped the damaged checkpoint {path} ({error.reason}) "
                                  "instead of keeping it as the previous one.", stacklevel=2)
                    os.remove(path)
                else:
                    os.replace(path, previous_path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BranchState:
        """Reads a state written by `save`.

        Args:
            path: the checkpoint file.

        Returns:
            The stored state.

        Raises:
            FileNotFoundError: if there is no file at `path`.
            CorruptFileError: if the file is damaged or is not a checkpoint.
        """
        data = read_npz(path)
        try:
            count_model, count_opt = int(data["count_model"]), int(data["count_optimizer"])
            return cls(
                step=int(data["step"]),
                history=json.loads(str(data["history"])),
                model_values=[data[f"m{i:05d}"] for i in range(count_model)],
                optimizer_values=[data[f"o{i:05d}"] for i in range(count_opt)],
                extra={k[len(_EXTRA):]: v for k, v in data.items() if k.startswith(_EXTRA)},
            )
        except KeyError as error:
            raise CorruptFileError(
                path, f"it is not a branch checkpoint: it has no array {error}"
            ) from error
        except (TypeError, ValueError) as error:  # a non-scalar count, bad JSON history
            raise CorruptFileError(
                path, f"it is not a branch checkpoint ({type(error).__name__}: {error})"
            ) from error

    def _arrays(self) -> dict[str, np.ndarray]:
        """The state in the checkpoint layout (see the module docstring)."""
        arrays = {f"m{i:05d}": np.asarray(v) for i, v in enumerate(self.model_values)}
        arrays.update({f"o{i:05d}": np.asarray(v) for i, v in enumerate(self.optimizer_values)})
        arrays.update({_EXTRA + k: np.asarray(v) for k, v in self.extra.items()})
        arrays.update(
            step=np.array(self.step),
            history=np.array(json.dumps(self.history)),
            count_model=np.array(len(self.model_values)),
            count_optimizer=np.array(len(self.optimizer_values)),
        )
        return arrays


def _state_variables(model) -> list:
    """Model state a checkpoint needs: weights and RNG states, not masks."""
    masks = masks_of(model)
    return [v for v in model.variables if id(v) not in masks]


def previous_path(path: str | os.PathLike) -> str:
    """Where `BranchState.save` keeps the checkpoint it replaced.

    Args:
        path: the checkpoint file.

    Returns:
        `path` with `.npz` replaced by `.prev.npz` (appended if absent).

    Example:
    >>> previous_path("round_01/checkpoint.npz")
    'round_01/checkpoint.prev.npz'
    """
    path = os.fspath(path)
    return path.removesuffix(".npz") + ".prev.npz"


def load_latest(path: str | os.PathLike) -> BranchState | None:
    """The newest intact checkpoint: `path`, else the previous one, else None.

    A damaged checkpoint is removed with a warning saying which file was
    damaged and where the branch resumes from. A missing `path` with an
    intact previous checkpoint (a crash in the middle of `save`) resumes
    from the previous one without a warning.

    Args:
        path: the checkpoint file given to `BranchState.save`.

    Returns:
        The state to resume from, or None to start the branch from its
        beginning.

    Example:
    >>> load_latest("round_01/checkpoint.npz") is None  # nothing saved yet
    True
    """
    path = os.fspath(path)
    damaged = []
    for candidate in (path, previous_path(path)):
        try:
            state = BranchState.load(candidate)
        except FileNotFoundError:
            continue
        except CorruptFileError as error:
            os.remove(candidate)
            damaged.append(error)
            continue
        if damaged:
            warnings.warn(
                f"Removed the damaged checkpoint {damaged[0].path} "
                f"({damaged[0].reason}); the branch resumes from the previous "
                f"checkpoint {candidate} at step {state.step}.",
                stacklevel=2,
            )
        return state
    if damaged:
        files = "; ".join(f"{error.path} ({error.reason})" for error in damaged)
        warnings.warn(
            f"Removed damaged checkpoints: {files}. No intact checkpoint is left, "
            "so this run restarts from the beginning of the branch.",
            stacklevel=2,
        )
    return None


def remove(path: str | os.PathLike) -> None:
    """Removes a branch's checkpoint and the previous one (once it completes).

    Args:
        path: the checkpoint file given to `BranchState.save`; absent files
            are ignored.
    """
    for candidate in (os.fspath(path), previous_path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(candidate)
