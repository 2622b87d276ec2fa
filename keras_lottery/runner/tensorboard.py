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

Events are written without TensorFlow, on every Keras backend, by
`EventWriter`: the summary protos TensorFlow 2's `tf.summary` writes
(float32 scalar tensors, `[30, 3]` float64 histogram buckets, PNG images as
`[width, height, png]` string tensors, the hparams plugin's session start),
built with the `tensorboard` package's own protos, in TFRecord-framed event
files that TensorBoard and its `EventAccumulator` read.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from keras_lottery.masking import mask_slots
from keras_lottery.runner import reports

# Split prefixes of evaluation record keys; `train_eval` is matched before `train`.
_SPLITS = ("train_eval", "train", "val", "test")

# Buckets per histogram, as in `tf.summary.histogram`.
HISTOGRAM_BUCKETS = 30

_writer_ids = itertools.count()


def histogram_buckets(values: Any, buckets: int = HISTOGRAM_BUCKETS) -> np.ndarray:
    """The `[buckets, 3]` rows `(left edge, right edge, count)` TensorFlow 2.21's
    `tf.summary.histogram` computes: equal-width buckets from the minimum to
    the maximum (the maximum in the last), all of one value in the last
    bucket with both edges at it, all zeros for no values. NaN and infinite
    values are left out (a diverged branch's weights must not break its log).

    Example:
    >>> histogram_buckets([0.0, 1.0, 1.0, float("nan")], buckets=2)[:, 2]
    array([1., 2.])
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return np.zeros((buckets, 3))
    low, high = float(data.min()), float(data.max())
    counts = np.zeros(buckets)
    if low == high:
        counts[-1] = data.size
        edges = np.full(buckets, high)
        return np.stack([edges, edges, counts], axis=1)
    index = np.floor((data - low) / ((high - low) / buckets)).astype(np.int64)
    counts = np.bincount(np.minimum(index, buckets - 1), minlength=buckets).astype(np.float64)
    edges = np.linspace(low, high, buckets + 1)
    edges[-1] = high
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


def _png_size(png: bytes) -> tuple[int, int]:
    """`(width, height)` from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("image must be PNG bytes. Received: bytes starting "
                         f"{png[:16]!r}")
    return struct.unpack(">II", png[16:24])


class EventWriter:
    """A TensorBoard event file in `logdir`, written without TensorFlow.

    Each instance writes its own file
    (`events.out.tfevents.<time>.<host>.<pid>.<n>.v2`, the name TensorFlow
    gives it), synchronously: a call returns after its event is written and
    flushed to the operating system.

    Args:
        logdir: the directory (created if missing).

    Example:
    >>> with EventWriter(logdir) as writer:
    ...     writer.scalar("val/loss", 0.25, step=100)
    """

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_writer_ids)}.v2")
        self.path = os.path.join(logdir, name)
        self._records = RecordWriter(open(self.path, "wb"))  # noqa: SIM115 - closed by close()
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()

    def summary(self, summary: summary_pb2.Summary, step: int) -> None:
        """Writes one `Summary` proto at `step`."""
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A scalar (float32), as `tf.summary.scalar` writes it."""
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, metadata=scalar_metadata.create_summary_metadata(None, None),
                          tensor=tensor_util.make_tensor_proto(np.float32(value)))
        self.summary(summary, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        """A histogram of `values` (any shape), as `tf.summary.histogram` writes it."""
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, metadata=histogram_metadata.create_summary_metadata(None, None),
                          tensor=tensor_util.make_tensor_proto(histogram_buckets(values),
                                                               dtype=np.float64))
        self.summary(summary, step)

    def image(self, tag: str, png: bytes, step: int) -> None:
        """A PNG image, as `tf.summary.image` writes one image."""
        width, height = _png_size(png)
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, metadata=image_metadata.create_summary_metadata(None, None),
                          tensor=tensor_util.make_tensor_proto(
                              np.array([str(width).encode(), str(height).encode(), png],
                                       dtype=object)))
        self.summary(summary, step)

    def hparams(self, hparams: Mapping[str, Any], trial_id: str) -> None:
        """The hparams plugin's session start for one trial (at step 0)."""
        self.summary(hparams_summary.hparams_pb(dict(hparams), trial_id=trial_id), 0)

    def close(self) -> None:
        """Closes the file."""
        self._records.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


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
        self._writer = EventWriter(logdir) if enabled else None

    def record(self, record: dict[str, float]) -> None:
        """Logs every finite number of one evaluation record at its step.

        Args:
            record: `step` and metric values keyed `<split>_<metric>` (tags
                as `record_tag` makes them).
        """
        if self._writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and _loggable(value):
                self._writer.scalar(record_tag(key), value, step)

    def diverged(self, step: int) -> None:
        """Marks the step whose loss became NaN/inf (`diverged` = 1)."""
        self.scalar("diverged", 1.0, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Logs one scalar."""
        if self._writer is None:
            return
        self._writer.scalar(tag, value, int(step))

    def model_state(self, model: keras.Model, step: int, weights: bool) -> None:
        """Logs per-layer sparsity and mask histograms (and weights)."""
        if self._writer is None:
            return
        for slot in mask_slots(model):
            key = slot.key
            mask = keras.ops.convert_to_numpy(slot.mask)
            self._writer.scalar(f"sparsity/{key}", 1.0 - float(mask.mean()), step)
            self._writer.histogram(f"masks/{key}", mask, step)
            if weights:
                values = keras.ops.convert_to_numpy(slot.kernel)
                self._writer.histogram(f"weights/{key}", values[mask != 0], step)

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
    with EventWriter(logdir) as writer:
        writer.hparams(_hparams(hparams), trial_id=run_name)
        for row in rows:
            step = int(row["round"])
            prefix = row["branch"]
            writer.scalar(f"{prefix}/percent_remaining", row["percent_remaining"], step)
            writer.scalar(f"{prefix}/early_stop_iteration", row["early_stop_step"], step)
            for when in ("at_early_stop", "final"):
                key = f"test_{metric}_{when}"
                if row.get(key) is not None:
                    writer.scalar(f"{prefix}/{key}", row[key], step)
            writer.scalar(f"{prefix}/diverged", float(bool(row.get("diverged"))), step)
        if rows:
            png = reports.plot(rows, title=run_name, metric=metric)
            writer.image(f"{metric}_vs_sparsity", png, max(int(r["round"]) for r in rows))


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
    with EventWriter(logdir) as writer:
        for row in result["train_test"]:
            if row["gap"] is not None:
                step = row["round"]
                for split in ("train", "test"):
                    writer.scalar(f"train_vs_test/{split}_{metric}_at_early_stop",
                                  row[f"{split}_{metric}"], step)
                writer.scalar("train_vs_test/gap", row["gap"], step)
        for row in result["stability"]:
            writer.scalar("mask_stability/jaccard_with_final_ticket", row["jaccard"], row["round"])
            for name, value in row["layers"].items():
                writer.scalar(f"mask_stability_by_layer/{name}", value, row["round"])
        for r, layers in result["layer_sparsity"].items():
            for name, value in layers.items():
                writer.scalar(f"layer_sparsity/{name}", value, int(r))
        for row in result["movement"]:
            values = result["movement_values"][row["round"]]
            writer.histogram("weight_movement/survivors", values["survivors"], row["round"])
            writer.histogram("weight_movement/pruned", values["pruned"], row["round"])
            writer.scalar("weight_movement/ratio_of_means", row["ratio"], row["round"])
        bird = result["early_bird"]
        if bird and bird.get("step") is not None:
            writer.scalar("early_bird/step", bird["step"], 0)
        compact = result["structure"]["compacted"]
        if compact:
            writer.scalar("structure/compacted_speedup", compact["speedup"],
                          result["structure"]["round"])
    return logdir


def write_instability_summaries(run_dir: str, results: Sequence[dict[str, Any]]) -> str:
    """(Re)writes the instability analyses of a run under `RUN_DIR/instability/`.

    Per round and rewind step k: the metrics along the linear path between
    the two copies (`round_NN/k<K>/<split>/<metric>`, step = point index;
    the alphas are evenly spaced in [0, 1]); per round, the instability of
    each split against k (`round_NN/instability/<split>`, step = k, in
    percentage points) and the plot of error along the path.

    Args:
        run_dir: the run directory.
        results: `runner.instability.load_results(run_dir)`.

    Returns:
        The event directory.

    Example:
    >>> write_instability_summaries(run_dir, instability.load_results(run_dir))
    """
    logdir = os.path.join(run_dir, "instability")
    if os.path.isdir(logdir):
        for path in os.listdir(logdir):
            if path.startswith("events.out.tfevents."):
                os.remove(os.path.join(logdir, path))
    with EventWriter(logdir) as writer:
        for result in results:
            prefix, k = f"round_{result['round']:02d}", int(result["rewind_step"])
            for key, values in result["curve"]["metrics"].items():
                split = next((s for s in _SPLITS if key.startswith(s + "_")), None)
                tag = f"{split}/{key[len(split) + 1:]}" if split else key
                for index, value in enumerate(values):
                    writer.scalar(f"{prefix}/k{k}/{tag}", value, index)
            for split, value in result["instability"].items():
                writer.scalar(f"{prefix}/instability/{split}", 100.0 * value, k)
        for r in sorted({result["round"] for result in results}):
            png = reports.instability_figure([x for x in results if x["round"] == r])
            writer.image(f"round_{r:02d}/error_along_path", png, 0)
    return logdir
