"""Tables and plots of a run, on rows and analyses made by hand."""

import numpy as np
import pytest

from keras_lottery.runner import reports

ACCURACY_ROWS = [
    {"round": 1, "branch": "random_reinit", "percent_remaining": 80.04, "early_stop_step": 300,
     "test_accuracy_at_early_stop": 0.81234, "test_accuracy_final": 0.8,
     "val_accuracy_at_early_stop": 0.82, "train_eval_accuracy_at_early_stop": 0.9},
    {"round": 0, "branch": "ticket", "percent_remaining": 100.0, "early_stop_step": 3900,
     "test_accuracy_at_early_stop": 0.8748, "test_accuracy_final": 0.877,
     "val_accuracy_at_early_stop": 0.8826, "train_eval_accuracy_at_early_stop": 0.9128},
    {"round": 1, "branch": "ticket", "percent_remaining": 80.04, "early_stop_step": 4500,
     "test_accuracy_at_early_stop": 0.8839, "test_accuracy_final": 0.884,
     "val_accuracy_at_early_stop": 0.8902},
    {"round": 12, "branch": "lr_rewind", "percent_remaining": 6.87, "early_stop_step": 100,
     "test_accuracy_at_early_stop": 0.5, "test_accuracy_final": 0.25,
     "val_accuracy_at_early_stop": 0.125, "train_eval_accuracy_at_early_stop": 1.0},
]

# What `table` printed for ACCURACY_ROWS before it was generalized over the metric.
ACCURACY_TABLE = """\
| round | branch        | % remaining | early-stop iter | test acc @ES | test acc final | val acc @ES | train acc @ES |
|-------|---------------|-------------|-----------------|--------------|----------------|-------------|---------------|
| 0     | ticket        | 100.0       | 3900            | 0.8748       | 0.8770         | 0.8826      | 0.9128        |
| 1     | ticket        | 80.0        | 4500            | 0.8839       | 0.8840         | 0.8902      | -             |
| 1     | random_reinit | 80.0        | 300             | 0.8123       | 0.8000         | 0.8200      | 0.9000        |
| 12    | lr_rewind     | 6.9         | 100             | 0.5000       | 0.2500         | 0.1250      | 1.0000        |"""


def _rows(percents, metric="accuracy"):
    return [{"round": r, "branch": "ticket", "percent_remaining": p, "early_stop_step": 100 * (r + 1),
             f"test_{metric}_at_early_stop": 0.8 + 0.01 * r}
            for r, p in enumerate(percents)]


def _labels(labels):
    return [t.get_text() for t in labels]


def test_accuracy_table_is_unchanged():
    assert reports.table(ACCURACY_ROWS) == ACCURACY_TABLE
    assert reports.table(ACCURACY_ROWS, metric="accuracy") == ACCURACY_TABLE


def test_table_of_another_metric_with_a_diverged_branch():
    rows = [
        {"round": 0, "branch": "ticket", "percent_remaining": 100.0, "early_stop_step": 200,
         "test_mean_absolute_error_at_early_stop": 0.125, "test_mean_absolute_error_final": 0.25,
         "val_mean_absolute_error_at_early_stop": 0.5, "train_mean_absolute_error_at_early_stop": 0.0625},
        {"round": 1, "branch": "random_reinit", "percent_remaining": 80.0, "early_stop_step": 40,
         "test_mean_absolute_error_at_early_stop": 3.0, "diverged": True, "diverged_at_step": 60},
    ]
    lines = reports.table(rows, metric="mean_absolute_error").splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["round", "branch", "% remaining", "early-stop iter",
                      "test mean_absolute_error @ES", "test mean_absolute_error final",
                      "val mean_absolute_error @ES", "train mean_absolute_error @ES", "diverged at"]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    # No train-eval set: the train column falls back to the training metric.
    assert cells[0] == ["0", "ticket", "100.0", "200", "0.1250", "0.2500", "0.5000", "0.0625", "-"]
    assert cells[1] == ["1", "random_reinit", "80.0", "40", "3.0000", "-", "-", "-", "60"]
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_table_of_loss_prefers_the_train_eval_set_and_has_no_diverged_column():
    row = {"round": 0, "branch": "ticket", "percent_remaining": 100.0, "early_stop_step": 20,
           "test_loss_at_early_stop": 0.5, "train_eval_loss_at_early_stop": 0.25,
           "train_loss_at_early_stop": 0.75}
    lines = reports.table([row], metric="loss").splitlines()
    assert "test loss @ES" in lines[0] and "train loss @ES" in lines[0]
    assert "diverged" not in lines[0]
    assert lines[2].rstrip(" |").endswith("0.2500")


