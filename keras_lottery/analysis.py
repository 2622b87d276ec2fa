"""The paper's analyses of tickets, and Early-Bird detection, as pure math.

Everything here takes masks and weights as `{kernel name: array}` dicts (as
`get_masks()` and `get_kernels()` return them) and returns numbers or
arrays; `keras_lottery.analyses` applies them to run directories.

- Mask stability: Jaccard overlap and Hamming distance between masks.
- Weight movement: |θ_final − θ_init| of the weights a round keeps vs those
  the next pruning removes (the paper: winning weights move the most).
- Early-Bird tickets (You et al., ICLR 2020): the magnitude mask stops
  changing early in training; find the first step where it is stable.
- Structured sparsity: whole neurons or filters left without weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _bool(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) != 0 for k, v in masks.items()}


def jaccard(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Kept-weight overlap of two masks: |a ∩ b| / |a ∪ b| (1 = identical).

    Args:
        a: kernel name -> mask.
        b: kernel name -> mask with the same names and shapes.

    Returns:
        The Jaccard index over all kernels together.

    Example:
    >>> jaccard({"k": np.array([1, 1, 0, 0])}, {"k": np.array([1, 0, 1, 0])})
    0.3333333333333333
    """
    a, b = _bool(a), _bool(b)
    inter = sum(int(np.count_nonzero(a[k] & b[k])) for k in a)
    union = sum(int(np.count_nonzero(a[k] | b[k])) for k in a)
    return inter / union if union else 1.0


def hamming(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Normalized Hamming distance: share of entries where the masks differ.

    Example:
    >>> hamming({"k": np.array([1, 1, 0, 0])}, {"k": np.array([1, 0, 1, 0])})
    0.5
    """
    a, b = _bool(a), _bool(b)
    differ = sum(int(np.count_nonzero(a[k] != b[k])) for k in a)
    return differ / max(1, sum(a[k].size for k in a))


def weight_movement(
    initial: Mapping[str, np.ndarray],
    final: Mapping[str, np.ndarray],
    mask: Mapping[str, np.ndarray],
    next_mask: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """|final − initial| of the weights a round trained, split by fate.

    Args:
        initial: kernel values the round started from.
        final: kernel values after training.
        mask: the round's masks (which weights trained).
        next_mask: the next round's masks (which of them survive).

    Returns:
        `{"survivors": ..., "pruned": ...}`: 1-D arrays of movements of the
        weights kept by `next_mask` and of those it removes. Together they
        hold exactly the weights alive in `mask`.

    Example:
    >>> move = weight_movement({"k": np.zeros(3)}, {"k": np.array([1.0, -2.0, 0.1])},
    ...                        {"k": np.ones(3)}, {"k": np.array([1, 1, 0])})
    >>> move["survivors"].tolist(), move["pruned"].tolist()
    ([1.0, 2.0], [0.1])
    """
    mask, next_mask = _bool(mask), _bool(next_mask)
    survivors, pruned = [], []
    for name in mask:
        moved = np.abs(np.asarray(final[name], np.float64) - np.asarray(initial[name], np.float64))
        survivors.append(moved[mask[name] & next_mask[name]])
        pruned.append(moved[mask[name] & ~next_mask[name]])
    return {"survivors": np.concatenate(survivors), "pruned": np.concatenate(pruned)}


def early_bird_step(
    masks: Sequence[Mapping[str, np.ndarray]],
    steps: Sequence[int],
    threshold: float = 0.1,
    window: int = 5,
) -> int | None:
    """The first step at which the magnitude mask has become stable.

    You et al. (2020) draw a mask every few steps and call the ticket found
    when the normalized Hamming distance between the latest mask and each
    of the previous `window - 1` ones stays below `threshold`.

    Args:
        masks: masks drawn during training, in order.
        steps: the step of each mask.
        threshold: largest distance still counted as "unchanged".
        window: number of consecutive masks that must agree.

    Returns:
        The step of the mask that completes the first stable window, or
        None if the masks never settle.

    Example:
    >>> stable = {"k": np.array([1, 1, 0, 0])}
    >>> early_bird_step([{"k": np.array([0, 0, 1, 1])}] + [stable] * 5, range(0, 600, 100))
    500
    """
    if window < 2:
        raise ValueError(f"window must be >= 2. Received: window={window}")
    for end in range(window - 1, len(masks)):
        latest = masks[end]
        if all(hamming(latest, masks[i]) < threshold for i in range(end - window + 1, end)):
            return int(steps[end])
    return None


def dead_units(kernel: np.ndarray) -> dict[str, int]:
    """Output units (Dense neurons, conv filters) whose weights are all zero.

    The output axis is the last one for Dense and convolution kernels.

    Returns:
        `{"units": n, "dead": k}`.

    Example:
    >>> dead_units(np.array([[0.0, 1.0], [0.0, 0.0]]))
    {'units': 2, 'dead': 1}
    """
    flat = np.asarray(kernel).reshape(-1, kernel.shape[-1])
    return {"units": int(flat.shape[1]), "dead": int(np.count_nonzero(~flat.any(axis=0)))}
