"""Pure mask math: which weights to prune, given weights and current masks.

Every function takes dictionaries keyed by kernel name (as `get_masks()`
returns them) and returns new boolean masks; nothing here touches a model.
`fraction` is always the share of the *currently remaining* weights to
remove, so `n` rounds at `p` leave `(1 - p) ** n` of the weights.

Magnitude selection runs in O(n) with one `np.partition` over the remaining
magnitudes (no sort) and works through large kernels in fixed-size chunks,
so beyond the boolean masks it returns (1 byte per weight) its peak extra
memory is one float32 per remaining weight plus a few chunk-sized buffers. Ties at the
threshold are broken by position (earlier kernels, then lower flat index,
are pruned first), so the number of pruned weights is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
from numpy.typing import ArrayLike

_CHUNK = 1 << 20  # elements processed at once by the chunked passes


def global_magnitude_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Prunes the smallest-magnitude remaining weights under one threshold.

    Args:
        weights: kernel name -> kernel values.
        masks: kernel name -> current mask (nonzero = kept); `None` for
            all-ones masks.
        fraction: share of the remaining weights to prune, in [0, 1). It
            applies to all kernels pooled together.
        rates: optional kernel name -> own pruning rate. Those kernels are
            pruned layer-wise at their own rate and left out of the pool
            (the paper prunes output layers at half rate).

    Returns:
        Kernel name -> new boolean mask. Masks only shrink.

    Example:
    >>> w = {"a": np.array([0.1, -3, 0.2, 4]), "b": np.array([0.05, 0.01, 0.07, 2])}
    >>> m = global_magnitude_masks(w, None, 0.5)
    >>> {k: v.astype(int).tolist() for k, v in m.items()}
    {'a': [0, 1, 1, 1], 'b': [0, 0, 0, 1]}
    """
    return _magnitude_masks(weights, masks, fraction, rates, pooled=True)


