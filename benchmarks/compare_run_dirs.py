"""Compares the results of two run directories, value by value.

    python benchmarks/compare_run_dirs.py RUN_DIR_A RUN_DIR_B

Every JSON file present in both (metrics, history, config, masks' reports...)
is compared key by key, floats bit for bit (`float.hex`); keys that measure
time (seconds, steps per second, timestamps, hosts) are left out. The mask
and weight files (`.npz`) are compared array by array. Prints the
differences and exits 1 if there are any.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

TIMING = ("second", "time", "date", "host", "pid", "started", "finished", "elapsed", "created", "duration")


def flat(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            if not any(t in str(k).lower() for t in TIMING):
                yield from flat(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, float(value).hex() if isinstance(value, float) else value


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    """Equal shapes, dtypes and bytes (NaNs included, bit for bit)."""
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def main(a: str, b: str) -> int:
    a, b = pathlib.Path(a), pathlib.Path(b)
    differences, files = [], 0
    for path in sorted(a.rglob("*")):
        other = b / path.relative_to(a)
        if not other.exists() or path.is_dir():
            continue
        if path.suffix == ".json":
            files += 1
            left, right = dict(flat(json.loads(path.read_text()))), dict(flat(json.loads(other.read_text())))
            for key in sorted(set(left) | set(right)):
                if left.get(key) != right.get(key):
                    differences.append(f"{path.relative_to(a)} {key}: {left.get(key)!r} != {right.get(key)!r}")
        elif path.suffix == ".npz":
            files += 1
            with np.load(path) as left, np.load(other) as right:
                for key in sorted(set(left.files) | set(right.files)):
                    if key not in left.files or key not in right.files or not _same(left[key], right[key]):
                        differences.append(f"{path.relative_to(a)} {key}: arrays differ")
    print("\n".join(differences[:50]))
    print(f"{files} files compared, {len(differences)} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
