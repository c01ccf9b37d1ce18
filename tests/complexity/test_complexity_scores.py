"""All scores together: reproducibility, accuracy tables, split-tree leaves, tasks, JSON and the chart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _complexity_helpers import SMALL_OPS, make_small

from lidsplit.complexity import (
    AccuracyTable,
    arch_key,
    complexity_scores,
    evaluation_batch,
    jacob_cov_scores,
    multi_task,
    performance_diversity,
    report_json,
    spider_chart,
    tree_complexity,
)
from lidsplit.spaces import NB201_SPACE
from lidsplit.split import SplitTree
from lidsplit.supernet import SubSupernet


def _acc_table(space, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    vals = {}
    while len(vals) < n:
        vals[arch_key(space, space.random_arch(g))] = float(torch.rand((), generator=g))
    return AccuracyTable(space, vals)


def test_same_seed_same_scores(batch):
    kw = dict(samples=5, repeats=2, inputs=batch, seed=3)
    a = complexity_scores(make_small(0), **kw).to_json()
    b = complexity_scores(make_small(0), **kw).to_json()
    assert a == b
    c = complexity_scores(make_small(0), **{**kw, "seed": 4}).to_json()
    assert c["performance_diversity"]["per_repeat"] != a["performance_diversity"]["per_repeat"]


def test_model_state_untouched(small, batch):
    before = {k: v.clone() for k, v in small.state_dict().items()}
    small.eval()
    complexity_scores(small, samples=4, inputs=batch)
    assert not small.training
    for k, v in small.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_scores_without_table(small, batch):
    s = complexity_scores(small, name="small", samples=6, inputs=batch)
    assert s.size == 3**6 and s.name == "small"
    p = s.performance
    assert p.pds is None and "no accuracy table" in p.note
    assert p.population == "sampled" and p.n_archs == 6 and p.repeats == 1
    assert 0.0 <= p.sd_jacob_cov <= 0.5
    assert s.multi_task == 1 and s.tasks == ("classification",) and s.tasks_declared
    d = json.loads(json.dumps(s.to_json()))
    assert d["size"] == 729 and d["performance_diversity"]["pds"] is None
    assert d["multi_task"] == {"value": 1, "tasks": ["classification"], "declared": True}


def test_scores_with_table(small, batch):
    table = _acc_table(small.space, 12)
    s = complexity_scores(small, table=table, samples=8, repeats=2, inputs=batch)
    p = s.performance
    assert p.population == "table-sampled" and p.repeats == 2
    assert p.pds is not None and 0.0 <= p.pds <= 2.0 and p.sd_accuracy is not None
    # recompute repeat 0 by hand from the same archs
    from lidsplit.complexity.sampling import Population

    pop = Population(SubSupernet.full(small.space), 8, 2, 0, table.archs())
    j = jacob_cov_scores(small, pop.samples[0], batch)
    j = np.where(np.isfinite(j), j, np.nanmin(j))
    from lidsplit.complexity import pds

    assert p.per_repeat[0]["pds"] == pytest.approx(pds(j, [table[a] for a in pop.samples[0]]))
    # a table covering everything in a small sub-supernet: population "table", complete
    sub = SubSupernet.full(small.space).restrict(0, [1]).restrict(1, [2]).restrict(2, [1]).restrict(3, [2])
    full = AccuracyTable(small.space, {arch_key(small.space, a): float(i) for i, a in enumerate(sub.archs())})
    q = performance_diversity(small, sub, table=full, samples=20, inputs=batch)
    assert q.population == "table" and q.n_archs == 9 and q.pds is not None


def test_table_without_archs_of_the_sub(small, batch):
    table = AccuracyTable(small.space, {"0": 0.5, "1": 0.6})  # both start with op 0 on edge 0
    sub = SubSupernet.full(small.space).restrict(0, [2])
    p = performance_diversity(small, sub, table=table, samples=4, inputs=batch)
    assert p.pds is None and "no architecture of this" in p.note and p.population == "sampled"


def test_degenerate_architectures_counted(small, batch):
    sub = SubSupernet.full(small.space).restrict(3, [0]).restrict(4, [0]).restrict(5, [0])  # node 3 gets nothing
    p = performance_diversity(small, sub, samples=5, inputs=batch)
    assert p.n_degenerate == 5 and p.sd_jacob_cov is None and "degenerate" in p.note


def test_space_without_model():
    s = complexity_scores(NB201_SPACE, name="nb201-space")
    assert s.performance is None and "no supernet" in s.note and s.size == 15625
    assert s.multi_task == 1 and not s.tasks_declared
    assert complexity_scores(NB201_SPACE, proxy=False).note is None


def test_tasks():
    assert multi_task(tasks=("classification", "segmentation", "classification")) == (("classification", "segmentation"), True)
    assert multi_task(object()) == (("classification",), False)

    class LM:
        tasks = ("language_modeling",)

    assert multi_task(LM()) == (("language_modeling",), True)
    with pytest.raises(ValueError):
        multi_task(tasks=())
    s = complexity_scores(NB201_SPACE, tasks=["a", "b", "c"], proxy=False)
    assert s.multi_task == 3


def test_argument_errors(small, batch):
    with pytest.raises(ValueError, match="samples"):
        performance_diversity(small, samples=1, inputs=batch)
    with pytest.raises(ValueError, match="fixes the standard deviation"):
        performance_diversity(small, scale="rank", inputs=batch)
    with pytest.raises(ValueError, match="different search space"):
        performance_diversity(small, SubSupernet.full(NB201_SPACE), inputs=batch)
    with pytest.raises(TypeError):
        performance_diversity(NB201_SPACE)
    with pytest.raises(ValueError, match="batch_size"):
        evaluation_batch("synthetic", batch_size=1)


def test_evaluation_batch():
    x = evaluation_batch("synthetic", 8, seed=1)
    assert x.shape == (8, 1, 8, 8) and torch.equal(x, evaluation_batch("synthetic", 8, seed=1))
    assert not torch.equal(x, evaluation_batch("synthetic", 8, seed=2))
    t = torch.randn(3, 1, 8, 8)
    assert evaluation_batch(t) is t


def test_tree_leaves(small, batch, tmp_path):
    tree = SplitTree(small.space)
    tree.split(0, 0, [[0], [1, 2]])
    tree.split(2, 1, [[0], [1], [2]])
    tree.split(1, 1, [[0, 1, 2]])  # a one-group split: the leaf is the same sub-supernet
    res = tree_complexity(tree, small, samples=4, inputs=batch)
    leaves = tree.leaves()
    assert [r.name for r in res] == [f"leaf {n.id}" for n in leaves]
    assert [r.size for r in res] == [n.size for n in leaves]
    assert sum(r.size for r in res) == small.space.size
    for r, n in zip(res, leaves):
        assert r.sub == n.sub and r.to_json()["masks"] == [sorted(m) for m in n.sub.masks]
        assert r.performance is not None and r.performance.n_archs == 4
    again = tree_complexity(tree, small, samples=4, inputs=batch)
    assert [r.to_json() for r in again] == [r.to_json() for r in res]
    bare = tree_complexity(tree)  # no model: size, diversity, tasks
    assert all(r.performance is None for r in bare)
    # a single-architecture leaf: no diversity of any kind
    t2 = SplitTree(SubSupernet.from_arch(small.space, (1, 2, 1, 2, 1, 2)))
    (one,) = tree_complexity(t2, small, samples=4, inputs=batch)
    assert one.size == 1 and one.architecture.value == 0.0
    assert one.performance.sd_jacob_cov == 0.0 and one.performance.population == "all"
    with pytest.raises(ValueError, match="search space"):
        tree_complexity(SplitTree(NB201_SPACE), small)


def test_report_json_and_chart(small, batch, tmp_path):
    scores = [complexity_scores(small, name="small", samples=4, inputs=batch),
              complexity_scores(NB201_SPACE, name="nb201", proxy=False)]
    rep = json.loads(json.dumps(report_json(scores, {"samples": 4}), allow_nan=False))
    assert rep["format"] == "lidsplit.complexity" and [s["name"] for s in rep["spaces"]] == ["small", "nb201"]
    png = spider_chart(scores, tmp_path / "spider.png", title="t")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError):
        spider_chart([], tmp_path / "empty.png")


def test_small_space():
    assert make_small().space.edges[0].ops == SMALL_OPS