def layerwise_magnitude_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Prunes the smallest-magnitude remaining weights of each kernel alone.

    Args:
        weights: kernel name -> kernel values.
        masks: kernel name -> current mask; `None` for all-ones masks.
        fraction: share of each kernel's remaining weights to prune, in
            [0, 1).
        rates: optional kernel name -> rate overriding `fraction`.

    Returns:
        Kernel name -> new boolean mask.

    Example:
    >>> w = {"a": np.array([0.1, -3, 0.2, 4]), "b": np.array([0.05, 0.01, 0.07, 2])}
    >>> m = layerwise_magnitude_masks(w, None, 0.5)
    >>> {k: v.astype(int).tolist() for k, v in m.items()}
    {'a': [0, 1, 0, 1], 'b': [0, 0, 1, 1]}
    """
    return _magnitude_masks(weights, masks, fraction, rates, pooled=False)


def _magnitude_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None,
    pooled: bool,
) -> dict[str, np.ndarray]:
    """Kernels in `rates` (all of them unless `pooled`) are pruned alone at
    their rate; the others share one threshold at `fraction`."""
    weights, alive = _standardize(weights, masks)
    _check_fraction("fraction", fraction)
    rates = _check_rates(rates, weights)
    if not pooled:
        rates = {**dict.fromkeys(weights, fraction), **rates}
    new = {name: _prune_smallest({name: weights[name]}, {name: alive[name]}, rate)[name]
           for name, rate in rates.items()}
    pool = [name for name in weights if name not in rates]
    if pool:
        new.update(_prune_smallest({n: weights[n] for n in pool}, {n: alive[n] for n in pool},
                                   fraction))
    return _finish(new, alive, weights)


# The pruning scopes: name -> function(weights, masks, fraction, rates) that
# returns the new masks. A new scope is one function and one entry here; the
# config, the CLI, `prune_by_magnitude` and the Early-Bird draw all read it.
SCOPES: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "global": global_magnitude_masks,
    "layerwise": layerwise_magnitude_masks,
}


# Granularity: what one pruned item is. `weight` prunes single weights (the
# paper); `unit` whole output units (Dense units, Conv filters: the kernel's
# last axis), which `keras_lottery.compact` then removes from the model;
# `n:m` single weights under the pattern sparse hardware runs (at most n
# nonzeros in every group of m consecutive input weights). Each entry is a
# function(weights, masks, fraction, rates, scope, **params); `magnitude_masks`
# dispatches to it from a granularity name such as "weight", "unit" or "2:4".


def weight_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
    scope: str = "global",
) -> dict[str, np.ndarray]:
    """Single weights by magnitude under the scope (`SCOPES[scope]`).

    Example:
    >>> w = {"a": np.array([0.1, -3, 0.2, 4])}
    >>> weight_masks(w, None, 0.5, scope="layerwise")["a"].astype(int).tolist()
    [0, 1, 0, 1]
    """
    return SCOPES[_check_scope(scope)](weights, masks, fraction, rates)


def unit_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
    scope: str = "layerwise",
) -> dict[str, np.ndarray]:
    """Prunes whole units: slices along the kernel's last axis.

    For a Dense kernel `(in, units)` a unit is a column, for a Conv kernel
    `(..., in, filters)` a filter. Units are ranked by the root mean square
    of their alive weights (the L2 norm over the square root of their
    number), which ranks units of one kernel as their L2 norm does and makes
    units of kernels with different fan-in comparable under one global
    threshold. `fraction` is the share of the remaining (alive) *units* to
    prune; a unit is alive while any of its weights is. Ties are broken by
    position (earlier kernels, then lower unit index, are pruned first), so
    the count is exact: `round(fraction * alive units)`, per kernel
    (`"layerwise"` or `rates`) or over the pool (`"global"`).

    Args:
        weights: kernel name -> kernel values, units on the last axis.
        masks: kernel name -> current mask; `None` for all-ones masks.
        fraction: share of the remaining units to prune, in [0, 1).
        rates: optional kernel name -> own rate (pruned alone at it).
        scope: `"layerwise"` or `"global"`.

    Returns:
        Kernel name -> new boolean mask; a pruned unit's slice is all False.

    Example:
    >>> w = {"a": np.array([[1.0, 0.1, 2.0], [1.0, 0.1, -2.0]])}
    >>> unit_masks(w, None, 0.34)["a"].astype(int).tolist()
    [[1, 0, 1], [1, 0, 1]]
    """
    weights, alive = _standardize(weights, masks)
    _check_fraction("fraction", fraction)
    rates = _check_rates(rates, weights)
    if _check_scope(scope) == "layerwise":
        rates = {**dict.fromkeys(weights, fraction), **rates}
    scores, units_alive = {}, {}
    for name, w in weights.items():
        if w.ndim < 1 or w.shape[-1] == 0:
            raise ValueError(f"granularity='unit' needs kernels with units on the last axis. "
                             f"Received: kernel {name!r} of shape {w.shape}")
        flat = np.abs(w.reshape(-1, w.shape[-1])).astype(np.float64)
        keep = None if alive[name] is None else alive[name].reshape(-1, w.shape[-1])
        if keep is not None:
            flat = flat * keep
        count = flat.shape[0] if keep is None else keep.sum(axis=0)
        units_alive[name] = np.ones(w.shape[-1], bool) if keep is None else keep.any(axis=0)
        scores[name] = np.sqrt((flat ** 2).sum(axis=0) / np.maximum(count, 1))
    pruned_units = {name: np.zeros(w.shape[-1], bool) for name, w in weights.items()}
    groups = [([name], rate) for name, rate in rates.items()]
    pool = [name for name in weights if name not in rates]
    if pool:
        groups.append((pool, fraction))
    for names, rate in groups:
        score = np.concatenate([scores[n] for n in names])
        ok = np.concatenate([units_alive[n] for n in names])
        k = _count(rate, int(ok.sum()))
        order = np.argsort(np.where(ok, score, np.inf), kind="stable")[:k]
        chosen = np.zeros(score.size, bool)
        chosen[order] = True
        offset = 0
        for n in names:
            size = scores[n].size
            pruned_units[n] = chosen[offset:offset + size]
            offset += size
    new = {}
    for name, w in weights.items():
        out = np.broadcast_to(~pruned_units[name], w.shape).copy()
        new[name] = out if alive[name] is None else out & alive[name]
    return _finish(new, alive, weights)


def n_m_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
    scope: str = "global",
    n: int = 2,
    m: int = 4,
) -> dict[str, np.ndarray]:
    """Magnitude pruning under the n:m pattern along the input dimension.

    Every group of `m` consecutive weights along a kernel's input axis
    (axis -2: the rows of a Dense kernel `(in, units)`, the input channels
    of a Conv kernel `(..., in, filters)`) keeps at most `n` nonzeros. In a
    group with more than `n` alive, the smallest are pruned until `n` are
    left (the pattern); if that removes fewer than `fraction` of the
    remaining weights (per kernel, or over the pool with `"global"`), the
    smallest of what is left are pruned under the scope until exactly
    `round(fraction * remaining)` are. So the first round reaches the
    pattern, and later rounds prune on within it; masks only shrink, so the
    pattern holds in every later round. Ties go by position, as elsewhere.

    Args:
        weights: kernel name -> kernel values (at least 2-D).
        masks: kernel name -> current mask; `None` for all-ones masks.
        fraction: share of the remaining weights to prune at least, in [0, 1).
        rates: optional kernel name -> own rate (pruned alone at it).
        scope: `"global"` or `"layerwise"`.
        n: nonzeros kept per group at most, 0 < n < m.
        m: the group size; each kernel's input dimension must be a multiple.

    Returns:
        Kernel name -> new boolean mask.

    Example:
    >>> w = {"a": np.array([[4.0], [1.0], [3.0], [2.0]])}
    >>> n_m_masks(w, None, 0.0, n=2, m=4)["a"].ravel().astype(int).tolist()
    [1, 0, 1, 0]
    """
    weights, alive = _standardize(weights, masks)
    _check_fraction("fraction", fraction)
    rates = _check_rates(rates, weights)
    _check_n_m(n, m)
    if _check_scope(scope) == "layerwise":
        rates = {**dict.fromkeys(weights, fraction), **rates}
    pattern, forced = {}, {}
    for name, w in weights.items():
        pattern[name] = _n_m_pattern(name, w, alive[name], n, m)
        forced[name] = _alive_counts({name: w}, {name: alive[name]})[name] - int(
            np.count_nonzero(pattern[name]))
    new = {}
    groups = [([name], rate) for name, rate in rates.items()]
    pool = [name for name in weights if name not in rates]
    if pool:
        groups.append((pool, fraction))
    for names, rate in groups:
        counts = _alive_counts({k: weights[k] for k in names}, {k: alive[k] for k in names})
        extra = _count(rate, sum(counts.values())) - sum(forced[k] for k in names)
        new.update(_prune_exactly({k: weights[k] for k in names},
                                  {k: pattern[k] for k in names}, max(0, extra)))
    return _finish(new, alive, weights)


def _n_m_pattern(name: str, w: np.ndarray, alive: np.ndarray | None, n: int,
                 m: int) -> np.ndarray:
    """`alive` with every group of m along axis -2 cut to its n largest |w|."""
    if w.ndim < 2 or w.shape[-2] % m:
        raise ValueError(
            f"granularity='{n}:{m}' groups {m} consecutive input weights (axis -2 of the "
            f"kernel), so the input dimension must be a multiple of {m}. Received: kernel "
            f"{name!r} of shape {w.shape}. Ignore that layer or use another granularity."
        )
    mag = np.moveaxis(np.abs(w).astype(np.float32), -2, -1)
    keep = (np.ones(mag.shape, bool) if alive is None
            else np.moveaxis(np.asarray(alive, bool), -2, -1))
    shape = mag.shape
    mag = np.where(keep, mag, -1.0).reshape(-1, m)
    keep = keep.reshape(-1, m)
    order = np.argsort(mag, axis=1, kind="stable")  # ascending; dead (-1) first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m)[None, :].repeat(len(order), 0), axis=1)
    dead = m - keep.sum(axis=1, keepdims=True)
    drop = np.maximum(0, m - dead - n)  # alive beyond n, smallest first
    out = keep & ~((rank >= dead) & (rank < dead + drop))
    return np.moveaxis(out.reshape(shape), -1, -2)


GRANULARITIES: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "weight": weight_masks,
    "unit": unit_masks,
    "n:m": n_m_masks,
}
"""Granularity -> mask function; `"n:m"` is written with numbers, e.g. `"2:4"`."""


def parse_granularity(granularity: str) -> tuple[str, dict[str, int]]:
    """The `GRANULARITIES` key of a granularity name and its parameters.

    Example:
    >>> parse_granularity("2:4"), parse_granularity("unit")
    (('n:m', {'n': 2, 'm': 4}), ('unit', {}))
    """
    if isinstance(granularity, str) and granularity in GRANULARITIES and granularity != "n:m":
        return granularity, {}
    n, sep, m = str(granularity).partition(":")
    if sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
        return "n:m", {"n": int(n), "m": int(m)}
    raise ValueError(
        "granularity must be 'weight', 'unit' or 'N:M' with integers 0 < N < M (e.g. '2:4': "
        f"at most 2 nonzeros in every 4 consecutive input weights). Received: "
        f"granularity={granularity!r}"
    )


def magnitude_masks(
    weights: Mapping[str, ArrayLike],
    masks: Mapping[str, ArrayLike] | None,
    fraction: float,
    rates: Mapping[str, float] | None = None,
    scope: str = "global",
    granularity: str = "weight",
) -> dict[str, np.ndarray]:
    """Magnitude pruning at a scope and a granularity: the one entry point.

    Args:
        weights: kernel name -> kernel values.
        masks: kernel name -> current mask; `None` for all-ones masks.
        fraction: share of the remaining weights (units for `"unit"`) to
            prune, in [0, 1).
        rates: optional kernel name -> own rate.
        scope: a key of `SCOPES`.
        granularity: `"weight"`, `"unit"` or `"N:M"` (see `GRANULARITIES`).

    Returns:
        Kernel name -> new boolean mask.

    Example:
    >>> w = {"a": np.array([[4.0], [1.0], [3.0], [2.0]])}
    >>> magnitude_masks(w, None, 0.0, granularity="1:4")["a"].ravel().astype(int).tolist()
    [1, 0, 0, 0]
    """
    key, params = parse_granularity(granularity)
    return GRANULARITIES[key](weights, masks, fraction, rates, scope=scope, **params)


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}. Received: scope={scope!r}")
    return scope


def _check_n_m(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise ValueError(f"n:m needs integers 0 < n < m. Received: n={n!r}, m={m!r}")


def random_masks(
    masks: Mapping[str, ArrayLike],
    fraction: float,
    seed: int,
    rates: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Prunes a uniformly random share of each kernel's remaining weights.

    Args:
        masks: kernel name -> current mask (its shape is the kernel's).
        fraction: share of each kernel's remaining weights to prune, in
            [0, 1).
        seed: seed of the random choice; the same seed gives the same masks.
        rates: optional kernel name -> rate overriding `fraction`.

    Returns:
        Kernel name -> new boolean mask.

    Example:
    >>> m = random_masks({"a": np.ones(10)}, 0.3, seed=0)
    >>> int(m["a"].sum())
    7
    """
    _, alive = _standardize(masks, masks)
    _check_fraction("fraction", fraction)
    rates = {**dict.fromkeys(alive, fraction), **_check_rates(rates, alive)}
    rng = np.random.default_rng(seed)
    new = {}
    for name, mask in alive.items():
        kept = np.flatnonzero(mask)
        drop = rng.choice(kept, size=_count(rates[name], kept.size), replace=False)
        out = mask.copy()
        out.reshape(-1)[drop] = False
        new[name] = out
    return _finish(new, alive, alive)


