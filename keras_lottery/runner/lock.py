"""One process per run directory: a lock file that names its holder.

`RunLock` creates `<run_dir>/lock` with `O_CREAT | O_EXCL`, holding JSON
`{pid, host, started, command}`. A second process on the same directory
reads it and refuses at once, naming the holder and how to proceed. A lock
whose process has died on this host (or whose file is damaged) is taken
over with a warning, and so is one whose pid now belongs to a process that
started after the lock was written, or to this process while it holds no
lock there (pids are reused after a reboot, and in a container every run
may be pid 1); a lock from another host is refused, since its liveness
can't be checked.

Checking and changing the lock happen under a short `flock` on the run
directory, so two processes starting together, or taking over the same
stale lock together, can't both win. On a filesystem without `flock`
support for directories, this step is skipped and `O_EXCL` alone decides.

POSIX only (`fcntl`, `os.kill(pid, 0)`).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

from keras_lottery.files import CorruptFileError, atomic_open, read_json

LOCK_NAME = "lock"
# The lock files this process holds: a lock naming this pid but not held
# here was left by an earlier process that had the same pid.
_HELD_HERE: set[str] = set()
_GUARD_TIMEOUT_S = 10.0  # others hold the guard for milliseconds


class RunLockedError(RuntimeError):
    """The run directory is in use by another process (or by this one)."""


class RunLock:
    """An exclusive claim on a run directory by this process.

    Take it in the process that writes the directory (in multi-worker
    training, the chief only), before writing anything.

    Args:
        run_dir: the run directory; created if missing.

    Example:
    >>> with RunLock("logs/run"):
    ...     pass  # write the run directory
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_NAME)
        self._held = False

    def acquire(self) -> None:
        """Claims the run directory, taking over a lock left by a dead process.

        Raises:
            RunLockedError: if a live process on this host holds the lock
                (this process included), or a process on another host does.
        """
        os.makedirs(self.run_dir, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv),
        }
        with _guard(self.run_dir):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over(record)
            else:
                with os.fdopen(fd, "w") as f:
                    json.dump(record, f)
                    f.flush()
                    os.fsync(f.fileno())
        self._held = True
        _HELD_HERE.add(os.path.realpath(self.path))

    def _take_over(self, record: dict[str, Any]) -> None:
        """Replaces an existing lock if its holder is gone, else refuses."""
        try:
            holder = _read_holder(self.path)
        except CorruptFileError as error:
            warnings.warn(f"Taking over the damaged lock file {self.path} ({error.reason}).",
                          stacklevel=3)
        except FileNotFoundError:  # deleted by hand since O_EXCL saw it
            pass
        else:
            if holder["host"] != record["host"]:
                raise RunLockedError(
                    f"{_describe(self.run_dir, holder)} This is host {record['host']}, so "
                    "whether it is still running can't be checked from here. Wait for it "
                    "to finish, or stop it; if that host is gone, delete "
                    f"{self.path} and rerun."
                )
            why = self._stale(holder, record)
            warnings.warn(
                f"Taking over the lock {self.path} left by pid {holder['pid']} "
                f"(started {holder.get('started', '?')}, command: "
                f"{holder.get('command', '?')}): {why}.",
                stacklevel=3,
            )
        with atomic_open(self.path) as f:
            json.dump(record, f)

    def _stale(self, holder: dict[str, Any], record: dict[str, Any]) -> str:
        """Why a lock of this host may be taken over; RunLockedError if not."""
        pid = holder["pid"]
        if pid == record["pid"]:
            if os.path.realpath(self.path) in _HELD_HERE:
                raise RunLockedError(
                    f"{_describe(self.run_dir, holder)} That is this process, which holds it "
                    "already (a search inside a search's callback?): let the first finish, "
                    "or release the lock before acquiring it again."
                )
            return "that is this process's pid, reused: it holds no lock there"
        if not _alive(pid):
            return "it is no longer running"
        began = _process_start(pid)
        written = _timestamp(holder.get("started"))
        if began is not None and written is not None and began > written + 2:
            return (f"pid {pid} is now another process, started after the lock was written "
                    "(pid reused)")
        raise RunLockedError(
            f"{_describe(self.run_dir, holder)} Wait for it to finish, or stop it (kill "
            f"{pid}); a lock left by a dead process is taken over automatically. If pid {pid} "
            "is not running keras-lottery (a pid reused after a reboot or in a container), "
            f"delete {self.path} and rerun."
        )

    def release(self) -> None:
        """Removes the lock if this process holds it; otherwise does nothing.

        A lock taken over meanwhile by another process (or replaced by
        hand) is left alone.
        """
        if not self._held:
            return
        self._held = False
        _HELD_HERE.discard(os.path.realpath(self.path))
        with _guard(self.run_dir):
            try:
                holder = _read_holder(self.path)
            except (FileNotFoundError, CorruptFileError):
                return
            if holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
                os.remove(self.path)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_holder(path: str) -> dict[str, Any]:
    """The lock's record; CorruptFileError if it names no pid and host."""
    holder = read_json(path)
    if not (isinstance(holder, dict) and isinstance(holder.get("pid"), int)
            and holder["pid"] > 0 and isinstance(holder.get("host"), str)):
        raise CorruptFileError(
            path, f"it does not name a holder: expected a JSON object with a positive "
            f"integer 'pid' and a 'host'. Received: {holder!r}"
        )
    return holder


def _describe(run_dir: str, holder: dict[str, Any]) -> str:
    return (
        f"The run directory {run_dir} is in use by pid {holder['pid']} on host "
        f"{holder['host']} (started {holder.get('started', '?')}, command: "
        f"{holder.get('command', '?')})."
    )


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _process_start(pid: int) -> float | None:
    """When a process of this host started (Unix time), or None where
    `/proc` does not tell."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _timestamp(text: Any) -> float | None:
    """An ISO time of a lock's `started` as Unix time, or None."""
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


@contextlib.contextmanager
def _guard(directory: str) -> Iterator[None]:
    """Holds an exclusive `flock` on `directory` while the lock is examined.

    The kernel drops it if the process dies, so it never goes stale.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + _GUARD_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunLockedError(
                        f"Another process has been examining the lock of {directory} "
                        f"for over {_GUARD_TIMEOUT_S:.0f} s (it may be stopped). "
                        "Try again, or find the process holding it (e.g. `lsof`)."
                    ) from None
                time.sleep(0.01)
            except OSError as error:
                if error.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                break  # no flock on this filesystem: O_EXCL alone decides
        yield
    finally:
        os.close(fd)


def run_lock(config, chief: bool = True) -> contextlib.AbstractContextManager:
    """The lock of a config's run directory (a no-op off the chief), to
    hold from before the directory is opened until the run ends.

    Args:
        config: a `LotteryConfig` (its `logdir` and `run_name`).
        chief: whether this process writes the run (with several workers,
            only the chief does).

    Returns:
        A context manager.

    Example:
    >>> with run_lock(config):
    ...     result = engine.run()
    """
    if not chief:
        return contextlib.nullcontext()
    return RunLock(os.path.join(config.logdir, config.run_name))
