"""TensorBoard logging of lottery runs.

Per branch (`round_NN/` and `round_NN/<control>/`): training, validation and
test loss and accuracy against the global step, per-layer sparsity, and
weight and mask histograms. Across rounds (`summary/`, step = round): the
percent of weights remaining, the early-stop iteration and the test accuracy
at early stop for the ticket and each control, the run's hyperparameters
(hparams plugin) and the accuracy-vs-sparsity plot as an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from keras_lottery.runner import reports as report
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.masked_layer import masked_layers

# Evaluation record key -> TensorBoard tag.
_TAGS = {
    "train_loss": "train/loss", "train_accuracy": "train/accuracy",
    "val_loss": "val/loss", "val_accuracy": "val/accuracy",
    "test_loss": "test/loss", "test_accuracy": "test/accuracy",
    "train_eval_loss": "train_eval/loss", "train_eval_accuracy": "train_eval/accuracy",
}


class BranchLog:
    """Writes one branch's events into its directory.

    Args:
        logdir: the branch directory (`round_NN` or `round_NN/<control>`).
        enabled: False on non-chief workers: every call is a no-op.
    """

    def __init__(self, logdir: str, enabled: bool = True):
        self._writer = tf.summary.create_file_writer(logdir) if enabled else None

    def record(self, record: dict[str, float]) -> None:
        """Logs one evaluation record at its step."""
        if self._writer is None:
            return
        with self._writer.as_default(step=int(record["step"])):
            for key, tag in _TAGS.items():
                value = record.get(key)
                if value is not None and np.isfinite(value):
                    tf.summary.scalar(tag, value)
        self._writer.flush()

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
        if self._writer is not None:
            self._writer.close()


def write_run_summary(logdir: str, config: LotteryConfig, rows: Sequence[dict[str, Any]]) -> None:
    """(Re)writes the cross-round summary of a run into `logdir`.

    Args:
        logdir: the run's `summary/` directory (emptied by the caller).
        config: the run's configuration (logged with the hparams plugin).
        rows: the metrics of every completed branch.
    """
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hparams_api.hparams(_hparams(config), trial_id=config.run_name)
        for row in rows:
            step = int(row["round"])
            prefix = row["branch"]
            tf.summary.scalar(f"{prefix}/percent_remaining", row["percent_remaining"], step=step)
            tf.summary.scalar(f"{prefix}/early_stop_iteration", row["early_stop_step"], step=step)
            tf.summary.scalar(f"{prefix}/test_accuracy_at_early_stop",
                              row["test_accuracy_at_early_stop"], step=step)
            tf.summary.scalar(f"{prefix}/test_accuracy_final", row["test_accuracy_final"], step=step)
        if rows:
            png = report.plot(rows, title=config.run_name)
            image = tf.image.decode_png(png, channels=4)[None]
            tf.summary.image("accuracy_vs_sparsity", image, step=max(int(r["round"]) for r in rows))
    writer.close()


def _hparams(config: LotteryConfig) -> dict[str, Any]:
    """Config values as hparams: scalars as they are, the rest as strings."""
    out = {}
    for key, value in config.to_dict().items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is not None:
            out[key] = str(value)
    return out
