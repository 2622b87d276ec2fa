"""TensorBoard events of a run, read back from disk."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

import keras_lottery as kl
from conftest import tiny_config
from keras_lottery.runner import reports, tensorboard


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
                "sparsity/fc1/kernel", "sparsity/fc2/kernel", "sparsity/output/kernel"):
        assert tag in tags, tag
    for tag in ("masks/fc1/kernel", "weights/fc1/kernel", "weights/output/kernel"):
        assert tag in tags, tag
        assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "histograms"
    kept = int(round((1 - row["sparsity_by_layer"]["fc1/kernel"]) * 784 * 300))
    buckets = tf.make_ndarray(acc.Tensors("weights/fc1/kernel")[-1].tensor_proto)
    assert int(buckets[:, 2].sum()) == kept  # histogram of the surviving weights
    val = _scalars(acc, "val/accuracy")
    assert [s for s, _ in val] == [h["step"] for h in row["history"]]
    np.testing.assert_allclose([v for _, v in val], [h["val_accuracy"] for h in row["history"]], rtol=1e-6)
    sparsity = _scalars(acc, "sparsity/fc1/kernel")[0][1]
    assert sparsity == pytest.approx(row["sparsity_by_layer"]["fc1/kernel"], abs=1e-6)
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
    np.testing.assert_allclose([v for _, v in _scalars(acc, "ticket/test_accuracy_final")],
                               [r["test_accuracy_final"] for r in tickets], rtol=1e-6)
    assert [v for _, v in _scalars(acc, "ticket/diverged")] == [0.0, 0.0, 0.0]
    assert [s for s, _ in _scalars(acc, "random_reinit/test_accuracy_at_early_stop")] == [1, 2]
    assert "accuracy_vs_sparsity" in tags
    assert acc.SummaryMetadata("accuracy_vs_sparsity").plugin_data.plugin_name == "images"
    width, height, png = tf.make_ndarray(acc.Tensors("accuracy_vs_sparsity")[-1].tensor_proto)
    assert int(width) > 500 and png.startswith(b"\x89PNG")
    plugins = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert plugins, "hparams plugin data is missing"


def test_branch_log_tags_every_metric_by_split_and_marks_divergence(tmp_path):
    log = tensorboard.BranchLog(str(tmp_path))
    log.record({"step": 5, "val_auc": 0.75, "val_mean_absolute_error": 1.5, "train_eval_loss": 0.25,
                "train_loss": 0.5, "learning_rate": 0.01, "test_loss": float("nan"), "stopped": True})
    log.diverged(7)
    log.close()
    acc = _events(str(tmp_path))
    assert sorted(acc.Tags()["tensors"]) == ["diverged", "other/learning_rate", "train/loss",
                                             "train_eval/loss", "val/auc", "val/mean_absolute_error"]
    assert _scalars(acc, "val/auc") == [(5, 0.75)]
    assert _scalars(acc, "train_eval/loss") == [(5, 0.25)]
    assert _scalars(acc, "diverged") == [(7, 1.0)]
    disabled = tensorboard.BranchLog(str(tmp_path / "worker"), enabled=False)
    disabled.record({"step": 1, "val_loss": 1.0})
    disabled.diverged(1)
    assert not os.path.exists(tmp_path / "worker")


def test_run_summary_of_another_metric_with_a_diverged_control(tmp_path):
    metric = "mean_absolute_error"
    rows = [
        {"round": 0, "branch": "ticket", "percent_remaining": 100.0, "early_stop_step": 40,
         f"test_{metric}_at_early_stop": 0.5, f"test_{metric}_final": 0.375},
        {"round": 1, "branch": "ticket", "percent_remaining": 80.0, "early_stop_step": 60,
         f"test_{metric}_at_early_stop": 0.25, f"test_{metric}_final": 0.125},
        {"round": 1, "branch": "random_reinit", "percent_remaining": 80.0, "early_stop_step": 20,
         f"test_{metric}_at_early_stop": 2.0, "diverged": True, "diverged_at_step": 30},
    ]
    hparams = {"learning_rate": 0.1, "classes": (1, 2), "name": None, "dropout": False}
    tensorboard.write_run_summary(str(tmp_path), "regression_run", hparams, rows, metric=metric)
    acc = _events(str(tmp_path))
    assert _scalars(acc, f"ticket/test_{metric}_at_early_stop") == [(0, 0.5), (1, 0.25)]
    assert _scalars(acc, f"ticket/test_{metric}_final") == [(0, 0.375), (1, 0.125)]
    assert _scalars(acc, "ticket/diverged") == [(0, 0.0), (1, 0.0)]
    assert _scalars(acc, "random_reinit/diverged") == [(1, 1.0)]
    assert _scalars(acc, "random_reinit/early_stop_iteration") == [(1, 20.0)]
    assert f"random_reinit/test_{metric}_final" not in acc.Tags()["tensors"]
    assert acc.SummaryMetadata(f"{metric}_vs_sparsity").plugin_data.plugin_name == "images"
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    info = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG])
    assert info.group_name == "regression_run"
    assert info.hparams["learning_rate"].number_value == 0.1
    assert info.hparams["classes"].string_value == "(1, 2)"
    assert info.hparams["dropout"].WhichOneof("kind") == "bool_value"
    assert info.hparams["dropout"].bool_value is False
    assert "name" not in info.hparams


def test_event_writer_writes_what_tf_summary_writes(tmp_path):
    """The TensorFlow-free writer against tf.summary: same plugins, dtypes, shapes, values."""
    rng = np.random.default_rng(0)
    values = {"spread": rng.normal(size=5000).astype("float32"), "one_value": np.full(7, 0.5),
              "empty": np.zeros(0), "mask": (rng.random(300) < 0.2).astype("float32")}
    png = reports.plot([{"round": 0, "branch": "ticket", "percent_remaining": 100.0,
                         "early_stop_step": 1, "test_accuracy_at_early_stop": 0.5}])
    writer = tf.summary.create_file_writer(str(tmp_path / "tf"))
    with writer.as_default(step=3):
        tf.summary.scalar("s", 0.1)
        for tag, v in values.items():
            tf.summary.histogram(tag, v)
        tf.summary.image("plot", tf.image.decode_png(png, channels=4)[None])
    writer.close()
    with tensorboard.EventWriter(str(tmp_path / "ours")) as ours:
        ours.scalar("s", 0.1, 3)
        for tag, v in values.items():
            ours.histogram(tag, v, 3)
        ours.image("plot", png, 3)
    theirs, mine = _events(str(tmp_path / "tf")), _events(str(tmp_path / "ours"))
    assert sorted(theirs.Tags()["tensors"]) == sorted(mine.Tags()["tensors"])
    for tag in ["s", *values]:
        a, b = theirs.Tensors(tag)[0], mine.Tensors(tag)[0]
        assert (a.step, a.tensor_proto.dtype) == (b.step, b.tensor_proto.dtype)
        np.testing.assert_allclose(tf.make_ndarray(b.tensor_proto), tf.make_ndarray(a.tensor_proto),
                                   rtol=1e-12, err_msg=tag)
        assert (theirs.SummaryMetadata(tag).plugin_data.plugin_name
                == mine.SummaryMetadata(tag).plugin_data.plugin_name)
    a, b = (tf.make_ndarray(acc.Tensors("plot")[0].tensor_proto) for acc in (theirs, mine))
    assert list(a[:2]) == list(b[:2])  # width, height
    np.testing.assert_array_equal(tf.image.decode_png(b[2], channels=4), tf.image.decode_png(a[2], channels=4))
    assert mine.SummaryMetadata("plot").plugin_data.plugin_name == "images"
