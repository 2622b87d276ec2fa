"""Nothing lost, nothing run that the user did not ask for (issue 19).

A run directory damaged in any file is detected and rebuilt by the next
run, `report` and `export` never crash on one and say what to do, opening
a run directory runs none of its code, and a NaN in the inputs is caught
in the weights, where TensorFlow's CPU ReLU hides it from the loss (the
trainers' own check: tests/test_loop_trainer.py).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from sklearn import datasets

import keras_lottery as kl
from keras_lottery.files import read_npz
from keras_lottery.runner import cli, commands
from keras_lottery.runner.rebuild import load_ticket
from keras_lottery.runner.tensorboard import histogram_buckets

STEPS = dict(steps=20, eval_every=10, batch_size=32)


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, name="out")])
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    return (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400]), (x[1400:], y[1400:])


def _fit(logdir, digits, **kwargs):
    train, val, test = digits
    search = kl.LotterySearch(build, rounds=2, logdir=str(logdir), name="run", verbose=0,
                              **kwargs)
    return search.fit(train, validation_data=val, test_data=test, **STEPS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits):
    """A finished 2-round run and its files' contents."""
    logdir = tmp_path_factory.mktemp("finished")
    _fit(logdir, digits)
    run = os.path.join(logdir, "run")
    return run, {os.path.relpath(p, run): open(p, "rb").read()
                 for p in glob.glob(f"{run}/**/*", recursive=True) if os.path.isfile(p)}


@pytest.fixture
def run_copy(tmp_path, finished):
    run, _ = finished
    shutil.copytree(run, tmp_path / "run")
    return str(tmp_path / "run")


def _same_arrays(path, contents):
    """Whether a rebuilt file holds the arrays it held (a snapshot's
    variable paths aside: automatic layer names differ between builds)."""
    got, expected = read_npz(path), read_npz_bytes(contents)
    return got.keys() == expected.keys() and all(
        np.array_equal(got[k], expected[k]) for k in got if k != "paths")


def read_npz_bytes(contents):
    import io

    return dict(np.load(io.BytesIO(contents)))


def _damage(path, how):
    if how == "deleted":
        os.remove(path)
    elif how == "empty":
        open(path, "wb").close()
    elif how == "other_npz":  # a valid archive that is not a snapshot
        np.savez(path, fc1=np.ones(3))


# 1. weights.npz ------------------------------------------------------------
@pytest.mark.parametrize("how", ["empty", "deleted", "other_npz"])
@pytest.mark.parametrize("round_index", [0, 2])
def test_lost_weights_of_a_finished_round_are_trained_again(run_copy, finished, digits, how,
                                                            round_index):
    path = os.path.join(run_copy, f"round_{round_index:02d}", "weights.npz")
    _damage(path, how)
    with pytest.raises(ValueError, match=r"Rerun the search with the same arguments"):
        load_ticket(run_copy, round_index)
    with pytest.warns(UserWarning, match=rf"Round {round_index}, branch 'ticket' is complete "
                                         r"but its trained weights"):
        _fit(os.path.dirname(run_copy), digits)
    assert _same_arrays(path, finished[1][f"round_{round_index:02d}/weights.npz"])
    assert load_ticket(run_copy, round_index).count_params() > 0


def test_a_half_finished_run_with_lost_weights_finishes_with_every_file(run_copy, finished,
                                                                        digits):
    os.remove(os.path.join(run_copy, "round_01", "weights.npz"))
    shutil.rmtree(os.path.join(run_copy, "round_02"))  # killed before round 2
    with pytest.warns(UserWarning, match="trains again"):
        _fit(os.path.dirname(run_copy), digits)
    for name in ("round_01/weights.npz", "round_02/weights.npz", "round_02/masks.npz"):
        assert _same_arrays(os.path.join(run_copy, name), finished[1][name]), name


def test_report_and_export_say_what_to_do_about_lost_weights(run_copy, tmp_path, capsys):
    os.remove(os.path.join(run_copy, "round_02", "weights.npz"))
    assert cli.main(["export", run_copy, "--round", "2", str(tmp_path / "out")]) == 2
    assert "weights.npz is missing or damaged. Rerun the search" in capsys.readouterr().err
    assert cli.main(["report", run_copy]) == 0
    assert "rounds [2] are left out of the weight analyses" in capsys.readouterr().out


# 2. no code from the run directory ----------------------------------------
EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
def build():
    raise SystemExit("evil code ran")
def load():
    raise SystemExit("evil code ran")
