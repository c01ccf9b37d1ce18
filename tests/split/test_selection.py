"""Edge selection rules and the NAS-LID separability score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lidsplit.split.partition import partition
from lidsplit.split.selection import RULES, select_edge, separability


def two_clusters(n: int, a: float, c: float, split: int) -> np.ndarray:
    """Ops [0, split) and [split, n): similarity ``a`` inside, ``c`` across."""
    s = np.full((n, n), c)
    s[:split, :split] = a
    s[split:, split:] = a
    np.fill_diagonal(s, 0.0)
    return s


@pytest.fixture
def mats() -> dict[int, np.ndarray]:
    return {
        0: two_clusters(4, 1.0, 0.5, 2),  # intra 2.0, cut 2.0
        1: two_clusters(4, 3.0, 0.1, 2),  # intra 6.0, cut 0.4  <- max intra, min cut
        2: two_clusters(4, 2.0, 0.9, 2),  # intra 4.0, cut 3.6  <- max cut
    }


def test_rules(mats: dict[int, np.ndarray]) -> None:
    assert select_edge(mats, 2, "max_intra").edge == 1
    assert select_edge(mats, 2, "min_cut").edge == 1
    assert select_edge(mats, 2, "max_cut").edge == 2
    assert select_edge(mats, 2, "ordered").edge == 0
    ch = select_edge(mats, 2, "max_intra", score="raw")
    assert ch.edge == 1 and ch.scores == {0: 2.0, 1: 6.0, 2: 4.0}
    assert ch.partition.groups == ((0, 1), (2, 3))
    assert ch.partitions is not None and set(ch.partitions) == {0, 1, 2}
    cut = select_edge(mats, 2, "min_cut", score="raw")
    assert cut.scores == pytest.approx({0: 2.0, 1: 0.4, 2: 3.6})


def test_sequence_input_and_none(mats: dict[int, np.ndarray]) -> None:
    seq = [mats[0], None, mats[2]]
    ch = select_edge(seq, 2, "max_intra")
    assert ch.edge == 2 and ch.candidates == (0, 2)


def test_candidates_restrict(mats: dict[int, np.ndarray]) -> None:
    assert select_edge(mats, 2, "max_intra", candidates=[0, 2]).edge == 2
    with pytest.raises(ValueError, match="no similarity matrix"):
        select_edge(mats, 2, candidates=[7])


def test_ties_go_to_lowest_index() -> None:
    m = two_clusters(4, 1.0, 0.2, 2)
    for rule in ("max_intra", "min_cut", "max_cut"):
        assert select_edge({3: m, 1: m.copy(), 2: m.copy()}, 2, rule).edge == 1
    # near-ties within the relative tolerance
    m2 = m.copy()
    m2[0, 1] = m2[1, 0] = 1.0 + 1e-14
    assert select_edge({0: m, 1: m2}, 2, "max_intra").edge == 0
    assert select_edge({0: m, 1: m2}, 2, "max_intra", rtol=0, atol=0).edge == 1


def test_too_few_ops_never_a_candidate() -> None:
    small = np.zeros((2, 2))
    big = two_clusters(5, 1.0, 0.0, 3)
    ch = select_edge({0: small, 1: big}, 3, "ordered")
    assert ch.edge == 1 and ch.candidates == (1,)
    assert all(len(g) >= 1 for g in ch.partition.groups) and len(ch.partition.groups) == 3
    with pytest.raises(ValueError, match="no candidate edge has >= 3 ops"):
        select_edge({0: small, 1: np.zeros((1, 1))}, 3)
    with pytest.raises(ValueError, match="no candidate edge"):
        select_edge({0: np.zeros((1, 1))}, 2)
    with pytest.raises(ValueError, match="b:"):
        select_edge({0: big}, 1)


def test_random_is_seeded(mats: dict[int, np.ndarray]) -> None:
    picks = [select_edge(mats, 2, "random", seed=s).edge for s in range(30)]
    assert picks == [select_edge(mats, 2, "random", seed=s).edge for s in range(30)]
    assert set(picks) == {0, 1, 2}
    rng = np.random.default_rng(5)
    e = select_edge(mats, 2, "random", seed=rng).edge
    assert e == select_edge(mats, 2, "random", seed=np.random.default_rng(5)).edge
    ch = select_edge(mats, 2, "random", seed=0)
    assert ch.scores is None and ch.partition == partition(mats[ch.edge], 2)


def test_mean_vs_raw_across_op_counts() -> None:
    # edge 0: 6 ops, moderate similarity; edge 1: 4 ops, higher per-pair similarity.
    e0 = two_clusters(6, 1.0, 0.0, 3)  # raw intra 6 (6 pairs), mean 1.0
    e1 = two_clusters(4, 2.0, 0.0, 2)  # raw intra 4 (2 pairs), mean 2.0
    assert select_edge({0: e0, 1: e1}, 2, "max_intra", score="raw").edge == 0
    assert select_edge({0: e0, 1: e1}, 2, "max_intra", score="mean").edge == 1


def test_b_equals_n_ranks_last_for_max_intra() -> None:
    # b == n: no intra pair, NaN mean intra -> -inf; the other edge wins even with negative similarity
    e0 = np.zeros((2, 2))
    e1 = -np.ones((3, 3))
    ch = select_edge({0: e0, 1: e1}, 2, "max_intra")
    assert ch.edge == 1 and ch.scores is not None and ch.scores[0] == -math.inf


def test_ops_labels_and_validation(mats: dict[int, np.ndarray]) -> None:
    ch = select_edge(mats, 2, ops={0: (0, 1, 2, 3), 1: (1, 2, 3, 4), 2: ("a", "b", "c", "d")})
    assert ch.partition.groups == ((1, 2), (3, 4))
    with pytest.raises(ValueError, match="rule"):
        select_edge(mats, 2, "best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"similarities\[1\]: not symmetric"):
        select_edge({0: mats[0], 1: np.arange(16.0).reshape(4, 4)}, 2)
    assert set(RULES) == {"max_intra", "min_cut", "max_cut", "random", "ordered"}


# ---- separability (NAS-LID eq. 7) ---------------------------------------------------------------


def test_separability_hand_made() -> None:
    # 5 ops (NB201): unordered pairs (10 = 2n) with similarities 1 (4 pairs) and 0 (6 pairs)
    s = np.zeros((5, 5))
    for i, j in [(0, 1), (0, 4), (1, 4), (2, 3)]:
        s[i, j] = s[j, i] = 1.0
    np.fill_diagonal(s, 123.0)  # ignored
    # pairs: mean 0.4, D^2 = (4 * 0.6^2 + 6 * 0.4^2) / 10 = 0.24
    assert separability(s) == pytest.approx(math.sqrt(0.24))
    # literal eq. 7 (ordered pairs i != j, 1/(2n) = 1/10): s_bar = 8/10 = 0.8,
    # D^2 = (8 * 0.2^2 + 12 * 0.8^2) / 10 = 0.8
    assert separability(s, convention="literal") == pytest.approx(math.sqrt(0.8))
    # literal = sqrt(2 (var + mean^2)) for n = 5 (see the module docstring)
    assert separability(s, convention="literal") == pytest.approx(math.sqrt(2 * (0.24 + 0.16)))


def test_separability_properties() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s = a + a.T
    assert separability(np.full((5, 5), 3.0)) == 0.0  # all pairs alike: not separable
    assert separability(s + 10.0) == pytest.approx(separability(s))  # shift invariant
    assert separability(2 * s) == pytest.approx(2 * separability(s))  # scales with similarity
    assert separability(np.zeros((1, 1))) == 0.0
    with pytest.raises(ValueError, match="convention"):
        separability(s, convention="x")  # type: ignore[arg-type]
