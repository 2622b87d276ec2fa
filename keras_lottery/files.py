"""Atomic file writes: a file is either absent, or whole; damage is named.

Everything keras-lottery writes (run directories, snapshots, masks) goes
through these helpers, so a process killed mid-write never leaves a
truncated file behind. A file damaged afterwards (a full disk, a bad copy,
a filesystem crash) makes `read_json` and `read_npz` raise
`CorruptFileError`, which names the file and the damage, instead of a
zipfile/zlib/json traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import IO, Any

import numpy as np


class CorruptFileError(ValueError):
    """A file exists but its contents are damaged (truncated, overwritten...).

    Args:
        path: the damaged file.
        reason: what is wrong with it, e.g. "it is empty (0 bytes)".

    Example:
    >>> error = CorruptFileError("run/masks.npz", "it is empty (0 bytes)")
    >>> error.path, error.reason
    ('run/masks.npz', 'it is empty (0 bytes)')
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(
            f"{self.path} is damaged: {reason}. Delete it (or restore a good copy) "
            "and rerun: keras-lottery rebuilds a missing run file, and falls back "
            "to the previous checkpoint by itself."
        )

    def __reduce__(self):  # picklable across processes despite the signature
        return type(self), (self.path, self.reason)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a temporary path beside `path`, renamed onto it on success.

    Args:
        path: the final file path.
        suffix: the temporary file's suffix, starting `.tmp` (a writer that
            insists on an extension, such as `model.save`, gets
            `".tmp.keras"`), so that `.<name>.<random>.tmp*` finds every
            temporary file a killed process left.

    Returns:
        A context manager yielding the temporary path to write.

    Example:
    >>> with atomic_path("out.txt") as tmp:
    ...     open(tmp, "w").write("done")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if not suffix.startswith(".tmp"):
        raise ValueError(f"suffix must start with '.tmp'. Received: suffix={suffix!r}")
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=suffix
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
    """Reads a JSON file.

    Args:
        path: the file.

    Returns:
        The decoded JSON value.

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptFileError: if it is empty, not UTF-8 or not valid JSON.

    Example:
    >>> write_json("data.json", {"classes": 10})
    >>> read_json("data.json")
    {'classes': 10}
    """
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise CorruptFileError(path, "it is empty (0 bytes)")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CorruptFileError(
            path, f"it is not UTF-8 text (invalid byte at offset {error.start})"
        ) from error
    except json.JSONDecodeError as error:
        raise CorruptFileError(
            path, f"it is not valid JSON ({error.msg} at line {error.lineno} "
            f"column {error.colno}; {len(raw)} bytes, possibly truncated)"
        ) from error


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes arrays to a compressed `.npz` file, atomically."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` file into a dict, checking its integrity.

    Every array is decompressed and its CRC checked before returning, so a
    damaged file fails here rather than at first use of an array.

    Args:
        path: the file, as written by `write_npz` or `np.savez[_compressed]`.

    Returns:
        The arrays by name.

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptFileError: if it is damaged in any way (empty, truncated, not a
            zip archive, failed CRC, bad compressed data, bad array header).

    Example:
    >>> write_npz("masks.npz", {"fc1": np.ones((2, 3))})
    >>> read_npz("masks.npz")["fc1"].shape
    (2, 3)
    """
    with open(path, "rb") as f:  # a missing file raises FileNotFoundError as usual
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CorruptFileError(path, "it is empty (0 bytes)")
        try:
            return _read_arrays(f)
        # Any failure to decode bytes we could read is damage: zipfile, zlib,
        # numpy's header parser, and lzma/bz2 (a flipped method byte) all
        # raise their own exception types.
        except Exception as error:
            raise CorruptFileError(path, f"{_npz_damage(error)}; it has {size} bytes") from error


def check_zip(path: str | os.PathLike) -> None:
    """Checks that a zip archive (a `.keras` model file) is whole: readable,
    every member's CRC good.

    Args:
        path: the file.

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptFileError: if it is empty, not a zip archive, or a member
            fails its CRC check or is truncated.

    Example:
    >>> with zipfile.ZipFile("a.zip", "w") as archive:
    ...     archive.writestr("config.json", "{}")
    >>> check_zip("a.zip")
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CorruptFileError(path, "it is empty (0 bytes)")
        try:
            with zipfile.ZipFile(f) as archive:
                bad = archive.testzip()
        except Exception as error:  # zipfile, zlib, EOFError: damage
            raise CorruptFileError(path, f"{_npz_damage(error)}; it has {size} bytes") from error
    if bad is not None:
        raise CorruptFileError(path, f"its member {bad!r} fails its CRC check; it has {size} bytes")


def _read_arrays(f: IO[bytes]) -> dict[str, np.ndarray]:
    """Reads and fully verifies every member of an open `.npz` file."""
    with zipfile.ZipFile(f) as archive:
        members = sorted(archive.infolist(), key=lambda info: info.header_offset)
        _check_members_fill_archive(f, members, archive.start_dir)
        arrays = {}
        for info in members:
            with archive.open(info) as member:
                arrays[info.filename.removesuffix(".npy")] = np.lib.format.read_array(
                    member, allow_pickle=False
                )
                # Reading to the end checks the CRC even if a damaged header
                # declared a smaller array than the member holds.
                trailing = 0
                while chunk := member.read(1 << 20):
                    trailing += len(chunk)
                if trailing:
                    raise ValueError(f"{info.filename} holds {trailing} bytes after its array")
        return arrays


def _check_members_fill_archive(
    f: IO[bytes], members: list[zipfile.ZipInfo], directory_start: int
) -> None:
    """Checks that the members tile the file up to the central directory.

    A damaged directory entry can swallow the entries after it, and zipfile
    then silently lists fewer members; the bytes they occupy show up here
    as a gap.
    """
    position = 0
    for info in members:
        if info.flag_bits & 0x08:  # sizes in a data descriptor: cannot tile
            return
        if info.header_offset != position:
            raise zipfile.BadZipFile(
                f"the directory does not account for bytes {position}-{info.header_offset}"
            )
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        position = info.header_offset + 30 + name_length + extra_length + info.compress_size
    if position != directory_start:
        raise zipfile.BadZipFile(
            f"the directory does not account for bytes {position}-{directory_start}"
        )


def _npz_damage(error: Exception) -> str:
    """Says in words what an exception raised while reading an `.npz` means."""
    message = str(error)
    if isinstance(error, zipfile.BadZipFile) and "not a zip file" in message:
        return "it is not a zip archive (truncated, or overwritten with other data)"
    if isinstance(error, zipfile.BadZipFile) and "CRC" in message:
        return f"the data inside fails its CRC check ({message})"
    if isinstance(error, zlib.error):
        return f"its compressed data is damaged ({message})"
    if isinstance(error, EOFError):
        return "it is truncated (the compressed data ends early)"
    return f"it cannot be decoded ({type(error).__name__}: {message})"
