"""What the `keras-lottery` subcommands do, apart from parsing arguments.

This is where a run goes one of two ways: a `PresetConfig` through the
presets (`find_ticket`), a `LotteryConfig` of a model of your own through
`LotterySearch`.
"""

from __future__ import annotations

import dataclasses
import os

from typing import Any

from keras_lottery.export import save_ticket
from keras_lottery.runner import analyses as run_analysis
from keras_lottery.runner import instability as instability_lib
from keras_lottery.runner import reports as report_lib
from keras_lottery.runner import tensorboard
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.engine import LotteryResult
from keras_lottery.runner.lock import run_lock
from keras_lottery.runner.presets import PresetConfig, find_ticket, preset_instability
from keras_lottery.runner.rebuild import builder, import_object, load_ticket
from keras_lottery.runner.rundir import RunDir, config_at
from keras_lottery.runner.search import SEARCH_SETTINGS, LotterySearch


def run(config: LotteryConfig) -> LotteryResult:
    """`keras-lottery run`: runs (or resumes) the lottery procedure.

    A preset trains through `find_ticket`; a model of your own
    (`model="module:function"`, `data="module:function"`) through
    `LotterySearch`, with the data function's `(train, validation[, test])`.
    """
    if isinstance(config, PresetConfig):
        if config.verbose:
            print(f"run directory: {os.path.join(config.logdir, config.run_name)}")
        return find_ticket(config)
    return search_user_model(config)


def search_user_model(config: LotteryConfig) -> LotteryResult:
    """Imports a user's model and data functions and searches them."""
    search, splits, arguments = _user_search(config)
    return search.fit(*splits, **arguments)


def _user_search(config: LotteryConfig) -> tuple[LotterySearch, tuple, dict[str, Any]]:
    """The `LotterySearch` of a run of a model of your own, its data
    `(train, validation, test)` and the rest of `fit`'s arguments."""
    build = import_object(config.model, "model")
    data_path = config.data.partition("#")[0]
    splits = import_object(data_path, "data")()
    if not isinstance(splits, (tuple, list)) or len(splits) not in (2, 3):
        raise ValueError(
            f"--data {data_path} must return (train, validation) or (train, validation, test). "
            f"Received: {type(splits).__name__}"
            + (f" of {len(splits)} items" if isinstance(splits, (tuple, list)) else "")
        )
    settings = {k: getattr(config, k) for k in SEARCH_SETTINGS}
    strategy = None if config.strategy == "default" else config.strategy
    search = LotterySearch(build, strategy=strategy, **settings)
    arguments = {"steps": config.steps, "eval_every": config.eval_every,
                 "batch_size": config.batch_size, "eval_batch_size": config.eval_batch_size,
                 "data_name": data_path}
    return search, tuple((*splits, None)[:3]), arguments


def report(run_dir: str, out: str | None = None, model: str | None = None) -> dict[str, Any]:
    """`keras-lottery report`: the table, the analyses, plots, TensorBoard.

    Prints the per-round table and the analyses of `run_analysis`, writes
    `accuracy_vs_sparsity.png` (or `out`) and `analyses.png` into the run
    directory, and the analyses' TensorBoard events into `RUN_DIR/analysis`.
    No code of the run directory runs: a model of your own is loaded from
    its `model.keras` in Keras's safe mode, or built by `model`
    (`"module:function"`) when you name it.

    Returns:
        The analyses (see `run_analysis.analyze`).
    """
    run = RunDir.load(run_dir)
    rows = [row for row in run.all_metrics() if not row["branch"].startswith("instability_")]
    if not rows:
        raise FileNotFoundError(f"{run_dir} has no completed round yet.")
    metric = run.metric
    print(report_lib.table(rows, metric=metric, pruner=run.config.pruner_name))
    out = out or os.path.join(run_dir, f"{metric}_vs_sparsity.png")
    report_lib.plot(rows, out, title=run.config.run_name, metric=metric)
    try:
        result = run_analysis.analyze(run_dir, metric=metric, build=_named_builder(run, model))
    except ValueError as error:  # e.g. a model of your own that cannot be rebuilt here
        print(f"\nanalyses skipped: {error}\nplot: {out}")
        return {}
    print(report_lib.format_report(result, run.config.steps))
    figure = report_lib.plot_analyses(result, os.path.join(run_dir, "analyses.png"))
    events = tensorboard.write_analysis_summaries(run_dir, result)
    print(f"\nplots: {out}, {figure}\nTensorBoard: {events}")
    measured = instability_lib.load_results(run_dir)
    if measured:
        path = os.path.join(run_dir, "instability.png")
        report_lib.instability_figure(measured, path)
        print("\nInstability (linear mode connectivity)")
        print("\n".join(instability_lib.summary_lines(measured)) + f"\nplot: {path}")
    return result


