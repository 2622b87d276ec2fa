"""What a ticket pays off at deployment: file size, CPU latency, accuracy.

For tickets from real runs (`examples/structured_tickets.py`: LeNet-300-100
and Conv-2 on Fashion-MNIST, weight and unit granularity), each ticket
round is exported in every format of `keras_lottery.deploy` (each export is
checked against the masked model on real test inputs) and compared with the
dense network (round 0) in the same format:

- size on disk of every format;
- CPU latency at batch 1 and 64: TFLite files through the LiteRT
  interpreter with its default delegate (XNNPACK), and Keras
  (`predict_on_batch` of the compacted model against the dense one), all
  contenders of one model interleaved in one process (`common.interleave`),
  wall and CPU time; the ratio dense / ticket is the speedup;
- test accuracy of every exported artifact on the full test set.

The TFLite files of a ticket are converted from its compacted model
(`keras_lottery.compact`), so a unit ticket's removed units are gone from
every TFLite format, and `tflite_sparse` additionally stores the remaining
zeros sparsely.

    python benchmarks/deployment.py            # after examples/structured_tickets.py
"""

from __future__ import annotations

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import glob
import os
import tempfile

import keras
import numpy as np

import keras_lottery as kl
from keras_lottery import deploy, tflite
from keras_lottery.runner import commands
from keras_lottery.runner.rebuild import load_ticket
from keras_lottery.runner.rundir import RunDir

TFLITE = ("tflite", "tflite_sparse", "tflite_sparse_int8")
# Rounds of examples/structured_tickets.py at about 25% (for the unit-ticket
# latency goal), 20%, 7% and 3% of the weights remaining.
ROUNDS = {"lenet300": (3, 4, 6, 8), "conv2": (2, 4, 5)}


