"""Throughput of lottery rounds under tf.distribute on this machine.

Three modes run the same two-round LeNet-300-100 lottery (real Fashion-MNIST,
same seed and data order), each in fresh processes:

- `single`: the default strategy, one device;
- `mirrored`: MirroredStrategy over the CPU split into 2 logical devices;
- `multiworker`: MultiWorkerMirroredStrategy, 2 worker processes on loopback.

Reported per mode: training steps per second (the driver's own count, first
compiled call excluded) as a ratio to `single` within one invocation, and
how many entries of the round-1 masks agree with the single-device run.
On a 2-core CPU the replicas share the same two cores, so this measures the
cost of the distribution machinery, not a speed-up.

    python benchmarks/distributed_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

from common import REPO, markdown_table, parser, write_results

MODES = ("single", "mirrored", "multiworker")


def child(mode: str, logdir: str, steps: int) -> None:
    """Runs one mode's lottery (inside a worker process)."""
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_lottery as kl

    strategy = {"single": "default", "mirrored": "mirrored", "multiworker": "multiworker"}[mode]
    config = kl.PresetConfig.from_preset(
        "lenet300", dataset="fashion_mnist", steps=steps, rounds=1, eval_every=steps // 10,
        train_eval_examples=0, strategy=strategy, logdir=logdir, verbose=0,
    )
    kl.find_ticket(config)


def run_mode(mode: str, logdir: str, steps: int) -> dict:
    """Runs a mode in subprocess(es); returns steps/s and round-1 masks."""
    argv = [sys.executable, os.path.abspath(__file__), "--child", mode, "--logdir", logdir,
            "--steps", str(steps)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    if mode == "multiworker":
        from keras_lottery.runner.distribute import local_cluster

        procs = [subprocess.Popen(argv, env={**env, "TF_CONFIG": tf_config}, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for tf_config in local_cluster(2)]
        outputs = [p.communicate(timeout=1800)[0] for p in procs]
        codes = [p.returncode for p in procs]
    else:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        outputs, codes = [done.stdout + done.stderr], [done.returncode]
    if any(codes):
        raise RuntimeError(f"{mode} failed:\n" + "\n".join(o[-3000:] for o in outputs))
    import numpy as np

    metrics = [json.load(open(p)) for p in sorted(glob.glob(f"{logdir}/*/round_0*/metrics.json"))]
    masks_path = glob.glob(f"{logdir}/*/round_01/masks.npz")[0]
    with np.load(masks_path) as data:
        masks = {k: data[k] for k in data.files}
    return {"steps_per_second": [m["steps_per_second"] for m in metrics], "masks": masks}


def main() -> None:
    args_parser = parser(__doc__)
    args_parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args_parser.add_argument("--logdir")
    args_parser.add_argument("--steps", type=int, default=None)
    args = args_parser.parse_args()
    if args.child:
        child(args.child, args.logdir, args.steps)
        return
    import keras_lottery as kl

    steps = args.steps or (300 if args.quick else 1500)
    repeats = 1 if args.quick else 2
    runs = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = MODES if repeat % 2 == 0 else MODES[::-1]
            for mode in order:
                runs[mode].append(run_mode(mode, os.path.join(tmp, f"{mode}{repeat}"), steps))
    import numpy as np

    speed = {m: float(np.median([s for r in runs[m] for s in r["steps_per_second"]])) for m in MODES}
    reference = runs["single"][0]["masks"]
    rows, records = [], []
    for mode in MODES:
        agree = min(kl.mask_overlap(reference, r["masks"]) for r in runs[mode])
        equal = all(all(np.array_equal(reference[k], r["masks"][k]) for k in reference)
                    for r in runs[mode])
        rows.append([mode, speed[mode], speed[mode] / speed["single"], f"{agree:.6f}",
                     "yes" if equal else "no"])
        records.append({"mode": mode, "steps_per_second": speed[mode],
                        "ratio_to_single": speed[mode] / speed["single"],
                        "mask_agreement_with_single": agree, "masks_identical": equal,
                        "raw_steps_per_second": [r["steps_per_second"] for r in runs[mode]]})
    table = markdown_table(
        ["mode", "steps/s", "ratio to single", "round-1 mask agreement with single", "identical"],
        rows)
    note = (f"LeNet-300-100 on Fashion-MNIST, batch 60 (global), {steps} steps per round, two "
            f"rounds per run, {repeats} run(s) per mode; steps/s is the median over rounds and "
            "runs of the driver's own count (first compiled call excluded). Agreement = share of "
            "equal entries in the round-1 masks (worst run).")
    write_results(args.out, "distributed_throughput", args, records, table, note)


if __name__ == "__main__":
    main()
