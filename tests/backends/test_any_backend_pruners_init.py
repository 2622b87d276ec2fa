"""Pruning at initialization on the current Keras backend (run under jax, torch and tensorflow):
SNIP, GraSP, SynFlow, random and magnitude at θ0, against NumPy hand computations and on
real data (scikit-learn's digits)."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from helpers import digits, mlp
from keras_lottery import mask_math, pruners
from keras_lottery.masking import masks_of
from keras_lottery.pruners import AT_INIT, DATA_FREE, GRADIENTS, PruneRequest, masks_from_scores
from keras_lottery.pruning import get_kernels, get_masks, set_masks

(X, Y), _, _ = digits()
LOGITS_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
METHODS = {"snip": {}, "grasp": {}, "synflow": {"iterations": 10}, "random": {},
           "magnitude_init": {}}


def digit_batches(n, size=64, offset=0):
    return [(X[offset + i * size:offset + (i + 1) * size],
             Y[offset + i * size:offset + (i + 1) * size]) for i in range(n)]


def request(model, fraction, **kwargs):
    kwargs.setdefault("batches", digit_batches)
    kwargs.setdefault("loss", LOGITS_LOSS)
    return PruneRequest(model, fraction, **kwargs)


def own_weights(model):
    """The model's weights, its masks left out."""
    masks = masks_of(model)
    return [v for v in model.weights if id(v) not in masks]


def pruned_counts(masks):
    return {k: int(np.size(m) - np.count_nonzero(m)) for k, m in masks.items()}


def test_the_methods_are_registered_at_init_with_what_they_need():
    for name in METHODS:
        assert pruners.PRUNERS[name].when == AT_INIT
    assert pruners.PRUNERS["snip"].needs == (GRADIENTS,)
    assert pruners.PRUNERS["grasp"].needs == (GRADIENTS,)
    assert pruners.PRUNERS["synflow"].needs == (DATA_FREE,)
    assert pruners.get("synflow").options.iterations == 100
    assert pruners.get("snip").options.batches == 1
    with pytest.raises(ValueError, match="iterations"):
        pruners.get("synflow", {"iterations": 0})
    with pytest.raises(ValueError, match="batches"):
        pruners.get("snip", {"batches": 0})


