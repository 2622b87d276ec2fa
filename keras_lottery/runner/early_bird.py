"""Early-Bird detection during the dense round (You et al., ICLR 2020).

Every `eb_every` steps of the dense round, the round-1 mask is drawn from
the current weights with the run's pruner; once the last `eb_window` masks differ by
at most `eb_threshold` (normalized Hamming distance), the ticket has been
found early and, with `eb_stop`, training stops there.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_lottery.analysis import early_bird_step, hamming
from keras_lottery.pruners import Pruner, PruneRequest
from keras_lottery.pruning import get_kernels


class EarlyBird:
    """Draws the round-1 mask during the dense round.

    Args:
        model: the masked model being trained.
        config: the run's config (`eb_every`, `eb_threshold`, `eb_window`,
            `eb_stop`).
        log: the branch's `BranchLog` (mask distances are logged).
        pruner: the run's pruner (one that acts between rounds).
        request: round 1's request to it (the share to prune, rates,
            scope, granularity) on `model`.

    `draw(step)` returns True when training should stop there: the masks
    have settled and the config asks to stop at the Early-Bird step.
    """

    def __init__(self, model: keras.Model, config, log, pruner: Pruner, request: PruneRequest):
        self.model, self.config, self.log = model, config, log
        self.pruner, self.request = pruner, request
        self.masks: list[dict[str, np.ndarray]] = []
        self.steps: list[int] = []
        self.distances: list[float] = []
        self.step: int | None = None

    def draw(self, step: int) -> bool:
        """Draws the mask at `step`; True if training should stop here."""
        config = self.config
        masks = self.pruner.masks(self.request)
        distance = hamming(masks, self.masks[-1]) if self.masks else 1.0
        self.masks.append(masks)
        self.steps.append(step)
        self.distances.append(distance)
        self.masks = self.masks[-config.eb_window:]
        self.steps = self.steps[-config.eb_window:]
        self.log.scalar("early_bird/mask_distance", distance, step)
        if self.step is None:
            self.step = early_bird_step(self.masks, self.steps, config.eb_threshold,
                                        config.eb_window)
            if self.step is not None:
                self.log.scalar("early_bird/step", self.step, step)
                return config.eb_stop
        return False

    def state(self) -> dict[str, np.ndarray]:
        """The detector's state as arrays, for a checkpoint."""
        arrays = {
            "eb_steps": np.array(self.steps, np.int64),
            "eb_distances": np.array(self.distances, np.float64),
            "eb_step": np.array(-1 if self.step is None else self.step),
        }
        for i, masks in enumerate(self.masks):
            arrays.update({f"eb_mask_{i}_{j}": m for j, m in enumerate(masks.values())})
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Continues from `state()`, so a resumed round detects the same step."""
        if "eb_steps" not in arrays:
            return
        names = list(get_kernels(self.model))
        self.steps = [int(s) for s in arrays["eb_steps"]]
        self.distances = [float(d) for d in arrays["eb_distances"]]
        self.step = None if int(arrays["eb_step"]) < 0 else int(arrays["eb_step"])
        self.masks = [{name: arrays[f"eb_mask_{i}_{j}"] for j, name in enumerate(names)}
                      for i in range(len(self.steps))]

    def summary(self) -> dict[str, Any]:
        """What the branch's metrics record about the detection."""
        return {
            "step": self.step,
            "stopped": bool(self.config.eb_stop and self.step is not None),
            "every": self.config.eb_every,
            "distances": self.distances,
        }
