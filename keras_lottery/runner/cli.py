"""The `keras-lottery` command line: run, report, export, presets.

    keras-lottery run --preset lenet300 --dataset fashion_mnist --steps 2000 --rounds 3
    keras-lottery run --model mypkg.nets:build --data mypkg.data:load --rounds 3 --steps 300
    keras-lottery report runs/lenet300_fashion_mnist_iterative_1a2b3c4d
    keras-lottery instability runs/lenet300_... --round 3 --rewind-steps 0,100,500
    keras-lottery export runs/lenet300_... --round 3 ticket_out
    keras-lottery transfer runs/lenet300_... --round 3 --dataset mnist
    keras-lottery compare-scopes --preset conv2 --dataset fashion_mnist --rounds 5
    keras-lottery presets

Every `run` flag is a field of `LotteryConfig` (`--prune-fraction` sets
`prune_fraction`); flags override the preset's values. A bad value exits
with status 2 and one line naming the flag, the value and what is accepted
(set `KERAS_LOTTERY_TRACEBACK=1` to see the traceback of a run's error).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Sequence

from keras_lottery import pruners
from keras_lottery.runner.config import (
    CONTROLS,
    DATASETS,
    MODES,
    MONITOR_MODES,
    ON_DIVERGENCE,
    OPTIMIZERS,
    PRESETS,
    SCOPES,
    STRATEGIES,
    LotteryConfig,
)

_CHOICES = {
    "dataset": DATASETS, "mode": MODES, "scope": tuple(SCOPES), "optimizer": OPTIMIZERS,
    "strategy": STRATEGIES, "monitor_mode": MONITOR_MODES, "on_divergence": ON_DIVERGENCE,
    "pruner": tuple(pruners.PRUNERS),
}
_HIDDEN = ("architecture",)  # set by the search, not by hand
_HELP = {
    "model": "a preset architecture (lenet300, conv2, conv4, conv6, vgg19, resnet20) or your "
             "own: module:function returning a compiled Keras model",
    "data": "with --model module:function: module:function returning (train, validation) or "
            "(train, validation, test), each a tf.data.Dataset of (inputs, targets) batches "
            "or a NumPy (x, y) pair",
    "monitor": "evaluation key early stopping follows, e.g. val_loss, val_auc",
    "monitor_mode": "min, max, or auto (max for accuracy/auc/precision/recall-like keys)",
    "on_divergence": "continue (a NaN/inf branch is recorded as diverged, the run goes on) "
                     "or stop",
    "sparsities": "targets of --mode oneshot / gradual, percent of weights REMAINING, "
                  "e.g. 50,20,10",
    "mode": "iterative (rounds of prune and rewind), oneshot (one network per --sparsities "
            "target, masks made once) or gradual (one network per target, pruned while it "
            "trains)",
    "pruner": "the pruning method: " + "; ".join(
        f"{name}: {text}" for name, text in pruners.describe().items())
        + "; unset: magnitude, or gradual with --mode gradual",
    "pruner_options": "the pruner's options, e.g. end=0.75,frequency=50 for gradual",
    "rates": "per-layer pruning rates, e.g. output=0.1,conv1=0.1",
    "ignore": "layers never pruned, e.g. output,stage2_block0_shortcut",
    "controls": f"control branches per round, any of {','.join(CONTROLS)}",
    "lr_milestones": "steps where the learning rate is multiplied by --lr-gamma, e.g. 20000,25000",
    "data_dir": "directory with dataset files (IDX / CIFAR batches), searched first",
    "name": "run directory name (default: model_dataset_mode_<config hash>)",
    "classes": "keep only these classes, relabelled 0..k-1, e.g. 0,1,2,3,4",
    "masks_from": "RUN_DIR:ROUND whose masks and rewind point round 1 trains (ticket transfer)",
    "eb_every": "draw the Early-Bird mask every this many dense steps (0 = off)",
    "eb_stop": "stop the dense round at the Early-Bird step and prune there",
    "verbose": "0 silent, 1 progress bars, 2 one line per round",
    "test_curves": "true: evaluate test and the train subset at every evaluation (their "
                   "TensorBoard curves); false: only at the early-stop and last steps, "
                   "same table",
    "rewind_step": "0 (θ0), k (late rewinding to step k) or auto (the smallest stable "
                   "--rewind-candidates step)",
    "rewind_candidates": "steps --rewind-step auto tries, e.g. 0,100,250,500,1000",
    "stability_threshold": "largest validation error barrier (percentage points) counted as "
                           "stable",
}


class _OneLineParser(argparse.ArgumentParser):
    """Reports usage errors in one line, without the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _parse_list(kind: type):
    def parse(text: str):
        items = [item.strip() for item in text.split(",") if item.strip()]
        try:
            return tuple(kind(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}s, got {text!r}"
            ) from None

    return parse