def instability(run_dir: str, round_index: int, rewind_steps: tuple[int, ...],
                points: int | None = None, model: str | None = None,
                data: str | None = None) -> list[dict[str, Any]]:
    """`keras-lottery instability`: trains the two copies of each rewind
    step as branches of a run's round and prints the instabilities: a
    preset run through `runner.presets.preset_instability`, a run of a
    model of your own through `LotterySearch.instability`, its model and
    data functions imported only when named by `model` and `data` (the
    ones the run was found with; the run directory's own are never run).

    Returns:
        One result per rewind step.

    Raises:
        ValueError: for a run of a model of your own without `model` and
            `data`, or with others than the run's.
    """
    config = config_at(run_dir)
    if isinstance(config, PresetConfig):
        results = preset_instability(run_dir, round_index, rewind_steps, points)
    else:
        _check_named(config, model, data)
        search, splits, arguments = _user_search(config)
        results = search.instability(*splits, round=round_index, rewind_steps=rewind_steps,
                                     points=points, **arguments)
    print("\n".join(instability_lib.summary_lines(results)))
    path = os.path.join(run_dir, "instability.png")
    report_lib.instability_figure(instability_lib.load_results(run_dir), path)
    print(f"plot: {path}\nTensorBoard: {os.path.join(run_dir, 'instability')}")
    return results


def _named_builder(run: RunDir, model: str | None):
    """The builder of `--model`, if the user named one (else None)."""
    return None if model is None else builder(model, ignore=run.config.ignore)


def _check_named(config: LotteryConfig, model: str | None, data: str | None) -> None:
    """Refuses to import a run's model and data functions unless the user
    named them, and named the ones the run was found with."""
    stored = {"model": config.model, "data": config.data.partition("#")[0]}
    given = {"model": model, "data": data}
    if given != stored:
        flags = " ".join(f"--{k} {v}" for k, v in stored.items())
        raise ValueError(
            f"{os.path.join(config.logdir, config.name)} is a run of a model of your own: instability "
            "imports and runs its model and data functions, which happens only when you name "
            f"them (a run directory's own code is never run unasked). Pass {flags}. "
            f"Received: --model {model} --data {data}"
        )


def export(run_dir: str, round_index: int, out: str,
           formats: tuple[str, ...] | None = None, model: str | None = None) -> list:
    """`keras-lottery export`: writes a round's stripped ticket.

    Writes `OUT/ticket.keras` and `OUT/savedmodel/` (TF SavedModel); with
    `formats` (keys of `keras_lottery.deploy.FORMATS`: keras, savedmodel,
    compact, tflite, tflite_sparse, tflite_sparse_int8) each of those,
    checked against the masked model on 1000 of the run's test examples
    (int8 calibrated on 500 training examples), with sizes and agreement.
    `model` (`"module:function"`) builds a model of your own whose
    `model.keras` is missing or damaged.
    """
    build = _named_builder(RunDir.load(run_dir), model)
    model = load_ticket(run_dir, round_index, build)
    if formats is not None:
        return _export_formats(run_dir, model, out, formats)
    sizes = [  # .keras first: it needs no TensorFlow, SavedModel does
        save_ticket(model, os.path.join(out, "ticket.keras")),
        save_ticket(model, os.path.join(out, "savedmodel")),
    ]
    for size in sizes:
        print(size)
    return sizes


