"""Host arrays laid out so that TensorFlow takes them without a copy.

TensorFlow's CPU tensors need their data 64-byte aligned
(EIGEN_MAX_ALIGN_BYTES): an aligned, C-contiguous NumPy array becomes a
tensor without a copy (`inputs.host_tensor`), where `tf.constant` makes two.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts at a multiple
    of `ALIGNMENT` bytes.

    Example:
    >>> aligned_empty((3, 5), np.uint8).ctypes.data % ALIGNMENT
    0
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, np.uint8)
    offset = -buffer.ctypes.data % ALIGNMENT
    return buffer[offset:offset + nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray) -> bool:
    """Whether `array` is C-contiguous and starts at a multiple of `ALIGNMENT`."""
    return bool(array.flags.c_contiguous) and array.ctypes.data % ALIGNMENT == 0


def aligned_take(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`array[index]` (along the first axis) in an aligned array (`aligned_empty`).

    Example:
    >>> aligned_take(np.arange(6).reshape(3, 2), np.array([2, 0])).tolist()
    [[4, 5], [0, 1]]
    """
    out = aligned_empty((len(index), *array.shape[1:]), array.dtype)
    np.take(array, index, axis=0, out=out)
    return out


def aligned(array: np.ndarray, dtype=None) -> np.ndarray:
    """`array` itself if it `is_aligned`, else an aligned copy.

    Args:
        array: the array.
        dtype: the dtype of the copy, when one is made (default: the
            array's); an aligned array is returned as it is.

    Returns:
        An array that `is_aligned`.

    Example:
    >>> aligned(np.arange(3.0)[1:], np.float32).dtype
    dtype('float32')
    """
    array = np.asarray(array)
    if is_aligned(array):
        return array
    out = aligned_empty(array.shape, array.dtype if dtype is None else dtype)
    np.copyto(out, array, casting="same_kind")
    return out
