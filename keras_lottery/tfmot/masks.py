"""TFMOT's mask math in NumPy: magnitude, block and M-by-N masks.

Pure functions of a weight tensor, as TFMOT 0.8's `pruning_impl` computes
them at a pruning step (its sparsity is a share of *all* the weights, not
of the remaining ones as in `keras_lottery.mask_math`):

- `magnitude_mask`: keep the `k = max(round(size * (1 - sparsity)), 1)`
  largest |w| (k in float32, rounded half to even) and every weight tied
  with the k-th largest, so ties at the threshold are kept, as in TFMOT;
- `block_mask`: the same on the blocks of a 2-D kernel, each scored by the
  average or maximum |w| of its weights (a partial block at the edge by its
  weights alone);
- `m_by_n_mask`: `m` zeros in every `n` consecutive weights along the
  input axis (TFMOT's layout: rows of a Dense kernel, input channels of a
  Conv2D kernel), ties going to the lower index as in `tf.math.top_k`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

POOLING_TYPES = ("AVG", "MAX")


def keep_count(size: int, sparsity: float) -> int:
    """How many weights TFMOT keeps of `size` at `sparsity` (at least 1)."""
    kept = np.float32(size) * (np.float32(1.0) - np.float32(sparsity))
    return int(max(np.round(kept), np.float32(1.0)))


def magnitude_mask(weights: ArrayLike, sparsity: float) -> tuple[np.ndarray, float]:
    """The mask keeping the largest-magnitude weights at `sparsity`.

    Args:
        weights: any array.
        sparsity: share of the weights to prune, in [0, 1).

    Returns:
        (boolean mask of the weights' shape, the threshold: the k-th
        largest |w|; every |w| >= threshold is kept).

    Example:
    >>> mask, threshold = magnitude_mask(np.array([0.1, -3.0, 0.2, 4.0]), 0.5)
    >>> mask.astype(int).tolist(), threshold
    ([0, 1, 0, 1], 3.0)
    """
    magnitude = np.abs(np.asarray(weights))
    flat = magnitude.reshape(-1)
    k = keep_count(flat.size, sparsity)
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    return magnitude >= threshold, float(threshold)


def check_block(shape: tuple[int, ...], block_size: tuple[int, int]) -> None:
    """Raises TFMOT's error for block sparsity on a weight that is not 2-D."""
    if tuple(block_size) != (1, 1) and len(shape) != 2:
        raise ValueError(
            "Block Sparsity can only be used for layers which have 2-dimensional weights. "
            f"Received: a weight of shape {tuple(shape)} with block_size={tuple(block_size)}"
        )


