"""Helpers shared by the benchmarks: timing, statistics, machine, output.

Every benchmark compares contenders *within one process*: it interleaves
them (A, B, B, A, A, B, ...: the order flips each round so a linear drift
in machine load hits both alike) and reports the ratio of medians, plus the
spread of the per-round ratios as a measure of noise. Other processes may
share the machine, so absolute times are indicative only; ratios are the
result.

Each benchmark writes `results/<name>.json` (everything measured, raw
times included) and `results/<name>.md` (one Markdown table).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
REPO = os.path.dirname(HERE)
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--out", default=RESULTS, help="results directory (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help="results file name (default: the benchmark's name)")
    return p


def interleave(
    contenders: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    setup: Callable[[str], object] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Times each contender `repeats` times, interleaved, after `warmup` runs.

    Args:
        contenders: name -> zero-argument callable; one call is one
            measurement.
        repeats: measurements per contender (rounds).
        warmup: untimed calls of each contender before the first round.
        setup: optional untimed callable run with the contender's name
            before each of its calls (e.g. to reset state).

    Returns:
        `{"wall": times, "cpu": times}`, each name -> list of `repeats`
        times in seconds in round order (so `times[a][i] / times[b][i]` are
        paired). "cpu" is this process's CPU time (all threads): it does not
        count time spent waiting for a core taken by another process, so it
        is the steadier of the two on a shared machine.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            if setup:
                setup(name)
            contenders[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            if setup:
                setup(name)
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            contenders[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {"wall": wall, "cpu": cpu}


def ratio(times: Mapping[str, list[float]], num: str, den: str) -> dict:
    """Ratio of median times `num / den`, with the noise of the paired ratios.

    Returns:
        A dict with `ratio` (median(num) / median(den)), the medians,
        `min_ratio` (min(num) / min(den): best case of each, the least
        disturbed by other processes), and `paired_min`/`paired_median`/
        `paired_max` of the per-round ratios. Their spread is the noise of
        this measurement.
    """
    paired = [a / b for a, b in zip(times[num], times[den])]
    return {
        "ratio": statistics.median(times[num]) / statistics.median(times[den]),
        "min_ratio": min(times[num]) / min(times[den]),
        f"median_s_{num}": statistics.median(times[num]),
        f"median_s_{den}": statistics.median(times[den]),
        "paired_min": min(paired),
        "paired_median": statistics.median(paired),
        "paired_max": max(paired),
        "n": len(paired),
    }


def noise(r: Mapping[str, float]) -> str:
    """`[min, max]` of the paired ratios, for a table cell."""
    return f"[{r['paired_min']:.3f}, {r['paired_max']:.3f}]"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """CPU, cores, memory, library versions and current load."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    for package in ("numpy", "tensorflow", "keras", "tf_keras",
                    "tensorflow-model-optimization"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 decimals (none from 100 up)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            if abs(v) >= 100:
                return f"{v:.0f}"
            return f"{v:.3f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(
    out: str,
    name: str,
    args: argparse.Namespace,
    results: object,
    table: str,
    notes: str = "",
) -> None:
    """Writes `<out>/<name>.json` and `<out>/<name>.md` and prints the table.

    `args.name`, if given, replaces `name` (to keep a second run apart).
    """
    name = getattr(args, "name", None) or name
    os.makedirs(out, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(getattr(args, "quick", False)),
        "machine": machine(),
        "results": results,
        "notes": notes,
    }
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    text = f"### {name}\n\n{table}"
    if notes:
        text += f"\n{notes.strip()}\n"
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(text)
    print(text, flush=True)
