"""TensorBoard logging of lottery runs.

Per branch (`round_NN/` and `round_NN/<control>/`): every metric of the
evaluation records against the global step as `<split>/<metric>`
(`train/loss`, `val/auc`, `train_eval/accuracy`...), per-layer sparsity,
weight and mask histograms, and `diverged` if the loss became NaN/inf.
Across rounds (`summary/`, step = round): the percent of weights remaining,
the early-stop iteration, the test metric at early stop and at the end and
whether the branch diverged, for the ticket and each control; the run's
hyperparameters (hparams plugin) and the metric-vs-sparsity plot as an
image. The analyses of `keras-lottery report` go to `RUN_DIR/analysis/`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from keras_lottery.masked_layer import masked_layers
from keras_lottery.runner import reports

# Split prefixes of evaluation record keys; `train_eval` is matched before `train`.
_SPLITS = ("train_eval", "train", "val", "test")


def record_tag(key: str) -> str:
    """The TensorBoard tag of an evaluation record key: `<split>/<metric>`.

    Keys without a known split prefix go under `other/`.

    Example:
    >>> [record_tag(k) for k in ("train_eval_accuracy", "val_auc", "lr")]
    ['train_eval/accuracy', 'val/auc', 'other/lr']
    """
    for split in _SPLITS:
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    return f"other/{key}"


def _loggable(value: Any) -> bool:
    """A finite real number (booleans are flags, not metrics)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class BranchLog:
    """Writes one branch's events into its directory.

    Args:
        logdir: the branch directory (`round_NN` or `round_NN/<control>`).
        enabled: False on non-chief workers: every call is a no-op.
    """

    def __init__(self, logdir: str, enabled: bool = True):
        self._writer = tf.summary.create_file_writer(logdir) if enabled else None

    def record(self, record: dict[str, float]) -> None:
        """Logs every finite number of one evaluation record at its step.

        Args:
            record: `step` and metric values keyed `<split>_<metric>` (tags
                as `record_tag` makes them).
        """
        if self._writer is None:
            return
        with self._writer.as_default(step=int(record["step"])):
            for key, value in record.items():
                if key != "step" and _loggable(value):
                    tf.summary.scalar(record_tag(key), value)
        self._writer.flush()

    def diverged(self, step: int) -> None:
        """Marks the step whose loss became NaN/inf (`diverged` = 1)."""
        self.scalar("diverged", 1.0, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Logs one scalar."""
        if self._writer is None:
            return
        with self._writer.as_default(step=int(step)):
            tf.summary.scalar(tag, value)
        self._writer.flush()

    def model_state(self, model: keras.Model, step: int, weights: bool) -> None:
        """Logs per-layer sparsity and mask histograms (and weights)."""
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for layer in masked_layers(model):
                for key, kernel, mask in zip(layer.mask_keys(), layer.kernels, layer.masks):
                    mask = keras.ops.convert_to_numpy(mask)
                    tf.summary.scalar(f"sparsity/{key}", 1.0 - float(mask.mean()))
                    tf.summary.histogram(f"masks/{key}", mask)
                    if weights:
                        values = keras.ops.convert_to_numpy(kernel)
                        tf.summary.histogram(f"weights/{key}", values[mask != 0])
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            self._writer.close()


def write_run_summary(logdir: str, run_name: str, hparams: Mapping[str, Any],
                      rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> None:
    """(Re)writes the cross-round summary of a run into `logdir`.

    Args:
        logdir: the run's `summary/` directory (emptied by the caller).
        run_name: the trial id of the hparams plugin and the plot's title.
        hparams: the run's settings (e.g. `config.to_dict()`); numbers,
            strings and booleans are logged as they are, other values as
            strings, None values not at all.
        rows: the metrics of every completed branch.
        metric: the test metric logged per branch and plotted.

    Example:
    >>> write_run_summary(run_dir.summary_dir, config.run_name, config.to_dict(), rows)
    """
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hparams_api.hparams(_hparams(hparams), trial_id=run_name)
        for row in rows:
            step = int(row["round"])
            prefix = row["branch"]
            tf.summary.scalar(f"{prefix}/percent_remaining", row["percent_remaining"], step=step)
            tf.summary.scalar(f"{prefix}/early_stop_iteration", row["early_stop_step"], step=step)
            for when in ("at_early_stop", "final"):
                key = f"test_{metric}_{when}"
                if row.get(key) is not None:
                    tf.summary.scalar(f"{prefix}/{key}", row[key], step=step)
            tf.summary.scalar(f"{prefix}/diverged", float(bool(row.get("diverged"))), step=step)
        if rows:
            png = reports.plot(rows, title=run_name, metric=metric)
            image = tf.image.decode_png(png, channels=4)[None]
            tf.summary.image(f"{metric}_vs_sparsity", image, step=max(int(r["round"]) for r in rows))
    writer.close()


def _hparams(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as hparams: scalars as they are, the rest as strings."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is not None:
            out[key] = str(value)
    return out


def write_analysis_summaries(run_dir: str, result: dict[str, Any]) -> str:
    """Writes the analyses of a run to TensorBoard under `RUN_DIR/analysis/`.

    Args:
        run_dir: the run directory.
        result: what `analyses.analyze(run_dir)` returns.

    Returns:
        The event directory, `RUN_DIR/analysis`.

    Example:
    >>> write_analysis_summaries(run_dir, analyses.analyze(run_dir))
    """
    metric = result["metric"]
    logdir = os.path.join(run_dir, "analysis")
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for row in result["train_test"]:
            if row["gap"] is not None:
                step = row["round"]
                for split in ("train", "test"):
                    tf.summary.scalar(f"train_vs_test/{split}_{metric}_at_early_stop",
                                      row[f"{split}_{metric}"], step=step)
                tf.summary.scalar("train_vs_test/gap", row["gap"], step=step)
        for row in result["stability"]:
            tf.summary.scalar("mask_stability/jaccard_with_final_ticket", row["jaccard"], step=row["round"])
            for name, value in row["layers"].items():
                tf.summary.scalar(f"mask_stability_by_layer/{name}", value, step=row["round"])
        for r, layers in result["layer_sparsity"].items():
            for name, value in layers.items():
                tf.summary.scalar(f"layer_sparsity/{name}", value, step=int(r))
        for row in result["movement"]:
            values = result["movement_values"][row["round"]]
            tf.summary.histogram("weight_movement/survivors", values["survivors"], step=row["round"])
            tf.summary.histogram("weight_movement/pruned", values["pruned"], step=row["round"])
            tf.summary.scalar("weight_movement/ratio_of_means", row["ratio"], step=row["round"])
        bird = result["early_bird"]
        if bird and bird.get("step") is not None:
            tf.summary.scalar("early_bird/step", bird["step"], step=0)
        compact = result["structure"]["compacted"]
        if compact:
            tf.summary.scalar("structure/compacted_speedup", compact["speedup"],
                              step=result["structure"]["round"])
    writer.close()
    return logdir