def _export_formats(run_dir: str, model, out: str, formats: tuple[str, ...]) -> list:
    from keras_lottery import deploy

    unknown = [f for f in formats if f not in deploy.FORMATS]
    if unknown:
        raise ValueError(f"--format must be a comma-separated list of {list(deploy.FORMATS)}. "
                         f"Received: {unknown}")
    x_check, _, x_calibration = deployment_inputs(run_dir)
    results = deploy.export_all(model, out, formats, x_check, x_calibration)
    for result in results:
        print(result)
    return results


def deployment_inputs(run_dir: str, check: int = 1000, calibration: int = 500):
    """(test inputs, test labels, training inputs) of a preset run, as the
    model sees them (standardized), to check and calibrate exports on."""
    import numpy as np

    from keras_lottery.runner.presets import data as data_lib
    from keras_lottery.runner.presets.pipeline import normalizer

    config = RunDir.load(run_dir).config
    if not isinstance(config, PresetConfig):
        raise ValueError("export --format needs the run's data to check the files on; it "
                         "loads a preset's dataset. For a model of your own call "
                         "keras_lottery.deploy.export(model, path, format, x) from Python.")
    data = data_lib.load(config.dataset, data_dir=config.data_dir,
                         validation=config.validation, classes=config.classes or None)
    mean, std = normalizer(data.x_train)

    def scale(x):
        return ((x.astype("float32") / 255.0 - mean) / std).astype("float32")

    rng = np.random.default_rng(0)
    picked = rng.choice(len(data.x_train), size=min(calibration, len(data.x_train)),
                        replace=False)
    return scale(data.x_test[:check]), data.y_test[:check], scale(data.x_train[picked])


def transfer(run_dir: str, round_index: int, dataset: str, classes: tuple[int, ...] = (),
             **overrides: Any) -> LotteryResult:
    """`keras-lottery transfer`: trains a found ticket on another task.

    The target run uses the source run's configuration with `dataset` (and
    `classes`) replaced. Its round 0 trains the dense network on the new
    task; round 1 trains the source round's mask from the source rewind
    point, next to a random reinitialization and a random pruning of the
    same sparsity (Morcos et al. 2019).

    Args:
        run_dir: the source run directory.
        round_index: the source round whose ticket is transferred.
        dataset: the target dataset.
        classes: the target classes (e.g. `(5, 6, 7, 8, 9)`), or all.
        **overrides: other config fields (`steps`, `logdir`, `controls`...).

    Returns:
        The target run's `LotteryResult`.
    """
    source = RunDir.load(run_dir)
    if not isinstance(source.config, PresetConfig):
        raise ValueError(
            f"transfer trains a preset run's ticket on another preset dataset; {run_dir} is a "
            "run of a model of your own: train its ticket on your other data with "
            f"LotterySearch(..., masks_from='{run_dir}:{round_index}', rounds=1). "
            f"Received: run_dir={run_dir!r}")
    values = {
        **source.config.to_dict(), "dataset": dataset, "classes": tuple(classes),
        "masks_from": f"{run_dir.rstrip('/')}:{round_index}", "mode": "iterative",
        "sparsities": (), "rounds": 1, "name": None,
        "controls": ("random_reinit", "random_prune"), "eb_every": 0, "eb_stop": False,
        "logdir": os.path.dirname(os.path.abspath(run_dir)),
        **overrides,
    }
    return run(PresetConfig.from_dict(values))


def compare_scopes(config: LotteryConfig) -> dict[str, LotteryResult]:
    """`keras-lottery compare-scopes`: global vs layer-wise pruning.

    Runs the config once per scope. The layer-wise run trains the dense
    network; the global run adopts that dense round (same seed and data,
    so the same network), and the two prune it differently from round 1 on.

    Returns:
        Scope -> `LotteryResult`.
    """
    results: dict[str, LotteryResult] = {}
    first = None
    for scope in ("layerwise", "global"):
        name = f"{config.name}_{scope}" if config.name else None
        scoped = dataclasses.replace(config, scope=scope, name=name)
        if first is not None:
            with run_lock(scoped):  # opening for writing cleans the directory up
                RunDir.open(scoped).adopt_dense_round(first)
        results[scope] = run(scoped)
        first = RunDir.load(results[scope].run_dir)
    print(report_lib.scope_table(results))
    return results
