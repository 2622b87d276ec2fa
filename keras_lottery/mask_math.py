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


def permuted_masks(masks: Mapping[str, ArrayLike], seed: int) -> dict[str, np.ndarray]:
    """Shuffles each mask: a random mask with the same per-kernel sparsity.

    This is the paper's random-pruning control for a given ticket.

    Args:
        masks: kernel name -> mask.
        seed: seed of the shuffle.

    Returns:
        Kernel name -> boolean mask with as many kept weights as the input.

    Example:
    >>> m = permuted_masks({"a": np.array([1, 1, 0, 0, 0])}, seed=0)
    >>> int(m["a"].sum())
    2
    """
    _, alive = _standardize(masks, masks)
    rng = np.random.default_rng(seed)
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
    counts = {name: weights[name].size if mask is None else int(np.count_nonzero(mask))
              for name, mask in alive.items()}
    k = _count(fraction, sum(counts.values()))
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


def _finish(
    new: dict[str, np.ndarray],
    alive: dict[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Orders masks as `weights` and refuses to empty a kernel."""
    emptied = [n for n in weights
               if (alive[n] is None or alive[n].any()) and not new[n].any()]
    if emptied:
        raise ValueError(
            f"Pruning would remove every weight of {emptied}. Lower the "
            "fraction, give those layers a smaller rate, or ignore them."
        )
    return {name: new[name] for name in weights}