def find_runs(logdir: str, seed: int = 0) -> dict[tuple[str, str], str]:
    """(model, granularity) -> run directory of the structured experiment:
    its θ0-rewinding run of `seed` (the logdir may hold other runs of the
    same models, e.g. examples/instability.py's other seeds and auto runs)."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(logdir, "*"))):
        try:
            config = RunDir.load(path).config
        except (FileNotFoundError, ValueError):
            continue
        if config.seed == seed and config.rewind_step == 0:
            runs[(config.model, config.granularity)] = path
    return runs


def artifact_predict(result: deploy.Exported, batch: int = 256):
    """A function x -> outputs of the written artifact."""
    if result.format in ("keras", "compact"):
        model = keras.saving.load_model(result.path, compile=False)
        return lambda x: model.predict(x, batch_size=batch, verbose=0)
    if result.format == "savedmodel":
        import tensorflow as tf

        served = tf.saved_model.load(result.path)
        return lambda x: np.concatenate([served.serve(x[i:i + batch]).numpy()
                                         for i in range(0, len(x), batch)])
    runner = tflite.Runner(result.path, batch=batch)
    return runner.predict


def export_round(run_dir: str, round_index: int, out: str, x_check, x_cal, x_test, y_test,
                 formats) -> dict:
    ticket = load_ticket(run_dir, round_index)
    masks = kl.get_masks(ticket)
    report = kl.compact_report(ticket)
    results = deploy.export_all(ticket, out, formats, x_check, x_cal)
    row = {
        "round": round_index,
        "percent_remaining": 100 * (1 - kl.sparsity(ticket)),
        "percent_effective": 100 * report.nonzero_after / sum(m.size for m in masks.values()),
        "units": report.units,
        "formats": {},
    }
    for r in results:
        predict = artifact_predict(r)
        accuracy = float(np.mean(np.asarray(predict(x_test)).argmax(-1) == y_test))
        row["formats"][r.format] = {"path": r.path, "bytes": r.bytes,
                                    "max_abs_diff": r.max_abs_diff, "agreement": r.agreement,
                                    "test_accuracy": accuracy, "note": r.note}
        print(f"  round {round_index}: {r}; test acc {accuracy:.4f}", flush=True)
    keras.backend.clear_session()
    return row


def latency(rows: list[dict], dense: dict, x: np.ndarray, batch: int, repeats: int,
            calls: int) -> dict:
    """Interleaved latency of every ticket artifact and the dense ones."""
    xb = x[:batch]
    contenders = {}
    for label, row in [("dense", dense), *[(f"r{r['round']}", r) for r in rows]]:
        for fmt in TFLITE:
            if label == "dense" and fmt == "tflite_sparse":
                continue  # a dense network has no zeros to encode: same as tflite
            runner = tflite.Runner(row["formats"][fmt]["path"], batch=batch)
            contenders[f"{label}:{fmt}"] = (lambda run=runner: [run(xb) for _ in range(calls)])
        path = row["formats"]["compact" if label != "dense" else "keras"]["path"]
        model = keras.saving.load_model(path, compile=False)
        model.predict_on_batch(xb)
        contenders[f"{label}:keras"] = (
            lambda m=model: [m.predict_on_batch(xb) for _ in range(calls)])
    times = common.interleave(contenders, repeats=repeats, warmup=1)
    out = {"batch": batch, "calls": calls, "ms": {}, "speedup": {}}
    for name in contenders:
        fmt = name.split(":")[1]
        base = "dense:" + ("tflite_sparse_int8" if fmt == "tflite_sparse_int8" else
                           "keras" if fmt == "keras" else "tflite")
        out["ms"][name] = 1e3 * float(np.median(times["wall"][name])) / calls
        if not name.startswith("dense"):
            out["speedup"][name] = {clock: common.ratio(times[clock], base, name)
                                    for clock in times}
    return out


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--logdir", default=os.path.join(common.REPO, "runs", "structured"))
    p.add_argument("--rounds", type=int, nargs="+", default=None,
                   help=f"ticket rounds to export (default per model: {ROUNDS})")
    p.add_argument("--repeats", type=int, default=None, help="default: 5 (--quick) or 11")
    p.add_argument("--seed", type=int, default=0, help="the runs' seed")
    p.add_argument("--models", nargs="+", default=None, choices=sorted(ROUNDS),
                   help="the models to measure (default: every one in --logdir)")
    args = p.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 11)
    runs = {key: path for key, path in find_runs(args.logdir, args.seed).items()
            if args.models is None or key[0] in args.models}
    if not runs:
        raise SystemExit(f"no runs in {args.logdir}; run examples/structured_tickets.py first")
    results = []
    tmp = tempfile.mkdtemp(prefix="kl_deployment_")
    for model_name in dict.fromkeys(m for m, _ in runs):
        first = next(path for (m, _), path in runs.items() if m == model_name)
        x_check, _, x_cal = commands.deployment_inputs(first, check=500, calibration=300)
        x_test, y_test, _ = commands.deployment_inputs(first, check=10_000, calibration=1)
        print(f"{model_name}: dense", flush=True)
        dense = export_round(first, 0, os.path.join(tmp, model_name, "dense"), x_check, x_cal,
                             x_test, y_test, ("keras", "tflite", "tflite_sparse_int8"))
        for (m, granularity), run_dir in runs.items():
            if m != model_name:
                continue
            done = RunDir.load(run_dir).completed_rounds()
            rows = []
            for r in [r for r in args.rounds or ROUNDS.get(m, done[1:]) if r in done]:
                print(f"{model_name} {granularity}: round {r}", flush=True)
                rows.append(export_round(run_dir, r, os.path.join(tmp, m, granularity, str(r)),
                                         x_check, x_cal, x_test, y_test,
                                         ("keras", "compact", *TFLITE)))
            timing = [latency(rows, dense, x_test, batch, repeats, calls)
                      for batch, calls in ((1, 50), (64, 5))]
            results.append({"model": model_name, "granularity": granularity,
                            "run_dir": os.path.relpath(run_dir, common.REPO),
                            "dense": dense, "rounds": rows, "latency": timing})
            keras.backend.clear_session()
    common.write_results(args.out, "deployment", args, results, tables(results), notes(repeats))


def tables(results: list[dict]) -> str:
    kb = lambda row, f: row["formats"][f]["bytes"] / 1e3  # noqa: E731
    size_rows, speed_rows, acc_rows = [], [], []
    for res in results:
        dense = res["dense"]
        for row in res["rounds"]:
            label = [res["model"], res["granularity"], row["round"],
                     f"{row['percent_remaining']:.1f}", f"{row['percent_effective']:.1f}"]
            size_rows.append(label + [kb(dense, "tflite"), kb(row, "keras"), kb(row, "compact"),
                                      kb(row, "tflite"), kb(row, "tflite_sparse"),
                                      kb(row, "tflite_sparse_int8"),
                                      f"{kb(dense, 'tflite') / kb(row, 'tflite_sparse'):.1f}x",
                                      f"{kb(dense, 'tflite') / kb(row, 'tflite_sparse_int8'):.1f}x"])
            cells = []
            for timing in res["latency"]:
                for fmt in ("keras", "tflite", "tflite_sparse", "tflite_sparse_int8"):
                    s = timing["speedup"][f"r{row['round']}:{fmt}"]
                    cells.append(f"{s['cpu']['ratio']:.2f}x / {s['wall']['ratio']:.2f}x")
            speed_rows.append(label + cells)
            acc = lambda r, f: r["formats"][f]["test_accuracy"]  # noqa: E731
            acc_rows.append(label + [acc(dense, "keras"), acc(row, "keras"), acc(row, "compact"),
                                     acc(row, "tflite"), acc(row, "tflite_sparse"),
                                     acc(row, "tflite_sparse_int8"),
                                     f"{acc(row, 'tflite_sparse_int8') - acc(dense, 'keras'):+.4f}"])
    head = ["model", "granularity", "round", "% weights (mask)", "% weights (after compact)"]
    text = "#### File size (KB)\n\n" + common.markdown_table(
        head + ["dense .tflite", ".keras (zeros stored)", "compact .keras", ".tflite (compacted)",
                ".tflite sparse", ".tflite sparse+int8", "dense / sparse", "dense / sparse+int8"],
        size_rows)
    text += ("\n#### CPU speedup over the dense model in the same format "
             "(CPU-time ratio / wall ratio; >1 = faster)\n\n") + common.markdown_table(
        head + [f"b{b} {f}" for b in (1, 64) for f in ("keras (compact)", "tflite", "tflite sparse",
                                                       "tflite sparse+int8")], speed_rows)
    text += "\n#### Test accuracy of every artifact (10,000 test images)\n\n" + common.markdown_table(
        head + ["dense", ".keras", "compact", ".tflite", ".tflite sparse", ".tflite sparse+int8",
                "sparse+int8 - dense"], acc_rows)
    return text


def notes(repeats: int) -> str:
    return (
        f"Latency: {repeats} interleaved measurements per contender, each of 50 calls at batch 1 "
        "or 5 calls at batch 64; ratio = median(dense) / median(ticket) in the same format "
        "(int8 against the dense int8 file, Keras against the dense stripped model's "
        "`predict_on_batch`); the JSON has the paired min..max noise. LiteRT with its default "
        "delegate (XNNPACK, default threads); where XNNPACK refuses a file (sparse int8 fully "
        "connected layers) it runs on the built-in kernels, noted per file in the JSON. Every "
        "export was checked against the masked model on 500 real test images (float formats "
        "max |diff| <= 1e-4 relative; int8 top-1 agreement in the JSON). 2 shared CPU cores: "
        "absolute times are indicative, ratios are the result.")


if __name__ == "__main__":
    main()
