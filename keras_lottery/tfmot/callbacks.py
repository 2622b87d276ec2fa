"""TFMOT's pruning callbacks: `UpdatePruningStep` and `PruningSummaries`.

`UpdatePruningStep` does what TFMOT's wrapper does inside its `call`, but
between training steps, in Python, so that it runs on every backend: at the
start of each training batch it advances every pruned layer's step and,
where the layer's schedule says so, computes the new masks from the
current weights and assigns them, zeroing the pruned weights and their
optimizer slots (`keras_lottery.set_masks`, on the device). The step numbering is
TFMOT's: `on_train_begin` sets it to 0, the first batch is step 1.
"""

from __future__ import annotations

import numbers
import os
import warnings

import keras
import numpy as np

from keras_lottery import compat
from keras_lottery.pruning import set_masks
from keras_lottery.tfmot.prune import LayerPruning, pruned_slots


def _unique_states(pairs) -> list[LayerPruning]:
    return list(dict.fromkeys(state for _, state in pairs))


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning step and updates the masks during `fit`.

    Training a pruned model without it raises an error at the first
    training batch, as in TFMOT. In a custom training loop, call
    `set_model(model)`, `on_train_begin()` and, before every step,
    `on_train_batch_begin(batch)`.

    Example:
    >>> pruned.fit(x, y, epochs=2, callbacks=[UpdatePruningStep()])
    """

    advances_pruning_step = True  # what prune_low_magnitude's fit check looks for

    def __init__(self):
        super().__init__()
        self.prunable_layers: list[keras.layers.Layer] = []
        self._slots = []
        self._states: list[LayerPruning] = []

    def on_train_begin(self, logs=None):
        self._slots = pruned_slots(self.model)
        self._states = _unique_states(self._slots)
        self.prunable_layers = list(dict.fromkeys(slot.layer for slot, _ in self._slots))
        refused = False
        for state in self._states:
            if state.step == -1:  # a new model; a model already trained goes on counting
                state.step = 0
            refused |= state.refused
            state.refused = False
        if refused and hasattr(self.model, "make_train_function"):
            # A fit without this callback failed while TensorFlow traced its
            # train step; that tf.function cannot be traced again (it would
            # create the optimizer's variables on a second call): a new one.
            self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._slots:
            return
        due = set()
        for state in self._states:
            state.step += 1
            if state.should_update():
                due.add(id(state))
        if not due:
            return
        # On JAX, fit holds the variables' values inside its loop: bring them
        # back to the variables first; the trainer then reads the new masks
        # and weights back before this batch's step.
        compat.sync_training_state(self.model)
        set_masks(self.model, {
            slot.key: state.mask(slot.key, keras.ops.convert_to_numpy(slot.kernel))
            for slot, state in self._slots if id(state) in due})

    def on_epoch_end(self, batch, logs=None):
        # TFMOT re-zeroes the pruned weights here (its gradient moves them);
        # here they get no gradient and are zeros already. (TFMOT names the
        # first argument `batch`, and custom loops call it so.)
        del batch, logs


class PruningSummaries(keras.callbacks.Callback):
    """Logs each pruned weight's sparsity and threshold to TensorBoard.

    As TFMOT's: at the start of each epoch, `<weight>/sparsity` and
    `<weight>/threshold` (and the schedule's target, `<weight>/target`)
    at the optimizer's step in `log_dir/metrics`; and the epoch's logs
    (`epoch_loss`...) in `log_dir/train` and `log_dir/validation`. Written
    without TensorFlow (keras-lottery's own event writer), on any backend;
    TensorBoard's other options (histograms, profiling) are not offered:
    add a `keras.callbacks.TensorBoard` for them.

    Args:
        log_dir: the directory of the event files.
        update_freq: `"epoch"`, or a number of batches between writes of
            the batch logs (`batch_loss`...).
        **kwargs: `keras.callbacks.TensorBoard`'s other arguments, accepted
            for TFMOT's code and ignored with a warning.

    Example:
    >>> model.fit(x, y, callbacks=[UpdatePruningStep(), PruningSummaries(log_dir="logs")])
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(
                f"`log_dir` must be a non-empty string. You passed `log_dir`={log_dir!r}."
            )
        if update_freq != "epoch" and not (
                isinstance(update_freq, numbers.Integral) and update_freq > 0):
            raise ValueError(
                f"update_freq must be 'epoch' or a positive number of batches. "
                f"Received: update_freq={update_freq!r}"
            )
        if kwargs:
            warnings.warn(f"PruningSummaries ignores {sorted(kwargs)} (TensorBoard options); "
                          "add a keras.callbacks.TensorBoard callback for them.", stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writers = {}
        self._batches = 0

    def _writer(self, name: str):
        from keras_lottery.runner.tensorboard import EventWriter

        if name not in self._writers:
            self._writers[name] = EventWriter(os.path.join(self.log_dir, name))
        return self._writers[name]

    def _iterations(self) -> int:
        compat.sync_training_state(self.model)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        slots = pruned_slots(self.model)
        if not slots:
            return
        step = self._iterations()
        writer = self._writer("metrics")
        for slot, state in slots:
            mask = keras.ops.convert_to_numpy(slot.mask)
            writer.scalar(f"{slot.key}/sparsity", 1.0 - float(np.mean(mask)), step)
            writer.scalar(f"{slot.key}/threshold", state.thresholds.get(slot.key, 0.0), step)
            if state.step >= 0 and state.sparsity_m_by_n is None:
                writer.scalar(f"{slot.key}/target", float(state.pruning_schedule(state.step)[1]),
                              step)

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            for name, value in (logs or {}).items():
                if np.ndim(value) == 0:
                    self._writer("train").scalar(f"batch_{name}", float(value), self._batches)

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            if np.ndim(value) != 0:
                continue
            split, metric = ("validation", name[4:]) if name.startswith("val_") else (
                "train", name)
            self._writer(split).scalar(f"epoch_{metric}", float(value), epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
