"""Run directories: one per configuration, written atomically, resumable.

Layout of `<logdir>/<run name>/`:

    config.json                 the full configuration (checked on reuse)
    data.json                   what the data was (shapes, source, metric)
    lock                        the pid of the process running the run
    init.npz                    θ0 of a model of your own (builders need not be seeded)
    rewind.npz                  the rewind point (θ0 or θk)
    round_00/                   the dense round (branch "ticket")
        masks.npz               the masks this round trains under
        weights.npz             trained weights (what the next round prunes)
        metrics.json            written last: the branch is complete
        checkpoint.npz          mid-round state, removed when complete
        checkpoint.prev.npz     the one before, should the last be damaged
        events.out.tfevents.*   TensorBoard
    round_01/random_reinit/     a control branch: metrics, checkpoint, events
    summary/                    TensorBoard across rounds (step = round)
    result.json                 the run's table, once every round is done

Every file is replaced atomically, so a run killed at any moment leaves
either the old file or the new one; a re-run skips completed branches and
continues an interrupted one from its checkpoint. A file damaged anyway (a
full disk, a bad copy) is detected when read, reported with a warning and
rebuilt: masks are pruned again, a branch whose weights are damaged or
missing trains again (also when its metrics say it is done), damaged
metrics (also valid JSON of the wrong shape, such as `{}`) make the branch
train again, a damaged checkpoint falls back to the previous one, and the
temporary files of a write that a kill interrupted are removed when the
directory is next opened for writing.

`RunDir` knows paths and reading and writing only: what the files mean is
the engine's business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import warnings
from typing import Any

import numpy as np

from keras_lottery.files import CorruptFileError, atomic_open, read_json, read_npz, write_json, write_npz
from keras_lottery.pruning import align_masks, set_masks
from keras_lottery.rewind import WeightSnapshot, restore_weights
from keras_lottery.runner import checkpoint as checkpoints
from keras_lottery.runner.branches import TICKET
from keras_lottery.runner.checkpoint import BranchState
from keras_lottery.runner.config import LotteryConfig


class RunDir:
    """The directory of one lottery run.

    Args:
        path: the run directory.
        config: the run's configuration.
        writable: whether this process writes (only the chief does).

    Use `RunDir.open(config)` to create or reuse the directory.
    """

    def __init__(self, path: str, config: LotteryConfig, writable: bool = True):
        self.path, self.config, self.writable = path, config, writable

    @classmethod
    def open(cls, config: LotteryConfig, writable: bool = True) -> RunDir:
        """Creates the run directory, or reuses it if its config matches.

        A config that differs only in fields outside the run's identity
        (more `rounds`, other `controls`, another `strategy`...) reuses the
        directory and extends the run. Opened for writing (the caller holds
        the run's lock), the temporary files of interrupted writes are
        removed.

        A damaged `config.json` (or one that is not a config) is written
        again, with a warning, when opened for writing.

        Raises:
            ValueError: if the directory holds a run of another config, or
                (opened for reading) its `config.json` is damaged.
        """
        path = os.path.join(config.logdir, config.run_name)
        config_path = os.path.join(path, "config.json")
        stored = None
        if os.path.exists(config_path):
            try:
                stored = read_config(config_path)
            except CorruptFileError as error:
                if not writable:
                    raise
                warnings.warn(f"{error} (it is written again)", stacklevel=2)
        if stored is not None:
            if stored.run_hash() != config.run_hash():
                ours, theirs = config.identity(), stored.identity()
                full_ours, full_theirs = config.to_dict(), stored.to_dict()
                diff = {k: (full_theirs[k], full_ours[k]) for k in sorted(set(ours) | set(theirs))
                        if full_ours[k] != full_theirs[k]}
                raise ValueError(
                    f"Run directory {path} holds a different configuration "
                    f"(stored, requested): {diff}. Use another name or logdir, "
                    "or delete the directory to start over."
                )
        if writable:  # records new rounds/controls of an extended run
            remove_stale_temporaries(path)
            write_json(config_path, config.to_dict())
        return cls(path, config, writable)

    @classmethod
    def load(cls, path: str) -> RunDir:
        """Opens an existing run directory for reading (report, export)."""
        config_path = os.path.join(path, "config.json")
        if not os.path.exists(config_path):
            raise FileNotFoundError(
                f"{path} is not a keras-lottery run directory (no config.json)."
            )
        return cls(path, read_config(config_path), writable=False)

    def branch_dir(self, round_index: int, branch: str = TICKET) -> str:
        """Directory of a branch: `round_NN` for the ticket, else a subdir."""
        base = os.path.join(self.path, f"round_{round_index:02d}")
        return base if branch == TICKET else os.path.join(base, branch)

    def _file(self, round_index: int, branch: str, name: str) -> str:
        return os.path.join(self.branch_dir(round_index, branch), name)

    # Completed branches -------------------------------------------------
    def metrics(self, round_index: int, branch: str = TICKET) -> dict[str, Any] | None:
        """The branch's metrics, or None if it has not completed (or they
        are damaged: the branch then trains again)."""
        return _read_or_none(read_metrics, self._file(round_index, branch, "metrics.json"),
                             "the branch trains again")

    def forget(self, round_index: int, branch: str = TICKET) -> None:
        """Marks a completed branch as not completed (its metrics removed)."""
        path = self._file(round_index, branch, "metrics.json")
        if self.writable and os.path.exists(path):
            os.remove(path)

    def complete(self, round_index: int, branch: str, metrics: dict[str, Any],
                 weights: WeightSnapshot | None = None) -> None:
        """Records a finished branch: weights first, metrics last."""
        if not self.writable:
            return
        if weights is not None:
            weights.save(self._file(round_index, branch, "weights.npz"))
        write_json(self._file(round_index, branch, "metrics.json"), metrics)
        checkpoints.remove(self._file(round_index, branch, "checkpoint.npz"))

    def weights(self, round_index: int, branch: str = TICKET) -> WeightSnapshot | None:
        """The trained weights of a branch (a round's ticket by default), or
        None if missing or damaged."""
        return _read_or_none(read_snapshot, self._file(round_index, branch, "weights.npz"),
                             "the branch trains again")

    def dense_weights_at(self, step: int) -> WeightSnapshot | None:
        """The dense network's stored weights after `step` steps
        (`theta_k<step>.npz`), or None if missing or damaged."""
        return _read_or_none(read_snapshot, self._theta_path(step),
                             "they are trained again")

    def save_dense_weights_at(self, snapshot: WeightSnapshot) -> None:
        if self.writable:
            snapshot.save(self._theta_path(snapshot.step))

    def _theta_path(self, step: int) -> str:
        return os.path.join(self.path, f"theta_k{step}.npz")

    def all_metrics(self) -> list[dict[str, Any]]:
        """Metrics of every completed branch, ticket and controls."""
        found = glob.glob(os.path.join(self.path, "round_*", "metrics.json"))
        found += glob.glob(os.path.join(self.path, "round_*", "*", "metrics.json"))
        read = (_read_or_none(read_metrics, p, "the branch trains again") for p in found)
        return sorted((m for m in read if m is not None), key=lambda m: (m["round"], m["branch"]))

    def completed_rounds(self) -> list[int]:
        """Indices of rounds whose ticket branch is complete (its metrics
        readable)."""
        found = glob.glob(os.path.join(self.path, "round_*", "metrics.json"))
        rounds = sorted(int(os.path.basename(os.path.dirname(p))[6:]) for p in found)
        return [r for r in rounds if self.metrics(r) is not None]

    def adopt_dense_round(self, source: RunDir) -> None:
        """Copies the dense round and rewind point of a run that differs
        from this one only in how it prunes (e.g. scope), so both prune the
        same trained dense network. Does nothing if round 0 is done here."""
        if not self.writable or self.metrics(0) is not None or source.metrics(0) is None:
            return
        for name in ("rewind.npz", "data.json"):
            if os.path.exists(os.path.join(source.path, name)):
                _copy(os.path.join(source.path, name), os.path.join(self.path, name))
        for name in ("masks.npz", "weights.npz", "metrics.json"):  # metrics last: done
            _copy(source._file(0, TICKET, name), self._file(0, TICKET, name))

    # Masks and rewind point --------------------------------------------
    def masks(self, round_index: int) -> dict[str, np.ndarray] | None:
        """The round's masks, or None if not yet written."""
        return _read_or_none(read_npz, self._file(round_index, TICKET, "masks.npz"),
                             "the round's masks are pruned again")

    def save_masks(self, round_index: int, masks: dict[str, np.ndarray]) -> None:
        if self.writable:
            write_npz(self._file(round_index, TICKET, "masks.npz"), masks)

    @property
    def data_info(self) -> dict[str, Any]:
        """Input shape, class count and source of the run's dataset."""
        return read_json(os.path.join(self.path, "data.json"))

    def save_data_info(self, info: dict[str, Any]) -> None:
        if self.writable:
            write_json(os.path.join(self.path, "data.json"), info)

    def initialization(self) -> WeightSnapshot | None:
        """The stored θ0 of a model of your own, or None."""
        return _read_or_none(read_snapshot, os.path.join(self.path, "init.npz"),
                             "θ0 is taken from the freshly built model")

    def save_initialization(self, snapshot: WeightSnapshot) -> None:
        if self.writable:
            snapshot.save(os.path.join(self.path, "init.npz"))

    @property
    def rewind_path(self) -> str:
        return os.path.join(self.path, "rewind.npz")

    def rewind_point(self) -> WeightSnapshot | None:
        """The stored rewind point, or None (also when damaged: the dense
        round then takes it again)."""
        return _read_or_none(read_snapshot, self.rewind_path,
                             "the rewind point is taken again")

    def save_rewind_point(self, snapshot: WeightSnapshot) -> None:
        if self.writable:
            snapshot.save(self.rewind_path)

    # Mid-branch checkpoints --------------------------------------------
    def checkpoint(self, round_index: int, branch: str) -> BranchState | None:
        """The branch's last good checkpoint, or None."""
        return checkpoints.load_latest(self._file(round_index, branch, "checkpoint.npz"))

    def save_checkpoint(self, round_index: int, branch: str, state: BranchState) -> None:
        if self.writable:
            state.save(self._file(round_index, branch, "checkpoint.npz"))

    def clear_events(self, round_index: int, branch: str) -> None:
        """Removes a branch's TensorBoard events (before it is replayed)."""
        if self.writable:
            for path in glob.glob(os.path.join(self.branch_dir(round_index, branch),
                                               "events.out.tfevents.*")):
                os.remove(path)

    @property
    def summary_dir(self) -> str:
        return os.path.join(self.path, "summary")

    def reset_summary(self) -> None:
        """Empties the cross-round TensorBoard directory before a rewrite."""
        if self.writable and os.path.isdir(self.summary_dir):
            shutil.rmtree(self.summary_dir)

    @property
    def metric(self) -> str:
        """The metric the run's tables show (`"accuracy"` for the presets)."""
        path = os.path.join(self.path, "result.json")
        stored = _read_or_none(read_json, path, "the metric is taken as accuracy")
        if stored and stored.get("metric"):
            return stored["metric"]
        return "accuracy"

    def save_result(self, result: dict[str, Any]) -> None:
        if self.writable:
            write_json(os.path.join(self.path, "result.json"), result)


def round_ticket(run: RunDir, round_index: int, build):
    """A completed round's ticket: a fresh masked model with the round's
    masks and trained weights.

    Args:
        run: a run directory.
        round_index: a completed round.
        build: makes a fresh masked model of the run's architecture
            (called once the round's files are found intact).

    Returns:
        The round's ticket.

    Raises:
        ValueError: if the round is not complete, or its masks or trained
            weights are missing or damaged (rerunning the search rebuilds
            them).
    """
    done = run.completed_rounds()
    if round_index not in done:
        raise ValueError(
            f"round must be a completed round of {run.path}. "
            f"Received: round={round_index}; completed: {done}"
        )
    masks, weights = run.masks(round_index), run.weights(round_index)
    lost = [name for name, value in (("masks.npz", masks), ("weights.npz", weights))
            if value is None]
    if lost:
        raise ValueError(
            f"Round {round_index} of {run.path} cannot be rebuilt: its {' and '.join(lost)} "
            f"{'is' if len(lost) == 1 else 'are'} missing or damaged. Rerun the search with "
            "the same arguments (keras-lottery run, or LotterySearch.fit): it detects this "
            "and trains the round again."
        )
    model = build()
    set_masks(model, align_masks(model, masks))
    restore_weights(model, weights)
    return model


def config_at(path: str) -> LotteryConfig:
    """The config of the run directory at `path`, its `logdir` and `name`
    naming where the directory is now (it may have been moved or renamed
    since it was made), so that `RunDir.open` reopens this directory.

    Raises:
        FileNotFoundError: if `path` is not a run directory.
    """
    where = os.path.abspath(path)
    return dataclasses.replace(RunDir.load(path).config, logdir=os.path.dirname(where),
                               name=os.path.basename(where))


def read_config(path: str) -> LotteryConfig:
    """A run's `config.json`; valid JSON that is not a config is damage too.

    Args:
        path: the file.

    Returns:
        The configuration.

    Raises:
        CorruptFileError: if it is damaged or not a `LotteryConfig`.

    Example:
    >>> read_config("runs/my_run/config.json").rounds
    """
    values = read_json(path)
    try:
        if not isinstance(values, dict) or not {"steps", "seed"} <= set(values):
            raise ValueError(f"no 'steps' and 'seed' in {json.dumps(values)[:80]}")
        return LotteryConfig.from_dict(values)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CorruptFileError(
            path, f"it is valid JSON but not a run's configuration ({error}); rerunning the "
            "search writes it again"
        ) from error


def read_snapshot(path: str) -> WeightSnapshot:
    """`WeightSnapshot.load(path)`, an `.npz` that is not a snapshot (another
    valid archive in its place) being damage too.

    Args:
        path: a `weights.npz`, `rewind.npz`, `init.npz` or `theta_k*.npz`.

    Returns:
        The snapshot.

    Raises:
        CorruptFileError: if the file is damaged or holds other arrays.

    Example:
    >>> read_snapshot("runs/my_run/round_01/weights.npz").step
    """
    try:
        return WeightSnapshot.load(path)
    except (KeyError, TypeError, IndexError) as error:
        raise CorruptFileError(
            path, f"it is a readable .npz but not a weight snapshot (missing {error})"
        ) from error


# Keys every branch's metrics.json has (RunDir.complete writes them).
METRICS_KEYS = ("round", "branch", "percent_remaining", "early_stop_step", "history")


def read_metrics(path: str) -> dict[str, Any]:
    """A branch's `metrics.json`; valid JSON of another shape (`{}`, a list)
    is damage too.

    Args:
        path: the file.

    Returns:
        The metrics.

    Raises:
        CorruptFileError: if it is damaged or lacks the keys `METRICS_KEYS`.

    Example:
    >>> read_metrics("runs/my_run/round_01/metrics.json")["round"]
    1
    """
    metrics = read_json(path)
    missing = [k for k in METRICS_KEYS if not isinstance(metrics, dict) or k not in metrics]
    if missing:
        raise CorruptFileError(
            path, f"it is valid JSON but not a branch's metrics (missing {missing}; "
            f"received: {json.dumps(metrics)[:80]})"
        )
    return metrics


def remove_stale_temporaries(path: str) -> list[str]:
    """Removes the temporary files (`.<name>.<random>.tmp`, and
    `.model.partial.keras` of older versions) that writes interrupted by a
    kill left in a run directory. Call it holding the run's lock.

    Args:
        path: the run directory.

    Returns:
        The removed paths.

    Example:
    >>> remove_stale_temporaries("runs/my_run")
    []
    """
    found = glob.glob(os.path.join(path, "**", ".*.tmp*"), recursive=True)
    found += glob.glob(os.path.join(path, "**", ".model.partial.keras"), recursive=True)
    removed = []
    for stale in sorted(set(found)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
            removed.append(stale)
    return removed


def _read_or_none(read, path: str, consequence: str):
    """`read(path)`, or None if the file is missing or damaged (warned)."""
    if not os.path.exists(path):
        return None
    try:
        return read(path)
    except CorruptFileError as error:
        warnings.warn(f"{error} ({consequence})", stacklevel=3)
        return None


def _copy(source: str, target: str) -> None:
    """Copies a file atomically."""
    with open(source, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
