"""The strategies: NAS-LID evolution (counts, probabilities, elitism, dedup), regularized evolution (aging),
random search, per-leaf search; all reproducible from a seed."""

from __future__ import annotations

import pytest
import torch
from _search_helpers import FakeEvaluator, fake_score, make_tree

from lidsplit.search import AskTell, Evolution, PerLeaf, RandomSearch, RegularizedEvolution, Result, run_search
from lidsplit.spaces import NB201_SPACE
from lidsplit.supernet import SubSupernet


def by_generation(records):  # type: ignore[no-untyped-def]
    out: dict[int, list] = {}
    for r in records:
        out.setdefault(r.meta["generation"], []).append(r)
    return out


def test_evolution_defaults_are_nas_lid() -> None:
    e = Evolution(NB201_SPACE)
    assert (e.population, e.keep, e.n_crossover, e.n_mutation) == (50, 10, 20, 20)
    assert (e.crossover_prob, e.mutation_prob) == (0.1, 0.1)
    assert e.generations >= 1 and e.budget == 50 + (e.generations - 1) * 40


def test_evolution_generations_counts_elitism_and_dedup() -> None:
    ev = FakeEvaluator()
    e = Evolution(NB201_SPACE, generations=4, seed=3)
    res = run_search(ev, e, progress=False)
    assert res.finished and len(res.records) == 50 + 3 * 40 == e.budget
    archs = [r.arch for r in res.records]
    assert len(set(archs)) == len(archs) and sorted(ev.calls) == sorted(archs)  # deduplicated, never re-evaluated
    gens = by_generation(res.records)
    assert sorted(gens) == [0, 1, 2, 3]
    assert [r.meta["origin"] for r in gens[0]] == ["random"] * 50
    for g in (1, 2, 3):
        origins = [r.meta["origin"] for r in gens[g]]
        assert origins.count("crossover") == 20 and origins.count("mutation") == 20 and origins.count("random") == 0
        # the kept parents are the top 10 of everything evaluated before this generation
        before = [r for r in res.records if r.meta["generation"] < g]
        top = [r.arch for r in sorted(before, key=lambda r: -r.acc)[:10]]
        assert [tuple(a) for a in e.log[g]["kept"]] == top
        for r in gens[g]:
            parents = [tuple(p) for p in r.meta["parents"]]
            assert all(p in top for p in parents)
            if r.meta["origin"] == "crossover":
                p1, p2 = parents
                assert p1 != p2 and all(c in (a, b) for c, a, b in zip(r.arch, p1, p2))
            else:
                (p,) = parents
                assert r.arch != p
    assert e.log[1]["crossover"] == 20 and e.log[1]["random"] == 0
    # elitism: the best so far never gets worse from one generation to the next
    best = [max(r.acc for r in res.records if r.meta["generation"] <= g) for g in range(4)]
    assert best == sorted(best) and best[-1] > best[0]


def test_evolution_rest_is_random() -> None:
    e = Evolution(NB201_SPACE, population=12, keep=3, n_crossover=4, n_mutation=2, generations=3, seed=0)
    res = run_search(FakeEvaluator(), e, progress=False)
    for g, recs in by_generation(res.records).items():
        origins = [r.meta["origin"] for r in recs]
        if g == 0:
            assert origins == ["random"] * 12
        else:
            assert (origins.count("crossover"), origins.count("mutation"), origins.count("random")) == (4, 2, 3)
    with pytest.raises(ValueError, match="exceeds the population"):
        Evolution(NB201_SPACE, population=10, keep=5, n_crossover=3, n_mutation=3)


def test_crossover_and_mutation_per_edge_probability() -> None:
    e = Evolution(NB201_SPACE, seed=0)
    gen = torch.Generator().manual_seed(0)
    n, changed_c, changed_m, edges = 3000, 0, 0, 6
    for _ in range(n):
        p1, p2 = NB201_SPACE.random_arch(gen), NB201_SPACE.random_arch(gen)
        c = e._crossover(p1, p2, 0.1)
        assert all(x in (a, b) for x, a, b in zip(c, p1, p2))
        # an edge takes parent 2's op w.p. 0.1; it differs from parent 1 there w.p. 0.1 * 4/5
        changed_c += sum(x != a for x, a in zip(c, p1))
        m = e._mutate(p1, 0.1)
        changed_m += sum(x != a for x, a in zip(m, p1))  # a flipped edge always changes op
    assert changed_c / (n * edges) == pytest.approx(0.08, abs=0.01)
    assert changed_m / (n * edges) == pytest.approx(0.1, abs=0.012)


def test_evolution_stays_in_a_small_domain_and_stops_when_exhausted() -> None:
    dom = SubSupernet.full(NB201_SPACE)
    for e_, ops in [(0, [1, 2]), (1, [3]), (2, [0, 4]), (3, [2]), (4, [0, 1, 3]), (5, [4])]:
        dom = dom.restrict(e_, ops)
    assert dom.size == 12
    e = Evolution(dom, population=5, keep=2, n_crossover=2, n_mutation=1, generations=10, seed=0)
    res = run_search(FakeEvaluator(), e, progress=False)
    archs = [r.arch for r in res.records]
    assert res.finished and sorted(archs) == sorted(dom.archs())  # every architecture once, then it stops
    assert all(dom.contains(a) for a in archs)
    assert e.generation < 10