def _pool(values: np.ndarray, size: int, axis: int, pooling_type: str) -> np.ndarray:
    """Pools `values` along `axis` in windows of `size` (a partial last
    window over its own elements)."""
    values = np.moveaxis(values, axis, -1)
    n = values.shape[-1]
    groups = -(-n // size)
    padded = np.zeros(values.shape[:-1] + (groups * size,), values.dtype)
    padded[..., :n] = values
    windows = padded.reshape(values.shape[:-1] + (groups, size))
    if pooling_type == "MAX":
        pooled = windows.max(axis=-1)  # |w| >= 0, so zero padding never wins
    else:
        counts = np.full(groups, size, values.dtype)
        counts[-1] = n - (groups - 1) * size
        pooled = windows.sum(axis=-1) / counts
    return np.moveaxis(pooled, -1, axis)


def block_mask(weights: ArrayLike, sparsity: float, block_size=(1, 1),
               block_pooling_type: str = "AVG") -> tuple[np.ndarray, float]:
    """The magnitude mask over blocks of a 2-D kernel.

    Args:
        weights: a 2-D kernel (other shapes only with block_size (1, 1)).
        sparsity: share of the blocks to prune, in [0, 1).
        block_size: (height, width) of a block.
        block_pooling_type: `"AVG"` or `"MAX"`: a block's score is the
            average or the largest |w| of its weights.

    Returns:
        (boolean mask of the weights' shape, the blocks' threshold).

    Example:
    >>> w = np.array([[1.0, 1.0, 0.1, 0.1], [1.0, 1.0, 0.1, 0.3]])
    >>> block_mask(w, 0.5, (2, 2))[0].astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    weights = np.asarray(weights)
    block_size = tuple(int(b) for b in block_size)
    if block_size == (1, 1):
        return magnitude_mask(weights, sparsity)
    check_block(weights.shape, block_size)
    if block_pooling_type not in POOLING_TYPES:
        raise ValueError(f"Unsupported pooling type '{block_pooling_type}'. "
                         "Should be 'AVG' or 'MAX'.")
    magnitude = np.abs(weights)
    pooled = _pool(_pool(magnitude, block_size[0], 0, block_pooling_type), block_size[1], 1,
                   block_pooling_type)
    kept, threshold = magnitude_mask(pooled, sparsity)
    expanded = np.repeat(np.repeat(kept, block_size[0], axis=0), block_size[1], axis=1)
    return expanded[: weights.shape[0], : weights.shape[1]], threshold


def check_m_by_n(sparsity_m_by_n) -> tuple[int, int]:
    """TFMOT's check of `sparsity_m_by_n`: a tuple of two ints, m < n."""
    try:
        value = tuple(sparsity_m_by_n)
    except TypeError:
        value = None
    if value is None or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(
            "The sparsity_m_by_n argument must be a tuple/list of 2 integers. "
            f"Received: {sparsity_m_by_n}."
        )
    m, n = value
    if not 0 < m < n:
        raise ValueError(
            f"Argument m_by_n received {value}, m be must smaller than n (and positive): "
            "m zeros in every n consecutive weights."
        )
    return value


def _rows_for_m_by_n(weights: np.ndarray) -> np.ndarray:
    """TFMOT's layout: groups run along the last axis of the result."""
    if weights.ndim == 2:  # Dense (in, out) -> (out, in)
        return weights.T
    if weights.ndim == 4:  # Conv2D (h, w, in, out) -> (out * h * w, in)
        return np.transpose(weights, (3, 0, 1, 2)).reshape(-1, weights.shape[2])
    raise ValueError(f"weight tensor with shape: {weights.shape} is not supported "
                     "for sparsity_m_by_n (rank 2 or 4 only).")


def check_m_by_n_shape(shape: tuple[int, ...]) -> None:
    """Raises for a weight that M-by-N sparsity cannot prune (not 2-D or 4-D)."""
    if len(shape) not in (2, 4):
        raise ValueError(f"weight tensor with shape: {tuple(shape)} is not supported "
                         "for sparsity_m_by_n (rank 2 or 4 only).")


def m_by_n_mask(weights: ArrayLike, sparsity_m_by_n=(2, 4)) -> np.ndarray:
    """The M-by-N mask: `m` zeros in every `n` consecutive input weights.

    Args:
        weights: a Dense kernel `(in, out)` or Conv2D kernel `(h, w, in, out)`.
        sparsity_m_by_n: (m, n), m zeros in every n (TFMOT's order: (2, 4)
            keeps 2 of every 4; keras-lottery's granularity name for it is
            "2:4", N nonzeros in M). A last partial group keeps up to n - m.

    Returns:
        Boolean mask of the weights' shape.

    Example:
    >>> m_by_n_mask(np.array([[4.0], [1.0], [3.0], [2.0]]), (2, 4)).ravel().astype(int).tolist()
    [1, 0, 1, 0]
    """
    m, n = check_m_by_n(sparsity_m_by_n)
    weights = np.asarray(weights)
    rows = np.abs(_rows_for_m_by_n(weights))
    width = rows.shape[1]
    groups = -(-width // n)
    padded = np.zeros((rows.shape[0], groups * n), rows.dtype)
    padded[:, :width] = rows
    blocks = padded.reshape(-1, n)
    top = np.argsort(-blocks, axis=1, kind="stable")[:, : n - m]  # ties: lower index first
    kept = np.zeros(blocks.shape, bool)
    np.put_along_axis(kept, top, True, axis=1)
    kept = kept.reshape(padded.shape)[:, :width]
    if weights.ndim == 2:
        return kept.T
    h, w, c_in, c_out = weights.shape
    return np.transpose(kept.reshape(c_out, h, w, c_in), (1, 2, 3, 0))