# Exact targets ------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_reaches_the_target_exactly_and_set_masks_zeroes_the_pruned(name, scope):
    model = kl.prunable(mlp(0))
    before = get_kernels(model)
    masks = pruners.get(name, METHODS[name]).masks(request(model, 0.9, scope=scope))
    sizes = {k: v.size for k, v in before.items()}
    assert sizes == {"fc1/kernel": 2048, "fc2/kernel": 512, "output/kernel": 160}
    if scope == "global":
        assert sum(pruned_counts(masks).values()) == round(0.9 * 2720) == 2448
    else:
        assert pruned_counts(masks) == {k: round(0.9 * n) for k, n in sizes.items()}
    # The scoring left the weights as they were; set_masks zeroes exactly the pruned ones.
    assert all(np.array_equal(before[k], v) for k, v in get_kernels(model).items())
    set_masks(model, masks)
    after = get_kernels(model)
    for key, mask in masks.items():
        assert np.all(after[key][~mask] == 0.0)
        np.testing.assert_array_equal(after[key][mask], before[key][mask])
    assert pruned_counts(get_masks(model)) == pruned_counts(masks)
    x = X[:8]
    expected = x
    for key in ["fc1/kernel", "fc2/kernel", "output/kernel"]:
        layer = model.get_layer(key.split("/")[0])
        expected = expected @ (before[key] * masks[key]) + keras.ops.convert_to_numpy(layer.bias)
        if key != "output/kernel":
            expected = np.maximum(expected, 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_prunes_a_kernel_of_its_own_rate_alone_and_only_shrinks_masks(name):
    model = kl.prunable(mlp(1))
    first = mask_math.random_masks(get_masks(model), 0.5, seed=3)
    set_masks(model, first)
    masks = pruners.get(name, METHODS[name]).masks(
        request(model, 0.8, rates={"output/kernel": 0.4}))
    alive = {k: int(np.count_nonzero(v)) for k, v in first.items()}
    kept = {k: int(np.count_nonzero(v)) for k, v in masks.items()}
    assert kept["output/kernel"] == alive["output/kernel"] - round(0.4 * alive["output/kernel"])
    pool = alive["fc1/kernel"] + alive["fc2/kernel"]
    assert kept["fc1/kernel"] + kept["fc2/kernel"] == pool - round(0.8 * pool)
    assert all(not np.any(masks[k] & ~first[k]) for k in masks)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_prunes_whole_units_or_to_the_n_m_pattern(name):
    model = kl.prunable(mlp(0))
    pruner = pruners.get(name, METHODS[name])
    units = pruner.masks(request(model, 0.5, scope="layerwise", granularity="unit"))
    for key, mask in units.items():
        alive = mask.any(axis=0)
        assert np.array_equal(mask, np.broadcast_to(alive, mask.shape))
        assert int((~alive).sum()) == round(0.5 * mask.shape[-1])
    pattern = pruner.masks(request(model, 0.6, granularity="2:4"))
    assert sum(pruned_counts(pattern).values()) == round(0.6 * 2720)
    for key, mask in pattern.items():
        assert (mask.reshape(-1, 4, mask.shape[-1]).sum(axis=1) <= 2).all()


@pytest.mark.parametrize("name", ["snip", "grasp"])
def test_the_gradient_methods_say_clearly_that_they_need_batches_and_the_loss(name):
    model = kl.prunable(mlp(0))
    for missing in ({"batches": None}, {"loss": None}):
        with pytest.raises(ValueError, match=f"{name}.*batches.*loss"):
            pruners.get(name).masks(request(model, 0.5, **missing))


# SNIP and GraSP against hand computations -----------------------------------------------------
def _linear_chain(seed=0):
    """x (3) -> a (4, no bias) -> b (2, no bias): f = x W1 W2, set weights."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, use_bias=False, name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, use_bias=False, name="b")(h))
    w1, w2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    model.set_weights([w1.astype("float32"), w2.astype("float32")])
    data = [(rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 2)).astype("float32"))
            for _ in range(2)]
    return kl.prunable(model), w1.astype("float32").astype(np.float64), \
        w2.astype("float32").astype(np.float64), data


def _mse_gradient(w1, w2, x, y):
    """Keras' MSE (mean over outputs and batch) of x W1 W2 against y: dL/dW1, dL/dW2."""
    c = 2.0 / y.size
    e = x @ w1 @ w2 - y
    return c * x.T @ e @ w2.T, c * (x @ w1).T @ e


def _mse_hvp(w1, w2, x, y, v1, v2):
    """The Hessian of that MSE in (W1, W2) times (V1, V2), cross-layer blocks included."""
    c = 2.0 / y.size
    e = x @ w1 @ w2 - y
    de = x @ v1 @ w2 + x @ w1 @ v2
    return c * (x.T @ de @ w2.T + x.T @ e @ v2.T), c * ((x @ v1).T @ e + (x @ w1).T @ de)


@pytest.mark.parametrize("n", [1, 2])
def test_snip_scores_are_gradient_times_weight_by_hand(n):
    model, w1, w2, data = _linear_chain()
    grads = [_mse_gradient(w1, w2, x, y) for x, y in data[:n]]
    g1, g2 = (np.mean([g[i] for g in grads], axis=0) for i in range(2))
    req = request(model, 0.5, batches=lambda k: data[:k], loss=keras.losses.MeanSquaredError())
    snip = pruners.get("snip", {"batches": n})
    scores = snip.scores(req)
    np.testing.assert_allclose(scores["a/kernel"], np.abs(g1 * w1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores["b/kernel"], np.abs(g2 * w2), rtol=1e-4, atol=1e-6)
    hand = masks_from_scores({"a/kernel": np.abs(g1 * w1), "b/kernel": np.abs(g2 * w2)}, req)
    masks = snip.masks(req)
    assert all(np.array_equal(masks[k], hand[k]) for k in hand)


@pytest.mark.parametrize("n", [1, 2])
def test_grasp_scores_are_weight_times_hessian_gradient_product_by_hand(n):
    model, w1, w2, data = _linear_chain(1)
    grads = [_mse_gradient(w1, w2, x, y) for x, y in data[:n]]
    g1, g2 = (np.mean([g[i] for g in grads], axis=0) for i in range(2))
    products = [_mse_hvp(w1, w2, x, y, g1, g2) for x, y in data[:n]]
    hg1, hg2 = (np.mean([p[i] for p in products], axis=0) for i in range(2))
    req = request(model, 0.5, batches=lambda k: data[:k], loss=keras.losses.MeanSquaredError())
    grasp = pruners.get("grasp", {"batches": n, "temperature": 1})
    scores = grasp.scores(req)
    # Larger = kept is -S = w ⊙ Hg: the paper removes the highest S = -w ⊙ Hg.
    for key, expected in [("a/kernel", w1 * hg1), ("b/kernel", w2 * hg2)]:
        np.testing.assert_allclose(scores[key], expected, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())
    hand = {"a/kernel": w1 * hg1, "b/kernel": w2 * hg2}
    masks = grasp.masks(req)
    assert all(np.array_equal(masks[k], masks_from_scores(hand, req)[k]) for k in hand)
    # The signed scores are ranked as they are: the largest w ⊙ Hg is kept, the lowest pruned.
    flat = np.concatenate([hand["a/kernel"].ravel(), hand["b/kernel"].ravel()])
    kept = np.concatenate([masks["a/kernel"].ravel(), masks["b/kernel"].ravel()])
    assert kept[np.argmax(flat)] and not kept[np.argmin(flat)]
    assert flat.min() < 0 < flat.max()


def test_grasp_divides_the_logits_by_its_temperature_softmax_cross_entropy_by_hand():
    rng = np.random.default_rng(2)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(inputs))
    w, b = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=3).astype("float32")
    model.set_weights([w, b])
    model = kl.prunable(model)
    x, y = rng.normal(size=(8, 5)).astype("float32"), rng.integers(0, 3, 8)
    w, b = w.astype(np.float64), b.astype(np.float64)
    for temperature in (200.0, 2.0):
        t, n = temperature, len(y)

        def softmax(z):
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        p = softmax((x @ w + b) / t)
        g = x.T @ (p - np.eye(3)[y]) / (n * t)
        dz = x @ g / t
        hg = x.T @ (p * dz - p * (p * dz).sum(axis=1, keepdims=True)) / (n * t)
        req = request(model, 0.5, batches=lambda k: [(x, y)])
        options = {} if temperature == 200 else {"temperature": temperature}
        scores = pruners.get("grasp", options).scores(req)
        np.testing.assert_allclose(scores["out/kernel"], w * hg, rtol=2e-3,
                                   atol=1e-4 * np.abs(w * hg).max())


