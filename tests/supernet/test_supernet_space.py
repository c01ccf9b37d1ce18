"""SearchSpace / SubSupernet: values, JSON, indexing, sampling, splitting."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lidsplit.supernet import Edge, SearchSpace, SubSupernet


def small_space() -> SearchSpace:
    return SearchSpace((Edge("a", ("x", "y", "z")), Edge("b", ("p", "q")), Edge("c", ("u", "v", "w", "t"))))


@st.composite
def spaces(draw):
    n_edges = draw(st.integers(1, 5))
    edges = []
    for e in range(n_edges):
        n_ops = draw(st.integers(1, 5))
        edges.append(Edge(f"e{e}<-{draw(st.integers(0, 9))}#{e}", tuple(f"op{j}" for j in range(n_ops))))
    return SearchSpace(tuple(edges))


@st.composite
def subs(draw):
    space = draw(spaces())
    masks = []
    for e in space.edges:
        m = draw(st.sets(st.integers(0, e.num_ops - 1), min_size=1))
        masks.append(frozenset(m))
    return SubSupernet(space, tuple(masks))


# ---- Edge / SearchSpace -------------------------------------------------------------------------


def test_edge_validation():
    with pytest.raises(ValueError, match="no candidate ops"):
        Edge("a", ())
    with pytest.raises(ValueError, match="duplicate op names"):
        Edge("a", ("x", "x"))
    with pytest.raises(ValueError, match="label"):
        Edge("", ("x",))
    with pytest.raises(ValueError, match="duplicate edge label"):
        SearchSpace((Edge("a", ("x",)), Edge("a", ("y",))))
    with pytest.raises(ValueError, match="at least one edge"):
        SearchSpace(())


def test_space_basics():
    sp = small_space()
    assert sp.num_edges == 3 and sp.size == 24 and sp.labels == ("a", "b", "c")
    assert sp.op_index("b", "q") == 1 and sp.op_index(2, "t") == 3
    with pytest.raises(KeyError, match="no op"):
        sp.op_index("a", "nope")
    with pytest.raises(KeyError, match="no edge"):
        sp.edge_index("zz")
    assert sp.names((2, 0, 3)) == ("z", "p", "t")
    assert sp.validate_arch(("z", "p", 3)) == (2, 0, 3)
    assert hash(sp) == hash(small_space()) and sp == small_space()
    assert {sp: 1}[small_space()] == 1


@pytest.mark.parametrize(
    "arch, err",
    [((0, 0), "entries"), ((0, 0, 4), "expected 0..3"), ((0, -1, 0), "expected 0..1"), ((0, 0.5, 0), "expected an int"), ("abc", "string")],
)
def test_validate_arch_errors(arch, err):
    with pytest.raises((ValueError, TypeError), match=err):
        small_space().validate_arch(arch)


def test_index_roundtrip_and_order():
    sp = small_space()
    archs = list(sp.all_archs())
    assert len(archs) == sp.size == len(set(archs))
    for i, a in enumerate(archs):
        assert sp.arch_to_index(a) == i
        assert sp.index_to_arch(i) == a
    with pytest.raises(ValueError):
        sp.index_to_arch(sp.size)
    with pytest.raises(ValueError):
        sp.index_to_arch(-1)


@given(spaces())
def test_space_json_roundtrip(sp):
    d = json.loads(json.dumps(sp.to_json()))
    back = SearchSpace.from_json(d)
    assert back == sp and back.edges == sp.edges and hash(back) == hash(sp)


def test_space_from_bad_json():
    with pytest.raises(ValueError, match="SearchSpace JSON"):
        SearchSpace.from_json({"nope": 1})


# ---- SubSupernet --------------------------------------------------------------------------------


def test_sub_basics():
    sp = small_space()
    full = SubSupernet.full(sp)
    assert full.size == sp.size and full.is_full() and full.splittable_edges() == (0, 1, 2)
    s = SubSupernet(sp, ({0, 2}, {1}, [3, 0, 1]))
    assert s.masks == (frozenset({0, 2}), frozenset({1}), frozenset({0, 1, 3}))
    assert s.size == 6 and s.enabled(2) == (0, 1, 3) and s.enabled("a") == (0, 2)
    assert s.enabled_names("c") == ("u", "v", "t")
    assert s.splittable_edges() == (0, 2)
    assert s.contains((2, 1, 3)) and not s.contains((1, 1, 3)) and not s.contains((0, 0))
    assert (0, 1, 0) in s
    assert list(s.archs()) == [a for a in sp.all_archs() if s.contains(a)]
    assert s.issubset(full) and not full.issubset(s)
    assert hash(s) == hash(SubSupernet(sp, ({2, 0}, {1}, {0, 1, 3}))) and s == SubSupernet(sp, ({2, 0}, {1}, {0, 1, 3}))
    one = SubSupernet.from_arch(sp, (1, 0, 2))
    assert one.size == 1 and list(one.archs()) == [(1, 0, 2)]
    with pytest.raises(ValueError, match="empty"):
        SubSupernet(sp, ({0}, set(), {0}))
    with pytest.raises(ValueError, match="masks for a space"):
        SubSupernet(sp, ({0}, {0}))
    with pytest.raises(ValueError, match="expected 0..1"):
        SubSupernet(sp, ({0}, {2}, {0}))
    with pytest.raises(AttributeError):
        s.masks = ()  # frozen


def test_split_partitions_archs():
    sp = small_space()
    full = SubSupernet.full(sp)
    kids = full.split("c", [[0, 3], [1], ["w"]])
    assert [k.enabled(2) for k in kids] == [(0, 3), (1,), (2,)]
    assert sum(k.size for k in kids) == full.size
    seen = [a for k in kids for a in k.archs()]
    assert sorted(seen) == sorted(full.archs())
    # a second split of a child only partitions the child's mask
    grand = kids[0].split(0, [[0], [1, 2]])
    assert [g.enabled(0) for g in grand] == [(0,), (1, 2)] and all(g.enabled(2) == (0, 3) for g in grand)
    assert kids[0].split(2, [[0, 3]]) == [kids[0]]  # trivial partition allowed


@pytest.mark.parametrize(
    "groups, err",
    [
        ([[0, 1], [1, 2, 3]], "overlap"),
        ([[0, 1], [2]], "missing \\[3\\]"),
        ([[0, 1], [2, 3], [4]], "expected 0..3"),
        ([[0, 1], [], [2, 3]], "empty group"),
        ([[0, 0, 1], [2, 3]], "repeats"),
        ([], "no groups"),
        ([0, 1, 2, 3], "sequence of ops"),
        ("0123", "sequence of op groups"),
        ([["u", "nope"], [2, 3]], "no op"),
    ],
)
def test_split_errors(groups, err):
    with pytest.raises((ValueError, TypeError, KeyError), match=err):
        SubSupernet.full(small_space()).split("c", groups)


def test_split_error_on_ops_not_enabled():
    s = SubSupernet.full(small_space()).restrict("c", [0, 1])
    with pytest.raises(ValueError, match="not enabled \\[2\\]"):
        s.split("c", [[0], [1, 2]])
    with pytest.raises(ValueError, match="not enabled"):
        s.restrict("c", [2])


def test_sample_uniform_contained_reproducible():
    sp = small_space()
    s = SubSupernet(sp, ({0, 2}, {0, 1}, {1, 2, 3}))
    g = torch.Generator().manual_seed(123)
    draws = [s.sample(g) for _ in range(6000)]
    assert all(s.contains(a) for a in draws)
    counts = Counter(draws)
    assert set(counts) == set(s.archs())  # every arch reached
    expected = len(draws) / s.size
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 35.0  # 11 dof: p ~ 2e-4 under uniformity
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [s.sample(g1) for _ in range(20)] == [s.sample(g2) for _ in range(20)]
    g3 = torch.Generator().manual_seed(8)
    assert [s.sample(g3) for _ in range(20)] != [s.sample(torch.Generator().manual_seed(7)) for _ in range(20)]


def test_sample_single_mask():
    sp = small_space()
    one = SubSupernet.from_arch(sp, (2, 1, 0))
    assert one.sample(torch.Generator().manual_seed(0)) == (2, 1, 0)


@given(subs())
def test_sub_json_roundtrip(s):
    d = json.loads(json.dumps(s.to_json()))
    back = SubSupernet.from_json(d)
    assert back == s and back.space == s.space
    assert SubSupernet.from_json(d, s.space) == s
    assert SubSupernet.from_json({"masks": d["masks"]}, s.space) == s


def test_sub_json_wrong_space():
    s = SubSupernet.full(small_space())
    other = SearchSpace((Edge("a", ("x",)),))
    with pytest.raises(ValueError, match="different search space"):
        SubSupernet.from_json(s.to_json(), other)
    with pytest.raises(ValueError, match="no 'space'"):
        SubSupernet.from_json({"masks": [[0]]})


@given(subs(), st.data())
def test_split_children_cover_parent(s, data):
    edges = s.splittable_edges()
    if not edges:
        return
    e = data.draw(st.sampled_from(edges))
    ops = list(s.enabled(e))
    perm = data.draw(st.permutations(ops))
    cut = data.draw(st.integers(1, len(ops) - 1))
    kids = s.split(e, [perm[:cut], perm[cut:]])
    assert sum(k.size for k in kids) == s.size
    assert all(k.issubset(s) for k in kids)
    if s.size <= 200:
        assert sorted(a for k in kids for a in k.archs()) == sorted(s.archs())
    for a in itertools.islice(s.archs(), 50):
        assert sum(k.contains(a) for k in kids) == 1
