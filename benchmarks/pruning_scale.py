"""Time and memory of `kl.global_magnitude_masks` against one `np.partition`.

For n = 1M, 5M, 25M, 100M float32 weights (`--quick`: up to 25M), split
into 4 equal kernels, two cases:

- round 1: dense (`masks=None`), prune 20% (the paper's per-round rate);
- round 2: masks already 50% sparse (from a first magnitude round), prune
  20% of the remaining weights.

Baseline: `np.partition` of one float32 array holding the n magnitudes
|w| (computed beforehand, untimed), at the same k: what a minimal global
magnitude threshold costs, one O(n) selection plus the copy `np.partition`
returns. (Magnitudes, not the signed weights: NumPy's introselect time
depends on the data; on signed normal weights the 20% quantile is found
about twice as fast as on their magnitudes, which is not the same work.)

Time: the two are interleaved; ratio of medians (wall and CPU time) over
>= 3 rounds. Memory, measured in separate untimed calls: peak bytes
allocated during the call per weight (`tracemalloc`, which sees NumPy's
buffers), and the peak resident set growth per weight (VmHWM after the
call minus VmRSS before, with the high-water mark reset through
`/proc/self/clear_refs`). The output masks are bool (1 byte per weight):
they are reported apart, and "extra" is the peak minus them.

Goals: time <= 2x `np.partition`; extra memory <= 4 bytes per weight.
"""

from __future__ import annotations

import gc
import tracemalloc

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import numpy as np

import keras_lottery as kl

SIZES = (1_000_000, 5_000_000, 25_000_000, 100_000_000)
QUICK_MAX = 25_000_000
KERNELS = 4
FRACTION = 0.2


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory(fn) -> dict:
    """Peak traced and resident memory growth of one call of `fn`, in bytes."""
    gc.collect()
    rss_before = _status_kib("VmRSS")
    rss_ok = rss_before is not None and _reset_peak_rss()
    tracemalloc.start()
    out = fn()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _status_kib("VmHWM") if rss_ok else None
    del out
    return {
        "traced_peak": peak,
        "traced_retained": retained,
        "rss_peak_delta": 1024 * (hwm - rss_before) if hwm is not None else None,
    }


def kernels(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = n // KERNELS
    return {f"k{i}": rng.standard_normal(size, dtype=np.float32).reshape(-1, 1000)
            for i in range(KERNELS)}


def measure(n: int, repeats: int) -> list[dict]:
    weights = kernels(n)
    magnitudes = np.abs(np.concatenate([w.ravel() for w in weights.values()]))
    k = int(round(FRACTION * magnitudes.size))
    half = kl.global_magnitude_masks(weights, None, 0.5)
    cases = {"round 1 (dense)": None, "round 2 (50% sparse)": half}
    rows = []
    for case, masks in cases.items():
        ours = lambda: kl.global_magnitude_masks(weights, masks, FRACTION)  # noqa: E731
        base = lambda: np.partition(magnitudes, k)  # noqa: E731
        mem_ours, mem_base = memory(ours), memory(base)
        times = common.interleave({"ours": ours, "partition": base}, repeats, warmup=1)
        row = {
            "n": magnitudes.size,
            "case": case,
            "alive_before": int(magnitudes.size if masks is None
                                else sum(int(m.sum()) for m in masks.values())),
            "memory_ours": mem_ours,
            "memory_partition": mem_base,
            "times": times,
        }
        for clock in times:
            row[clock] = common.ratio(times[clock], "ours", "partition")
        per = magnitudes.size
        row["bytes_per_weight"] = {
            "ours_peak": mem_ours["traced_peak"] / per,
            "ours_masks_out": mem_ours["traced_retained"] / per,
            "ours_extra": (mem_ours["traced_peak"] - mem_ours["traced_retained"]) / per,
            "ours_rss_peak": _per(mem_ours["rss_peak_delta"], per),
            "partition_peak": mem_base["traced_peak"] / per,
            "partition_rss_peak": _per(mem_base["rss_peak_delta"], per),
        }
        rows.append(row)
    return rows


def _per(value, n):
    return None if value is None else value / n


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="default: 3 (--quick) or 5")
    args = p.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [n for n in SIZES if not args.quick or n <= QUICK_MAX]
    results = []
    for n in sizes:
        results += measure(n, repeats)
        gc.collect()
    rows = []
    for r in results:
        b = r["bytes_per_weight"]
        rows.append((
            f"{r['n'] / 1e6:g}M", r["case"],
            1e3 * r["wall"]["median_s_ours"], 1e3 * r["wall"]["median_s_partition"],
            r["wall"]["ratio"], r["cpu"]["ratio"], common.noise(r["cpu"]),
            b["ours_peak"], b["ours_masks_out"], b["ours_extra"], _fmt(b["ours_rss_peak"]),
            b["partition_peak"], _fmt(b["partition_rss_peak"]),
            "yes" if r["cpu"]["ratio"] <= 2 else "no",
            "yes" if b["ours_extra"] <= 4 else "no",
        ))
    table = common.markdown_table(
        ["weights", "case", "ours ms", "partition ms", "time ratio (wall)",
         "time ratio (CPU)", "CPU paired min..max", "ours peak B/w", "of which masks B/w",
         "ours extra B/w", "ours RSS peak B/w", "partition peak B/w",
         "partition RSS peak B/w", "time <= 2x", "extra <= 4 B/w"],
        rows,
    )
    notes = (
        f"{KERNELS} float32 kernels, fraction {FRACTION}; ratio = median(ours) / "
        f"median(np.partition of all n magnitudes), {repeats} interleaved rounds "
        "(round 2 selects among the n/2 remaining, the baseline still over n). "
        "B/w = bytes per weight (of all n weights). Peak = tracemalloc peak during "
        "the call; masks = the bool masks returned (still allocated after it); "
        "extra = peak - masks. RSS peak = VmHWM growth over VmRSS before the call "
        "(memory the allocator already holds is not counted)."
    )
    common.write_results(args.out, "pruning_scale", args, results, table, notes)


def _fmt(value):
    return "n/a" if value is None else value


if __name__ == "__main__":
    main()
