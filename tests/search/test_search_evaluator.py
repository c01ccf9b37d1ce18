"""LeafEvaluator: each architecture is scored with the weights of the one leaf that contains it, leaf models
are loaded once (LRU), results equal evaluate_arch's, bad input is refused clearly."""

from __future__ import annotations

import pytest
import torch
from _search_helpers import make_tree, tiny_supernet

from lidsplit.search import Evolution, LeafEvaluator, PerLeaf, RandomSearch, Result, run_search
from lidsplit.spaces import NB201_SPACE, nb201
from lidsplit.split import SplitTree
from lidsplit.supernet import SubSupernet
from lidsplit.train import EvalResult, evaluate_arch

EVAL = {"calib_batches": 1, "max_batches": 1}


class Instrumented:
    """A loader callable and an evaluate_fn that check every evaluation uses the model of the leaf that
    contains the architecture (the model's identity is remembered at load time)."""

    def __init__(self, tree: SplitTree, models: dict[int, torch.nn.Module]) -> None:
        self.tree, self.models = tree, models
        self.owner: dict[int, int] = {}  # id(model) -> leaf it was loaded for
        self.load_calls: list[int] = []
        self.checked = 0

    def load(self, leaf: int) -> torch.nn.Module:
        self.load_calls.append(leaf)
        m = self.models[leaf]
        self.owner[id(m)] = leaf
        return m

    def evaluate_fn(self, model, arch, loaders, **kw):  # type: ignore[no-untyped-def]
        leaf = self.owner[id(model)]
        assert self.tree.route(arch) == leaf, f"{arch} evaluated with leaf {leaf}'s weights"
        assert self.tree.node(leaf).sub.contains(arch)
        self.checked += 1
        return evaluate_arch(model, arch, loaders, **kw)