# SynFlow ------------------------------------------------------------------------------------
def _relu_chain(seed=0, sizes=(3, 4, 2)):
    """x (3) -> a (4, relu, bias) -> b (2, bias), signed weights and biases."""
    rng = np.random.default_rng(seed)
    i, h, o = sizes
    inputs = keras.Input((i,))
    hidden = keras.layers.Dense(h, activation="relu", name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(o, name="b")(hidden))
    values = [rng.normal(size=s).astype("float32") for s in [(i, h), (h,), (h, o), (o,)]]
    model.set_weights(values)
    return kl.prunable(model), [v.astype(np.float64) for v in values]


def _synflow_by_hand(values, masks):
    """|θ ⊙ dR/dθ| for R = 1ᵀ (|W2|ᵀ relu(|W1|ᵀ 1 + |b1|) + |b2|), kernels masked."""
    w1, b1, w2, b2 = (np.abs(v) for v in values)
    w1, w2 = w1 * masks["a/kernel"], w2 * masks["b/kernel"]
    h = w1.sum(axis=0) + b1  # positive: the relu passes it
    return {"a/kernel": w1 * w2.sum(axis=1)[None, :], "b/kernel": w2 * h[:, None]}


def test_synflow_scores_equal_the_hand_computation_and_the_weights_come_back_signed():
    model, values = _relu_chain()
    expected_out = keras.ops.convert_to_numpy(model(X[:4, :3]))
    req = PruneRequest(model, 0.5)
    scores = pruners.get("synflow").scores(req)
    ones = {"a/kernel": np.ones((3, 4), bool), "b/kernel": np.ones((4, 2), bool)}
    hand = _synflow_by_hand(values, ones)
    for key in hand:
        np.testing.assert_allclose(scores[key], hand[key], rtol=1e-5)
    masks = pruners.get("synflow", {"iterations": 1}).masks(req)
    assert all(np.array_equal(masks[k], masks_from_scores(hand, req)[k]) for k in hand)
    for variable, value in zip(own_weights(model), values, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(X[:4, :3])), expected_out)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_synflow_prunes_iteratively_on_the_exponential_schedule_by_hand(scope):
    model, values = _relu_chain(1, (6, 10, 4))
    n, fraction = 4, 0.9
    start = {"a/kernel": np.ones((6, 10), bool), "b/kernel": np.ones((10, 4), bool)}
    current = start
    for k in range(1, n + 1):
        scores = {key: np.where(current[key], s, -1.0)
                  for key, s in _synflow_by_hand(values, current).items()}
        share = fraction if k == n else 1 - (1 - fraction) ** (k / n)
        current = mask_math.magnitude_masks(pruners.ranks(scores), start, share, scope=scope)
    masks = pruners.get("synflow", {"iterations": n}).masks(
        PruneRequest(model, fraction, scope=scope))
    assert all(np.array_equal(masks[k], current[k]) for k in current)
    assert sum(int(m.size - m.sum()) for m in masks.values()) == round(0.9 * 100)
    one_shot = pruners.get("synflow", {"iterations": 1}).masks(
        PruneRequest(model, fraction, scope=scope))
    assert sum(int(m.sum()) for m in one_shot.values()) == sum(int(m.sum()) for m in masks.values())
    assert not all(np.array_equal(masks[k], one_shot[k]) for k in masks)  # iterating matters