def permuted_masks(masks: Mapping[str, ArrayLike], seed: int,
                   granularity: str = "weight") -> dict[str, np.ndarray]:
    """Shuffles each mask: a random mask with the same per-kernel sparsity.

    This is the paper's random-pruning control for a given ticket. With
    `granularity="unit"` whole units (slices along the last axis) are
    shuffled, so the result prunes as many whole units; with `"N:M"` the
    weights are shuffled within each group of M along axis -2, so the
    pattern holds.

    Args:
        masks: kernel name -> mask.
        seed: seed of the shuffle.
        granularity: `"weight"`, `"unit"` or `"N:M"`.

    Returns:
        Kernel name -> boolean mask with as many kept weights as the input.

    Example:
    >>> m = permuted_masks({"a": np.array([1, 1, 0, 0, 0])}, seed=0)
    >>> int(m["a"].sum())
    2
    """
    _, alive = _standardize(masks, masks)
    key, params = parse_granularity(granularity)
    rng = np.random.default_rng(seed)
    if key == "unit":
        return {name: mask[..., rng.permutation(mask.shape[-1])] for name, mask in alive.items()}
    if key == "n:m":
        out = {}
        for name, mask in alive.items():
            m = params["m"]
            moved = np.moveaxis(mask, -2, -1)
            groups = rng.permuted(moved.reshape(-1, m), axis=1)
            out[name] = np.moveaxis(groups.reshape(moved.shape), -1, -2)
        return out
    return {
        name: rng.permutation(mask.reshape(-1)).reshape(mask.shape)
        for name, mask in alive.items()
    }


