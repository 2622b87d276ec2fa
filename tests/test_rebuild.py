"""keras_lottery.runner.rebuild: import paths, and a run's model and tickets
rebuilt from its directory without running its code (backend independent)."""

import os
import sys

import numpy as np
import pytest

import keras_lottery as kl
from conftest import mlp
from keras_lottery.runner import rebuild
from keras_lottery.runner.rundir import RunDir

PROBE = "kl_rebuild_probe"  # a module the run names; opening the run must not import it
PROBE_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from conftest import mlp as build
"""


def _run(tmp_path, model=f"{PROBE}:build"):
    """A run directory of a model of your own, its model.keras at θ0."""
    config = kl.LotteryConfig(model=model, data="python:data", steps=10, eval_every=5,
                              logdir=str(tmp_path / "runs"), name="run")
    run = RunDir.open(config)
    masked = kl.prunable(mlp(0))
    masked.save(os.path.join(run.path, "model.keras"))
    return run, masked


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The run's named builder in the current directory; the marker it writes when imported."""
    marker = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(PROBE_CODE.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield marker
    sys.modules.pop(PROBE, None)


# import_object ------------------------------------------------------------------
def test_an_import_path_names_a_module_attribute_dotted_or_not():
    assert rebuild.import_object("keras_lottery.runner.rebuild:import_object") is rebuild.import_object
    assert rebuild.import_object("keras_lottery.runner.rundir:RunDir.load") == RunDir.load


def test_an_import_path_is_found_in_the_current_directory(probe):
    build = rebuild.import_object(f"{PROBE}:build")
    assert build is mlp and probe.read_text() == "imported"


@pytest.mark.parametrize("path", ["keras_lottery", "keras_lottery:", ":build", ""])
def test_an_import_path_without_module_and_attribute_is_refused(path):
    with pytest.raises(ValueError, match=r"^--data must be an import path 'module:function', "
                                         rf"e\.g\. 'mypkg\.nets:build'\. Received: '{path}'$"):
        rebuild.import_object(path, what="data")


def test_an_import_path_names_what_cannot_be_found():
    with pytest.raises(ValueError, match=r"^--model 'kl_no_such_module:build': cannot import "
                                         r"module 'kl_no_such_module' \(No module named"):
        rebuild.import_object("kl_no_such_module:build")
    with pytest.raises(ValueError, match=r"^--model 'keras_lottery.runner.rundir:RunDir.nope': "
                                         r"module 'keras_lottery.runner.rundir' has no 'RunDir.nope'\.$"):
        rebuild.import_object("keras_lottery.runner.rundir:RunDir.nope")


def test_builder_wraps_the_named_model_for_pruning_leaving_ignored_layers(probe):
    build = rebuild.builder(f"{PROBE}:build", ignore=("out",))
    assert not probe.exists()  # imported when called, not before
    model = build()
    assert sorted(kl.get_masks(model)) == ["fc1/kernel", "fc2/kernel"]


# masked_model -------------------------------------------------------------------
def test_a_model_of_your_own_is_loaded_from_model_keras_never_imported(tmp_path, probe):
    run, _ = _run(tmp_path)
    model = rebuild.masked_model(RunDir.load(run.path))
    assert all(m.all() for m in kl.get_masks(model).values())  # as initialized
    theta0 = kl.snapshot_weights(mlp(0)).values
    assert all(np.array_equal(a, b) for a, b in zip(kl.snapshot_weights(model).values, theta0))
    assert not probe.exists() and PROBE not in sys.modules


def test_a_given_build_is_used_before_model_keras(tmp_path):
    run, _ = _run(tmp_path)
    made = kl.prunable(mlp(1))
    assert rebuild.masked_model(run, build=lambda: made) is made


@pytest.mark.parametrize("damage, problem", [
    ("missing", "model.keras is missing"),
    ("garbage", r"model.keras is damaged \("),
])
def test_a_lost_model_keras_says_how_to_rebuild_it(tmp_path, probe, damage, problem):
    run, _ = _run(tmp_path)
    path = os.path.join(run.path, "model.keras")
    if damage == "missing":
        os.remove(path)
    else:
        open(path, "wb").write(os.urandom(300))
    with pytest.raises(ValueError, match=rf"^The model of {run.path} cannot be rebuilt: .*{problem}.*; "
                                         r"rerun the search \(keras-lottery run .*name its builder "
                                         rf"yourself: --model {PROBE}:build \(a run directory's own "
                                         r"code is never imported unasked\)\.$"):
        rebuild.masked_model(run)
    assert not probe.exists()


def test_a_lost_model_keras_of_a_model_from_python_says_to_rerun_in_python(tmp_path):
    run, _ = _run(tmp_path, model="python:Sequential")
    os.remove(os.path.join(run.path, "model.keras"))
    with pytest.raises(ValueError, match=r"model.keras is missing; it was passed from Python, so "
                                         r"rerun the search \(LotterySearch.fit .*LotteryResult.ticket\(\)"):
        rebuild.masked_model(run)


# load_ticket --------------------------------------------------------------------
def test_load_ticket_is_the_round_masks_and_trained_weights(tmp_path):
    run, masked = _run(tmp_path)
    masks = kl.prune_by_magnitude(masked, 0.5)
    trained = kl.snapshot_weights(mlp(2))
    run.save_masks(1, masks)
    run.complete(1, "ticket", {"round": 1, "branch": "ticket", "percent_remaining": 50.0,
                               "early_stop_step": 10, "history": []}, trained)
    ticket = rebuild.load_ticket(run.path, 1)
    assert all(np.array_equal(m, masks[k]) for k, m in kl.get_masks(ticket).items())
    for slot, value in zip(kl.mask_slots(ticket), [v for v in trained.values if v.ndim == 2]):
        np.testing.assert_array_equal(np.asarray(slot.kernel), value * masks[slot.key])
    made = kl.prunable(mlp(1))
    assert rebuild.load_ticket(run.path, 1, build=lambda: made) is made
    assert all(np.array_equal(m, masks[k]) for k, m in kl.get_masks(made).items())
    with pytest.raises(ValueError, match=r"round must be a completed round of .*Received: "
                                         r"round=2; completed: \[1\]"):
        rebuild.load_ticket(run.path, 2)