@pytest.mark.parametrize("scope", ["global", "per_leaf"])
def test_search_never_evaluates_outside_its_leaf_and_loads_leaves_once(scope, data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree()
    inst = Instrumented(tree, leaf_models)
    ev = LeafEvaluator(tree, inst.load, data.loaders(16), evaluate_fn=inst.evaluate_fn, **EVAL)
    if scope == "global":  # one evolution over the whole root: children hop between leaves
        strategy = Evolution(tree, population=8, keep=3, n_crossover=2, n_mutation=2, generations=3,
                             crossover_prob=0.5, mutation_prob=0.5, seed=1)
    else:
        strategy = PerLeaf(tree, lambda sub, seed: Evolution(sub, population=3, keep=1, n_crossover=0, n_mutation=1,
                                                           generations=2, mutation_prob=0.5, seed=seed), seed=1)
    res = run_search(ev, strategy, progress=False)
    assert res.finished and inst.checked == ev.evaluations == res.evaluations > 0
    for r in res.records:
        assert r.leaf == tree.route(r.arch)
    leaves_used = {r.leaf for r in res.records}
    assert len(leaves_used) >= 3 if scope == "global" else leaves_used == set(tree.leaf_ids())
    assert sorted(inst.load_calls) == sorted(leaves_used)  # each leaf loaded exactly once
    assert ev.loads == {leaf: 1 for leaf in leaves_used}
    if scope == "per_leaf":  # the leaves are searched one after another, each strategy inside its leaf
        order = [r.leaf for r in res.records]
        assert order == sorted(order, key=tree.leaf_ids().index)
        for r in res.records:
            assert r.meta["leaf"] == r.leaf


def test_result_equals_evaluate_arch_with_the_leafs_model(data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree()
    loaders = data.loaders(16)
    ev = LeafEvaluator(tree, leaf_models, loaders, calib_batches=2)
    for arch in [(0, 1, 2, 3, 4, 0), (3, 3, 3, 3, 3, 3), (2, 0, 1, 1, 4, 2), (1, 4, 4, 4, 2, 4)]:
        leaf = tree.route(arch)
        want = evaluate_arch(leaf_models[leaf], arch, loaders, calib_batches=2)
        got = ev.evaluate(arch)
        assert got == Result(want.accuracy, want.loss, leaf, want.n)
        # another leaf's weights give another number: the leaf really matters
        other = next(lf for lf in tree.leaf_ids() if lf != leaf)
        assert evaluate_arch(leaf_models[other], arch, loaders, calib_batches=2).loss != got.loss
    assert ev(["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"]) == \
        ev.evaluate((0, 1, 2, 3, 4, 0))  # op names accepted, __call__ == evaluate


def fake_eval(model, arch, loaders, **kw):  # type: ignore[no-untyped-def]
    return EvalResult(tuple(arch), 0.5, 1.0, 1)


def test_lru_cache_evicts_least_recently_used() -> None:
    tree = make_tree()
    loads: list[int] = []

    def load(leaf: int) -> torch.nn.Module:
        loads.append(leaf)
        return tiny_supernet(0)

    a3, a4, a5 = (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 4), (2, 0, 0, 0, 0, 0)
    assert [tree.route(a) for a in (a3, a4, a5)] == [3, 4, 5]
    ev = LeafEvaluator(tree, load, None, cache_size=2, evaluate_fn=fake_eval)
    for a in (a3, a4, a3, a5, a3, a4):  # a5 evicts 4 (least recently used), then 4 evicts 5
        ev.evaluate(a)
    assert loads == [3, 4, 5, 4] and ev.loads == {3: 1, 4: 2, 5: 1}
    unbounded = LeafEvaluator(tree, load, None, evaluate_fn=fake_eval)
    loads.clear()
    for a in (a3, a4, a5) * 3:
        unbounded.evaluate(a)
    assert loads == [3, 4, 5]


def test_leaf_loss_is_seeded_mean_over_the_leaf(data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree()
    seen: list[tuple[int, ...]] = []

    def fn(model, arch, loaders, **kw):  # type: ignore[no-untyped-def]
        seen.append(tuple(arch))
        return EvalResult(tuple(arch), 0.0, float(sum(arch)), 1)

    ev = LeafEvaluator(tree, leaf_models, data.loaders(16), evaluate_fn=fn)
    loss = ev.leaf_loss(5, samples=6, seed=3)
    assert len(seen) == 6 and all(tree.route(a) == 5 for a in seen)
    assert loss == pytest.approx(sum(sum(a) for a in seen) / 6)
    assert ev.leaf_loss(5, samples=6, seed=3) == loss and seen[:6] == seen[6:]
    with pytest.raises(KeyError, match="not a leaf"):
        ev.leaf_loss(1)


def test_bad_inputs_are_refused_clearly(data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    loaders = data.loaders(16)
    root = SubSupernet.full(NB201_SPACE).restrict(0, [1, 2])
    small = SplitTree(root)
    small.split(0, 1, [[0, 1], [2, 3, 4]])
    ev = LeafEvaluator(small, {1: leaf_models[3], 2: leaf_models[4]}, loaders, **EVAL)
    with pytest.raises(ValueError, match="outside the root"):
        ev.evaluate((0, 0, 0, 0, 0, 0))  # edge 0 = none is not in the root
    with pytest.raises(ValueError, match="entries"):
        ev.evaluate((1, 2))
    tree = make_tree()
    with pytest.raises(KeyError, match="no model for leaf 3"):
        LeafEvaluator(tree, {4: leaf_models[4]}, loaders).evaluate((0, 0, 0, 0, 0, 0))
    with pytest.raises(KeyError, match="not a leaf"):
        LeafEvaluator(tree, leaf_models, loaders).model(1)
    other_space = {leaf: nb201(C=4, N=1, num_classes=4, in_channels=1, ops=("none", "skip_connect"))
                   for leaf in tree.leaf_ids()}
    with pytest.raises(ValueError, match="supernet of"):
        LeafEvaluator(tree, other_space, loaders).evaluate((0, 0, 0, 0, 0, 0))
    with pytest.raises(TypeError, match="not an nn.Module"):
        LeafEvaluator(tree, lambda leaf: "model", loaders).evaluate((0, 0, 0, 0, 0, 0))
    with pytest.raises(TypeError, match="models must be"):
        LeafEvaluator(tree, 3, loaders)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_size"):
        LeafEvaluator(tree, leaf_models, loaders, cache_size=0)
    with pytest.raises(ValueError, match="split"):
        LeafEvaluator(tree, leaf_models, loaders, split="train")
    with pytest.raises(TypeError, match="SplitTree"):
        LeafEvaluator(NB201_SPACE, leaf_models, loaders)  # type: ignore[arg-type]


def test_random_search_over_the_tree_root(data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree()
    ev = LeafEvaluator(tree, leaf_models, data.loaders(16), **EVAL)
    res = run_search(ev, RandomSearch(tree, samples=6, seed=0), progress=False)
    assert [r.leaf for r in res.records] == [tree.route(r.arch) for r in res.records]
    assert all(0.0 <= r.acc <= 1.0 and r.loss > 0 and r.n == 16 for r in res.records)


def test_leaf_models_on_any_device(device, data) -> None:  # type: ignore[no-untyped-def]
    """Models and data on ``device`` (CUDA when present): the evaluator scores on the model's device and
    matches the CPU numbers."""
    tree = make_tree()
    cpu_models = {leaf: tiny_supernet(leaf) for leaf in tree.leaf_ids()}
    dev_models = {leaf: tiny_supernet(leaf).to(device) for leaf in tree.leaf_ids()}
    arch = (3, 1, 2, 3, 0, 4)
    cpu = LeafEvaluator(tree, cpu_models, data.loaders(16), **EVAL).evaluate(arch)
    dev = LeafEvaluator(tree, dev_models, data.loaders(16, device=device), **EVAL).evaluate(arch)
    assert dev.leaf == cpu.leaf and dev.n == cpu.n
    assert dev.loss == pytest.approx(cpu.loss, rel=1e-4, abs=1e-5)
