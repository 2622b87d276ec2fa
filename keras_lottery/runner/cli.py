"""The `keras-lottery` command line: run, report, export, presets.

    keras-lottery run --preset lenet300 --dataset fashion_mnist --steps 2000 --rounds 3
    keras-lottery run --model mypkg.nets:build --data mypkg.data:load --rounds 3 --steps 300
    keras-lottery report runs/lenet300_fashion_mnist_iterative_1a2b3c4d
    keras-lottery instability runs/lenet300_... --round 3 --rewind-steps 0,100,500
    keras-lottery export runs/lenet300_... --round 3 ticket_out
    keras-lottery transfer runs/lenet300_... --round 3 --dataset mnist
    keras-lottery compare-scopes --preset conv2 --dataset fashion_mnist --rounds 5
    keras-lottery presets

Every `run` flag is a setting of `LotteryConfig` or, for a preset's
recipe, of `PresetConfig` (`--prune-fraction` sets `prune_fraction`), with
the help text declared beside the setting; flags override the preset's
values. A bad value exits
with status 2 and one line naming the flag, the value and what is accepted
(set `KERAS_LOTTERY_TRACEBACK=1` to see the traceback of a run's error).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import typing
from collections.abc import Sequence

from keras_lottery.runner import settings
from keras_lottery.runner.config import LotteryConfig, is_import_path
from keras_lottery.runner.presets import DATASETS, PRESETS, PresetConfig


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
    """One flag per setting of `PresetConfig` (the generic settings and the
    recipe), its type, choices and help read from the setting itself."""
    hints = typing.get_type_hints(PresetConfig)
    for field in dataclasses.fields(PresetConfig):
        if not settings.flagged(field):
            continue
        name, kwargs = field.name, {}
        hint = hints[name]
        if name == "rates":
            kwargs["type"] = _parse_rates
        elif name == "pruner_options":
            kwargs["type"] = _parse_options
        elif name == "rewind_step":
            kwargs["type"] = _parse_rewind_step
        elif typing.get_origin(hint) is tuple:
            kwargs["type"] = _parse_list(typing.get_args(hint)[0])
        elif hint is bool:
            kwargs["type"] = _parse_bool
        elif hint in (int, float):
            kwargs["type"] = hint
        elif hint == int | None:  # unset by default (eval_batch_size)
            kwargs["type"] = int
        else:
            kwargs["type"] = str
        choices = settings.choices_of(PresetConfig, name)
        if choices is not None and typing.get_origin(hint) is not tuple:
            kwargs["choices"] = choices
        text = settings.help_of(PresetConfig, name)
        if choices and not all(str(c) in text for c in choices):
            text += f"; one of {', '.join(map(str, choices))}"
        default = settings.default_of(field)
        if default is not dataclasses.MISSING:
            text += f" (default: {default!r})"
        parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS,
                            metavar=name.upper(), help=text, **kwargs)


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
    """The run's config: a preset's (`--preset`, or a preset architecture as
    `--model`), or a model of your own's (`--model module:function`)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(PresetConfig)
             if hasattr(args, f.name)}
    if args.preset:
        return PresetConfig.from_preset(args.preset, **given)
    if not is_import_path(given.get("model", "")):
        return PresetConfig.from_dict(given)
    recipe = [name for name in PresetConfig.recipe_settings() if name in given]
    if recipe:
        raise ValueError(
            f"{recipe[0]} is a setting of the presets (their recipe and TensorFlow loop) "
            "and does not apply to a model of your own, which comes compiled with its own "
            f"optimizer, brings its own data and trains through model.fit. Received: "
            f"model={given['model']!r} with {recipe}"
        )
    return LotteryConfig.from_dict(given)


def _fail(message: str) -> int:
    print(f"keras-lottery: error: {message}", file=sys.stderr)
    return 2


def _flagged(error: ValueError) -> str:
    """Rewrites `field must...` config errors to name the `--field` flag."""
    text = str(error)
    first = text.split(" ", 1)[0].split("[", 1)[0]
    if first in {f.name for f in dataclasses.fields(PresetConfig)}:
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
    from keras_lottery.runner.presets.data import DatasetNotFoundError
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


def console() -> None:
    """The `keras-lottery` console script: `main`, then exit with its status.

    Before the interpreter exits, the objects still alive are moved out of
    the cyclic garbage collector's reach (`gc.freeze`): its final passes
    over what TensorFlow and a run leave behind (about 400,000 objects:
    traced graphs, modules) took 1.2 s of a 20 s preset run, for memory the
    process hands back on exit anyway. Exit handlers, stream flushing and
    module teardown run as usual; every file of the run is closed before
    `main` returns.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    console()
