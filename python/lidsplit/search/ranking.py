"""Ranking correlation between predicted and true architecture scores (Kendall tau-b, Spearman rho).

``rank_correlations(predicted, true)`` measures how well a supernet (or a split tree's leaves) ranks
architectures: Kendall tau-b and Spearman rho over all of them, and over the *top* ones.

Top-k convention. NAS-LID (Table 2: "ranking correlation among top 50/100/150 architectures of
NASBench-201") and GM-NAS (Table 7: Spearman "among top 0.2% / 0.5% / 1% architectures") take the
top-k by the TRUE score (the benchmark's accuracy): the authors' NAS-LID evaluation code scores a fixed
list of the benchmark's best architectures (``top1percent_models.json``) with the supernet and correlates
the two over that list (``scipy.stats.kendalltau``, i.e. tau-b, and ``spearmanr``). That is the default
here (``top_by="true"``): "among the truly good architectures, does the supernet order them right?".
``top_by="predicted"`` takes the top-k by the predicted score instead ("among the architectures the
supernet would pick, is its order right?"); the two differ when the predictor is poor.

A top entry of ``tops`` is a fraction in (0, 1] (``k = ceil(fraction * n)``, key ``"top10%"``) or an int
count ``k >= 2`` (NAS-LID's top-50 style, key ``"top50"``). Ties at the k-th place are broken by input
order (the first given wins; stable), so the subset is deterministic.

Ties in the scores: Kendall's tau-b (ties corrected, as ``scipy.stats.kendalltau``'s default) and
Spearman's rho as the Pearson correlation of average ranks (as ``scipy.stats.spearmanr``). A constant
input (every score tied) has no ranking: both are NaN, as in scipy. Kendall tau-b is computed in
``O(n log^2 n)`` with vectorised numpy (a bottom-up merge count of discordant pairs), so the full
NAS-Bench-201 space (15,625 architectures) takes milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["average_ranks", "kendall_tau", "rank_correlations", "spearman_rho"]

#: The subsets ``rank_correlations`` reports by default besides ``"all"``: top 10 % and top 20 %.
DEFAULT_TOPS: tuple[float, ...] = (0.1, 0.2)


# ---- inputs --------------------------------------------------------------------------------------


def _vector(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array; ValueError naming ``name`` on bad shape, dtype or NaN."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    if hasattr(values, "detach"):  # a torch tensor: no autograd, on the CPU
        values = values.detach().cpu().numpy()
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers ({e})") from None
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {a.shape}")
    bad = np.flatnonzero(np.isnan(a))
    if bad.size:
        raise ValueError(f"{name}: {bad.size} NaN value(s) (first at position {int(bad[0])}); a ranking needs "
                         "every score (drop or impute them first)")
    return a


def _pair(x: Any, y: Any, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    a, b = _vector(x, names[0]), _vector(y, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(f"{names[0]}: need at least 2 architectures to rank, got {a.size}")
    return a, b


def _aligned(predicted: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true scores in one order: mappings are aligned on ``predicted``'s keys."""
    pm, tm = isinstance(predicted, Mapping), isinstance(true, Mapping)
    if pm != tm:
        raise TypeError("predicted and true must both be mappings arch -> score or both sequences of scores "
                        f"(same order); got {type(predicted).__name__} and {type(true).__name__}")
    if not pm:
        return _pair(predicted, true, ("predicted", "true"))
    keys: list[Hashable] = list(predicted)
    missing = [k for k in keys if k not in true]
    if missing:
        raise ValueError(f"true: no score for {len(missing)} of the {len(keys)} architectures of predicted "
                         f"(first: {missing[:3]!r})")
    for name, m in (("predicted", predicted), ("true", true)):
        nan = [k for k in keys if isinstance(m[k], (float, np.floating)) and math.isnan(m[k])]
        if nan:  # name the architectures, not positions
            raise ValueError(f"{name}: NaN score for {len(nan)} architecture(s) (first: {nan[:3]!r}); a ranking "
                             "needs every score (drop or impute them first)")
    p = _vector([predicted[k] for k in keys], "predicted")
    t = _vector([true[k] for k in keys], "true")
    if p.size < 2:
        raise ValueError(f"predicted: need at least 2 architectures to rank, got {p.size}")
    return p, t


# ---- statistics ----------------------------------------------------------------------------------


