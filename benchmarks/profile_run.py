"""Where the seconds of a lottery run go: a wall and CPU profile by category.

Profiles, each in a fresh process:

- `preset`: the README's main command, `keras-lottery run --preset lenet300
  --dataset fashion_mnist --steps 2000 --rounds 3` (in-process through
  `keras_lottery.runner.cli.main`, into a fresh run directory);
- `search`: the same work through `keras_lottery.LotterySearch` (LeNet-300-100
  compiled with Adam 1.2e-3, real Fashion-MNIST, 3 rounds of 2,000 steps,
  batch 60, layer-wise 20% / output 10%, validation and test every 100
  steps): the script `kl_search_jax.py` of the open_lth comparison, on the
  backend the process runs (TensorFlow unless KERAS_BACKEND says otherwise).

The library is not edited: the benchmark wraps its functions and methods
with timers (monkeypatching from here) and attributes each second to the
innermost timed category (a category's time excludes the timed categories
nested in it), so the categories add up to the process's whole time; what no
timer covers is "other". CPU time is `time.process_time()` (all threads of
the process). Results go to `benchmarks/results/profile_run[_NAME].{md,json}`.

    python benchmarks/profile_run.py                      # both profiles
    python benchmarks/profile_run.py --runs preset --name before
    python benchmarks/profile_run.py --runs search --eval-batch-size 1000   # the search's setting
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

_WALL0, _CPU0 = time.perf_counter(), time.process_time()  # before any heavy import

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
PRESET_ARGS = ["run", "--preset", "lenet300", "--dataset", "fashion_mnist", "--steps", "2000",
               "--rounds", "3"]


class Profiler:
    """Exclusive wall and CPU time per category, over a stack of timers."""

    def __init__(self):
        self.totals: dict[str, list[float]] = {}  # category -> [wall, cpu, calls]
        self.stack: list[list] = []  # [category, wall0, cpu0, child_wall, child_cpu]

    def enter(self, category: str) -> None:
        self.stack.append([category, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def exit(self) -> None:
        category, wall0, cpu0, child_wall, child_cpu = self.stack.pop()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        self.add(category, wall - child_wall, cpu - child_cpu)
        if self.stack:
            self.stack[-1][3] += wall
            self.stack[-1][4] += cpu

    def add(self, category: str, wall: float, cpu: float, calls: int = 1) -> None:
        total = self.totals.setdefault(category, [0.0, 0.0, 0])
        total[0] += wall
        total[1] += cpu
        total[2] += calls

    def wrap(self, function, category):
        """`function` timed under `category` (a string or a function of the
        call's arguments returning one)."""

        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.enter(category(*args, **kwargs) if callable(category) else category)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()

        timed.__profiled__ = True
        return timed

    def iterate(self, iterable, category: str):
        """An iterable whose whole pass (the loop body included) is timed."""
        profiler = self

        class Timed:
            def __iter__(self):
                profiler.enter(category)
                try:
                    yield from iterable
                finally:
                    profiler.exit()

        return Timed()


PROFILER = Profiler()


class MemorySampler:
    """The largest resident set size seen while each category was innermost
    (sampled every `interval` seconds from a thread). Not more often: reading
    the process's memory counters 50 times a second slowed the lenet300
    preset's training on two TensorFlow threads from 20.5 to 33.4 s
    (docs/speed.md, "Tenth round"); a short category's peak may fall
    between samples (the run's own peak is `/usr/bin/time`'s)."""

    def __init__(self, interval: float = 0.25):
        import threading

        import psutil

        self.peaks: dict[str, float] = {}
        self._process, self._interval = psutil.Process(), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            stack = PROFILER.stack
            category = stack[-1][0] if stack else "other (engine, Python, not timed)"
            rss = self._process.memory_info().rss / 2**20
            self.peaks[category] = max(rss, self.peaks.get(category, 0.0))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def patch_function(module_names, name: str, category) -> None:
    """Wraps the function `name` of the first module, and every loaded
    keras_lottery module that imported the same object under that name."""
    module = sys.modules[module_names[0]] if isinstance(module_names, list) else module_names
    original = getattr(module, name)
    timed = PROFILER.wrap(original, category)
    for loaded_name, loaded in list(sys.modules.items()):
        if loaded_name.startswith("keras_lottery") and getattr(loaded, name, None) is original:
            setattr(loaded, name, timed)


def patch_methods(cls, category, names=None, skip=()) -> None:
    """Wraps the methods `names` (default: every method defined on `cls`)."""
    for name in names or [n for n, v in vars(cls).items() if callable(v) or
                          isinstance(v, (classmethod, staticmethod))]:
        if name in skip or (name.startswith("__") and name != "__init__"):
            continue
        value = vars(cls)[name]
        if isinstance(value, (classmethod, staticmethod)):
            wrapped = type(value)(PROFILER.wrap(value.__func__, category))
        else:
            wrapped = PROFILER.wrap(value, category)
        setattr(cls, name, wrapped)


def install_common() -> None:
    """Timers on what both the preset loop and the search use."""
    import keras_lottery.pruning as pruning
    import keras_lottery.rewind as rewind
    from keras_lottery.runner import checkpoint, engine, rundir, tensorboard
    from keras_lottery.runner.presets import data
    from keras_lottery.runner import reports

    patch_function(data, "load", "data: load Fashion-MNIST")
    for name in ("prune_by_magnitude", "set_masks", "get_masks", "align_masks", "sparsity",
                 "sparsity_by_layer"):
        patch_function(pruning, name, "pruning and masks")
    for name in ("snapshot_weights", "restore_weights"):
        patch_function(rewind, name, "weight snapshots and restores (memory)")
    patch_methods(checkpoint.BranchState, "checkpoints (capture, write, read)",
                  names=["capture", "save", "load", "load_latest"]
                  if hasattr(checkpoint.BranchState, "load_latest") else ["capture", "save", "load"])
    patch_methods(rundir.RunDir, "run-directory IO (masks, weights, metrics, config)",
                  skip=("checkpoint", "save_checkpoint", "reset_summary", "clear_events",
                        "branch_dir", "_file", "summary_dir", "rewind_path", "_theta_path"))
    patch_methods(rundir.RunDir, "checkpoints (capture, write, read)",
                  names=["checkpoint", "save_checkpoint"])
    patch_methods(rundir.RunDir, "TensorBoard events", names=["reset_summary", "clear_events"])
    patch_methods(tensorboard.BranchLog, "TensorBoard events")
    patch_function(tensorboard, "write_run_summary", "TensorBoard events")
    patch_function(reports, "table", "reports and printing")
    patch_methods(engine.Engine, "reports and printing", names=["_print_round", "_progress"])


def install_preset() -> None:
    """Timers on the preset's tf.distribute loop."""
    from keras_lottery.runner import distribute
    from keras_lottery.runner.presets import PresetConfig, loop_trainer, pipeline

    patch_methods(PresetConfig, "model build", names=["masked_model"])
    patch_function(distribute, "make_strategy", "model build")
    patch_methods(loop_trainer.Splits, "data: splits, normalization, pipelines",
                  names=["from_dataset"])
    patch_function(pipeline, "train_batches", "data: splits, normalization, pipelines")
    patch_function(pipeline, "eval_batches", "data: splits, normalization, pipelines")
    trainer = loop_trainer.LoopTrainer
    original_init, original_make = trainer.__init__, trainer._make_train_fn

    per_split = hasattr(trainer, "_evaluate_split")  # after issue 22; before: pipelines
    if per_split:
        patch_methods(trainer, lambda self, name: f"evaluation: {name}",
                      names=["_evaluate_split"])
        patch_methods(loop_trainer.Splits, "data: splits, normalization, pipelines",
                      names=["standardized"])

    def init(self, *args, **kwargs):
        PROFILER.enter("trainer set-up (optimizer, tf.functions)")
        try:
            original_init(self, *args, **kwargs)
            if not per_split:
                self._evals = {name: PROFILER.iterate(batches, f"evaluation: {name}")
                               for name, batches in self._evals.items()}
        finally:
            PROFILER.exit()

    def make_train_fn(self):
        train_fn, calls = original_make(self), [0]

        def timed(*args, **kwargs):
            first = not calls[0]
            calls[0] += 1
            PROFILER.enter("training steps: first call of a branch (trace, compile)" if first
                           else "training steps")
            try:
                return train_fn(*args, **kwargs)
            finally:
                PROFILER.exit()

        return timed

    trainer.__init__, trainer._make_train_fn = init, make_train_fn


def install_search() -> None:
    """Timers on the search's `model.fit` trainer and its evaluations."""
    from keras_lottery.runner import fit_trainer, inputs, search

    patch_methods(fit_trainer.FitTrainer, "trainer set-up (optimizer, compile)",
                  names=["__init__"])
    patch_methods(fit_trainer.FitTrainer, "training steps (model.fit, its tracing per branch)",
                  names=["_train" if "_train" in vars(fit_trainer.FitTrainer) else "run"])
    split_of: dict[int, str] = {}

    def naming_splits(make):
        """`make`, remembering the split name of each evaluation data it returns."""
        def named(*args, **kwargs):
            result = make(*args, **kwargs)
            for split, data in result.evals.items():
                split_of[id(data)] = split
            return result
        return PROFILER.wrap(named, "data: search inputs (fingerprints)")

    inputs.SearchData.of = classmethod(naming_splits(inputs.SearchData.of.__func__))
    if hasattr(inputs.SearchData, "for_model"):  # after issue 22: the inputs in the model's dtype
        inputs.SearchData.for_model = naming_splits(inputs.SearchData.for_model)
    patch_methods(inputs.EvalData, lambda self, *a, **k: f"evaluation: {split_of.get(id(self), '?')}",
                  names=["evaluate"])
    patch_methods(search.LotterySearch, "model build", names=["_masked_model"])


def child(kind: str, logdir: str, out: str, eval_batch_size: int | None = None) -> None:
    """One profiled run in this process; writes its profile to `out`
    (`eval_batch_size`: the search's, unset for its default)."""
    PROFILER.enter("python start-up and imports")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401
    import keras_lottery as kl
    from keras_lottery.runner import cli, commands, fit_trainer, inputs, search  # noqa: F401
    if keras.backend.backend() == "tensorflow":
        from keras_lottery.runner.presets import loop_trainer, pipeline, run  # noqa: F401
    PROFILER.exit()
    install_common()
    sampler = MemorySampler()
    if kind == "preset":
        install_preset()
        status = cli.main([*PRESET_ARGS, "--logdir", logdir])
        if status:
            raise SystemExit(status)
    else:
        install_search()
        data = kl.data.load("fashion_mnist")

        def build():
            model = kl.models.lenet300(data.input_shape, 10, seed=0)
            model.compile(keras.optimizers.Adam(1.2e-3),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            return model

        PROFILER.enter("data: splits, normalization, pipelines")
        train, val, test = [(x / 255.0, y) for x, y in [
            (data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]]
        PROFILER.exit()
        lottery = kl.LotterySearch(build, rounds=3, prune_fraction=0.2, scope="layerwise",
                                   rates={"output": 0.1}, logdir=logdir)
        result = lottery.fit(train, validation_data=val, test_data=test, steps=2000,
                             eval_every=100, batch_size=60, eval_batch_size=eval_batch_size)
        print(result.table())
    wall = time.perf_counter() - _WALL0
    cpu = time.process_time()  # includes the interpreter's start-up
    import psutil

    process = psutil.Process()
    before_script = max(0.0, time.time() - process.create_time() - wall)
    PROFILER.add("python start-up and imports", before_script, _CPU0, calls=0)
    accounted = [sum(v[i] for v in PROFILER.totals.values()) for i in (0, 1)]
    PROFILER.add("other (engine, Python, not timed)", wall + before_script - accounted[0],
                 cpu - accounted[1], calls=0)
    with open(out, "w") as file:
        json.dump({"kind": kind, "backend": keras.backend.backend(),
                   "wall_s": wall + before_script, "cpu_s": cpu,
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "categories": PROFILER.totals, "peak_rss_mib_during": sampler.stop()},
                  file, indent=1)


def markdown(profile: dict) -> str:
    rows = sorted(profile["categories"].items(), key=lambda item: -item[1][0])
    peaks = profile.get("peak_rss_mib_during", {})
    lines = ["| category | wall s | % wall | CPU s | % CPU | calls | peak RSS during, MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, (wall, cpu, calls) in rows:
        peak = f"{peaks[name]:.0f}" if name in peaks else ""
        lines.append(f"| {name} | {wall:.2f} | {100 * wall / profile['wall_s']:.1f} | "
                     f"{cpu:.2f} | {100 * cpu / profile['cpu_s']:.1f} | {calls or ''} | {peak} |")
    lines.append(f"| **total** | **{profile['wall_s']:.2f}** | 100 | **{profile['cpu_s']:.2f}**"
                 f" | 100 | | {profile['peak_rss_mib']:.0f} (peak) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["preset", "search"],
                        choices=["preset", "search"])
    parser.add_argument("--name", default="", help="suffix of the results' file names")
    parser.add_argument("--eval-batch-size", type=int, default=None,
                        help="the search's eval_batch_size (default: unset, its default)")
    parser.add_argument("--child", choices=["preset", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--logdir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.logdir, args.out, args.eval_batch_size)
        return
    profiles, printed = [], {}
    for kind in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "profile.json")
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", kind,
                 "--logdir", os.path.join(tmp, "runs"), "--out", out,
                 *(["--eval-batch-size", str(args.eval_batch_size)] if args.eval_batch_size else [])],
                capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{kind} failed:\n{done.stdout}\n{done.stderr}")
            with open(out) as file:
                profile = json.load(file)
        printed[kind] = done.stdout
        profiles.append(profile)
    text = [f"# Profile of a run ({time.strftime('%Y-%m-%d')})", "",
            "`python benchmarks/profile_run.py" + (f" --runs {' '.join(args.runs)}"
            if args.runs != ["preset", "search"] else "")
            + (f" --eval-batch-size {args.eval_batch_size}" if args.eval_batch_size else "")
            + (f" --name {args.name}`" if args.name else "`"), ""]
    for profile in profiles:
        what = ("`keras-lottery " + " ".join(PRESET_ARGS) + "`" if profile["kind"] == "preset"
                else "`LotterySearch` (LeNet-300-100, Fashion-MNIST, 3 rounds of 2,000 steps, "
                     "val + test every 100)")
        text += [f"## {profile['kind']}: {what}", "",
                 f"Backend {profile['backend']}; wall {profile['wall_s']:.1f} s, CPU "
                 f"{profile['cpu_s']:.1f} s, peak RSS {profile['peak_rss_mib']:.0f} MiB.", "",
                 markdown(profile), "", "What it printed:", "", "```",
                 printed[profile["kind"]].rstrip(), "```", ""]
    report = "\n".join(text)
    print(report)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, "profile_run" + (f"_{args.name}" if args.name else ""))
    with open(stem + ".md", "w") as file:
        file.write(report)
    with open(stem + ".json", "w") as file:
        json.dump(profiles, file, indent=1)


if __name__ == "__main__":
    main()
