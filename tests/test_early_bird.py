"""keras_lottery.runner.early_bird: drawing the round-1 mask during the dense
round, its mask distances, settling, stopping and resuming (You et al. 2020)."""

import os
import types

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_lottery as kl
from conftest import mlp, tiny_config
from keras_lottery.runner import early_bird
from keras_lottery.runner.early_bird import EarlyBird
from keras_lottery.runner.rundir import RunDir


class Log:
    """A BranchLog that keeps its scalars."""

    def __init__(self):
        self.scalars = []

    def scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


class Pruner:
    """Draws the given masks, one a call, and records the requests."""

    def __init__(self, masks):
        self.draws, self.requests = iter(masks), []

    def masks(self, request):
        self.requests.append(request)
        return next(self.draws)


@pytest.fixture(scope="module")
def model():
    return kl.prunable(mlp(0))


def _masks(model, flipped=0, seed=0):
    """The model's kernels' masks, half kept, with `flipped` entries of the first flipped."""
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(v.shape) < 0.5 for k, v in kl.get_masks(model).items()}
    first = next(iter(masks))
    masks[first].reshape(-1)[:flipped] ^= True
    return masks


def _config(**values):
    return types.SimpleNamespace(**{**dict(eb_every=10, eb_threshold=0.1, eb_window=3,
                                           eb_stop=True), **values})


def _bird(model, draws, **config):
    return EarlyBird(model, _config(**config), Log(), Pruner(draws), request="round 1")


# Moved here from test_analyses.py (issue 21) ---------------------------------
def test_early_bird_in_the_driver_stops_and_prunes_there(tmp_path, fashion_small):
    config = tiny_config(tmp_path, rounds=1, steps=400, eval_every=100, eb_every=20,
                         eb_threshold=0.1, eb_stop=True)
    result = kl.find_ticket(config, fashion_small)
    dense = result.branch("ticket")[0]
    bird = dense["early_bird"]
    assert bird["stopped"] and bird["step"] is not None and bird["step"] < 400
    assert dense["history"][-1]["step"] == bird["step"]  # training stopped there
    assert len(bird["distances"]) == bird["step"] // 20
    assert bird["step"] >= 5 * 20  # a full window of five draws
    assert bird["distances"][0] == 1.0  # the first draw has no predecessor
    assert all(d < 0.1 for d in bird["distances"][-4:])
    weights = RunDir.load(result.run_dir).weights(0)
    assert weights.step == bird["step"]  # the weights the next round prunes
    acc = EventAccumulator(os.path.join(result.run_dir, "round_00"))
    acc.Reload()
    assert "early_bird/mask_distance" in acc.Tags()["tensors"]
    assert result.branch("ticket")[1]["percent_remaining"] == pytest.approx(80.04, abs=0.01)


@pytest.mark.slow  # about 1-2 minutes on two loaded cores
def test_early_bird_resumes_its_mask_window_after_an_interruption(tmp_path, fashion_small,
                                                                 monkeypatch):
    def config(name):
        return tiny_config(tmp_path / name, rounds=1, steps=400, eval_every=100,
                           checkpoint_every=100, eb_every=20, eb_threshold=0.1)

    clean = kl.find_ticket(config("clean"), fashion_small).branch("ticket")[0]["early_bird"]
    draw = early_bird.EarlyBird.draw

    def interrupted(self, step):
        if step == 260:  # after the checkpoint at step 200
            raise KeyboardInterrupt
        return draw(self, step)

    monkeypatch.setattr(early_bird.EarlyBird, "draw", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(config("resumed"), fashion_small)
    monkeypatch.undo()
    resumed = kl.find_ticket(config("resumed"), fashion_small).branch("ticket")[0]["early_bird"]
    assert len(resumed["distances"]) == 400 // 20 - 1
    assert resumed["distances"] == pytest.approx(clean["distances"], abs=1e-12)
    assert resumed["step"] == clean["step"]


# The detector --------------------------------------------------------------------
def test_masks_that_settle_stop_the_round_at_the_draw_completing_the_window(model):
    size = sum(m.size for m in kl.get_masks(model).values())
    draws = [_masks(model, seed=1), _masks(model), _masks(model, 10), _masks(model, 20),
             _masks(model, 30), _masks(model, 40)]
    bird = _bird(model, draws)
    assert [bird.draw(step) for step in (10, 20, 30, 40)] == [False, False, False, True]
    assert bird.step == 40 and bird.steps == [20, 30, 40] and len(bird.masks) == 3
    assert bird.distances[0] == 1.0  # the first draw has no predecessor
    assert bird.distances[1] == pytest.approx(kl.analysis.hamming(draws[1], draws[0]))
    assert bird.distances[2:] == pytest.approx([10 / size, 10 / size])
    assert bird.pruner.requests == ["round 1"] * 4  # every draw asks the run's pruner
    assert [bird.draw(step) for step in (50, 60)] == [False, False]  # found once
    assert bird.step == 40 and len(bird.distances) == 6
    tags = [(tag, step) for tag, _, step in bird.log.scalars]
    assert tags.count(("early_bird/step", 40)) == 1
    assert [s for tag, s in tags if tag == "early_bird/mask_distance"] == [10, 20, 30, 40, 50, 60]
    assert bird.summary() == {"step": 40, "stopped": True, "every": 10,
                              "distances": bird.distances}


def test_without_eb_stop_the_step_is_found_and_training_goes_on(model):
    bird = _bird(model, [_masks(model)] * 4, eb_stop=False, eb_window=2)
    assert [bird.draw(step) for step in (10, 20, 30)] == [False, False, False]
    assert bird.step == 20 and bird.summary()["stopped"] is False


def test_masks_that_keep_changing_never_settle(model):
    bird = _bird(model, [_masks(model, seed=s) for s in range(5)])
    assert not any(bird.draw(step) for step in range(10, 60, 10))
    assert bird.step is None and bird.summary()["stopped"] is False
    assert all(d > 0.3 for d in bird.distances)  # independent halves differ in ~50%


def test_a_restored_detector_goes_on_as_the_uninterrupted_one(model):
    draws = [_masks(model, seed=1), _masks(model), _masks(model, 10), _masks(model, 20)]
    clean = _bird(model, draws)
    assert [clean.draw(s) for s in (10, 20, 30, 40)] == [False, False, False, True]
    first = _bird(model, draws[:2])
    first.draw(10), first.draw(20)
    state = first.state()
    assert int(state["eb_step"]) == -1 and state["eb_steps"].tolist() == [10, 20]
    resumed = _bird(model, draws[2:])
    resumed.restore(state)
    assert [resumed.draw(s) for s in (30, 40)] == [False, True]
    assert (resumed.step, resumed.steps, resumed.distances) == (clean.step, clean.steps,
                                                                clean.distances)
    found = _bird(model, [])
    found.restore(resumed.state())
    assert found.step == 40 and found.summary() == resumed.summary()


def test_a_checkpoint_without_the_detector_leaves_it_fresh(model):
    bird = _bird(model, [])
    bird.restore({"some_other_array": np.zeros(2)})
    assert (bird.masks, bird.steps, bird.distances, bird.step) == ([], [], [], None)
