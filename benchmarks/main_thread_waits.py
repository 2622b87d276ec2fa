"""Where a run's main thread waits: its stack, sampled, beside its own CPU time.

Runs a script or module in this process with a sampling thread that reads,
every 10 ms, the main thread's Python stack (`sys._current_frames`) and the
CPU ticks the kernel has charged to that thread (`/proc/self/task/TID/stat`,
Linux). Samples in which the main thread's CPU time did not advance are time
it waited: for TensorFlow's kernels (training and evaluation calls, the GIL
released), for a lock, for another thread. At exit it prints, to stderr, the
stacks with the most waiting, each keyed by its innermost keras-lottery and
Keras frames and its innermost three frames of any file. This is how the
presets' 2 s stalls at the end of a branch (dropping an autotuned tf.data
iterator; `runner/presets/pipeline.py`) were found: a wait at the line of
`Trainer.run` that calls `_train`, after `_train` had returned.

    python benchmarks/main_thread_waits.py -m keras_lottery.runner.cli run \\
        --preset lenet300 --dataset fashion_mnist --steps 2000 --rounds 3 --logdir /tmp/runs
    KERAS_BACKEND=tensorflow python benchmarks/main_thread_waits.py \\
        benchmarks/open_lth/kl_search_jax.py /tmp/runs

The figures are statistical (100 Hz ticks, 10 ms samples): read them to the
nearest tenth of a second.
"""

from __future__ import annotations

import atexit
import collections
import os
import runpy
import sys
import threading
import time

_PERIOD_S = 0.01
_OURS = ("keras_lottery", f"site-packages{os.sep}keras{os.sep}")


def _ticks(tid: int) -> int:
    """User + system clock ticks the kernel charged to thread `tid`."""
    with open(f"/proc/self/task/{tid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _key(frame) -> str:
    """The innermost 3 keras-lottery / Keras frames, then the innermost 3 of any file."""
    ours, inner = [], []
    while frame is not None:
        code = frame.f_code
        where = f"{os.path.basename(code.co_filename)}:{code.co_name}"
        if len(inner) < 3:
            inner.append(f"{where}:{frame.f_lineno}")
        if len(ours) < 3 and any(part in code.co_filename for part in _OURS):
            ours.append(where)
        frame = frame.f_back
    return ";".join(reversed(ours)) + " || " + " < ".join(inner)


class Sampler:
    """Samples the calling thread from a daemon thread until `report`."""

    def __init__(self):
        self.ident, self.tid = threading.get_ident(), threading.get_native_id()
        self.samples: collections.Counter = collections.Counter()
        self.busy: collections.Counter = collections.Counter()  # CPU ticks per key
        self.stopped = False
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        last = _ticks(self.tid)
        while not self.stopped:
            time.sleep(_PERIOD_S)
            frame = sys._current_frames().get(self.ident)
            now = _ticks(self.tid)
            key = _key(frame) if frame is not None else "?"
            self.samples[key] += 1
            self.busy[key] += now - last
            last = now

    def report(self, top: int = 25) -> None:
        self.stopped = True
        total = sum(self.samples.values())
        print(f"# {total} samples, about {total * _PERIOD_S:.1f} s of the main thread",
              file=sys.stderr)
        waits = sorted(self.samples, key=lambda k: self.busy[k] - self.samples[k])
        for key in waits[:top]:
            waited = (self.samples[key] - self.busy[key]) * _PERIOD_S
            print(f"waited {waited:6.2f} s of {self.samples[key] * _PERIOD_S:6.2f} s  {key}",
                  file=sys.stderr)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sampler = Sampler()
    atexit.register(sampler.report)
    args = sys.argv[1:]
    if args[0] == "-m":
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
