"""One process per run directory: refused with the holder named, stale locks taken over."""

import json
import os
import socket
import subprocess
import sys

import pytest

from keras_lottery.runner.lock import RunLock, RunLockedError


def _holder(run_dir) -> dict:
    with open(os.path.join(run_dir, "lock")) as f:
        return json.load(f)


def _write_lock(run_dir, **record) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "lock"), "w") as f:
        json.dump({"started": "2026-01-01T00:00:00+00:00", "command": "keras-lottery run", **record}, f)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lock_names_its_holder_and_release_removes_it(tmp_path):
    run_dir = str(tmp_path / "run")  # created by acquire
    with RunLock(run_dir) as lock:
        holder = _holder(run_dir)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert set(holder) == {"pid", "host", "started", "command"}
    assert not os.path.exists(lock.path)


def test_second_lock_in_the_same_process_is_refused_and_leaves_the_first(tmp_path):
    with RunLock(tmp_path):
        second = RunLock(tmp_path)
        with pytest.raises(RunLockedError, match=rf"{tmp_path} is in use by pid {os.getpid()} .*this process"):
            second.acquire()
        second.release()  # never acquired: leaves the holder's lock alone
        assert _holder(tmp_path)["pid"] == os.getpid()


def test_acquiring_the_same_lock_twice_is_an_error_not_a_deadlock(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    with pytest.raises(RunLockedError, match="release the lock before acquiring it again"):
        lock.acquire()
    lock.release()
    assert not os.path.exists(lock.path)


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid, host=socket.gethostname())
    with pytest.warns(UserWarning, match=rf"left by pid {pid} .*no longer running"):
        lock = RunLock(tmp_path)
        lock.acquire()
    assert _holder(tmp_path)["pid"] == os.getpid()
    lock.release()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"\x00\xff garbage", b'{"pid": "me"}'])
def test_damaged_lock_file_is_taken_over(tmp_path, content):
    with open(tmp_path / "lock", "wb") as f:
        f.write(content)
    with pytest.warns(UserWarning, match="damaged lock file"):
        with RunLock(tmp_path):
            assert _holder(tmp_path)["pid"] == os.getpid()


def test_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    _write_lock(tmp_path, pid=os.getpid(), host="gone-host")
    with pytest.raises(RunLockedError, match=r"pid \d+ on host gone-host .*can't be checked.*delete .*lock"):
        RunLock(tmp_path).acquire()
    assert _holder(tmp_path)["host"] == "gone-host"


def test_release_leaves_a_lock_that_another_process_took_over(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    _write_lock(tmp_path, pid=os.getpid() + 1, host=socket.gethostname())
    lock.release()
    assert _holder(tmp_path)["pid"] == os.getpid() + 1


def test_a_second_process_is_refused_while_this_one_holds_the_lock(tmp_path):
    code = "import sys; from keras_lottery.runner.lock import RunLock; RunLock(sys.argv[1]).acquire()"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with RunLock(tmp_path):
        process = subprocess.run([sys.executable, "-c", code, str(tmp_path), "--my-flag"],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert process.returncode != 0
        assert "RunLockedError" in process.stderr
        assert f"in use by pid {os.getpid()} on host {socket.gethostname()}" in process.stderr
        assert "Wait for it to finish, or stop it" in process.stderr
        assert "command: " in process.stderr and "started " in process.stderr
        assert _holder(tmp_path)["pid"] == os.getpid()


def test_a_lock_naming_this_pid_that_this_process_does_not_hold_is_taken_over(tmp_path):
    # A container restarted: the new process has the old one's pid (often 1).
    _write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname())
    with pytest.warns(UserWarning, match=r"this process's pid, reused: it holds no lock there"):
        with RunLock(tmp_path):
            assert _holder(tmp_path)["pid"] == os.getpid()


def _live_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_lock_whose_pid_now_belongs_to_a_younger_process_is_taken_over(tmp_path):
    process = _live_process()
    try:  # the lock says 2026-01-01: written long before this process started
        _write_lock(tmp_path, pid=process.pid, host=socket.gethostname())
        with pytest.warns(UserWarning, match=rf"pid {process.pid} is now another process"):
            with RunLock(tmp_path):
                assert _holder(tmp_path)["pid"] == os.getpid()
    finally:
        process.kill()
        process.wait()


def test_a_lock_of_a_live_process_says_how_to_proceed(tmp_path):
    import datetime

    process = _live_process()
    try:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        _write_lock(tmp_path, pid=process.pid, host=socket.gethostname(), started=started)
        with pytest.raises(RunLockedError, match=rf"kill {process.pid}.*If pid {process.pid} is "
                                                 r"not running keras-lottery.*delete .*lock and rerun"):
            RunLock(tmp_path).acquire()
    finally:
        process.kill()
        process.wait()