'''


def test_opening_a_run_directory_never_runs_its_code(run_copy, tmp_path, monkeypatch, capsys):
    marker = str(tmp_path / "marker")
    with open(os.path.join(run_copy, "evil_payload.py"), "w") as f:
        f.write(textwrap.dedent(EVIL.format(marker=marker)))
    config = json.load(open(os.path.join(run_copy, "config.json")))
    config.update(model="evil_payload:build", data="evil_payload:load#0")
    with open(os.path.join(run_copy, "config.json"), "w") as f:
        json.dump(config, f)
    os.remove(os.path.join(run_copy, "model.keras"))
    monkeypatch.chdir(run_copy)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert cli.main(["report", "."]) == 0
    assert "--model evil_payload:build" in capsys.readouterr().out
    assert cli.main(["export", ".", "--round", "1", str(tmp_path / "out")]) == 2
    assert "model.keras is missing" in capsys.readouterr().err
    assert cli.main(["instability", ".", "--round", "1", "--rewind-steps", "0"]) == 2
    assert "Pass --model evil_payload:build --data evil_payload:load" in capsys.readouterr().err
    assert not os.path.exists(marker) and "evil_payload" not in sys.modules


def test_a_named_builder_rebuilds_a_run_without_model_keras(run_copy, tmp_path, monkeypatch):
    os.remove(os.path.join(run_copy, "model.keras"))
    monkeypatch.setattr(sys.modules[__name__], "build", build)
    sizes = commands.export(run_copy, 2, str(tmp_path / "out"), model=f"{__name__}:build")
    assert os.path.exists(tmp_path / "out" / "ticket.keras") and sizes


# 3. NaN in the inputs ------------------------------------------------------
@pytest.mark.parametrize("on_divergence", ["continue", "stop"])
def test_a_nan_input_is_caught_in_the_weights_and_the_run_keeps_its_work(tmp_path, digits,
                                                                         on_divergence):
    (x, y), val, test = digits
    x = x.copy()
    x[5, 3] = np.nan
    search = kl.LotterySearch(build, rounds=1, logdir=str(tmp_path), verbose=0,
                              on_divergence=on_divergence)
    for _ in range(2):  # a rerun too
        try:
            result = search.fit((x, y), validation_data=val, **STEPS)
        except kl.DivergedError as error:
            assert on_divergence == "stop"
            assert "the weights became NaN or infinite" in str(error)
            continue
        assert on_divergence == "continue"
        assert all(row["diverged"] and "training inputs" in row["diverged_cause"]
                   for row in result.rows)
    (weights,) = glob.glob(f"{tmp_path}/*/round_00/weights.npz")
    assert all(np.isfinite(v).all() for v in read_npz(weights).values() if v.dtype.kind == "f")


def test_histograms_leave_out_nan():
    counts = histogram_buckets([np.nan, 1.0, 2.0, np.inf], buckets=2)[:, 2]
    assert list(counts) == [1.0, 1.0]
    assert histogram_buckets([np.nan]).sum() == 0


# 4.-6. masks, model.keras, metrics ----------------------------------------
@pytest.mark.parametrize("rounds", [(1,), (2,), (1, 2)])
def test_report_on_damaged_masks_of_a_middle_and_the_last_round(run_copy, capsys, rounds):
    for r in rounds:
        _damage(os.path.join(run_copy, f"round_{r:02d}", "masks.npz"), "empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["report", run_copy]) == 0
    out = capsys.readouterr().out
    assert "| 2     | ticket |" in out and f"rounds {list(rounds)} are left out" in out


def _flip(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("how", ["empty", "garbage", "flipped"])
def test_a_damaged_model_keras_is_named_and_written_again(run_copy, finished, digits, how,
                                                          capsys):
    path = os.path.join(run_copy, "model.keras")
    if how == "flipped":
        _flip(path)
    else:
        open(path, "wb").write(b"" if how == "empty" else os.urandom(500))
    assert cli.main(["export", run_copy, "--round", "2", os.path.dirname(run_copy) + "/o"]) == 2
    assert "model.keras is damaged" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="model.keras is damaged"):
        _fit(os.path.dirname(run_copy), digits)
    assert load_ticket(run_copy, 2).count_params() > 0
    assert not glob.glob(f"{run_copy}/.*.tmp*")


def test_metrics_of_the_wrong_shape_are_damage_and_the_branch_trains_again(run_copy, digits,
                                                                           capsys):
    path = os.path.join(run_copy, "round_01", "metrics.json")
    before = json.load(open(path))
    open(path, "w").write("{}")
    with pytest.warns(UserWarning, match="valid JSON but not a branch's metrics"):
        assert cli.main(["report", run_copy]) == 0
    with pytest.warns(UserWarning, match="not a branch's metrics"):
        _fit(os.path.dirname(run_copy), digits)
    after = json.load(open(path))
    assert after["history"] == before["history"]


# 9. stale temporary files --------------------------------------------------
def test_temporary_files_of_a_killed_write_are_removed(run_copy, digits):
    stale = [os.path.join(run_copy, "round_00", ".checkpoint.npz.a1b2c3.tmp"),
             os.path.join(run_copy, ".model.keras.x9y8.tmp.keras")]
    for path in stale:
        open(path, "wb").write(b"half")
    _fit(os.path.dirname(run_copy), digits)
    assert not any(os.path.exists(p) for p in stale)


# 8. input errors -----------------------------------------------------------
def test_python_lists_as_data_are_refused_saying_so(tmp_path, digits):
    (x, y), val, _ = digits
    search = kl.LotterySearch(build, rounds=1, logdir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match=r"Python list.*np\.asarray"):
        search.fit((x.tolist(), y.tolist()), validation_data=val, **STEPS)


def test_one_control_as_a_string_is_one_control():
    search = kl.LotterySearch(build, controls="random_reinit", ignore="out")
    assert search._config.controls == ("random_reinit",) and search._config.ignore == ("out",)


def test_an_empty_validation_set_is_named(tmp_path, digits):
    train, (x_val, y_val), _ = digits
    search = kl.LotterySearch(build, rounds=1, logdir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match=r"^validation_data is empty \(0 examples\)"):
        search.fit(train, validation_data=(x_val[:0], y_val[:0]), **STEPS)


def test_labels_out_of_range_say_so_on_the_first_line(tmp_path, digits):
    (x, y), val, _ = digits
    search = kl.LotterySearch(build, rounds=1, logdir=str(tmp_path), verbose=0)
    with pytest.raises(kl.BranchFailedError) as caught:
        search.fit((x, y + 5), validation_data=val, **STEPS)
    first = str(caught.value).splitlines()[0]
    assert "label value of" in first and "outside the valid range" in first, first
    assert "Graph execution error" not in first