def mask_overlap(a: Mapping[str, ArrayLike], b: Mapping[str, ArrayLike]) -> float:
    """Share of mask entries on which two sets of masks agree, in [0, 1].

    Args:
        a: kernel name -> mask.
        b: kernel name -> mask, same names and shapes as `a`.

    Returns:
        Agreeing entries over all entries (1.0 for identical masks).

    Example:
    >>> mask_overlap({"a": np.array([1, 0, 1, 1])}, {"a": np.array([1, 1, 1, 1])})
    0.75
    """
    if set(a) != set(b):
        raise ValueError(
            f"Masks to compare must have the same names. Received: {sorted(a)} "
            f"and {sorted(b)}"
        )
    same = sum(int(np.count_nonzero((np.asarray(a[k]) != 0) == (np.asarray(b[k]) != 0)))
               for k in a)
    total = sum(np.asarray(a[k]).size for k in a)
    return same / total if total else 1.0


def _standardize(
    weights: Mapping[str, ArrayLike], masks: Mapping[str, ArrayLike] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Arrays of the weights, and boolean masks (None: all weights alive,
    so no all-ones array is ever built)."""
    if not weights:
        raise ValueError("weights must name at least one kernel. Received: {}")
    weights = {name: np.asarray(w) for name, w in weights.items()}
    if masks is None:
        return weights, dict.fromkeys(weights)
    if set(masks) != set(weights):
        raise ValueError(
            f"masks must have the same names as weights {sorted(weights)}. "
            f"Received: masks for {sorted(masks)}"
        )
    alive = {}
    for name, w in weights.items():
        mask = np.asarray(masks[name])
        if mask.shape != w.shape:
            raise ValueError(
                f"mask {name!r} has shape {mask.shape}, but its kernel has shape "
                f"{w.shape}. Masks must have the kernel's shape."
            )
        alive[name] = mask if mask.dtype == bool else mask != 0
    return weights, alive


def _check_fraction(arg: str, value: float) -> None:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not (
        0 <= value < 1
    ):
        raise ValueError(f"{arg} must be a number in [0, 1). Received: {arg}={value!r}")


def _check_rates(
    rates: Mapping[str, float] | None, names: Mapping[str, object]
) -> dict[str, float]:
    rates = dict(rates or {})
    unknown = sorted(set(rates).difference(names))
    if unknown:
        raise ValueError(
            f"rates names kernels that are not pruned here: {unknown}. "
            f"Accepted names: {list(names)}"
        )
    for name, rate in rates.items():
        _check_fraction(f"rates[{name!r}]", rate)
    return rates


def _count(fraction: float, n_alive: int) -> int:
    """Number of weights to prune: `fraction` of `n_alive`, rounded."""
    return int(round(fraction * n_alive))


def _chunks(flat: np.ndarray) -> Iterator[slice]:
    for start in range(0, flat.size, _CHUNK):
        yield slice(start, min(start + _CHUNK, flat.size))


def _prune_smallest(
    weights: dict[str, np.ndarray], alive: dict[str, np.ndarray], fraction: float
) -> dict[str, np.ndarray]:
    """Removes the `fraction` smallest |w| among alive weights of the pool."""
    counts = _alive_counts(weights, alive)
    return _prune_exactly(weights, alive, _count(fraction, sum(counts.values())))


def _alive_counts(weights: dict[str, np.ndarray],
                  alive: dict[str, np.ndarray | None]) -> dict[str, int]:
    return {name: weights[name].size if mask is None else int(np.count_nonzero(mask))
            for name, mask in alive.items()}


def _prune_exactly(
    weights: dict[str, np.ndarray], alive: dict[str, np.ndarray | None], k: int
) -> dict[str, np.ndarray]:
    """Removes the `k` smallest |w| among alive weights of the pool."""
    counts = _alive_counts(weights, alive)
    if k == 0:
        return {name: np.ones(weights[name].shape, bool) if mask is None else mask.copy()
                for name, mask in alive.items()}
    threshold, ties = _kth_smallest_magnitude(weights, alive, counts, k)
    new = {}
    for name, w in weights.items():
        w_flat = w.reshape(-1)
        dense = counts[name] == w_flat.size
        alive_flat = None if dense else alive[name].reshape(-1)
        out = np.empty(w_flat.shape, bool)
        for part in _chunks(w_flat):
            mag = np.abs(w_flat[part]).astype(np.float32, copy=False)
            keep = mag >= threshold
            if not dense:
                keep &= alive_flat[part]
            if ties:  # prune the first `ties` weights equal to the threshold
                tied = np.flatnonzero(keep & (mag == threshold))[:ties]
                keep[tied] = False
                ties -= tied.size
            out[part] = keep
        new[name] = out.reshape(w.shape)
    return new


def _kth_smallest_magnitude(
    weights: dict[str, np.ndarray],
    alive: dict[str, np.ndarray],
    counts: dict[str, int],
    k: int,
) -> tuple[float, int]:
    """The k-th smallest alive |w| and how many weights equal to it to prune."""
    pool = np.empty(sum(counts.values()), np.float32)
    offset = 0
    for name, w in weights.items():
        w_flat = w.reshape(-1)
        dense = counts[name] == w_flat.size
        alive_flat = None if dense else alive[name].reshape(-1)
        for part in _chunks(w_flat):
            values = w_flat[part] if dense else w_flat[part][alive_flat[part]]
            out = pool[offset : offset + values.size]
            np.abs(values, out=out, casting="unsafe")
            offset += values.size
    if not np.isfinite(pool.max(initial=0)):
        raise ValueError(
            "weights contain NaN or infinity; magnitude pruning needs finite "
            "weights (did training diverge?)"
        )
    pool.partition(k - 1)
    threshold = pool[k - 1]
    smaller = pool[: k - 1]
    below = sum(int(np.count_nonzero(smaller[part] < threshold)) for part in _chunks(smaller))
    return threshold, k - below


class EmptiedKernelError(ValueError):
    """Pruning would remove every weight of some kernels (`keys`)."""

    def __init__(self, keys: list[str], why: str = ""):
        super().__init__(
            f"Pruning would remove every weight of {keys}.{' ' + why if why else ''} Lower "
            "the fraction, give those layers a smaller rate, or ignore them."
        )
        self.keys = keys


def _finish(
    new: dict[str, np.ndarray],
    alive: dict[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Orders masks as `weights` and refuses to empty a kernel."""
    emptied = [n for n in weights
               if (alive[n] is None or alive[n].any()) and not new[n].any()]
    if emptied:
        raise EmptiedKernelError(emptied)
    return {name: new[name] for name in weights}


# Dynamic sparse training (SET, RigL): layer densities and one drop-and-grow.


def erk_densities(shapes: Mapping[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel layer densities at an overall density (Evci et al. 2020).

    Each kernel's density is `eps * sum(shape) / prod(shape)`, one `eps`
    for all, chosen so that the kept weights add up to `density` times
    all the weights. A kernel whose density would exceed 1 is made dense
    and `eps` is solved again over the others (RigL's redistribution),
    until no density exceeds 1. For a Dense kernel `(n_in, n_out)` this
    is Mocanu et al.'s Erdős–Rényi `(n_in + n_out) / (n_in * n_out)`;
    a convolution's kernel dimensions count as well.

    Args:
        shapes: kernel name -> kernel shape.
        density: the kept share of all the weights together, in (0, 1].

    Returns:
        Kernel name -> its density in (0, 1], in the order of `shapes`;
        `sum(density_k * size_k) == density * sum(size_k)` (up to float
        rounding).

    Example:
    >>> {k: round(v, 6) for k, v in erk_densities({"a": (10, 10), "b": (10, 1)}, 0.5).items()}
    {'a': 0.45, 'b': 1.0}
    """
    if not shapes:
        raise ValueError("erk_densities needs at least one kernel shape. Received: {}")
    if not isinstance(density, (int, float, np.floating, np.integer)) or not 0 < density <= 1:
        raise ValueError(f"density must be a number in (0, 1]. Received: density={density!r}")
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    if min(sizes.values()) < 1:
        raise ValueError(f"every kernel needs at least one weight. Received: shapes={dict(shapes)}")
    raw = {name: float(np.sum(shape)) / sizes[name] for name, shape in shapes.items()}
    target = float(density) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        if not sparse:  # only when density == 1
            return dict.fromkeys(shapes, 1.0)
        # eps * sum(raw_k * size_k) over the sparse kernels = what the dense ones leave.
        eps = (target - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in sparse)
        top = max(raw[n] for n in sparse)
        if eps * top <= 1:
            break
        dense.update(n for n in sparse if raw[n] == top)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


def counts_from_densities(sizes: Mapping[str, int], densities: Mapping[str, float],
                          total: int) -> dict[str, int]:
    """Whole numbers of kept weights per kernel, adding up to `total` exactly.

    Each kernel gets `floor(density * size)`; the weights left over go one
    each to the kernels with the largest fractional parts (earlier kernels
    first on ties), never beyond a kernel's size.

    Args:
        sizes: kernel name -> number of weights.
        densities: kernel name -> density (e.g. from `erk_densities`).
        total: the number of kept weights, at most `sum(sizes)`.

    Returns:
        Kernel name -> number of kept weights.

    Example:
    >>> counts_from_densities({"a": 10, "b": 10}, {"a": 0.25, "b": 0.35}, 6)
    {'a': 3, 'b': 3}
    """
    if set(sizes) != set(densities):
        raise ValueError(f"sizes and densities must name the same kernels. Received: "
                         f"{sorted(sizes)} and {sorted(densities)}")
    if not 0 <= total <= sum(sizes.values()):
        raise ValueError(f"total must be in [0, {sum(sizes.values())}]. Received: total={total!r}")
    exact = {n: min(float(densities[n]), 1.0) * sizes[n] for n in sizes}
    counts = {n: min(sizes[n], int(np.floor(exact[n] + 1e-9))) for n in sizes}
    left = total - sum(counts.values())
    order = sorted(sizes, key=lambda n: -(exact[n] - counts[n]))  # stable: earlier first
    while left > 0:
        room = [n for n in order if counts[n] < sizes[n]]
        for name in room[:left]:
            counts[name] += 1
        left = total - sum(counts.values())
    while left < 0:  # densities adding up to more than `total`
        for name in reversed(order):
            if left < 0 and counts[name] > 0:
                counts[name] -= 1
                left += 1
    return counts


def drop_and_grow(weights: ArrayLike, mask: ArrayLike, n: int, grow_scores: ArrayLike,
                  regrow_dropped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One dynamic-sparse update of one kernel: drop `n` active weights of
    smallest magnitude, grow `n` inactive ones of highest score.

    The kernel keeps its number of active weights. Ties are broken by
    position (lower flat index first), as magnitude pruning's are. With
    `regrow_dropped=False` only weights inactive before the update can
    grow, so `n` is lowered to their number if there are fewer; with
    `True` the weights just dropped compete too (RigL's code), and one
    regrown is neither dropped nor grown.

    Args:
        weights: the kernel's values.
        mask: its current mask (nonzero = active).
        n: how many to drop and grow.
        grow_scores: one score per weight (larger grows first): random
            numbers for SET, |gradient| for RigL.
        regrow_dropped: whether the weights dropped now may grow back.

    Returns:
        `(new_mask, dropped, grown)`, boolean arrays of the kernel's shape;
        `dropped` and `grown` are disjoint and each holds the same number.

    Example:
    >>> new, dropped, grown = drop_and_grow([0.5, -2.0, 3.0, 0.0], [1, 1, 1, 0], 1,
    ...                                     [0.0, 0.0, 0.0, 9.0])
    >>> new.astype(int).tolist(), dropped.astype(int).tolist(), grown.astype(int).tolist()
    ([0, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1])
    """
    w = np.asarray(weights)
    alive = np.asarray(mask) != 0
    scores = np.asarray(grow_scores, np.float64)
    if alive.shape != w.shape or scores.shape != w.shape:
        raise ValueError(f"weights, mask and grow_scores must have one shape. Received: "
                         f"{w.shape}, {alive.shape}, {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("grow_scores contain NaN or infinity.")
    flat_w, flat_alive, flat_scores = w.reshape(-1), alive.reshape(-1), scores.reshape(-1)
    active = np.flatnonzero(flat_alive)
    inactive = np.flatnonzero(~flat_alive)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0. Received: n={n}")
    n = min(n, active.size, active.size + inactive.size if regrow_dropped else inactive.size)
    dropped = np.zeros(flat_w.size, bool)
    grown = np.zeros(flat_w.size, bool)
    if n == 0:
        return alive.copy(), dropped.reshape(w.shape), grown.reshape(w.shape)
    magnitude = np.abs(flat_w[active]).astype(np.float64)
    if not np.isfinite(magnitude).all():
        raise ValueError("weights contain NaN or infinity (did training diverge?)")
    drop = active[np.argsort(magnitude, kind="stable")[:n]]
    kept = flat_alive.copy()
    kept[drop] = False
    candidates = np.flatnonzero(~kept) if regrow_dropped else inactive
    grow = candidates[np.argsort(-flat_scores[candidates], kind="stable")[:n]]
    new = kept.copy()
    new[grow] = True
    dropped[drop] = True
    grown[grow] = True
    both = dropped & grown  # dropped and grown back: it simply stays
    dropped &= ~both
    grown &= ~both
    return new.reshape(w.shape), dropped.reshape(w.shape), grown.reshape(w.shape)


def cosine_drop_fraction(t: float, t_end: float, initial: float) -> float:
    """RigL's drop fraction at step `t`: `initial / 2 * (1 + cos(pi * t / t_end))`,
    0 from `t_end` on (Evci et al. 2020, eq. 1).

    Example:
    >>> [round(cosine_drop_fraction(t, 100, 0.3), 4) for t in (0, 50, 100, 150)]
    [0.3, 0.15, 0.0, 0.0]
    """
    if t_end <= 0 or t >= t_end:
        return 0.0
    return float(initial) / 2.0 * (1.0 + float(np.cos(np.pi * max(0.0, float(t)) / t_end)))


def sparse_counts(masks: Mapping[str, ArrayLike], fraction: float,
                  rates: Mapping[str, float] | None = None,
                  distribution: str = "erk") -> dict[str, int]:
    """The number of active weights per kernel for dynamic sparse training.

    The kernels not in `rates` keep `1 - fraction` of their active weights
    together: spread by `erk_densities` over their shapes (`"erk"`; whole
    counts by `counts_from_densities`, adding up exactly), or each kernel
    `1 - fraction` of its own (`"uniform"`). A kernel in `rates` keeps
    `1 - rate` of its active weights, outside the distribution (RigL's
    custom sparsities). Counts are rounded as magnitude pruning's.

    Args:
        masks: kernel name -> current mask (its shape is the kernel's).
        fraction: share of the active weights to prune, in [0, 1).
        rates: optional kernel name -> own share.
        distribution: `"erk"` or `"uniform"`.

    Returns:
        Kernel name -> number of active weights, in the order of `masks`.

    Raises:
        ValueError: for a bad argument, or a kernel left without weights.

    Example:
    >>> sparse_counts({"a": np.ones((10, 10)), "b": np.ones((10, 1))}, 0.5)
    {'a': 45, 'b': 10}
    """
    if distribution not in ("erk", "uniform"):
        raise ValueError(f"distribution must be 'erk' or 'uniform'. Received: "
                         f"distribution={distribution!r}")
    _, alive = _standardize(masks, masks)
    _check_fraction("fraction", fraction)
    rates = _check_rates(rates, alive)
    active = {k: int(np.count_nonzero(m)) for k, m in alive.items()}
    kept = {k: active[k] - _count(rate, active[k]) for k, rate in rates.items()}
    rest = [k for k in alive if k not in rates]
    if distribution == "uniform":
        kept.update({k: active[k] - _count(fraction, active[k]) for k in rest})
    elif rest:
        pool = sum(active[k] for k in rest)
        total = pool - _count(fraction, pool)
        sizes = {k: alive[k].size for k in rest}
        if total:
            densities = erk_densities({k: alive[k].shape for k in rest},
                                      total / sum(sizes.values()))
            kept.update(counts_from_densities(sizes, densities, total))
        else:
            kept.update(dict.fromkeys(rest, 0))
    emptied = [k for k in alive if active[k] and not kept[k]]
    if emptied:
        raise ValueError(f"Dynamic sparse training would leave no weight in {emptied}. "
                         "Lower the fraction, or give those kernels a smaller rate.")
    return {k: kept[k] for k in alive}