def average_ranks(values: Any) -> np.ndarray:
    """Ranks 1..n of ``values`` (1-D), tied values sharing the mean of their ranks (``scipy.stats.rankdata``
    with ``method='average'``). Returns float64 ``(n,)``."""
    a = _vector(values, "values")
    n = a.size
    order = np.argsort(a, kind="stable")
    s = a[order]
    # tie groups in sorted order: [start, end) where the value changes
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _tied_pairs(sorted_values: np.ndarray) -> int:
    """Number of pairs with equal values, from values already sorted (any order within ties)."""
    if sorted_values.size < 2:
        return 0
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, sorted_values.size]).astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _inversions(y: np.ndarray) -> int:
    """Pairs ``i < j`` with ``y[i] > y[j]`` (strict), by a bottom-up merge: at each level, blocks of
    width ``w`` (each sorted) are merged in pairs, and every element of a right block counts the elements
    of its left block that are strictly greater. One lexsort per level, ``O(n log^2 n)``, no Python loop
    over elements."""
    a = y.copy()
    n = a.size
    idx = np.arange(n)
    total = 0
    w = 1
    while w < n:
        pair = idx // (2 * w)
        is_left = (idx // w) % 2 == 0
        # sort each pair of blocks by value; on ties the left element first (it is not greater)
        order = np.lexsort((~is_left, a, pair))
        a, pair, left = a[order], pair[order], is_left[order]
        c = np.cumsum(left)
        first = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        base = np.repeat(c[first] - left[first], np.diff(np.r_[first, n]))
        left_le = c - base  # left elements up to this position of the pair (all <= this value)
        n_left = np.bincount(pair, weights=left).astype(np.int64)
        right = ~left
        total += int((n_left[pair[right]] - left_le[right]).sum())
        w *= 2
    return total


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b of two 1-D score vectors of the same length (>= 2); NaN when either is constant.

    ``tau_b = (C - D) / sqrt((n0 - T_x) (n0 - T_y))`` with ``n0 = n(n-1)/2`` pairs, ``C`` / ``D`` the
    concordant / discordant pairs, ``T_x`` / ``T_y`` the pairs tied in ``x`` / ``y`` (Kendall 1945,
    Knight 1966; equals ``scipy.stats.kendalltau(x, y).statistic``).
    """
    a, b = _pair(x, y)
    n = a.size
    n0 = n * (n - 1) // 2
    order = np.lexsort((b, a))  # by x, then y: pairs tied in x are in y order (never discordant)
    xs, ys = a[order], b[order]
    tx = _tied_pairs(xs)
    ty = _tied_pairs(np.sort(b, kind="stable"))
    # pairs tied in both x and y: equal consecutive (x, y) runs in the lexsorted order
    same = np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])]
    starts = np.flatnonzero(same)
    counts = np.diff(np.r_[starts, n]).astype(np.int64)
    txy = int((counts * (counts - 1) // 2).sum())
    dis = _inversions(ys)
    con = n0 - tx - ty + txy - dis
    denom = math.sqrt(float(n0 - tx) * float(n0 - ty))
    if denom == 0.0:
        return math.nan
    return float((con - dis) / denom)


def spearman_rho(x: Any, y: Any) -> float:
    """Spearman's rho of two 1-D score vectors (>= 2): the Pearson correlation of their average ranks;
    NaN when either is constant (equals ``scipy.stats.spearmanr(x, y).statistic``)."""
    a, b = _pair(x, y)
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom == 0.0:
        return math.nan
    return float(np.clip((ra @ rb) / denom, -1.0, 1.0))


# ---- the report ----------------------------------------------------------------------------------


def _top_key(top: float) -> tuple[str, bool]:
    """(key, is_fraction) of a ``tops`` entry (a fraction or an int count); ValueError / TypeError otherwise."""
    if isinstance(top, bool):
        raise TypeError(f"tops: expected fractions in (0, 1] or int counts >= 2, got {top!r}")
    if isinstance(top, (int, np.integer)):
        if top < 2:
            raise ValueError(f"tops: an int top-k count must be >= 2, got {top}")
        return f"top{int(top)}", False
    if isinstance(top, (float, np.floating)) and 0.0 < float(top) <= 1.0:
        return f"top{100.0 * float(top):g}%", True
    raise ValueError(f"tops: expected fractions in (0, 1] or int counts >= 2, got {top!r}")


def rank_correlations(
    predicted: Mapping[Any, float] | Sequence[float],
    true: Mapping[Any, float] | Sequence[float],
    *,
    tops: Sequence[float | int] = DEFAULT_TOPS,
    top_by: str = "true",
) -> dict[str, dict[str, float | int]]:
    """Kendall tau-b and Spearman rho between predicted and true scores, over all architectures and over
    the top ones (module docstring: top-k by the TRUE score by default, as NAS-LID and GM-NAS).

    predicted / true: both mappings ``arch -> score`` (the architectures are ``predicted``'s keys; ``true``
        may hold more, e.g. a whole table) or both 1-D sequences / arrays of scores in the same order.
        Higher is better for both (pass negated losses). No NaN allowed (ValueError naming the argument);
        infinities rank as the extreme values.
    tops: fractions in (0, 1] (``k = ceil(fraction * n)``) and/or int counts; every subset needs
        ``k >= 2`` architectures (ValueError otherwise) and ``k <= n`` for counts.
    top_by: ``"true"`` (default) or ``"predicted"``: which score picks the top-k.

    Returns ``{"all": {...}, "top10%": {...}, "top20%": {...}}`` (one entry per ``tops`` item, in order),
    each ``{"n": k, "kendall": tau_b, "spearman": rho}``.
    """
    if top_by not in ("true", "predicted"):
        raise ValueError(f"top_by: expected 'true' or 'predicted', got {top_by!r}")
    if isinstance(tops, (str, bytes)) or not isinstance(tops, Sequence):
        raise TypeError(f"tops: expected a sequence of fractions / counts, got {type(tops).__name__}")
    p, t = _aligned(predicted, true)
    n = p.size
    out: dict[str, dict[str, float | int]] = {
        "all": {"n": n, "kendall": kendall_tau(p, t), "spearman": spearman_rho(p, t)}}
    by = t if top_by == "true" else p
    order = np.argsort(-by, kind="stable")  # descending; ties keep input order
    for top in tops:
        key, frac = _top_key(top)
        k = math.ceil(float(top) * n - 1e-9) if frac else int(top)
        if k > n:
            raise ValueError(f"tops: top-{k} asked for but there are only {n} architectures")
        if k < 2:
            raise ValueError(f"tops: {key} of {n} architectures is {k} architecture(s); a correlation needs at "
                             "least 2 (use a larger fraction or more architectures)")
        if key in out:
            raise ValueError(f"tops: {top!r} given twice")
        sel = order[:k]
        out[key] = {"n": k, "kendall": kendall_tau(p[sel], t[sel]), "spearman": spearman_rho(p[sel], t[sel])}
    return out
