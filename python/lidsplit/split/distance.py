"""Split distance (zero-cost-proxy paper, Definition 1) and its internal / external averages.

Split distance of two partitions ``A``, ``B`` of the same set ``O`` of ``n`` ops: for each op ``o``, the
symmetric difference of its group-mates ``G_{o,A}`` and ``G_{o,B}``, summed over ops, divided by a
normaliser:

- ``normalisation="code"`` (default, the authors' code): ``2 (n - 1)``;
- ``normalisation="paper"`` (Definition 1 as printed): ``2 n - 1``;
- ``normalisation="none"``: the raw count.

Every unordered pair ``{o, i}`` that is together in exactly one of the two splits is counted twice
(once from ``o``, once from ``i``), so the raw count is ``2 * #disagreeing pairs`` and the ``"code"``
distance is ``#disagreeing pairs / (n - 1)``. The number of disagreeing pairs is the size of the
symmetric difference of the two sets of co-grouped pairs (the Mirkin / Rand distance), so all three are
true metrics on the partitions of ``O`` (identity of indiscernibles, symmetry, triangle inequality: a
positive multiple of the Hamming distance between pair-indicator vectors). Group order and group labels
do not matter. Range of the ``"code"`` value: ``[0, n/2]`` (all ops together vs all apart). ``n = 1``:
there is one partition, the distance is 0 (the ``"code"`` normaliser would be 0).

Internal / external split distance (the paper's Section 4, Fig. 1-2). A *tree* is given as its list of
splits, each a :class:`SplitRecord` ``(level, edge, groups)`` (or a plain 3-tuple, or just ``groups``:
level 0, edge ``None``). Two splits are comparable when they partition the same op set (ops are
compared by value: indices or names); incomparable pairs are skipped and counted.

- :func:`internal_split_distance` (one tree, one seed): mean distance over all pairs of distinct splits
  of the tree (``match="level"``: only pairs at the same depth, Fig. 2 top).
- :func:`external_split_distance` (several trees of one criterion, different seeds): mean distance
  between each split of one tree and each split of every *other* tree (``match="level"``: same depth;
  ``match="edge"``: same edge; Fig. 1b / Fig. 2 bottom). High spread = poor robustness to the seed.
- :func:`cross_split_distance` (two criteria): the same average between every tree of criterion A and
  every tree of criterion B (e.g. LID vs GM over the same seeds).

``first_level=True`` keeps only the root split of each tree (level 0): comparing sequences of first-level
partitions. All three return a :class:`DistanceSummary` (mean, std, number of pairs, skipped pairs).

Trees as partitions of the architecture space: :func:`label_distance` takes, for two trees, the leaf
label of every architecture (``labels[a]`` = leaf of arch ``a``, e.g. ``tree.route`` over
``space.all_archs()``) and returns the split distance of these two partitions of the architectures
(same formula, ``n`` = number of architectures), computed in ``O(N + leaves_A * leaves_B)`` from the
contingency table, so 15,625 NB201 architectures cost nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "split_distance",
    "label_distance",
    "SplitRecord",
    "DistanceSummary",
    "internal_split_distance",
    "external_split_distance",
    "cross_split_distance",
]

Normalisation = Literal["code", "paper", "none"]


def _normaliser(n: int, normalisation: str) -> float:
    if normalisation == "code":
        return float(2 * (n - 1))
    if normalisation == "paper":
        return float(2 * n - 1)
    if normalisation == "none":
        return 1.0
    raise ValueError(f"normalisation: expected 'code', 'paper' or 'none', got {normalisation!r}")


def _as_labels(groups: Iterable[Iterable[Hashable]], name: str) -> dict[Hashable, int]:
    lab: dict[Hashable, int] = {}
    if isinstance(groups, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of groups")
    for gi, g in enumerate(groups):
        g = list(g)
        if not g:
            raise ValueError(f"{name}: empty group")
        for o in g:
            if o in lab:
                raise ValueError(f"{name}: op {o!r} is in two groups")
            lab[o] = gi
    return lab


def _together_pairs(counts: np.ndarray) -> int:
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def _disagreements(la: np.ndarray, lb: np.ndarray) -> int:
    """Number of unordered pairs co-grouped in exactly one of two label vectors (contingency table)."""
    _, ia = np.unique(la, return_inverse=True)
    _, ib = np.unique(lb, return_inverse=True)
    ta = _together_pairs(np.bincount(ia))
    tb = _together_pairs(np.bincount(ib))
    both = _together_pairs(np.bincount(ia * (ib.max() + 1) + ib))
    return ta + tb - 2 * both


def split_distance(
    a: Sequence[Sequence[Hashable]], b: Sequence[Sequence[Hashable]], *, normalisation: Normalisation = "code"
) -> float:
    """Split distance between two partitions (sequences of groups) of the same ops (module docstring)."""
    la, lb = _as_labels(a, "a"), _as_labels(b, "b")
    if set(la) != set(lb):
        raise ValueError(
            f"split_distance: the two splits partition different ops ({sorted(map(repr, la))} vs {sorted(map(repr, lb))})"
        )
    n = len(la)
    if n <= 1:
        _normaliser(n, normalisation)  # validates the name
        return 0.0
    ops = list(la)
    raw = 2 * _disagreements(np.array([la[o] for o in ops]), np.array([lb[o] for o in ops]))
    return raw / _normaliser(n, normalisation)


def label_distance(labels_a: Any, labels_b: Any, *, normalisation: Normalisation = "code") -> float:
    """Split distance of two partitions given as label vectors over the same items (``labels_a[i]`` =
    group of item ``i``; any hashable/numeric labels, e.g. the leaf id of each architecture)."""
    la = np.asarray(labels_a)
    lb = np.asarray(labels_b)
    if la.ndim != 1 or lb.shape != la.shape:
        raise ValueError(f"label_distance: expected two 1-D label vectors of one length, got {la.shape} and {lb.shape}")
    n = la.shape[0]
    if n <= 1:
        _normaliser(n, normalisation)
        return 0.0
    return 2 * _disagreements(la, lb) / _normaliser(n, normalisation)


class SplitRecord(NamedTuple):
    """One split of a tree: its depth (root split = 0), the edge split, and the op groups."""

    level: int
    edge: Hashable
    groups: Sequence[Sequence[Hashable]]


@dataclass(frozen=True)
class DistanceSummary:
    """Mean and (population) std of the split distances over ``count`` compared pairs; ``skipped``:
    pairs not compared because the splits partition different op sets. ``mean``/``std`` are NaN when
    ``count == 0``. ``values``: the distances, in comparison order."""

    mean: float
    std: float
    count: int
    skipped: int
    values: tuple[float, ...]


def _records(tree: Iterable[Any], name: str) -> list[SplitRecord]:
    out = []
    for r in tree:
        if isinstance(r, SplitRecord):
            out.append(r)
        elif isinstance(r, tuple) and len(r) == 3 and isinstance(r[0], (int, np.integer)):
            out.append(SplitRecord(int(r[0]), r[1], r[2]))
        elif hasattr(r, "groups") and hasattr(r, "level"):
            out.append(SplitRecord(int(r.level), getattr(r, "edge", None), r.groups))
        else:  # bare groups
            out.append(SplitRecord(0, None, r))
    for r in out:
        _as_labels(r.groups, f"{name}: split {r}")
    return out


def _compatible(x: SplitRecord, y: SplitRecord, match: str) -> bool:
    if match == "all":
        return True
    if match == "level":
        return x.level == y.level
    if match == "edge":
        return x.edge == y.edge
    raise ValueError(f"match: expected 'all', 'level' or 'edge', got {match!r}")


def _summarise(pairs: Iterable[tuple[SplitRecord, SplitRecord]], match: str, normalisation: str) -> DistanceSummary:
    values = []
    skipped = 0
    for x, y in pairs:
        if not _compatible(x, y, match):
            continue
        if {o for g in x.groups for o in g} != {o for g in y.groups for o in g}:
            skipped += 1
            continue
        values.append(split_distance(x.groups, y.groups, normalisation=normalisation))  # type: ignore[arg-type]
    if not values:
        return DistanceSummary(float("nan"), float("nan"), 0, skipped, ())
    v = np.asarray(values)
    return DistanceSummary(float(v.mean()), float(v.std()), len(values), skipped, tuple(values))


def _prep(trees: Sequence[Iterable[Any]], first_level: bool, name: str) -> list[list[SplitRecord]]:
    out = [_records(t, f"{name}[{i}]") for i, t in enumerate(trees)]
    if first_level:
        out = [[r for r in t if r.level == 0] for t in out]
    return out


def internal_split_distance(
    tree: Iterable[Any],
    *,
    match: Literal["all", "level", "edge"] = "all",
    normalisation: Normalisation = "code",
) -> DistanceSummary:
    """Mean split distance over the pairs of distinct splits of one tree (paper's internal setting)."""
    recs = _records(tree, "tree")
    return _summarise(itertools.combinations(recs, 2), match, normalisation)


def external_split_distance(
    trees: Sequence[Iterable[Any]],
    *,
    match: Literal["all", "level", "edge"] = "all",
    first_level: bool = False,
    normalisation: Normalisation = "code",
) -> DistanceSummary:
    """Mean split distance between splits of different trees of one criterion (different seeds): every
    unordered pair of trees, every split of one against every split of the other."""
    ts = _prep(trees, first_level, "trees")
    if len(ts) < 2:
        raise ValueError("external_split_distance: need at least two trees (seeds)")
    pairs = ((x, y) for ta, tb in itertools.combinations(ts, 2) for x in ta for y in tb)
    return _summarise(pairs, match, normalisation)


def cross_split_distance(
    trees_a: Sequence[Iterable[Any]],
    trees_b: Sequence[Iterable[Any]],
    *,
    match: Literal["all", "level", "edge"] = "all",
    first_level: bool = False,
    normalisation: Normalisation = "code",
) -> DistanceSummary:
    """Mean split distance between the trees of two criteria: every tree of ``trees_a`` against every
    tree of ``trees_b``, every split against every split."""
    ta_, tb_ = _prep(trees_a, first_level, "trees_a"), _prep(trees_b, first_level, "trees_b")
    if not ta_ or not tb_:
        raise ValueError("cross_split_distance: need at least one tree per criterion")
    pairs = ((x, y) for ta in ta_ for tb in tb_ for x in ta for y in tb)
    return _summarise(pairs, match, normalisation)
