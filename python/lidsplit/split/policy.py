"""Splitting policies: at each level of the split tree, which leaves to split and into how many groups.

Pure logic (no model, no tree object): a policy is asked ``plan(level, n_leaves, capacities)`` and
answers a tuple with one branching factor per current leaf (``1`` = leave it as it is), or ``None`` when
the tree is complete. The module that runs the splits (a later one) calls it once per level with the
leaves of that level, in a fixed order, and splits leaf ``i`` into ``plan[i]`` groups.

``capacities`` (optional, one int per leaf): the largest branching factor leaf ``i`` can take, i.e. the
most ops on any of its splittable edges (an edge with fewer ops than ``b`` is not a candidate, see
:func:`lidsplit.split.selection.select_edge`). Factors are clipped to it; a leaf with capacity 1 is never
split. Without it every leaf is assumed splittable with any factor.

Policies (all built by :class:`SplitPolicy`; the constructors below are the named presets):

- :func:`rounds` ``(T)`` -- NAS-LID Alg. 1: ``T`` rounds, every leaf split in 2 at each round, ``2**T``
  leaves.
- :func:`levels` ``(factors, leaves=None)`` -- GM-NAS: level ``l`` splits every leaf into
  ``factors[l]`` groups (e.g. ``[2, 3]``: 6 leaves); ``leaves`` is an optional budget, the tree stops at
  it and the last level is filled (below) to hit it exactly.
- :func:`constant` ``(b, leaves, fill=True)`` -- the zero-cost-proxy paper's Alg. 1 with the authors'
  completion: every leaf is split in ``b`` while ``n_leaves * b <= leaves``; then, if the target is not
  reached, one last level splits some leaves so the tree has exactly ``leaves`` leaves. ``fill=False`` is
  Alg. 1 as printed (``n <- 0; while n * b <= N: split all in b``; note the first split happens even when
  ``b > N``), which stops at a power of ``b``.
- :func:`budget` ``(leaves, b=2)`` -- alias of ``constant(b, leaves)``: a leaf budget reached with
  factor ``b`` as evenly as possible.

Last-level fill (least variance). ``N`` leaves from ``n`` current leaves with per-leaf caps
``c_i = min(b, capacity_i)``: factors ``f_i = clip(t, 1, c_i)`` for the largest integer ``t`` with
``sum_i f_i <= N``, then one extra group to each of the first (lowest index) leaves that still have room
until the sum is ``N``. That is the least-variance integer vector with ``sum f_i = N`` under the caps
(without caps: ``floor(N/n)`` or ``ceil(N/n)``). The authors' code draws the same multiset (for
``b = 2``; for other ``b`` it only allows factors 1 and ``b`` and fails when they cannot sum to ``N``) and
then shuffles it with a seed; pass ``seed`` to shuffle which leaves get the larger factors
(``numpy.random.default_rng(seed + level)``), the default keeps the lowest-index rule. If the caps make
``N`` unreachable, every leaf takes its cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SplitPolicy", "rounds", "levels", "constant", "budget", "fill_factors"]


def fill_factors(n_leaves: int, target: int, caps: Sequence[int], *, seed: int | None = None) -> tuple[int, ...]:
    """Least-variance factors ``1 <= f_i <= caps[i]`` with ``sum f_i = target`` (or every ``f_i = caps[i]``
    when ``sum caps < target``). Extra groups go to the lowest-index leaves with room, or to a seeded
    random order of them."""
    caps_a = np.asarray(caps, dtype=np.int64)
    if caps_a.shape != (n_leaves,) or (caps_a < 1).any():
        raise ValueError(f"caps: expected {n_leaves} ints >= 1, got {list(caps)}")
    if target <= n_leaves:
        return (1,) * n_leaves
    if caps_a.sum() <= target:
        return tuple(int(c) for c in caps_a)
    # largest t with sum(clip(t, 1, caps)) <= target
    t = 1
    while np.minimum(t + 1, caps_a).sum() <= target:
        t += 1
    f = np.minimum(t, caps_a)
    extra = target - int(f.sum())
    room = np.flatnonzero(f < caps_a)
    if seed is not None:
        room = np.random.default_rng(seed).permutation(room)
    f[room[:extra]] += 1
    return tuple(int(v) for v in f)


@dataclass(frozen=True)
class SplitPolicy:
    """Per-level branching factors with an optional leaf target (module docstring).

    ``factors``: branching factor of level ``l`` (``factors[l]``; with ``repeat=True`` the last one is
    reused forever). ``leaves``: target / budget of leaves (required with ``repeat=True``). ``fill``:
    complete the last level to hit ``leaves`` exactly; ``False``: stop before a level that would exceed
    it (``paper_start``: the zero-cost-proxy Alg. 1 quirk, the first level is always split).
    """

    factors: tuple[int, ...]
    leaves: int | None = None
    repeat: bool = False
    fill: bool = True
    paper_start: bool = False
    seed: int | None = None
    name: str = "levels"

    def __post_init__(self) -> None:
        fs = tuple(self.factors)
        if not fs:
            raise ValueError("factors: need at least one level")
        for f in fs:
            if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 2:
                raise ValueError(f"factors: branching factors must be ints >= 2, got {list(fs)}")
        object.__setattr__(self, "factors", tuple(int(f) for f in fs))
        if self.leaves is not None and (isinstance(self.leaves, bool) or not isinstance(self.leaves, (int, np.integer)) or self.leaves < 1):
            raise ValueError(f"leaves: expected an int >= 1, got {self.leaves!r}")
        if self.repeat and self.leaves is None:
            raise ValueError("repeat=True needs a leaf target (leaves=...), or the tree never ends")

    def factor(self, level: int) -> int | None:
        """The branching factor of ``level`` (None past the last level)."""
        if level < 0:
            raise ValueError(f"level: expected >= 0, got {level}")
        if level < len(self.factors):
            return self.factors[level]
        return self.factors[-1] if self.repeat else None

    def plan(self, level: int, n_leaves: int, capacities: Sequence[int] | None = None) -> tuple[int, ...] | None:
        """Branching factor per current leaf at ``level`` (1 = not split), or None when done."""
        if n_leaves < 1:
            raise ValueError(f"n_leaves: expected >= 1, got {n_leaves}")
        b = self.factor(level)
        if b is None:
            return None
        caps = [b] * n_leaves if capacities is None else [min(b, int(c)) for c in capacities]
        if len(caps) != n_leaves:
            raise ValueError(f"capacities: {len(caps)} values for {n_leaves} leaves")
        if any(c < 1 for c in caps):
            raise ValueError(f"capacities: must be >= 1, got {list(capacities or [])}")
        if self.leaves is None:
            out = tuple(caps)
        else:
            target = self.leaves
            if (self.paper_start and level == 0) or n_leaves * b <= target:
                out = tuple(caps)
            elif n_leaves >= target or not self.fill:
                return None
            else:
                seed = None if self.seed is None else self.seed + level
                out = fill_factors(n_leaves, target, caps, seed=seed)
        if all(f == 1 for f in out):
            return None
        return out

    def simulate(self, capacity: int | None = None, *, max_levels: int = 64) -> list[int]:
        """Leaf counts level by level (starting with the root's 1) if every leaf can take any factor up
        to ``capacity`` (unlimited by default)."""
        counts = [1]
        for level in range(max_levels):
            caps = None if capacity is None else [capacity] * counts[-1]
            p = self.plan(level, counts[-1], caps)
            if p is None:
                return counts
            counts.append(sum(p))
        raise RuntimeError(f"policy {self} did not finish within {max_levels} levels")


def rounds(T: int) -> SplitPolicy:
    """NAS-LID: ``T`` rounds of 2-way splits of every leaf (``2**T`` leaves)."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected an int >= 1, got {T!r}")
    return SplitPolicy((2,) * int(T), name="rounds")


def levels(factors: Sequence[int], leaves: int | None = None, *, seed: int | None = None) -> SplitPolicy:
    """GM-NAS: level ``l`` splits every leaf into ``factors[l]`` groups; optional leaf budget."""
    return SplitPolicy(tuple(factors), leaves=leaves, seed=seed, name="levels")


def constant(b: int, leaves: int, *, fill: bool = True, seed: int | None = None) -> SplitPolicy:
    """Zero-cost-proxy paper, Alg. 1 (``fill=False``: as printed) with the last level filled to exactly
    ``leaves`` leaves (``fill=True``, the authors' code)."""
    return SplitPolicy((b,), leaves=leaves, repeat=True, fill=fill, paper_start=not fill, seed=seed, name="constant")


def budget(leaves: int, b: int = 2, *, seed: int | None = None) -> SplitPolicy:
    """A budget of ``leaves`` leaf sub-supernets reached with branching factor ``b`` (= ``constant``)."""
    return constant(b, leaves, seed=seed)
