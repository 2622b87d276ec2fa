"""Runs every benchmark and writes `results/SUMMARY.md`.

Each benchmark runs in its own subprocess (a fresh TensorFlow), one after
the other, with the same `--quick` and `--out`; each writes its own
`<name>.json` and `<name>.md`. The summary gathers their tables with the
exact command lines, the date and the machine. `--quick` takes a few
minutes on a 2-core CPU; its results are the ones quoted in the README.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

BENCHMARKS = ("masking_overhead", "vs_tfmot", "pruning_scale", "rewind_memory")
EXTRA_ARGS = {"masking_overhead": ["--profile"]}  # show where the overhead goes


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS,
                   help="run only these benchmarks")
    args = p.parse_args(argv)
    start = datetime.datetime.now(datetime.timezone.utc)
    load_before = common.load_average()
    sections, failed = [], []
    for name in args.only:
        out = os.path.relpath(args.out, common.REPO)
        command = [sys.executable, os.path.join(common.HERE, f"{name}.py"), "--out", out]
        if args.quick:
            command.append("--quick")
        command += EXTRA_ARGS.get(name, [])
        shown = " ".join(["python", os.path.relpath(command[1], common.REPO), *command[2:]])
        print(f"== {shown}", flush=True)
        began = time.perf_counter()
        rc = subprocess.call(command, cwd=common.REPO)
        seconds = time.perf_counter() - began
        md = os.path.join(args.out, f"{name}.md")
        if rc != 0 or not os.path.exists(md):
            failed.append(name)
            sections.append(f"### {name}\n\nFAILED (exit status {rc}): `{shown}`\n")
            continue
        with open(md) as f:
            table = f.read()
        sections.append(f"{table.rstrip()}\n\nCommand: `{shown}` ({seconds:.0f} s)\n")
    info = common.machine()
    info["load_average"] = f"{load_before} before, {info['load_average']} after (1, 5, 15 min)"
    total = (datetime.datetime.now(datetime.timezone.utc) - start).total_seconds()
    command = " ".join(["python", os.path.relpath(sys.argv[0], common.REPO), *sys.argv[1:]])
    header = [
        "# keras-lottery benchmarks",
        "",
        f"Command: `{command}` (all: {total:.0f} s)",
        f"Date: {start.isoformat(timespec='seconds')}",
        "",
        "Machine:",
        "",
        common.markdown_table(
            ["", ""], [(k, str(v)) for k, v in info.items()]
        ).rstrip(),
        "",
        "Other processes may share this machine (see the load averages): every "
        "benchmark compares its contenders within one process, interleaved, and "
        "reports ratios with their noise. Absolute times are indicative only.",
        "",
    ]
    with open(os.path.join(args.out, "SUMMARY.md"), "w") as f:
        f.write("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {os.path.join(args.out, 'SUMMARY.md')} in {total:.0f} s", flush=True)
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
