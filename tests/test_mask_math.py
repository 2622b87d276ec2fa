"""The pure mask math of keras_lottery.mask_math."""

import numpy as np
import pytest

from keras_lottery import mask_math as mm


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "fc1": rng.normal(size=(784, 300)).astype("float32"),
        "fc2": rng.normal(size=(300, 100)).astype("float32"),
        "out": rng.normal(size=(100, 10)).astype("float32"),
    }


def _kept(masks):
    return {k: int(v.sum()) for k, v in masks.items()}


def test_global_prunes_exact_count_with_one_threshold():
    w = _weights()
    total = sum(v.size for v in w.values())
    masks = mm.global_magnitude_masks(w, None, 0.2)
    assert sum(_kept(masks).values()) == total - round(0.2 * total)
    kept = np.concatenate([np.abs(w[k][masks[k]]) for k in w])
    pruned = np.concatenate([np.abs(w[k][~masks[k]]) for k in w])
    assert pruned.max() <= kept.min()


def test_layerwise_prunes_exact_count_per_layer():
    w = _weights()
    masks = mm.layerwise_magnitude_masks(w, None, 0.2, rates={"out": 0.1})
    assert _kept(masks) == {"fc1": 188160, "fc2": 24000, "out": 900}
    for k in w:
        assert np.abs(w[k][~masks[k]]).max() <= np.abs(w[k][masks[k]]).min()


def test_global_and_layerwise_differ_on_unequal_scales():
    w = _weights()
    w["fc2"] = w["fc2"] * 10  # a layer of large weights keeps more under one threshold
    g = mm.global_magnitude_masks(w, None, 0.5)
    lw = mm.layerwise_magnitude_masks(w, None, 0.5)
    assert _kept(lw)["fc2"] == 15000
    assert _kept(g)["fc2"] > 27000  # vs 15000 layer-wise
    assert sum(_kept(g).values()) == sum(_kept(lw).values())


def test_global_with_rates_prunes_named_layer_at_its_rate():
    w = _weights()
    masks = mm.global_magnitude_masks(w, None, 0.2, rates={"out": 0.1})
    assert _kept(masks)["out"] == 900
    pooled = w["fc1"].size + w["fc2"].size
    assert _kept(masks)["fc1"] + _kept(masks)["fc2"] == pooled - round(0.2 * pooled)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_iterative_rounds_compound_on_remaining_weights(scope):
    w = _weights()
    prune = mm.global_magnitude_masks if scope == "global" else mm.layerwise_magnitude_masks
    masks = None
    for _ in range(3):
        masks = prune(w, masks, 0.2)
    total = sum(v.size for v in w.values())
    kept = sum(_kept(masks).values())
    assert abs(kept / total - 0.8**3) <= len(w) / total  # ± one weight per layer


def test_masks_only_shrink_and_pruned_weights_stay_pruned():
    w = _weights()
    first = mm.global_magnitude_masks(w, None, 0.3)
    w2 = {k: v + 5.0 for k, v in w.items()}  # pruned weights now have large values
    second = mm.global_magnitude_masks(w2, first, 0.3)
    for k in w:
        assert not np.any(second[k] & ~first[k])


def test_ties_are_broken_by_position_and_count_is_exact():
    w = {"a": np.zeros(10), "b": np.zeros(5)}
    masks = mm.global_magnitude_masks(w, None, 0.4)
    assert masks["a"].tolist() == [False] * 6 + [True] * 4
    assert masks["b"].all()
    again = mm.global_magnitude_masks(w, None, 0.4)
    assert all(np.array_equal(masks[k], again[k]) for k in w)


def test_ties_with_existing_masks():
    w = {"a": np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0])}
    masks = mm.layerwise_magnitude_masks(w, {"a": np.array([0, 1, 1, 1, 1, 1])}, 0.4)
    assert masks["a"].tolist() == [False, False, False, True, True, True]


