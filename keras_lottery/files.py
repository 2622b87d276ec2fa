"""Atomic file writes: a file is either absent, or whole.

Everything keras-lottery writes (run directories, snapshots, masks) goes
through these helpers, so a process killed mid-write never leaves a
truncated file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`, renamed onto it on success.

    Args:
        path: the final file path.

    Returns:
        A context manager yielding the temporary path to write.

    Example:
    >>> with atomic_path("out.txt") as tmp:
    ...     open(tmp, "w").write("done")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Opens a temporary file that replaces `path` when closed successfully."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON, atomically."""
    with atomic_open(path) as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file."""
    with open(path) as f:
        return json.load(f)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes arrays to a compressed `.npz` file, atomically."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` file into a dict."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