def test_synflow_is_data_free_its_masks_do_not_depend_on_any_batch():
    def masks_with(**kwargs):
        model = kl.prunable(mlp(2))
        return pruners.get("synflow", {"iterations": 5}).masks(PruneRequest(model, 0.9, **kwargs))

    def refuse(n):
        raise AssertionError("SynFlow asked for data")

    rng = np.random.default_rng(0)
    noise = [(rng.normal(size=(64, 64)).astype("float32"), rng.integers(0, 10, 64))]
    reference = masks_with()
    for kwargs in ({"batches": refuse, "loss": LOGITS_LOSS},
                   {"batches": lambda n: digit_batches(n), "loss": LOGITS_LOSS},
                   {"batches": lambda n: noise, "loss": keras.losses.MeanSquaredError()}):
        other = masks_with(**kwargs)
        assert all(np.array_equal(reference[k], other[k]) for k in reference)


def test_synflow_runs_batchnorm_on_its_moving_statistics_in_inference_mode():
    rng = np.random.default_rng(3)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, name="a")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="b")(h))
    bn = model.get_layer("bn")
    values = {"a": [rng.normal(size=(3, 4)), rng.normal(size=4)],
              "bn": [rng.normal(size=4), rng.normal(size=4), rng.normal(size=4) * 3,
                     rng.uniform(0.5, 2, size=4)],  # gamma, beta, moving mean, variance
              "b": [rng.normal(size=(4, 2)), rng.normal(size=2)]}
    for name, arrays in values.items():
        model.get_layer(name).set_weights([a.astype("float32") for a in arrays])
    model = kl.prunable(model)
    saved = [keras.ops.convert_to_numpy(v) for v in own_weights(model)]
    scores = pruners.get("synflow").scores(PruneRequest(model, 0.5))
    (w1, b1), (gamma, beta, mean, var), (w2, _) = (
        [np.abs(a.astype("float32").astype(np.float64)) for a in values[n]]
        for n in ("a", "bn", "b"))
    scale = gamma / np.sqrt(var + bn.epsilon)
    z = (w1.sum(axis=0) + b1 - mean) * scale + beta  # |mean|: some units go negative
    assert (z < 0).any() and (z > 0).any()
    a = np.maximum(z, 0)
    hand = {"a/kernel": w1 * (w2.sum(axis=1) * (z > 0) * scale)[None, :],
            "b/kernel": w2 * a[:, None]}
    for key in hand:
        np.testing.assert_allclose(scores[key], hand[key], rtol=1e-4, atol=1e-6)
    pruners.get("synflow", {"iterations": 3}).masks(PruneRequest(model, 0.5))
    # The moving statistics are untouched.
    for variable, value in zip(own_weights(model), saved, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_synflow_refuses_an_overflowing_flow_and_restores_the_weights():
    inputs = keras.Input((8,))
    h = inputs
    for i in range(3):
        h = keras.layers.Dense(8, use_bias=False, name=f"d{i}")(h)
    model = keras.Model(inputs, h)
    signs = np.where(np.arange(64).reshape(8, 8) % 2, 1.0, -1.0).astype("float32")
    model.set_weights([1e15 * signs] * 3)  # R = 8 * (8e15)^3 > float32's 3.4e38
    model = kl.prunable(model)
    with pytest.raises(ValueError, match="overflowed.*float64"):
        pruners.get("synflow", {"iterations": 2}).masks(PruneRequest(model, 0.5))
    for variable in own_weights(model):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), 1e15 * signs)


