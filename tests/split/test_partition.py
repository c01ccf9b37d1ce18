"""Exact partition: brute force agreement, counts, tie-breaking, permutation invariance, validation, speed."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lidsplit.split.partition import (
    Partition,
    count_partitions,
    cut_stats,
    enumerate_partitions,
    partition,
    validate_similarity,
)


def rgs_all(n: int, b: int, balanced: bool) -> list[tuple[int, ...]]:
    """Brute force: every label vector, kept if it is a canonical RGS with b groups (and balanced)."""
    out = []
    for lab in itertools.product(range(b), repeat=n):
        if lab[0] != 0:
            continue
        mx, ok = 0, True
        for v in lab[1:]:
            if v > mx + 1:
                ok = False
                break
            mx = max(mx, v)
        if not ok or mx != b - 1:
            continue
        sizes = [lab.count(g) for g in range(b)]
        if balanced and max(sizes) - min(sizes) > 1:
            continue
        out.append(lab)
    return sorted(out)


def intra_of(s: np.ndarray, lab: tuple[int, ...]) -> float:
    n = len(lab)
    return sum(s[i, j] for i in range(n) for j in range(i + 1, n) if lab[i] == lab[j])


def groups_of(lab: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    b = max(lab) + 1
    return tuple(tuple(i for i, v in enumerate(lab) if v == g) for g in range(b))


def sym(rng: np.random.Generator, n: int, kind: str = "normal") -> np.ndarray:
    if kind == "normal":
        a = rng.normal(size=(n, n))
    elif kind == "int":  # many ties
        a = rng.integers(-2, 3, size=(n, n)).astype(float)
    elif kind == "proxy":  # -|m_i - m_j| <= 0
        m = rng.normal(size=n)
        return -np.abs(m[:, None] - m[None, :])
    else:
        raise ValueError(kind)
    a = np.triu(a, 1)
    return a + a.T


# ---- counts and enumeration ---------------------------------------------------------------------


@pytest.mark.parametrize("balanced", [True, False])
def test_enumeration_is_every_feasible_rgs_in_lex_order(balanced: bool) -> None:
    for n in range(1, 8):
        for b in range(1, n + 1):
            got = [tuple(r) for r in enumerate_partitions(n, b, balanced=balanced).tolist()]
            assert got == rgs_all(n, b, balanced), (n, b)


def test_counts_closed_form() -> None:
    assert count_partitions(12, 3, balanced=True) == 5775
    assert count_partitions(12, 2, balanced=True) == 462
    assert count_partitions(12, 3, balanced=False) == 86526
    assert count_partitions(5, 2, balanced=True) == 10  # NB201: {2,3} splits of 5 ops
    assert count_partitions(5, 2, balanced=False) == 15
    for n in range(1, 10):
        for b in range(1, n + 1):
            for bal in (True, False):
                assert enumerate_partitions(n, b, balanced=bal).shape == (count_partitions(n, b, balanced=bal), n)


def test_enumeration_guard() -> None:
    with pytest.raises(ValueError, match="max_partitions"):
        enumerate_partitions(12, 5, balanced=False, max_partitions=1000)


# ---- exactness against brute force --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normal", "int", "proxy"])
@pytest.mark.parametrize("balanced", [True, False])
def test_matches_brute_force(kind: str, balanced: bool) -> None:
    rng = np.random.default_rng(1234)
    for n in range(3, 10):
        for b in range(2, 5):
            if b > n:
                continue
            labs = rgs_all(n, b, balanced) if n <= 8 else [tuple(r) for r in enumerate_partitions(n, b, balanced=balanced).tolist()]
            for _ in range(2 if n <= 8 else 1):
                s = sym(rng, n, kind)
                scores = [intra_of(s, lab) for lab in labs]
                best = max(scores)
                tol = 1e-12 + 1e-9 * np.abs(np.triu(s, 1)).sum()
                optima = [lab for lab, v in zip(labs, scores) if v >= best - tol]
                p = partition(s, b, balanced=balanced)
                assert p.count == len(labs)
                assert p.intra == pytest.approx(best, abs=1e-9)
                assert p.labels == optima[0]  # lexicographically smallest optimum
                assert p.groups == groups_of(optima[0])
                assert p.num_optimal == len(optima)
                total = np.triu(s, 1).sum()
                assert p.intra + p.cut == pytest.approx(total, abs=1e-9)
                # min cut == max intra
                assert p.cut == pytest.approx(min(total - v for v in scores), abs=1e-9)


def test_brute_force_n9_sanity() -> None:
    """n = 9 by a fully independent enumeration (itertools over labels, no use of our enumerator)."""
    rng = np.random.default_rng(7)
    s = sym(rng, 9)
    for b, balanced in [(2, True), (3, True), (3, False)]:
        labs = rgs_all(9, b, balanced)
        best = max(intra_of(s, lab) for lab in labs)
        assert partition(s, b, balanced=balanced).intra == pytest.approx(best, abs=1e-9)


def test_trivial_b() -> None:
    s = sym(np.random.default_rng(0), 6)
    p1 = partition(s, 1)
    assert p1.groups == ((0, 1, 2, 3, 4, 5),) and p1.cut == 0.0 and p1.count == 1
    assert p1.intra == pytest.approx(np.triu(s, 1).sum())
    pn = partition(s, 6)
    assert pn.groups == tuple((i,) for i in range(6)) and pn.intra == 0.0 and np.isnan(pn.mean_intra)
    one = partition(np.zeros((1, 1)), 1)
    assert one.groups == ((0,),) and one.ncut == 0.0


# ---- tie-breaking, invariance, conventions ------------------------------------------------------


def test_ties_lexicographic() -> None:
    s = np.ones((4, 4))
    p = partition(s, 2)
    assert p.groups == ((0, 1), (2, 3)) and p.num_optimal == 3
    p = partition(np.zeros((5, 5)), 2, balanced=False)
    assert p.groups == ((0, 1, 2, 3), (4,))  # RGS 00001 is the smallest
    # near-ties within the tolerance count as ties
    s = np.ones((4, 4))
    s[0, 2] = s[2, 0] = 1 + 1e-13
    assert partition(s, 2).groups == ((0, 1), (2, 3))
    assert partition(s, 2, rtol=0, atol=0).groups == ((0, 2), (1, 3))


def test_nb201_example() -> None:
    # two clear clusters {conv1x1, conv3x3} and {none, skip, avgpool}
    s = np.full((5, 5), 0.1)
    for i, j in [(2, 3), (0, 1), (0, 4), (1, 4)]:
        s[i, j] = s[j, i] = 1.0
    p = partition(s, 2)
    assert p.groups == ((0, 1, 4), (2, 3))
    assert p.intra == pytest.approx(4.0) and p.cut == pytest.approx(0.6)
    assert p.intra_pairs == 4 and p.cut_pairs == 6
    assert p.mean_intra == pytest.approx(1.0) and p.mean_cut == pytest.approx(0.1)


@given(st.integers(3, 9), st.integers(2, 4), st.booleans(), st.integers(0, 2**31 - 1))
def test_permutation_invariance(n: int, b: int, balanced: bool, seed: int) -> None:
    if b > n:
        return
    rng = np.random.default_rng(seed)
    s = sym(rng, n)
    perm = rng.permutation(n)  # new op k is old op perm[k]
    sp = s[np.ix_(perm, perm)]
    p = partition(s, b, balanced=balanced)
    q = partition(sp, b, balanced=balanced)
    assert q.intra == pytest.approx(p.intra, abs=1e-9)
    if p.num_optimal == 1:
        mapped = {tuple(sorted(int(perm[k]) for k in g)) for g in q.groups}
        assert mapped == set(p.groups)


def test_ops_labels() -> None:
    s = np.full((3, 3), 0.0)
    s[0, 2] = s[2, 0] = 5.0
    p = partition(s, 2, ops=(4, 1, 3))
    assert p.groups == ((1,), (3, 4))
    p = partition(s, 2, ops=("none", "skip", "conv"))
    assert set(p.groups) == {("conv", "none"), ("skip",)}
    with pytest.raises(ValueError, match="ops"):
        partition(s, 2, ops=(0, 0, 1))


def test_diagonal_ignored_and_torch_input() -> None:
    s = sym(np.random.default_rng(3), 6)
    d = s.copy()
    np.fill_diagonal(d, 1e6)
    p = partition(s, 2)
    q = partition(torch.tensor(d, dtype=torch.float32), 2)
    assert p.groups == q.groups and q.intra == pytest.approx(p.intra, rel=1e-6)
    np.fill_diagonal(d, np.inf)
    assert partition(d, 2).groups == p.groups


def test_ncut_finite_and_definition() -> None:
    # zeros: every assoc is 0 -> ncut 0
    assert partition(np.zeros((4, 4)), 2).ncut == 0.0
    # proxy similarities (<= 0) are shifted to >= 0
    rng = np.random.default_rng(0)
    s = sym(rng, 6, "proxy")
    p = partition(s, 3, balanced=False)
    assert np.isfinite(p.ncut) and 0.0 <= p.ncut <= 3.0
    # hand value on a non-negative matrix
    w = np.array([[0, 3, 1, 0], [3, 0, 0, 1], [1, 0, 0, 3], [0, 1, 3, 0]], dtype=float)
    st_ = cut_stats(w, [(0, 1), (2, 3)])
    assert st_.intra == 6 and st_.cut == 2
    assert st_.ncut == pytest.approx(2 / 8 + 2 / 8)
    assert partition(w, 2).groups == ((0, 1), (2, 3))


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="similarity: expected a square"):
        partition(np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="similarity: not symmetric"):
        partition(np.array([[0, 1.0], [2.0, 0]]), 2)
    with pytest.raises(ValueError, match="non-finite"):
        partition(np.array([[0, np.nan], [np.nan, 0]]), 2)
    with pytest.raises(ValueError, match="empty"):
        validate_similarity(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="b: cannot split 3 op"):
        partition(np.zeros((3, 3)), 4)
    with pytest.raises(ValueError, match="b: cannot split"):
        partition(np.zeros((3, 3)), 0)
    with pytest.raises(TypeError, match="b:"):
        partition(np.zeros((3, 3)), 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a numeric"):
        partition([["a", "b"], ["c", "d"]], 2)
    with pytest.raises(ValueError, match="in two groups"):
        cut_stats(np.zeros((3, 3)), [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="in no group"):
        cut_stats(np.zeros((3, 3)), [(0, 1)])


def test_result_is_frozen() -> None:
    p = partition(np.ones((3, 3)), 2)
    assert isinstance(p, Partition)
    with pytest.raises(AttributeError):
        p.intra = 0.0  # type: ignore[misc]


def test_speed_n12() -> None:
    s = sym(np.random.default_rng(0), 12)
    for b, balanced in [(2, True), (3, True), (4, True), (3, False)]:
        partition(s, b, balanced=balanced)  # warm the enumeration cache
        t = time.perf_counter()
        partition(s, b, balanced=balanced)
        assert time.perf_counter() - t < 0.5, (b, balanced)
