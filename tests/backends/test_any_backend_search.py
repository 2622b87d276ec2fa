"""LotterySearch on the current Keras backend: inputs, rounds, controls, resume,
report and TensorBoard events (run under jax, torch and tensorflow)."""

import glob
import json
import os

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

import keras_lottery as kl
from helpers import build_model, dataloader, digits, make_batches
from keras_lottery.files import read_npz
from keras_lottery.runner import commands
from keras_lottery.runner.inputs import TrainData

TRAIN, VAL, TEST = digits()
FIT = dict(steps=40, eval_every=20, batch_size=60)


def _search(logdir, **overrides):
    settings = dict(rounds=2, controls=("random_reinit",), logdir=str(logdir), verbose=0,
                    checkpoint_every=20)
    return kl.LotterySearch(build_model, **{**settings, **overrides})


def _same(rows):
    """Rows as comparable text (NaN equals NaN)."""
    return json.dumps(rows, sort_keys=True, default=str)


def _masks(run_dir, round_index):
    return read_npz(os.path.join(run_dir, f"round_{round_index:02d}", "masks.npz"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("search")
    return _search(logdir).fit(TRAIN, VAL, TEST, **FIT)


def test_rounds_controls_and_rewinding(run):
    tickets = run.branch("ticket")
    assert [r["round"] for r in tickets] == [0, 1, 2]
    assert [round(r["percent_remaining"], 1) for r in tickets] == [100.0, 80.0, 64.0]
    assert [r["round"] for r in run.branch("random_reinit")] == [1, 2]
    for r in tickets:
        assert 0.0 <= r["test_accuracy_final"] <= 1.0
    assert tickets[0]["test_accuracy_final"] > 0.5  # it learns the digits
    # Every round restarts from θ0 under the mask: the round's trained weights
    # differ, but its masks only shrink.
    m1, m2 = _masks(run.run_dir, 1), _masks(run.run_dir, 2)
    for name in m1:
        assert not np.any(m2[name] & ~m1[name])
    ticket = run.ticket(round=2)
    assert kl.sparsity(ticket) == pytest.approx(0.36, abs=0.01)


def test_a_finished_search_resumes_without_training_and_an_interrupted_one_matches(run, tmp_path):
    again = _search(os.path.dirname(run.run_dir)).fit(TRAIN, VAL, TEST, **FIT)
    assert again.run_dir == run.run_dir and _same(again.rows) == _same(run.rows)

    class Interrupt(keras.callbacks.Callback):
        """Stops the process's work in round 1, after its first checkpoint."""

        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if self.batches == 70:  # round 0 is 40 batches; round 1's checkpoint at step 20
                raise KeyboardInterrupt

    search = _search(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search.fit(TRAIN, VAL, TEST, callbacks=[Interrupt()], **FIT)
    resumed = _search(tmp_path).fit(TRAIN, VAL, TEST, **FIT)
    for r in (1, 2):
        expected, got = _masks(run.run_dir, r), _masks(resumed.run_dir, r)
        assert all(np.array_equal(expected[k], got[k]) for k in expected)
    pick = lambda rows: [(r["round"], r["branch"], r["early_stop_step"]) for r in rows]  # noqa: E731
    assert pick(resumed.rows) == pick(run.rows)
    np.testing.assert_allclose([r["test_accuracy_final"] for r in resumed.rows],
                               [r["test_accuracy_final"] for r in run.rows], atol=1e-6)


def test_report_prints_the_table_and_writes_the_plot(run, capsys):
    result = commands.report(run.run_dir)
    out = capsys.readouterr().out
    assert "| round | branch" in out and "random_reinit" in out
    with open(os.path.join(run.run_dir, "accuracy_vs_sparsity.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert result, "the analyses ran (the model was rebuilt from model.keras)"
    assert os.path.isfile(os.path.join(run.run_dir, "analyses.png"))
    acc = _events(os.path.join(run.run_dir, "analysis"))
    assert "mask_stability/jaccard_with_final_ticket" in acc.Tags()["tensors"]


def _events(path):
    acc = EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def _values(acc, tag):
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


def test_tensorboard_events_are_written_without_tensorflow_and_read_back(run):
    row = {r["round"]: r for r in run.branch("ticket")}[1]
    acc = _events(os.path.join(run.run_dir, "round_01"))
    tags = acc.Tags()["tensors"]
    for tag in ("train/loss", "val/accuracy", "test/accuracy", "sparsity/fc1/kernel", "masks/fc1/kernel", "weights/fc1/kernel"):
        assert tag in tags, tag
    assert acc.SummaryMetadata("weights/fc1/kernel").plugin_data.plugin_name == "histograms"
    assert acc.SummaryMetadata("val/accuracy").plugin_data.plugin_name == "scalars"
    kept = int(round((1 - row["sparsity_by_layer"]["fc1/kernel"]) * 64 * 32))
    assert int(_values(acc, "weights/fc1/kernel")[-1][1][:, 2].sum()) == kept
    val = dict((s, float(v)) for s, v in _values(acc, "val/accuracy"))
    history = {h["step"]: h["val_accuracy"] for h in row["history"]}
    # Every evaluation is logged, the one before training (step 0) included.
    assert set(val) == set(history) and 0 in val
    np.testing.assert_allclose([val[s] for s in sorted(val)], [history[s] for s in sorted(val)], rtol=1e-6)
    summary = _events(os.path.join(run.run_dir, "summary"))
    assert [s for s, _ in _values(summary, "ticket/percent_remaining")] == [0, 1, 2]
    width, height, png = _values(summary, "accuracy_vs_sparsity")[-1][1]
    assert int(width) > 500 and int(height) > 200 and png.startswith(b"\x89PNG")
    assert summary.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert glob.glob(os.path.join(run.run_dir, "round_01", "events.out.tfevents.*.v2"))


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]


def make_val():
    yield VAL


@pytest.mark.parametrize("kind", ["pydataset", "generator", "dataloader"])
def test_natural_inputs_train_and_replay_the_same_stream(kind, tmp_path):
    train = {"pydataset": lambda: Batches(*TRAIN, 60), "generator": lambda: make_batches,
             "dataloader": dataloader}[kind]()
    data = TrainData.of(train, None, seed=0)
    assert data.kind == kind
    stream = data.stream(0)
    first = [next(stream) for _ in range(25)]  # across an epoch boundary (20 batches)
    resumed = data.stream(23)
    for batch in first[23:]:
        got = next(resumed)
        assert isinstance(got, tuple)
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(batch[1]))
    again = data.stream(0)
    np.testing.assert_array_equal(np.asarray(next(again)[1]), np.asarray(first[0][1]))
    validation = make_val if kind == "generator" else VAL
    result = _search(tmp_path, rounds=1, controls=()).fit(train, validation, steps=30, eval_every=15,
                                                         batch_size=None)
    assert [r["round"] for r in result.branch("ticket")] == [0, 1]
    assert 0 <= result.branch("ticket")[-1]["val_accuracy_final"] <= 1


def test_instability_of_a_round_on_this_backend(run):
    logdir = os.path.dirname(run.run_dir)
    (measured,) = _search(logdir).instability(TRAIN, VAL, TEST, round=2, rewind_steps=[20],
                                               points=3, **FIT)
    assert measured["round"] == 2 and measured["rewind_step"] == 20
    assert measured["seeds"][0] != measured["seeds"][1]
    errors = measured["curve"]["metrics"]["val_error"]
    assert len(errors) == 3 and all(0 <= e <= 1 for e in errors)
    assert measured["instability"]["val"] == pytest.approx(
        max(errors) - (errors[0] + errors[-1]) / 2)
    assert os.path.exists(os.path.join(run.run_dir, "round_02", "instability_k20.json"))


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the presets run on the TensorFlow backend")
def test_presets_on_another_backend_are_refused_saying_what_to_use_instead(tmp_path):
    from keras_lottery.runner.presets import preset_engine

    config = kl.PresetConfig.from_preset("lenet300", dataset="fashion_mnist", steps=10,
                                          rounds=1, logdir=str(tmp_path))
    with pytest.raises(ValueError, match=r"needs the TensorFlow backend .*Received: backend "
                                         rf"'{keras.backend.backend()}'.*LotterySearch"):
        preset_engine(config)
    assert not os.listdir(tmp_path)  # refused before the run directory is made
