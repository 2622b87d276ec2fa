"""Tables and plots of a run: per-round metrics of the ticket and controls."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from keras_lottery.files import atomic_open

BRANCH_ORDER = ("ticket", "random_reinit", "random_prune", "lr_rewind")


def _sorted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row):
        branch = row["branch"]
        rank = BRANCH_ORDER.index(branch) if branch in BRANCH_ORDER else len(BRANCH_ORDER)
        return row["round"], rank, branch

    return sorted(rows, key=key)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of branch metrics, one line per branch.

    Args:
        rows: branch metrics as the driver records them (`round`, `branch`,
            `percent_remaining`, `early_stop_step`, accuracies...).

    Returns:
        The table as a string (Markdown-compatible pipes).

    Example:
    >>> print(table(result.rows))
    """
    header = ("round", "branch", "% remaining", "early-stop iter",
              "test acc @ES", "test acc final", "val acc @ES", "train acc @ES")
    lines = [header]
    for row in _sorted(rows):
        lines.append((
            str(row["round"]), row["branch"], f"{row['percent_remaining']:.1f}",
            str(row["early_stop_step"]), f"{row['test_accuracy_at_early_stop']:.4f}",
            f"{row['test_accuracy_final']:.4f}", f"{row['val_accuracy_at_early_stop']:.4f}",
            _maybe(row.get("train_eval_accuracy_at_early_stop")),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _maybe(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def plot(rows: Sequence[dict[str, Any]], path: str | None = None, title: str = "") -> bytes:
    """Plots accuracy and early-stop iteration against percent remaining.

    Like the paper's figures, the x axis is logarithmic and runs from the
    dense network (100%) towards sparser tickets.

    Args:
        rows: branch metrics.
        path: where to write the PNG (optional).
        title: figure title.

    Returns:
        The PNG bytes (for TensorBoard image summaries).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (acc_ax, stop_ax) = plt.subplots(1, 2, figsize=(11, 4))
    branches = [b for b in BRANCH_ORDER if any(r["branch"] == b for r in rows)]
    branches += sorted({r["branch"] for r in rows} - set(branches))
    dense = [r for r in rows if r["branch"] == "ticket" and r["round"] == 0]
    for branch in branches:
        own = [r for r in rows if r["branch"] == branch]
        # Controls start from the dense network too, so every line begins at 100%.
        points = sorted(own if branch == "ticket" else dense + own,
                        key=lambda r: -r["percent_remaining"])
        xs = [r["percent_remaining"] for r in points]
        acc_ax.plot(xs, [r["test_accuracy_at_early_stop"] for r in points], "o-", label=branch)
        stop_ax.plot(xs, [r["early_stop_step"] for r in points], "o-", label=branch)
    for ax, label in ((acc_ax, "test accuracy at early stop"), (stop_ax, "early-stop iteration")):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    png = buffer.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as f:
            f.write(png)
    return png