def test_float64_and_float16_weights():
    rng = np.random.default_rng(1)
    for dtype in ("float64", "float16"):
        w = {"a": rng.normal(size=1000).astype(dtype)}
        assert _kept(mm.global_magnitude_masks(w, None, 0.25))["a"] == 750


def test_large_kernel_crosses_chunks(monkeypatch):
    monkeypatch.setattr(mm, "_CHUNK", 1000)
    w = {"a": np.round(np.random.default_rng(2).normal(size=25_000), 1)}  # many ties
    masks = mm.global_magnitude_masks(w, None, 0.37)
    assert _kept(masks)["a"] == 25_000 - round(0.37 * 25_000)
    assert np.abs(w["a"][~masks["a"]]).max() <= np.abs(w["a"][masks["a"]]).min()


def test_fraction_zero_changes_nothing():
    w = _weights()
    start = mm.layerwise_magnitude_masks(w, None, 0.5)
    assert all(np.array_equal(start[k], v) for k, v in mm.global_magnitude_masks(w, start, 0.0).items())


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "0.2", None])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\). Received: fraction="):
        mm.global_magnitude_masks(_weights(), None, fraction)


def test_bad_rates():
    with pytest.raises(ValueError, match=r"rates names kernels .*\['nope'\].*Accepted names: \['fc1', 'fc2', 'out'\]"):
        mm.layerwise_magnitude_masks(_weights(), None, 0.2, rates={"nope": 0.1})
    with pytest.raises(ValueError, match=r"rates\['out'\] must be a number in \[0, 1\)"):
        mm.layerwise_magnitude_masks(_weights(), None, 0.2, rates={"out": 2})


def test_bad_mask_shape_and_names():
    w = _weights()
    with pytest.raises(ValueError, match=r"mask 'out' has shape \(10, 100\).*kernel has shape \(100, 10\)"):
        mm.global_magnitude_masks(w, {**{k: np.ones(v.shape) for k, v in w.items()}, "out": np.ones((10, 100))}, 0.2)
    with pytest.raises(ValueError, match="same names"):
        mm.global_magnitude_masks(w, {"fc1": np.ones((784, 300))}, 0.2)


def test_emptying_a_layer_is_an_error_not_nan():
    w = {"big": np.ones(100) * 5, "tiny": np.array([0.1, 0.2])}
    with pytest.raises(ValueError, match=r"remove every weight of \['tiny'\]"):
        mm.global_magnitude_masks(w, None, 0.05)


def test_non_finite_weights_are_an_error():
    with pytest.raises(ValueError, match="NaN or infinity"):
        mm.global_magnitude_masks({"a": np.array([1.0, np.inf, 0.5])}, None, 0.3)


def test_random_masks_count_seed_and_only_shrink():
    start = {"a": np.ones((50, 20)), "b": np.ones(300)}
    m1 = mm.random_masks(start, 0.2, seed=3)
    assert _kept(m1) == {"a": 800, "b": 240}
    assert all(np.array_equal(m1[k], mm.random_masks(start, 0.2, seed=3)[k]) for k in start)
    assert not np.array_equal(m1["a"], mm.random_masks(start, 0.2, seed=4)["a"])
    m2 = mm.random_masks(m1, 0.5, seed=3)
    assert _kept(m2) == {"a": 400, "b": 120}
    assert not np.any(m2["a"] & ~m1["a"])


def test_permuted_masks_keep_per_layer_counts():
    ticket = mm.layerwise_magnitude_masks(_weights(), None, 0.6, rates={"out": 0.3})
    shuffled = mm.permuted_masks(ticket, seed=0)
    assert _kept(shuffled) == _kept(ticket)
    assert mm.mask_overlap(shuffled, ticket) < 0.7


def test_mask_overlap():
    a = {"x": np.array([1, 0, 1, 1])}
    assert mm.mask_overlap(a, a) == 1.0
    assert mm.mask_overlap(a, {"x": np.array([0, 1, 0, 0])}) == 0.0