def test_percent_axis_is_labelled_with_the_rounds_percents():
    rows = _rows([100.0, 51.2, 21.0, 7.0, 2.87], metric="auc")
    rows.append({**rows[1], "branch": "random_reinit", "test_auc_at_early_stop": 0.7})
    fig = reports.sparsity_figure(rows, title="run", metric="auc")
    fig.canvas.draw()
    metric_ax, stop_ax = fig.axes
    for ax in (metric_ax, stop_ax):
        assert ax.get_xscale() == "log" and ax.xaxis_inverted()
        assert _labels(ax.get_xticklabels()) == ["100", "51", "21", "7", "2.9"]
        assert not any(_labels(ax.get_xticklabels(minor=True)))
        assert ax.get_xlabel() == "percent of weights remaining"
    assert metric_ax.get_ylabel() == "test auc at early stop"
    assert stop_ax.get_ylabel() == "early-stop iteration"
    ys = [float(t.replace("\N{MINUS SIGN}", "-")) for t in _labels(metric_ax.get_yticklabels())]
    assert ys == sorted(ys) and ys[0] <= 0.7 and ys[-1] >= 0.84  # plain numbers spanning the data
    stops = [float(t) for t in _labels(stop_ax.get_yticklabels())]
    assert stops[0] <= 100 and stops[-1] >= 500


def test_long_runs_get_at_most_twelve_evenly_thinned_percent_labels():
    percents = [100 * 0.8 ** r for r in range(40)]
    fig = reports.sparsity_figure(_rows(percents))
    fig.canvas.draw()
    labels = _labels(fig.axes[0].get_xticklabels())
    assert 8 <= len(labels) <= 12
    assert labels[0] == "100" and len(set(labels)) == len(labels)
    ticks = np.log10(fig.axes[0].get_xticks())
    assert np.all(np.diff(ticks) < 0)
    assert np.ptp(np.diff(ticks)) < 0.2  # even spacing in decades


def test_plot_returns_and_writes_the_same_png(tmp_path):
    path = tmp_path / "accuracy_vs_sparsity.png"
    png = reports.plot(ACCURACY_ROWS, str(path), title="run")
    assert png.startswith(b"\x89PNG") and path.read_bytes() == png
    assert reports.plot(ACCURACY_ROWS, title="run") == png


def _analyses(metric="auc"):
    rng = np.random.default_rng(0)
    return {
        "metric": metric,
        "train_test": [
            {"round": 0, "percent_remaining": 100.0, f"train_{metric}": 0.9, f"test_{metric}": 0.85, "gap": 0.05},
            {"round": 1, "percent_remaining": 80.0, f"train_{metric}": None, f"test_{metric}": 0.86, "gap": None},
        ],
        "final_round": 2,
        "stability": [
            {"round": 0, "percent_remaining": 100.0, "jaccard": 0.75, "layers": {"fc1": 0.7, "output": 0.9}},
            {"round": 1, "percent_remaining": 80.0, "jaccard": 1.0, "layers": {"fc1": 1.0, "output": 1.0}},
        ],
        "layer_sparsity": {0: {"fc1": 0.0, "output": 0.0}, 1: {"fc1": 0.2, "output": 0.1},
                           2: {"fc1": 0.36, "output": 0.19}},
        "movement": [{"round": 0, "survivors": 80, "pruned": 20, "mean_survivors": 0.2,
                      "mean_pruned": 0.1, "ratio": 2.0}],
        "movement_values": {0: {"survivors": rng.random(80), "pruned": rng.random(20) / 2}},
        "early_bird": {"step": 300, "every": 100, "stopped": False},
        "structure": {"round": 2, "layers": {"fc1": {"units": 30, "dead": 1}}, "compacted": None},
    }


def test_format_report_names_the_metric_and_the_final_ticket():
    text = reports.format_report(_analyses(), steps=1000)
    assert "train vs test auc at early stop" in text
    assert "    0   100.0%  0.9000  0.8500  +0.0500" in text
    assert "    1    80.0%  (no train-eval set)" in text
    assert "mask stability against the final ticket of round 2" in text
    assert "  round, % remaining, all layers, fc1, output" in text
    assert "    0   100.0%  0.7500  0.7000  0.9000" in text
    assert "Early-Bird: mask settled at step 300 of 1000 (70% of dense training could be saved)." in text
    assert "fc1: 1 / 30" in text
    one_round = {**_analyses(), "stability": [], "final_round": 0}
    assert "needs two completed rounds" in reports.format_report(one_round, steps=1000)


def test_analyses_figure_plots_stability_by_layer(tmp_path):
    fig = reports.analyses_figure(_analyses())
    move_ax, layer_ax, stable_ax = fig.axes
    assert stable_ax.get_ylabel() == "Jaccard with the final ticket"
    lines = {line.get_label(): list(line.get_ydata()) for line in stable_ax.get_lines()}
    assert lines == {"all layers": [0.75, 1.0], "fc1": [0.7, 1.0], "output": [0.9, 1.0]}
    path = reports.plot_analyses(_analyses(), str(tmp_path / "analyses.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"
