"""Fault campaign: what a user's machine does to a lottery run, and whether
nothing is lost.

A digits MLP (scikit-learn's load_digits, 64 -> 32 -> 10, 2 rounds and a
random-reinit control, 40 steps a branch) is searched with
`LotterySearch`, once cleanly (the reference), then under faults. A trial
*holds* when the run ends with the reference's masks, trained weights and
metrics (bit for bit, timings aside) and nothing on the way crashed with
anything but a clear error (`ValueError`, `FileNotFoundError`,
`RunLockedError`, `BranchFailedError`, `OSError` of the fault itself):

- kill: a worker process is killed with SIGKILL at a random moment (up to
  `--kills` times, some during the resume), then the run is resumed;
- concurrent: while a worker holds the run, this process starts the same
  search, which must be refused naming the worker's pid;
- damage: every file kind of a finished run, and the checkpoints of a
  half-finished one, damaged five ways (empty, half, flipped bytes,
  garbage, deleted); `report` and `load_ticket` must not crash, and the
  next run must rebuild everything;
- disk: the run directory on a tmpfs filled at several sizes (`mount -t
  tmpfs`, as root; elsewhere ENOSPC is simulated by failing `os.replace`,
  the last step of every atomic write, and the output says so), then
  given room and resumed;
- inputs: bad data and arguments must fail with an error whose first line
  says what is wrong (or, for a NaN input, record the divergence).

Run from the repository root:

    python benchmarks/faults.py            # the full campaign
    python benchmarks/faults.py --quick    # a few trials, < 60 s (tests/test_faults.py)
    python benchmarks/faults.py --kinds damage --files masks.npz   # one kind, some files

It prints one line per kind, `trials`, `held`, `failed`, then each failure,
and exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import glob
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)

STEPS = dict(steps=40, eval_every=10, batch_size=32)
SEARCH = dict(rounds=2, checkpoint_every=10, controls=("random_reinit",), name="run", verbose=0)
TIMING = {"seconds", "steps_per_second"}  # differ between runs by nature
WAYS = ("empty", "half", "flipped", "garbage", "deleted")
# Every kind of file of a finished run (the lock as a stale lock file).
FINISHED_FILES = ("config.json", "data.json", "init.npz", "rewind.npz", "model.keras",
                  "result.json", "lock", "round_00/masks.npz", "round_00/weights.npz",
                  "round_00/metrics.json", "round_00/events", "round_01/masks.npz",
                  "round_01/weights.npz", "round_01/metrics.json",
                  "round_01/random_reinit/metrics.json", "round_02/weights.npz",
                  "round_02/masks.npz", "summary/events")
# The files a half-finished run adds (killed in round 2's ticket).
HALF_FILES = ("round_02/checkpoint.npz", "round_02/checkpoint.prev.npz")
CLEAR_ERRORS = (ValueError, FileNotFoundError)
KINDS = ("kill", "concurrent", "damage", "disk", "inputs")


# The search -------------------------------------------------------------
def digits():
    """(train, validation, test) of load_digits, scaled to [0, 1]."""
    from sklearn import datasets

    data = datasets.load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    return (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400]), (x[1400:], y[1400:])


def build():
    """The digits MLP, seeded, compiled."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, name="out")])
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def fit(logdir: str, data=None, callbacks=(), **overrides):
    """Runs (or resumes) the campaign's search in `logdir`."""
    import keras_lottery as kl

    train, val, test = data or digits()
    search = kl.LotterySearch(build, logdir=logdir, **{**SEARCH, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warnings of damage found, expected here
        return search.fit(train, validation_data=val, test_data=test, callbacks=callbacks,
                          **STEPS)


def fingerprint(run: str) -> dict:
    """What must survive every fault: masks, trained weights (their arrays),
    metrics (timings aside) and the result table of a run directory.

    Layer names are left out: automatic names (`dense_3`) differ between
    builds in one process, and the arrays keep their order."""
    from keras_lottery.files import read_json, read_npz

    found = {}
    for path in sorted(glob.glob(f"{run}/**/*", recursive=True)):
        name = os.path.relpath(path, run)
        if name.endswith(("masks.npz", "weights.npz")):
            found[name] = [v.tobytes() for k, v in read_npz(path).items() if k != "paths"]
        elif name.endswith("metrics.json"):
            found[name] = _row(read_json(path))
        elif name == "result.json":
            found[name] = [_row(row) for row in read_json(path)["rows"]]
    return found


def _row(metrics: dict) -> dict:
    """A branch's metrics without timings, per-layer values in layer order."""
    row = {k: v for k, v in metrics.items() if k not in TIMING}
    row["sparsity_by_layer"] = list(row.get("sparsity_by_layer", {}).values())
    return row


# Faults -----------------------------------------------------------------
def damage(path: str, how: str, rng: random.Random) -> None:
    """Damages a file one of the five ways `WAYS`."""
    data = open(path, "rb").read() if os.path.exists(path) else b""
    if how == "deleted":
        if os.path.exists(path):
            os.remove(path)
        return
    if how == "empty":
        data = b""
    elif how == "half":
        data = data[: len(data) // 2]
    elif how == "flipped":
        data = bytearray(data or b"x")
        for i in rng.sample(range(len(data)), min(3, len(data))):
            data[i] ^= 0xFF
        data = bytes(data)
    else:
        data = rng.randbytes(max(16, len(data)))
    with open(path, "wb") as f:
        f.write(data)


def _targets(run: str, kind: str) -> list[str]:
    """The paths of a file kind (`events`: every events file of a directory)."""
    if kind.endswith("events"):
        return glob.glob(os.path.join(run, os.path.dirname(kind), "events.out.tfevents.*"))
    path = os.path.join(run, kind)
    if kind == "lock" and not os.path.exists(path):
        with open(path, "w") as f:  # a stale lock of a dead process, to damage
            json.dump({"pid": 2 ** 22 + 7, "host": os.uname().nodename, "started": "?"}, f)
    return [path]


def opened_cleanly(run: str) -> None:
    """`report` and `load_ticket` on a (damaged) run: a result or a clear error."""
    from keras_lottery.runner import commands
    from keras_lottery.runner.rebuild import load_ticket

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in (lambda: commands.report(run), lambda: load_ticket(run, 2)):
            try:
                call()
            except CLEAR_ERRORS:
                pass


class _Bomb:
    """A callback factory stopping the search after `batches` batches."""

    def __init__(self, batches: int):
        import keras

        class Bomb(keras.callbacks.Callback):
            seen = 0

            def on_train_batch_end(self, batch, logs=None):
                Bomb.seen += 1
                if Bomb.seen == batches:
                    raise KeyboardInterrupt("stopped by the campaign")

        self.callback = Bomb()


def half_finished(logdir: str) -> str:
    """A run stopped in round 2's ticket with two checkpoints written."""
    import keras_lottery as kl

    # Rounds 0 and 1: 40 + 2 * 40 batches; round 2 stops after 25 of 40.
    with contextlib.suppress(kl.BranchFailedError, KeyboardInterrupt):
        fit(logdir, callbacks=[_Bomb(40 + 80 + 25).callback])
    return os.path.join(logdir, "run")


def worker(logdir: str) -> subprocess.Popen:
    """This script's search in a process of its own (`--worker`)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", logdir],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(path: str, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Waits until `path` exists; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# Trials -----------------------------------------------------------------
@dataclasses.dataclass
class Tally:
    """Trials of one kind and how they went."""

    kind: str
    trials: int = 0
    held: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    def trial(self, label: str, check) -> None:
        """Runs one trial; any exception is a failure, named."""
        self.trials += 1
        try:
            check()
            self.held += 1
        except Exception as error:  # noqa: BLE001 - every failure is reported
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.failures.append(f"{self.kind} {label}: {type(error).__name__}: "
                                 f"{' '.join(str(error).split())[:300]} "
                                 f"({os.path.basename(where.filename)}:{where.lineno})")


def kill_trial(tmp: str, rng: random.Random, kills: int, reference: dict,
               concurrent: Tally, index: int) -> None:
    """Kills workers of one run `kills` times at random moments, then
    resumes it; the first worker is also raced by this process."""
    import keras_lottery as kl

    logdir = os.path.join(tmp, f"kill{index}")
    lock = os.path.join(logdir, "run", "lock")
    for k in range(kills):
        process = worker(logdir)
        if _wait_for(lock, process) and k == 0:
            def refused():
                try:
                    fit(logdir)
                except kl.RunLockedError as error:
                    assert f"pid {process.pid}" in str(error), error
                    return
                raise AssertionError("a second search on a held run was not refused")
            if process.poll() is None:
                concurrent.trial(f"run {index}", refused)
        time.sleep(rng.uniform(0, 3.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
    process = worker(logdir)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-600:]
    got = fingerprint(os.path.join(logdir, "run"))
    assert got == reference, _difference(got, reference)


def _difference(got: dict, reference: dict) -> str:
    names = sorted(set(got) | set(reference))
    return "differs in " + ", ".join(n for n in names if got.get(n) != reference.get(n))


def damage_trial(source: str, tmp: str, kind: str, how: str, rng: random.Random,
                 reference: dict) -> None:
    """Damages one file kind of a copy of `source`, opens it, resumes it."""
    logdir = tempfile.mkdtemp(dir=tmp)
    run = os.path.join(logdir, "run")
    shutil.copytree(source, run)
    targets = _targets(run, kind)
    assert targets, f"the run has no {kind}"
    for path in targets:
        damage(path, how, rng)
    opened_cleanly(run)
    fit(logdir)
    got = fingerprint(run)
    assert got == reference, _difference(got, reference)
    from keras_lottery.runner.rebuild import load_ticket

    load_ticket(run, 2)  # model.keras is back
    shutil.rmtree(logdir)


@contextlib.contextmanager
def small_disk(path: str, kilobytes: int):
    """A tmpfs of `kilobytes` at `path`, or None if it cannot be mounted;
    yields a function that gives it 8 MB."""
    os.makedirs(path, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", path],
                           capture_output=True)
    if mount.returncode:
        yield None
        return
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,size=8m", path], check=True)
    finally:
        subprocess.run(["umount", path], check=False)


@contextlib.contextmanager
def simulated_full_disk(renames: int):
    """Fails every `os.replace` (the last step of every atomic write of
    `keras_lottery.files`) after the first `renames` with ENOSPC; yields a
    function that frees the disk."""
    real, count, full = os.replace, [0], [True]

    def replace(src, dst):
        count[0] += 1
        if full[0] and count[0] > renames:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        return real(src, dst)

    os.replace = replace
    try:
        yield lambda: full.__setitem__(0, False)
    finally:
        os.replace = real


def disk_trial(tmp: str, kilobytes: int, reference: dict, simulated: list) -> None:
    """Fills the disk under a run, then gives it room and resumes."""
    logdir = os.path.join(tmp, f"disk{kilobytes}")
    with small_disk(logdir, kilobytes) as free:
        if free is None:
            simulated.append(True)
            with simulated_full_disk(kilobytes // 8) as free_simulated:
                _fill_and_resume(logdir, free_simulated, reference)
        else:
            _fill_and_resume(logdir, free, reference)


def _fill_and_resume(logdir: str, free, reference: dict) -> None:
    import keras_lottery as kl

    try:
        fit(logdir)
    except (OSError, kl.BranchFailedError) as error:
        assert "No space left on device" in str(error), error
    else:
        raise AssertionError("the disk never filled")
    free()
    fit(logdir)
    got = fingerprint(os.path.join(logdir, "run"))
    assert got == reference, _difference(got, reference)


def input_trials(tmp: str, tally: Tally) -> None:
    """Bad data and arguments: a clear first line, or a recorded divergence."""
    import numpy as np

    import keras_lottery as kl

    (x, y), val, test = digits()
    nan_x = x.copy()
    nan_x[3, 7] = np.nan
    cases = {
        "python lists": (dict(data=((x.tolist(), y.tolist()), val, test)), "Python scalars"),
        "empty validation": (dict(data=((x, y), (val[0][:0], val[1][:0]), test)), "is empty"),
        "labels out of range": (dict(data=((x, y + 3), val, test)), "label value of"),
        "wrong input width": (dict(data=((x[:, :10], y), val, test)), "shape"),
        "unknown control": (dict(controls=("random_reint",)), "controls must be one of"),
        "bad prune_fraction": (dict(prune_fraction=1.5), "prune_fraction"),
        "a NaN input": (dict(data=((nan_x, y), val, test)), None),
    }
    for label, (arguments, expected) in cases.items():
        def check(arguments=arguments, expected=expected, label=label):
            logdir = os.path.join(tmp, "inputs", label.replace(" ", "_"))
            try:
                result = fit(logdir, **arguments)
            except (ValueError, kl.BranchFailedError) as error:
                first = str(error).splitlines()[0]
                assert expected is not None and expected in first, first[:300]
                return
            assert expected is None, f"accepted {label}"
            assert all(row.get("diverged") for row in result.rows), "divergence not recorded"
        tally.trial(label, check)


# The campaign -----------------------------------------------------------
def campaign(quick: bool, seed: int, kill_runs: int, kills: int,
             kinds: tuple[str, ...] = KINDS, files: str = "") -> list[Tally]:
    """Runs the trials of `kinds` (damage only to files whose name contains
    `files`); returns the tallies."""
    rng = random.Random(seed)
    tallies = {kind: Tally(kind) for kind in KINDS}
    simulated: list = []
    with tempfile.TemporaryDirectory(prefix="keras-lottery-faults-") as tmp:
        fit(os.path.join(tmp, "reference"))
        source = os.path.join(tmp, "reference", "run")
        reference = fingerprint(source)
        plans = [("finished", kind, how) for kind in FINISHED_FILES for how in WAYS]
        plans += [("half-finished", kind, how) for kind in HALF_FILES + ("round_01/weights.npz",)
                  for how in WAYS]
        plans = [plan for plan in plans if files in plan[1]] if "damage" in kinds else []
        if quick:
            plans = rng.sample(plans, min(3, len(plans)))
        runs = {"finished": source}
        for state, kind, how in plans:
            if state not in runs:
                runs[state] = half_finished(os.path.join(tmp, "half"))
            tallies["damage"].trial(f"{state} {kind} {how}", lambda: damage_trial(
                runs[state], tmp, kind, how, rng, reference))
        for size in (() if "disk" not in kinds else (48,) if quick else (24, 48, 96, 144)):
            tallies["disk"].trial(f"{size} KB", lambda: disk_trial(tmp, size, reference,
                                                                    simulated))
        if "inputs" in kinds:
            input_trials(tmp, tallies["inputs"])
        for index in range(0 if "kill" not in kinds else 1 if quick else kill_runs):
            count = 1 if quick else rng.randint(1, kills)
            tallies["kill"].trial(f"run {index} ({count} kills)", lambda: kill_trial(
                tmp, rng, count, reference, tallies["concurrent"], index))
    if simulated:
        tallies["disk"].kind = "disk (simulated ENOSPC: tmpfs could not be mounted)"
    return [t for t in tallies.values() if t.trials or t.kind in kinds]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few trials (< 60 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    parser.add_argument("--kill-runs", type=int, default=12, help="runs killed (full mode)")
    parser.add_argument("--kills", type=int, default=3, help="most kills per run")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated kinds of trials (default: all of {KINDS}; "
                             "concurrent trials come with kill)")
    parser.add_argument("--files", default="",
                        help="damage only files whose name contains this, e.g. masks.npz")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fit(args.worker)
        return 0
    kinds = tuple(args.kinds.split(","))
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"--kinds must be among {list(KINDS)}. Received: {unknown}")
    began = time.monotonic()
    tallies = campaign(args.quick, args.seed, args.kill_runs, args.kills, kinds, args.files)
    print(f"fault campaign ({'quick' if args.quick else 'full'}, seed {args.seed}): "
          f"{time.monotonic() - began:.0f} s")
    print(f"{'kind':<12} {'trials':>6} {'held':>6} {'failed':>6}")
    for t in tallies:
        print(f"{t.kind:<12} {t.trials:>6} {t.held:>6} {t.trials - t.held:>6}")
    total, held = sum(t.trials for t in tallies), sum(t.held for t in tallies)
    print(f"{'total':<12} {total:>6} {held:>6} {total - held:>6}")
    for failure in (f for t in tallies for f in t.failures):
        print(f"FAILED {failure}")
    return 0 if total == held else 1


if __name__ == "__main__":
    sys.exit(main())
