"""TensorBoard events of a run, read back from disk."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

import keras_lottery as kl
from conftest import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_small):
    config = tiny_config(tmp_path_factory.mktemp("tb"), rounds=2, controls=("random_reinit",))
    return kl.find_ticket(config, fashion_small)


def _events(path):
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    """TF2 summaries are stored as tensors; decode scalar ones."""
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_branch_events_hold_curves_sparsity_and_histograms(run):
    row = {r["round"]: r for r in run.branch("ticket")}[1]
    acc = _events(os.path.join(run.run_dir, "round_01"))
    tags = acc.Tags()["tensors"]
    for tag in ("train/loss", "train/accuracy", "val/loss", "val/accuracy",
                "test/loss", "test/accuracy", "train_eval/accuracy",
                "sparsity/fc1", "sparsity/fc2", "sparsity/output"):
        assert tag in tags, tag
    for tag in ("masks/fc1", "weights/fc1", "weights/output"):
        assert tag in tags, tag
        assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "histograms"
    kept = int(round((1 - row["sparsity_by_layer"]["fc1"]) * 784 * 300))
    buckets = tf.make_ndarray(acc.Tensors("weights/fc1")[-1].tensor_proto)
    assert int(buckets[:, 2].sum()) == kept  # histogram of the surviving weights
    val = _scalars(acc, "val/accuracy")
    assert [s for s, _ in val] == [h["step"] for h in row["history"]]
    np.testing.assert_allclose([v for _, v in val], [h["val_accuracy"] for h in row["history"]], rtol=1e-6)
    sparsity = _scalars(acc, "sparsity/fc1")[0][1]
    assert sparsity == pytest.approx(row["sparsity_by_layer"]["fc1"], abs=1e-6)
    # The control has its own directory with the same curves.
    control = _events(os.path.join(run.run_dir, "round_01", "random_reinit"))
    assert "test/accuracy" in control.Tags()["tensors"]


def test_summary_events_across_rounds(run):
    acc = _events(os.path.join(run.run_dir, "summary"))
    tags = acc.Tags()["tensors"]
    tickets = run.branch("ticket")
    acc_at_es = _scalars(acc, "ticket/test_accuracy_at_early_stop")
    assert [s for s, _ in acc_at_es] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in acc_at_es], [r["test_accuracy_at_early_stop"] for r in tickets], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in _scalars(acc, "ticket/percent_remaining")],
                               [r["percent_remaining"] for r in tickets], rtol=1e-6)
    assert [v for _, v in _scalars(acc, "ticket/early_stop_iteration")] == [r["early_stop_step"] for r in tickets]
    assert [s for s, _ in _scalars(acc, "random_reinit/test_accuracy_at_early_stop")] == [1, 2]
    assert "accuracy_vs_sparsity" in tags
    assert acc.SummaryMetadata("accuracy_vs_sparsity").plugin_data.plugin_name == "images"
    width, height, png = tf.make_ndarray(acc.Tensors("accuracy_vs_sparsity")[-1].tensor_proto)
    assert int(width) > 500 and png.startswith(b"\x89PNG")
    plugins = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert plugins, "hparams plugin data is missing"
