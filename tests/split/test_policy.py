"""Splitting policies: leaf counts level by level, least-variance fill, capacities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lidsplit.split.policy import SplitPolicy, budget, constant, fill_factors, levels, rounds


def authors_constant_counts(m: int, b: int) -> list[int] | None:
    """Leaf counts of the authors' constant policy (one branching factor; last level combines 1 and b
    only); None where it fails ('Incompatible parameters')."""
    q, nodes, counts = m, 1, [1]
    while q / b > 1:
        q /= b
        nodes *= b
        counts.append(nodes)
    # last level: x nodes split in b, the rest in 1: x (b - 1) + nodes = m
    if nodes == m:
        return counts
    x, rem = divmod(m - nodes, b - 1)
    if rem or x > nodes:
        return None
    counts.append(m)
    return counts


def test_rounds() -> None:
    for t in range(1, 6):
        assert rounds(t).simulate() == [2**k for k in range(t + 1)]
    assert rounds(2).plan(0, 1) == (2,) and rounds(2).plan(1, 2) == (2, 2) and rounds(2).plan(2, 4) is None
    with pytest.raises(ValueError):
        rounds(0)


def test_levels_gm_nas() -> None:
    assert levels([2, 3]).simulate() == [1, 2, 6]  # MobileNet space: 2 then 3
    assert levels([2, 2, 2]).simulate() == [1, 2, 4, 8]  # DARTS space: 3 splits of 2
    assert levels([2, 3, 2], leaves=9).simulate() == [1, 2, 6, 9]  # budget: last level filled
    assert levels([2, 3, 2], leaves=9).plan(2, 6) == (2, 2, 2, 1, 1, 1)
    assert levels([2, 3], leaves=100).simulate() == [1, 2, 6]  # list exhausted before the budget
    assert levels([2, 3], leaves=4).simulate() == [1, 2, 4]


@pytest.mark.parametrize("b", [2, 3, 4])
def test_constant_hits_target(b: int) -> None:
    for n in range(1, 70):
        counts = constant(b, n).simulate()
        assert counts[-1] == n
        # full levels: powers of b while <= n, then at most one filled level
        full = [b**k for k in range(int(math.log(n, b) + 1e-9) + 1)]
        assert counts[: len(full)] == full
        assert len(counts) - len(full) <= 1
        ref = authors_constant_counts(n, b)
        if ref is not None:
            assert counts == ref, (n, b)


def test_constant_examples_and_paper_mode() -> None:
    assert constant(2, 8).simulate() == [1, 2, 4, 8]  # paper: depth 3, 8 leaves
    assert constant(2, 10).simulate() == [1, 2, 4, 8, 10]
    assert constant(2, 10).plan(3, 8) == (2, 2, 1, 1, 1, 1, 1, 1)
    assert constant(3, 8).plan(1, 3) == (3, 3, 2)  # the authors' code fails here (only 1 and 3 allowed)
    # Alg. 1 as printed: stop at the largest power of b <= N (first split always made)
    assert constant(2, 10, fill=False).simulate() == [1, 2, 4, 8]
    assert constant(3, 8, fill=False).simulate() == [1, 3]
    assert constant(3, 2, fill=False).simulate() == [1, 3]  # n <- 0 quirk: 0 * b <= N
    assert constant(3, 2).simulate() == [1, 2]
    assert budget(6).simulate() == [1, 2, 4, 6]


def test_seeded_fill_is_a_permutation() -> None:
    base = constant(2, 10).plan(3, 8)
    shuffled = constant(2, 10, seed=0).plan(3, 8)
    assert shuffled is not None and base is not None
    assert sorted(shuffled) == sorted(base)
    assert shuffled == constant(2, 10, seed=0).plan(3, 8)


def test_capacities() -> None:
    # a leaf whose edges have a single op left cannot split
    assert rounds(2).plan(1, 2, capacities=[1, 5]) == (1, 2)
    assert rounds(2).plan(1, 2, capacities=[1, 1]) is None
    # fill redistributes around capped leaves
    assert constant(3, 8).plan(1, 3, capacities=[2, 3, 3]) == (2, 3, 3)
    assert constant(4, 7).plan(1, 2, capacities=[2, 5]) == (2, 4)  # 4 is capped by b
    assert constant(4, 7).plan(1, 2, capacities=[2, 2]) == (2, 2)  # unreachable: take the caps
    assert constant(3, 10).simulate(capacity=2) == [1, 2, 4, 8, 10]
    with pytest.raises(ValueError, match="capacities"):
        rounds(2).plan(1, 2, capacities=[2])


def test_fill_factors_least_variance() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 7))
        caps = rng.integers(1, 5, n).tolist()
        target = int(rng.integers(n, sum(caps) + 1))
        f = fill_factors(n, target, caps)
        assert sum(f) == target and all(1 <= x <= c for x, c in zip(f, caps))
        # brute force: no feasible vector has a smaller variance
        import itertools

        best = min(
            np.var(v) for v in itertools.product(*[range(1, c + 1) for c in caps]) if sum(v) == target
        )
        assert np.var(f) == pytest.approx(best)


def test_validation() -> None:
    with pytest.raises(ValueError, match="factors"):
        SplitPolicy((1,))
    with pytest.raises(ValueError, match="factors"):
        SplitPolicy(())
    with pytest.raises(ValueError, match="repeat"):
        SplitPolicy((2,), repeat=True)
    with pytest.raises(ValueError, match="leaves"):
        constant(2, 0)
    with pytest.raises(ValueError, match="n_leaves"):
        rounds(1).plan(0, 0)
    assert rounds(1).factor(0) == 2 and rounds(1).factor(1) is None and constant(3, 9).factor(10) == 3