def _parse_rates(text: str) -> dict[str, float]:
    rates = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            rates[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected layer=rate pairs like output=0.1,conv1=0.1, got {text!r}"
            ) from None
    return rates


def _parse_options(text: str) -> dict[str, typing.Any]:
    """`name=value,...` with each value read as int, float, bool or text."""
    options: dict[str, typing.Any] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected option=value pairs like end=0.75,frequency=50, got {text!r}")
        options[name.strip()] = _option_value(value.strip())
    return options


def _option_value(text: str) -> typing.Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _parse_rewind_step(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer step or 'auto', got {text!r}") from None


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(LotteryConfig)
    for field in dataclasses.fields(LotteryConfig):
        if field.name in _HIDDEN:
            continue
        hint, kwargs = hints[field.name], {}
        if field.name == "rates":
            kwargs["type"] = _parse_rates
        elif field.name == "pruner_options":
            kwargs["type"] = _parse_options
        elif field.name == "rewind_step":
            kwargs["type"] = _parse_rewind_step
        elif typing.get_origin(hint) is tuple:
            kwargs["type"] = _parse_list(typing.get_args(hint)[0])
        elif hint is bool:
            kwargs["type"] = _parse_bool
        elif hint in (int, float):
            kwargs["type"] = hint
        else:
            kwargs["type"] = str
        if field.name in _CHOICES:
            kwargs["choices"] = _CHOICES[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = _HELP.get(field.name, field.name.replace("_", " "))
        parser.add_argument(
            _flag(field.name), dest=field.name, default=argparse.SUPPRESS,
            metavar=field.name.upper(), help=f"{help_text} (default: {default!r})", **kwargs,
        )


def build_parser() -> argparse.ArgumentParser:
    """The `keras-lottery` argument parser."""
    parser = _OneLineParser(
        prog="keras-lottery",
        description="Find lottery tickets (sparse trainable subnetworks) in Keras models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    run = commands.add_parser("run", help="run the lottery procedure")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="start from a preset of the paper's hyperparameters")
    _add_config_flags(run)
    report = commands.add_parser("report", help="print a run's table and plot it")
    report.add_argument("run_dir", help="a run directory")
    report.add_argument("--out", default=None,
                        help="PNG path (default: RUN_DIR/accuracy_vs_sparsity.png)")
    export = commands.add_parser("export", help="write a round's ticket as SavedModel and .keras")
    export.add_argument("run_dir", help="a run directory")
    export.add_argument("--round", type=int, required=True, help="the round to export")
    export.add_argument("out", help="output directory")
    export.add_argument("--format", type=_parse_list(str), default=None, dest="formats",
                        help="comma-separated formats, each checked on real test inputs: "
                             "keras, savedmodel, compact, tflite, tflite_sparse, "
                             "tflite_sparse_int8 (default: OUT/savedmodel and OUT/ticket.keras)")
    for sub in (report, export):
        sub.add_argument("--model", default=None,
                         help="a run of a model of your own whose model.keras is missing or "
                              "damaged: the builder to import, 'module:function' (a run "
                              "directory's own code is never imported unasked)")
    commands.add_parser("presets", help="list the presets and their sources")
    unstable = commands.add_parser(
        "instability", help="linear mode connectivity of a round at rewind steps k")
    unstable.add_argument("run_dir", help="a run directory (a preset, or --model/--data)")
    unstable.add_argument("--round", type=int, required=True, help="the round (0: dense)")
    unstable.add_argument("--rewind-steps", type=_parse_list(int), required=True,
                          dest="rewind_steps", help="steps k to train the copies from, "
                                                    "e.g. 0,100,500,2000")
    unstable.add_argument("--points", type=int, default=None,
                          help="points along the path (default: the run's stability_points)")
    for flag, what in (("--model", "model builder"), ("--data", "data function")):
        unstable.add_argument(flag, default=None,
                              help=f"a run of a model of your own: its {what}, "
                                   "'module:function', as the run was found with; imported "
                                   "and run only because you name it here")
    compare = commands.add_parser(
        "compare-scopes", help="global vs layer-wise pruning on one dense training")
    compare.add_argument("--preset", choices=sorted(PRESETS), default=None,
                         help="start from a preset of the paper's hyperparameters")
    _add_config_flags(compare)
    transfer = commands.add_parser(
        "transfer", help="train a found ticket on another dataset or class split")
    transfer.add_argument("run_dir", help="the run that found the ticket")
    transfer.add_argument("--round", type=int, required=True, help="the ticket's round")
    transfer.add_argument("--dataset", required=True, choices=DATASETS, help="the target dataset")
    transfer.add_argument("--classes", type=_parse_list(int), default=(),
                          help="target classes, e.g. 5,6,7,8,9 (default: all)")
    for flag, kind in (("--steps", int), ("--data-dir", str), ("--logdir", str),
                       ("--verbose", int), ("--controls", _parse_list(str))):
        transfer.add_argument(flag, type=kind, default=argparse.SUPPRESS,
                              help=f"override the source run's {flag[2:]}")
    return parser


def _config_from_args(args: argparse.Namespace) -> LotteryConfig:
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(LotteryConfig)
        if hasattr(args, f.name)
    }
    if args.preset:
        return LotteryConfig.from_preset(args.preset, **overrides)
    return LotteryConfig.from_dict(overrides)


def _fail(message: str) -> int:
    print(f"keras-lottery: error: {message}", file=sys.stderr)
    return 2


def _flagged(error: ValueError) -> str:
    """Rewrites `field must...` config errors to name the `--field` flag."""
    text = str(error)
    first = text.split(" ", 1)[0].split("[", 1)[0]
    if first in {f.name for f in dataclasses.fields(LotteryConfig)}:
        return f"{_flag(first)}: {text}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `keras-lottery` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        for name, preset in sorted(PRESETS.items()):
            print(f"{name}\n    {preset.source}")
        return 0
    try:
        config = _config_from_args(args) if args.command in ("run", "compare-scopes") else None
    except ValueError as error:
        return _fail(_flagged(error))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_lottery.runner import commands
    from keras_lottery.runner.data import DatasetNotFoundError
    from keras_lottery.runner.distribute import WorkerFailedError
    from keras_lottery.runner.errors import BranchFailedError, DivergedError
    from keras_lottery.runner.lock import RunLockedError

    try:
        if args.command == "run":
            commands.run(config)
        elif args.command == "compare-scopes":
            commands.compare_scopes(config)
        elif args.command == "report":
            commands.report(args.run_dir, args.out, model=args.model)
        elif args.command == "instability":
            commands.instability(args.run_dir, args.round, args.rewind_steps, args.points,
                                 model=args.model, data=args.data)
        elif args.command == "transfer":
            overrides = {k: getattr(args, k) for k in ("steps", "data_dir", "logdir",
                                                       "verbose", "controls") if hasattr(args, k)}
            commands.transfer(args.run_dir, args.round, args.dataset, args.classes, **overrides)
        else:
            commands.export(args.run_dir, args.round, args.out, args.formats, model=args.model)
    except (ValueError, FileNotFoundError, DatasetNotFoundError, WorkerFailedError,
            BranchFailedError, DivergedError, RunLockedError, ImportError) as error:
        if os.environ.get("KERAS_LOTTERY_TRACEBACK"):
            raise
        text = _flagged(error) if isinstance(error, ValueError) else str(error)
        return _fail(" ".join(text.split()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