def test_synflow_takes_an_input_shape_for_a_subclassed_model():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fc = keras.layers.Dense(6, activation="relu", name="fc")
            self.out = keras.layers.Dense(3, name="out")

        def call(self, x):
            return self.out(self.fc(x))

    keras.utils.set_random_seed(0)
    net = Net()
    net(np.zeros((2, 5), "float32"))
    model = kl.prunable(net)
    derived = pruners.get("synflow", {"iterations": 2}).masks(PruneRequest(model, 0.5))
    given = pruners.get("synflow", {"iterations": 2, "input_shape": [5]}).masks(
        PruneRequest(model, 0.5))
    assert all(np.array_equal(derived[k], given[k]) for k in given)
    assert sum(int(m.size - m.sum()) for m in given.values()) == round(0.5 * (30 + 18))


# Random and magnitude at θ0 -----------------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_random_pruning_is_seeded(scope):
    model = kl.prunable(mlp(0))
    random = pruners.get("random")
    a = random.masks(PruneRequest(model, 0.7, scope=scope, seed=5))
    b = random.masks(PruneRequest(model, 0.7, scope=scope, seed=5))
    c = random.masks(PruneRequest(model, 0.7, scope=scope, seed=6))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    # Independent of the weights: another initialization, the same draw.
    d = random.masks(PruneRequest(kl.prunable(mlp(4)), 0.7, scope=scope, seed=5))
    assert all(np.array_equal(a[k], d[k]) for k in a)
    # Uniform: about 70% of each kernel either way.
    for key, mask in a.items():
        assert abs((1 - mask.mean()) - 0.7) < (0.002 if scope == "layerwise" else 0.08)