def test_regularized_evolution_ages_out_the_oldest() -> None:
    first: list[tuple[int, ...]] = []

    def score(a: tuple[int, ...]) -> float:
        if not first:
            first.append(a)
        return 0.99 if a == first[0] else fake_score(a) / 2  # the first architecture is by far the best

    s = RegularizedEvolution(NB201_SPACE, population=4, sample_size=2, cycles=10, seed=0)
    at = AskTell(s)
    while (a := at.ask()) is not None:
        if len(at.records) >= 4:  # a cycle: the parent is the best of a sample of the live population
            parent = tuple(s.meta(a)["parents"][0])
            assert parent in [m for m, _ in s.population]
            assert sum(x != y for x, y in zip(a, parent)) == 1  # one edge mutated
        acc = score(a)
        at.tell(a, Result(acc, 1 - acc))
    told = [r.arch for r in at.records]  # includes repeats answered from the record
    assert len(told) == 4 + 10 and at.finished
    assert [m for m, _ in s.population] == told[-4:]  # the 4 youngest, whatever their score
    assert first[0] == told[0] and first[0] not in told[-4:]
    assert first[0] not in [m for m, _ in s.population]  # the best of all aged out
    assert max(at.result().records, key=lambda r: r.acc).arch == first[0]
    # population size is constant once full: replay the tells and watch it
    s2 = RegularizedEvolution(NB201_SPACE, population=4, sample_size=2, cycles=10, seed=0)
    for i, r in enumerate(at.records):
        assert s2.ask() == r.arch
        s2.tell(r.arch, r.result)
        assert len(s2.population) == min(i + 1, 4)
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(NB201_SPACE, population=3, sample_size=4)


def test_random_search_unique_and_in_domain() -> None:
    tree = make_tree()
    leaf = tree.node(4).sub
    s = RandomSearch(leaf, samples=30, seed=0)
    res = run_search(FakeEvaluator(), s, progress=False)
    archs = [r.arch for r in res.records]
    assert len(archs) == 30 == len(set(archs)) and all(leaf.contains(a) for a in archs)
    tiny = SubSupernet.from_arch(NB201_SPACE, (1, 2, 3, 4, 0, 1)).restrict(0, [1])
    res = run_search(FakeEvaluator(), RandomSearch(tiny, samples=5), progress=False)
    assert [r.arch for r in res.records] == [(1, 2, 3, 4, 0, 1)] and res.finished


@pytest.mark.parametrize("make", [
    lambda seed: Evolution(NB201_SPACE, population=10, keep=3, n_crossover=3, n_mutation=3, generations=3, seed=seed),
    lambda seed: RegularizedEvolution(NB201_SPACE, population=6, sample_size=3, cycles=20, seed=seed),
    lambda seed: RandomSearch(NB201_SPACE, samples=20, seed=seed),
    lambda seed: PerLeaf(make_tree(), lambda sub, s: Evolution(sub, population=4, keep=2, n_crossover=1, n_mutation=1,
                                                               generations=2, seed=s), seed=seed),
])
def test_same_seed_same_trajectory(make) -> None:  # type: ignore[no-untyped-def]
    runs = [run_search(FakeEvaluator(make_tree()), make(seed), progress=False).trajectory() for seed in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_told_architectures_not_asked_join_the_evolution() -> None:
    """An outside proposal (warm start) becomes a parent when it is among the best."""
    e = Evolution(NB201_SPACE, population=6, keep=2, n_crossover=2, n_mutation=2, generations=2, seed=0)
    at = AskTell(e)
    star = (3, 3, 3, 3, 3, 3)
    at.tell(star, Result(1.0, 0.0))
    while (a := at.ask()) is not None:
        at.tell(a, Result(0.5 * fake_score(a), 1.0))
    assert tuple(e.log[1]["kept"][0]) == star
    recs = at.result().records
    assert recs[0].arch == star and not recs[0].asked and all(r.asked for r in recs[1:])
    assert star not in [r.arch for r in recs[1:]]  # never proposed again
    with pytest.raises(ValueError, match="outside this strategy's domain"):
        Evolution(make_tree().node(3).sub).tell((4, 4, 4, 4, 4, 4), Result(0.5))


def test_per_leaf_searches_each_leaf_with_its_own_strategy() -> None:
    tree = make_tree()
    s = PerLeaf(tree, lambda sub, seed: RandomSearch(sub, samples=3, seed=seed), seed=0)
    res = run_search(FakeEvaluator(tree), s, progress=False)
    assert [r.leaf for r in res.records] == [leaf for leaf in tree.leaf_ids() for _ in range(3)]
    assert set(res.picks()) == set(tree.leaf_ids())
    assert s.budget == 12 and s.finished
    seeds = [st.seed for st in s.strategies.values()]
    assert len(set(seeds)) == 4  # a different stream per leaf
    with pytest.raises(ValueError, match="searches"):
        PerLeaf(tree, lambda sub, seed: RandomSearch(NB201_SPACE, seed=seed))
