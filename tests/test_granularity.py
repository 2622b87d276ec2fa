"""Pruning granularity: weight, unit and n:m masks, their counts and patterns."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import assert_whole_units, conv_model, units_alive
from keras_lottery import mask_math
from keras_lottery.runner.presets import PresetConfig


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"fc1": rng.normal(size=(16, 12)), "conv": rng.normal(size=(3, 3, 8, 6)),
            "fc2": rng.normal(size=(12, 4)) * 0.5}


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_weight_granularity_is_the_scope_function(scope):
    w = _weights()
    new = mask_math.magnitude_masks(w, None, 0.3, scope=scope, granularity="weight")
    old = mask_math.SCOPES[scope](w, None, 0.3)
    assert all(np.array_equal(new[k], old[k]) for k in w)


def test_unit_layerwise_prunes_exact_unit_counts_by_norm_over_rounds():
    w = _weights()
    masks = None
    alive = {k: v.shape[-1] for k, v in w.items()}
    for _ in range(3):
        masks = mask_math.unit_masks(w, masks, 0.25, rates={"fc2": 0.5}, scope="layerwise")
        for k, v in masks.items():
            expected = alive[k] - int(round((0.5 if k == "fc2" else 0.25) * alive[k]))
            assert units_alive(v).sum() == expected, k
            assert_whole_units(v)
            alive[k] = expected
    # the kept units are those with the largest norms
    norms = np.linalg.norm(w["fc1"], axis=0)
    kept = units_alive(masks["fc1"])
    assert norms[kept].min() > norms[~kept].max()


def test_unit_global_pools_units_by_rms_and_breaks_ties_by_position():
    w = {"a": np.ones((4, 4)), "b": np.ones((9, 3))}  # all RMS 1: ties everywhere
    masks = mask_math.unit_masks(w, None, 0.43, scope="global")  # 3 of 7 units
    assert units_alive(masks["a"]).tolist() == [False, False, False, True]
    assert units_alive(masks["b"]).all()
    # RMS, not the norm: a wide-fan-in unit of small weights loses to a narrow big one
    w = {"wide": np.full((100, 2), 0.2), "narrow": np.full((2, 2), 0.5)}
    masks = mask_math.unit_masks(w, None, 0.25, scope="global")  # 1 of 4 units
    assert units_alive(masks["wide"]).tolist() == [False, True]
    assert units_alive(masks["narrow"]).all()


def test_n_m_pattern_holds_and_counts_are_exact():
    w = _weights(1)
    w = {k: v for k, v in w.items() if v.shape[-2] % 4 == 0}
    total = sum(v.size for v in w.values())
    masks = mask_math.magnitude_masks(w, None, 0.2, scope="global", granularity="2:4")
    # the pattern forces 50% (> 20%): exactly half is left
    assert sum(int(m.sum()) for m in masks.values()) == total // 2
    for _ in range(2):  # later rounds prune 20% of the remaining, pattern kept
        before = sum(int(m.sum()) for m in masks.values())
        masks = mask_math.magnitude_masks(w, masks, 0.2, scope="global", granularity="2:4")
        assert sum(int(m.sum()) for m in masks.values()) == before - round(0.2 * before)
    for name, mask in masks.items():
        groups = np.moveaxis(mask, -2, -1).reshape(-1, 4)
        assert groups.sum(axis=1).max() <= 2, name
    # in each group the pattern keeps the 2 largest magnitudes
    first = mask_math.magnitude_masks(w, None, 0.0, granularity="2:4")["fc1"]
    mags = np.abs(w["fc1"]).T.reshape(-1, 4)
    kept = first.T.reshape(-1, 4)
    assert np.all(np.sort(np.where(kept, mags, -1), axis=1)[:, 2:] == np.sort(mags, axis=1)[:, 2:])


def test_n_m_layerwise_rates_and_one_of_four():
    w = {"fc1": np.random.default_rng(0).normal(size=(8, 5))}
    masks = mask_math.magnitude_masks(w, None, 0.9, scope="layerwise", granularity="1:4")
    assert masks["fc1"].sum() == 40 - 36  # 90% asked, more than the pattern's 75%
    assert masks["fc1"].T.reshape(-1, 4).sum(axis=1).max() <= 1


def test_granularity_errors_name_the_value():
    w = {"fc1": np.ones((6, 2))}
    with pytest.raises(ValueError, match=r"multiple of 4.*'fc1' of shape \(6, 2\)"):
        mask_math.magnitude_masks(w, None, 0.2, granularity="2:4")
    for bad in ("4:2", "0:4", "block", "2:"):
        with pytest.raises(ValueError, match=f"Received: granularity='{bad}'"):
            mask_math.magnitude_masks(w, None, 0.2, granularity=bad)
    with pytest.raises(ValueError, match="scope must be one of"):
        mask_math.magnitude_masks(w, None, 0.2, scope="pooled", granularity="unit")


def test_structured_permutations_keep_the_structure():
    w = _weights()
    units = mask_math.unit_masks(w, None, 0.5)
    shuffled = mask_math.permuted_masks(units, seed=3, granularity="unit")
    for k in w:
        assert_whole_units(shuffled[k])
        assert shuffled[k].sum() == units[k].sum()
    assert any(not np.array_equal(shuffled[k], units[k]) for k in w)
    nm = mask_math.magnitude_masks({"fc1": w["fc1"]}, None, 0.0, granularity="2:4")
    shuffled = mask_math.permuted_masks(nm, seed=3, granularity="2:4")["fc1"]
    assert shuffled.T.reshape(-1, 4).sum(axis=1).max() <= 2
    assert shuffled.sum() == nm["fc1"].sum() and not np.array_equal(shuffled, nm["fc1"])


def test_prune_by_magnitude_unit_refuses_output_units_and_other_layers():
    model = conv_model()
    with pytest.raises(ValueError, match=r"cannot remove units of 'out'.*ignore=\['out'\]"):
        kl.prune_by_magnitude(model, 0.5, granularity="unit")
    masks = kl.prune_by_magnitude(model, 0.5, scope="layerwise", granularity="unit",
                                  rates={"out": 0.0})
    assert units_alive(masks["conv/kernel"]).sum() == 4
    assert units_alive(masks["fc/kernel"]).sum() == 8
    assert masks["out/kernel"].all()
    x = keras.Input((8,))
    other = kl.prunable(keras.Model(x, keras.layers.Dense(2, name="d")(
        keras.layers.Flatten()(keras.layers.Embedding(10, 4, name="emb")(x)))))
    with pytest.raises(ValueError, match="layer 'emb' is a Embedding"):
        kl.prune_by_magnitude(other, 0.5, granularity="2:4", ignore=["d"])


def test_config_granularity_default_keeps_hash_and_validates():
    base = PresetConfig.from_preset("lenet300", steps=2000)
    assert "granularity" not in base.identity()
    unit = PresetConfig.from_preset("lenet300", granularity="unit", rates={"output": 0})
    assert unit.run_hash() != PresetConfig.from_preset("lenet300", rates={"output": 0}).run_hash()
    with pytest.raises(ValueError, match="cannot remove units of the output layer"):
        PresetConfig.from_preset("lenet300", granularity="unit")
    with pytest.raises(ValueError, match="Received: granularity='3:2'"):
        PresetConfig.from_preset("lenet300", granularity="3:2")
    PresetConfig.from_preset("lenet300", granularity="2:4")