def test_random_pruning_draws_whole_units():
    model = kl.prunable(mlp(0))
    masks = pruners.get("random").masks(
        PruneRequest(model, 0.5, scope="layerwise", granularity="unit", seed=1))
    for key, mask in masks.items():
        units = mask.any(axis=0)
        assert np.array_equal(mask, np.broadcast_to(units, mask.shape))
        assert int((~units).sum()) == round(0.5 * mask.shape[-1])


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_magnitude_init_keeps_the_largest_weights_of_theta0(scope):
    model = kl.prunable(mlp(3))
    kernels = get_kernels(model)
    masks = pruners.get("magnitude_init").masks(PruneRequest(model, 0.8, scope=scope))
    groups = [list(kernels)] if scope == "global" else [[k] for k in kernels]
    for keys in groups:
        kept = np.concatenate([np.abs(kernels[k][masks[k]]) for k in keys])
        pruned = np.concatenate([np.abs(kernels[k][~masks[k]]) for k in keys])
        assert kept.min() >= pruned.max()
    same = pruners.get("magnitude").masks(PruneRequest(model, 0.8, scope=scope))
    assert all(np.array_equal(masks[k], same[k]) for k in masks)


# Real data ------------------------------------------------------------------------------------
def test_on_digits_to_ten_percent_the_scored_masks_differ_from_random_pruning():
    masks = {}
    for name in ["random", "snip", "grasp", "synflow", "magnitude_init"]:
        model = kl.prunable(mlp(0))
        options = {"batches": 2} if name in ("snip", "grasp") else {}
        masks[name] = pruners.get(name, options).masks(request(model, 0.9))
        assert sum(pruned_counts(masks[name]).values()) == 2448
    keys = list(masks["random"])

    def kept_overlap(a, b):  # share of b's kept weights that a keeps too
        both = sum(int(np.count_nonzero(a[k] & b[k])) for k in keys)
        return both / sum(int(np.count_nonzero(b[k])) for k in keys)

    for name in ["snip", "grasp", "synflow"]:
        # Chance agreement with an independent random mask is ~10% of the kept weights.
        assert kept_overlap(masks[name], masks["random"]) < 0.3, name
        assert not all(np.array_equal(masks[name][k], masks["random"][k]) for k in keys)
    # The scores see the data: no weight of a pixel blank in every batch scored (a gradient of
    # zero) is kept by SNIP or GraSP; random pruning keeps some.
    blank = (X[:128] == 0).all(axis=0)
    assert blank.sum() >= 3
    for name in ["snip", "grasp"]:
        assert masks[name]["fc1/kernel"][blank].sum() == 0, name
    assert masks["random"]["fc1/kernel"][blank].sum() > 0
    # SynFlow keeps every layer alive (no layer collapse) and keeps more of the narrow output
    # layer than random's 10%.
    synflow = {k: float(v.mean()) for k, v in masks["synflow"].items()}
    assert all(d > 0 for d in synflow.values())
    assert synflow["output/kernel"] > 0.2


