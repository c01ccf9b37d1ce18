"""Split distance: definition, normalisations, metric properties, internal/external/cross averages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lidsplit.split.distance import (
    DistanceSummary,
    SplitRecord,
    cross_split_distance,
    external_split_distance,
    internal_split_distance,
    label_distance,
    split_distance,
)


def direct(a: list[list[int]], b: list[list[int]]) -> int:
    """Definition 1 literally: sum over ops of |G_oA \\ G_oB| + |G_oB \\ G_oA|."""
    def mates(p: list[list[int]], o: int) -> set[int]:
        return next(set(g) - {o} for g in p if o in g)

    ops = [o for g in a for o in g]
    return sum(len(mates(a, o) ^ mates(b, o)) for o in ops)


def groups_from_labels(labels: list[int]) -> list[list[int]]:
    return [[i for i, v in enumerate(labels) if v == g] for g in sorted(set(labels))]


labels_st = st.integers(1, 8).flatmap(lambda n: st.tuples(*[st.lists(st.integers(0, 3), min_size=n, max_size=n) for _ in range(3)]))


def test_hand_values() -> None:
    a = [[0, 1], [2, 3, 4]]
    b = [[0, 1, 2], [3, 4]]
    # op 2 moved: pairs (0,2), (1,2) gained, (2,3), (2,4) lost -> 4 disagreeing pairs, raw 8
    assert direct(a, b) == 8
    assert split_distance(a, b, normalisation="none") == 8
    assert split_distance(a, b) == pytest.approx(8 / (2 * 4))  # code: 2(n-1)
    assert split_distance(a, b, normalisation="paper") == pytest.approx(8 / 9)  # paper: 2n-1
    assert split_distance(a, a) == 0.0
    assert split_distance(a, [[3, 4, 2], [1, 0]]) == 0.0  # group order / inner order irrelevant
    # extremes: all together vs all apart -> n(n-1)/2 pairs -> n/2 with the code normaliser
    n = 5
    assert split_distance([list(range(n))], [[i] for i in range(n)]) == pytest.approx(n / 2)


def test_names_as_ops_and_errors() -> None:
    assert split_distance([["skip", "pool"], ["conv"]], [["skip"], ["pool", "conv"]], normalisation="none") == 4
    with pytest.raises(ValueError, match="different ops"):
        split_distance([[0, 1]], [[0, 2]])
    with pytest.raises(ValueError, match="two groups"):
        split_distance([[0, 1], [1]], [[0, 1]])
    with pytest.raises(ValueError, match="empty"):
        split_distance([[0, 1], []], [[0, 1]])
    with pytest.raises(ValueError, match="normalisation"):
        split_distance([[0]], [[0]], normalisation="x")  # type: ignore[arg-type]
    assert split_distance([[0]], [[0]]) == 0.0  # n = 1


@given(labels_st)
def test_matches_definition(t: tuple[list[int], list[int], list[int]]) -> None:
    a, b, _ = (groups_from_labels(x) for x in t)
    n = len(t[0])
    assert split_distance(a, b, normalisation="none") == direct(a, b)
    if n > 1:
        assert split_distance(a, b) == pytest.approx(direct(a, b) / (2 * (n - 1)))
    assert split_distance(a, b, normalisation="paper") == pytest.approx(direct(a, b) / (2 * n - 1))


@pytest.mark.parametrize("normalisation", ["code", "paper", "none"])
@given(t=labels_st)
def test_metric_axioms(normalisation: str, t: tuple[list[int], list[int], list[int]]) -> None:
    a, b, c = (groups_from_labels(x) for x in t)
    d = lambda p, q: split_distance(p, q, normalisation=normalisation)  # noqa: E731
    assert d(a, a) == 0.0
    assert d(a, b) == d(b, a)
    assert d(a, c) <= d(a, b) + d(b, c) + 1e-12
    same = {frozenset(g) for g in a} == {frozenset(g) for g in b}
    assert (d(a, b) == 0.0) == same  # identity of indiscernibles (a true metric, n >= 1)


def test_metric_exhaustive_small() -> None:
    # every partition of 4 ops (15), every triple: the triangle inequality and identity hold
    parts = set()
    for lab in itertools.product(range(4), repeat=4):
        parts.add(frozenset(frozenset(i for i in range(4) if lab[i] == g) for g in set(lab)))
    ps = [[sorted(g) for g in p] for p in parts]
    assert len(ps) == 15
    for x, y, z in itertools.product(ps, repeat=3):
        assert split_distance(x, z) <= split_distance(x, y) + split_distance(y, z) + 1e-12
    for x, y in itertools.product(ps, repeat=2):
        assert (split_distance(x, y) == 0) == ({frozenset(g) for g in x} == {frozenset(g) for g in y})


def test_label_distance() -> None:
    rng = np.random.default_rng(0)
    la, lb = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    ga, gb = groups_from_labels(la.tolist()), groups_from_labels(lb.tolist())
    assert label_distance(la, lb) == pytest.approx(split_distance(ga, gb))
    assert label_distance(la, lb, normalisation="paper") == pytest.approx(split_distance(ga, gb, normalisation="paper"))
    assert label_distance(["a", "b", "a"], ["x", "x", "y"], normalisation="none") == 4
    assert label_distance(np.arange(15625) % 4, np.arange(15625) % 4) == 0.0
    with pytest.raises(ValueError, match="1-D"):
        label_distance([0, 1], [0, 1, 2])


# ---- internal / external / cross ----------------------------------------------------------------

A = [[0, 1], [2, 3, 4]]
B = [[0, 1, 2], [3, 4]]
C = [[0, 4], [1, 2, 3]]


def test_internal() -> None:
    tree = [SplitRecord(0, 3, A), SplitRecord(1, 0, B), SplitRecord(1, 5, A)]
    s = internal_split_distance(tree)
    d_ab = split_distance(A, B)
    assert isinstance(s, DistanceSummary) and s.count == 3
    assert s.mean == pytest.approx((d_ab + 0.0 + d_ab) / 3)
    lvl = internal_split_distance(tree, match="level")
    assert lvl.count == 1 and lvl.mean == pytest.approx(d_ab)
    # plain tuples and bare groups are accepted (including a bare split with 3 groups)
    assert internal_split_distance([(0, 3, A), (1, 0, B)]).mean == pytest.approx(d_ab)
    three = [[0], [1, 2], [3, 4]]
    assert internal_split_distance([three, A]).mean == pytest.approx(split_distance(three, A))


def test_external_and_cross() -> None:
    t1 = [(0, 2, A), (1, 0, B)]
    t2 = [(0, 2, A), (1, 0, C)]
    t3 = [(0, 1, B)]
    ext = external_split_distance([t1, t2, t3])
    pairs = [(x, y) for ta, tb in itertools.combinations([t1, t2, t3], 2) for x in ta for y in tb]
    want = [split_distance(x[2], y[2]) for x, y in pairs]
    assert ext.count == len(want) and ext.mean == pytest.approx(np.mean(want)) and ext.std == pytest.approx(np.std(want))
    first = external_split_distance([t1, t2, t3], first_level=True)
    assert first.count == 3 and first.mean == pytest.approx((0 + 2 * split_distance(A, B)) / 3)
    by_edge = external_split_distance([t1, t2, t3], match="edge")
    assert by_edge.count == 2  # edge 2 (t1, t2) and edge 0 (t1, t2)
    cross = cross_split_distance([t1], [t2, t3], first_level=True)
    assert cross.count == 2 and cross.mean == pytest.approx(split_distance(A, B) / 2)
    with pytest.raises(ValueError, match="two trees"):
        external_split_distance([t1])


def test_incomparable_splits_are_skipped() -> None:
    tree = [(0, 0, A), (1, 1, [[0, 1], [2]])]  # second split on an edge with 3 ops
    s = internal_split_distance(tree)
    assert s.count == 0 and s.skipped == 1 and np.isnan(s.mean)
