"""What the `keras-lottery` subcommands do, apart from parsing arguments."""

from __future__ import annotations

import os

from keras_lottery import models, report as report_lib
from keras_lottery.config import LotteryConfig
from keras_lottery.driver import LotteryResult, find_ticket
from keras_lottery.export import TicketSize, save_ticket
from keras_lottery.masking import prunable
from keras_lottery.pruning import set_masks
from keras_lottery.rewind import restore_weights
from keras_lottery.rundir import RunDir


def run(config: LotteryConfig) -> LotteryResult:
    """`keras-lottery run`: runs (or resumes) the lottery procedure."""
    if config.verbose:
        print(f"run directory: {os.path.join(config.logdir, config.run_name)}")
    return find_ticket(config)


def report(run_dir: str, out: str | None = None) -> str:
    """`keras-lottery report`: prints the table and writes the plot.

    Returns:
        The path of the PNG written.
    """
    run = RunDir.load(run_dir)
    rows = run.all_metrics()
    if not rows:
        raise FileNotFoundError(f"{run_dir} has no completed round yet.")
    print(report_lib.table(rows))
    out = out or os.path.join(run_dir, "accuracy_vs_sparsity.png")
    report_lib.plot(rows, out, title=run.config.run_name)
    print(f"plot: {out}")
    return out


def load_ticket(run_dir: str, round_index: int):
    """Rebuilds the masked model of a completed round, trained weights in."""
    run = RunDir.load(run_dir)
    done = run.completed_rounds()
    if round_index not in done:
        raise ValueError(
            f"round must be a completed round of {run_dir}. "
            f"Received: round={round_index}; completed: {done}"
        )
    config, info = run.config, run.data_info
    base = models.build(config.model, tuple(info["input_shape"]), info["num_classes"],
                        seed=config.seed, dropout=config.dropout)
    model = prunable(base, ignore=config.ignore)
    set_masks(model, run.masks(round_index))
    restore_weights(model, run.weights(round_index))
    return model


def export(run_dir: str, round_index: int, out: str) -> list[TicketSize]:
    """`keras-lottery export`: writes a round's stripped ticket.

    Writes `OUT/savedmodel/` (TF SavedModel) and `OUT/ticket.keras`.
    """
    model = load_ticket(run_dir, round_index)
    sizes = [
        save_ticket(model, os.path.join(out, "savedmodel")),
        save_ticket(model, os.path.join(out, "ticket.keras")),
    ]
    for size in sizes:
        print(size)
    return sizes