@pytest.mark.parametrize("name", ["snip", "grasp"])
def test_the_gradient_methods_score_in_training_mode_on_request_and_keep_the_moving_statistics(
        name):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(16, name="fc")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu")(h)
    model = kl.prunable(keras.Model(inputs, keras.layers.Dense(10, name="out")(h)))
    saved = [keras.ops.convert_to_numpy(v) for v in own_weights(model)]
    req = request(model, 0.5)
    inference = pruners.get(name).scores(req)
    training = pruners.get(name, {"training": True}).scores(req)
    # Batch statistics normalize differently from θ0's moving ones (mean 0, variance 1).
    assert not np.allclose(inference["fc/kernel"], training["fc/kernel"], rtol=1e-2)
    for variable, value in zip(own_weights(model), saved, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    with pytest.raises(ValueError, match="training"):
        pruners.get(name, {"training": 1})


def test_synflow_runs_in_float64_for_a_model_built_in_float64():
    if keras.backend.backend() != "tensorflow":
        # Keras 3.15's result_type maps 64-bit to 32-bit dtypes (JAX's default), so torch's
        # matmul returns float32 and JAX computes float64 only under jax_enable_x64.
        pytest.skip("a float64 model computes in float32 on this backend under Keras 3.15; "
                    "the float32 overflow test covers it (the TensorFlow suite runs this)")
    inputs = keras.Input((8,), dtype="float64")
    h = inputs
    for i in range(3):
        h = keras.layers.Dense(8, use_bias=False, name=f"d{i}", dtype="float64")(h)
    model = keras.Model(inputs, h)
    rng = np.random.default_rng(5)
    kernels = [1e15 * rng.normal(size=(8, 8)) for _ in range(3)]  # R ~ 1e48: past float32
    model.set_weights(kernels)
    model = kl.prunable(model)
    scores = pruners.get("synflow").scores(PruneRequest(model, 0.5))
    w = [np.abs(k) for k in kernels]
    forward = [np.ones(8)]
    for k in w:
        forward.append(forward[-1] @ k)
    backward = [np.ones(8)]
    for k in reversed(w):
        backward.insert(0, k @ backward[0])
    assert forward[-1].sum() > 1e40
    for i, k in enumerate(w):
        np.testing.assert_allclose(scores[f"d{i}/kernel"],
                                   k * np.outer(forward[i], backward[i + 1]), rtol=1e-9)
    masks = pruners.get("synflow", {"iterations": 4}).masks(PruneRequest(model, 0.5))
    assert sum(int(m.size - m.sum()) for m in masks.values()) == 96


def test_a_kernel_scored_zero_everywhere_is_named_as_layer_collapse():
    model = kl.prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                                          keras.layers.Dense(2, name="b")]))
    scores = {k: np.zeros(m.shape) if k.startswith("a") else np.ones(m.shape)
              for k, m in get_masks(model).items()}
    with pytest.raises(mask_math.EmptiedKernelError,
                       match=r"every weight of \['a/kernel'\].*layer collapse.*The scores of "
                             r"\['a/kernel'\] are about 0.*scope='layerwise'"):
        masks_from_scores(scores, request(model, 0.7))
    kept = masks_from_scores(scores, request(model, 0.7, scope="layerwise"))
    assert kept["a/kernel"].sum() == 4 and kept["b/kernel"].sum() == 2


def test_synflow_gives_attention_queries_and_keys_no_flow():
    # Its all-ones input makes every token alike: attention is uniform
    # whatever the queries and keys, so no synaptic flow goes through them.
    inputs = keras.Input((6, 4))
    attended = keras.layers.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(attended))
    model = kl.prunable(keras.Model(inputs, outputs))
    synflow = pruners.get("synflow", {"iterations": 5})
    scores = synflow.scores(request(model, 0.5))
    top = max(v.max() for v in scores.values())
    for key in ("attention/query/kernel", "attention/key/kernel"):
        assert scores[key].max() < 1e-6 * top, key  # round-off only
    for key in ("attention/value/kernel", "head/kernel"):
        assert np.median(scores[key]) > 1e-4 * top, key
    with pytest.raises(mask_math.EmptiedKernelError,
                       match=r"attention/query/kernel.*layer collapse.*about 0"):
        synflow.masks(request(model, 0.8))
    kept = synflow.masks(request(model, 0.8, scope="layerwise"))
    assert all(m.any() for m in kept.values())


def test_synflow_feeds_a_dict_of_token_ids_in_their_dtype_when_told_the_shapes():
    inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
              "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}
    embedded = keras.layers.Embedding(20, 4, name="embedding")(inputs["token_ids"])
    kept = embedded * keras.ops.cast(inputs["padding_mask"], "float32")[..., None]
    model = kl.prunable(keras.Model(inputs, keras.layers.Dense(3, name="head")(
        keras.ops.mean(kept, axis=1))))
    with pytest.raises(ValueError, match=r"could not tell its shape.*\[\[64\], \[64\]\]"):
        pruners.get("synflow").masks(request(model, 0.5))
    synflow = pruners.get("synflow", {"input_shape": [[7], [7]], "iterations": 3})
    masks = synflow.masks(request(model, 0.5, scope="layerwise"))
    # token id 1 is the only row of the embedding with flow: the all-ones input reads it
    assert synflow.scores(request(model, 0.5))["embedding/embeddings"][[0, 2]].max() == 0
    assert pruned_counts(masks) == {"embedding/embeddings": 40, "head/kernel": 6}
