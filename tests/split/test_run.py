"""The split run: leaves partition the space, reproducible, resumable, refuses other runs' directories."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import lidsplit
from lidsplit.data import digits
from lidsplit.spaces import nb201
from lidsplit.split import SplitEvent, SplitRunError, SplitTree, load_leaf, split
from lidsplit.split.policy import levels
from lidsplit.supernet import search_space


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return digits()


def model(seed: int = 0):
    torch.manual_seed(seed)
    return nb201(C=4, N=1)


# small and fast: 1 warm-up epoch at the first level only (17 steps of 64), 2 scoring batches of 32
BASE = dict(warmup_epochs=[1, 0], batches=2, score_batch_size=32, progress=False)
KW = dict(BASE, criterion_options={"k": 5})  # lid: k = 5 neighbours in batches of 32


class Stop(Exception):
    pass


def leaves_partition(tree: SplitTree) -> None:
    counts = {leaf.id: 0 for leaf in tree.leaves()}
    for arch in tree.space.all_archs():  # all 15625
        leaf = tree.route(arch)
        counts[leaf] += 1
        inside = [n.id for n in tree.leaves() if n.sub.contains(arch)]
        assert inside == [leaf]
    assert sum(counts.values()) == tree.space.size == 15625
    assert all(counts[i] == tree.nodes[i].size for i in counts)


@pytest.fixture(scope="module")
def lid_tree(data):
    return split(model(), data, "lid", 2, seed=0, **KW)


def test_two_rounds_give_four_leaves_that_partition_the_space(lid_tree, data):
    tree = lid_tree
    assert len(tree.leaves()) == 4 and len(tree) == 7
    leaves_partition(tree)
    root = tree.root
    assert root.criterion == "lid" and root.seed is not None
    sc = root.scores
    assert sc["rule"] == "max_intra" and sc["b"] == 2 and sc["edge"] == root.edge
    assert set(sc["partition"]) >= {"groups", "intra", "cut", "ncut"}
    assert len(sc["edges"]) == 6  # every unsplit edge scored
    for e in sc["edges"].values():
        assert len(e["similarity"]) == 5 and "separability" in e and "partition" in e and "score" in e
    # the children's edge is another (unsplit) one
    for c in root.children:
        assert tree.nodes[c].edge != root.edge and str(root.edge) not in tree.nodes[c].scores["edges"]
    # identical for the same seed (the weights too)
    again = split(model(), data, "lid", 2, seed=0, **KW)
    assert again == tree
    for leaf in tree.leaves():
        a, b = tree.states[leaf.id], again.states[leaf.id]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_interruption_gives_the_same_tree(lid_tree, data, tmp_path):
    events: list[str] = []

    def stop_after_first_split(ev: SplitEvent) -> None:
        events.append(ev.kind)
        if ev.kind == "split":
            raise Stop

    with pytest.raises(Stop):
        split(model(), data, "lid", 2, seed=0, run_dir=tmp_path, callback=stop_after_first_split, **KW)
    assert events == ["warmup", "split"]
    partial = SplitTree.load(tmp_path / "tree.json")
    assert len(partial) == 3 and json.loads((tmp_path / "run.json").read_text())["status"] == "running"

    seen: list[str] = []
    resumed = split(model(), data, "lid", 2, seed=0, run_dir=tmp_path, callback=lambda ev: seen.append(ev.kind), **KW)
    assert "warmup" in seen and seen.count("split") == 2  # the two children only: the root was not redone
    assert resumed == lid_tree
    assert SplitTree.load(tmp_path / "tree.json") == lid_tree
    m = model(1)
    for leaf in resumed.leaves():
        load_leaf(m, resumed, leaf.id)
        ref = lid_tree.states[leaf.id]
        assert all(torch.equal(ref[k], v) for k, v in m.state_dict().items())

    # a finished run is loaded, nothing is recomputed
    seen.clear()
    done = split(model(), data, "lid", 2, seed=0, run_dir=tmp_path, callback=lambda ev: seen.append(ev.kind), **KW)
    assert seen == ["done"] and done == lid_tree


def test_interrupted_during_warmup_resumes(data, tmp_path):
    """An interruption inside the first warm-up (mid-epoch) resumes from the training checkpoint."""
    kw = dict(BASE, warmup_epochs=[2, 0])
    ref = split(model(), data, "gm", [2], seed=1, **kw)
    import lidsplit.train as T

    real = T.train_subsupernet

    def stop(_ev):
        raise Stop

    def interrupted(*a, **k):  # the first warm-up stops after its first epoch (checkpoint written)
        return real(*a, on_epoch=stop, **k)

    T.train_subsupernet = interrupted
    try:
        with pytest.raises(Stop):
            split(model(), data, "gm", [2], seed=1, run_dir=tmp_path, **kw)
    finally:
        T.train_subsupernet = real
    assert (tmp_path / "nodes" / "0" / "warmup.pt").exists()
    out = split(model(), data, "gm", [2], seed=1, run_dir=tmp_path, **kw)
    assert out == ref


def test_different_arguments_are_refused(data, tmp_path):
    kw = dict(BASE, warmup_epochs=0)
    split(model(), data, "random", 1, seed=0, run_dir=tmp_path, **kw)
    with pytest.raises(SplitRunError, match="seed"):
        split(model(), data, "random", 1, seed=1, run_dir=tmp_path, **kw)
    with pytest.raises(SplitRunError, match="criterion"):
        split(model(), data, "exhaustive", 1, seed=0, run_dir=tmp_path, **kw)
    with pytest.raises(SplitRunError, match="weights_sha"):
        split(model(5), data, "random", 1, seed=0, run_dir=tmp_path, **kw)
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(SplitRunError, match="not empty"):
        split(model(), data, "random", 1, seed=0, run_dir=other, **kw)
    assert (other / "precious.txt").read_text() == "keep me"


def test_callable_package_and_aliases(data):
    assert callable(lidsplit.split) and lidsplit.run_split is split and lidsplit.split.split is split
    with pytest.deprecated_call(match="lidsplit.run_split"):
        t = lidsplit.split(model(), data, "random", 1, seed=0, **dict(BASE, warmup_epochs=0))
    assert isinstance(t, lidsplit.split.SplitTree) and len(t.leaves()) == 2


def test_exhaustive_and_levels_policy(data):
    kw = dict(BASE, warmup_epochs=0)
    t = split(model(), data, "exhaustive", 1, seed=0, **kw)
    assert len(t.leaves()) == 5 and t.root.edge == 0 and all(len(g) == 1 for g in t.root.groups)
    t = split(model(), data, "random", levels([2, 3]), seed=0, **kw)
    assert len(t.leaves()) == 6
    leaves_partition(t)
    with pytest.raises(TypeError, match="policy"):
        split(model(), data, "random", "two", **kw)


def test_restart_and_finetune(data):
    kw = dict(BASE, warmup_epochs=1)
    m = model()
    t = split(m, data, "random", 1, seed=0, finetune_epochs=1, restart=True, **kw)
    assert all(leaf.info["finetune"]["restart"] and len(leaf.info["finetune"]["history"]) == 1 for leaf in t.leaves())
    a, b = (t.states[leaf.id] for leaf in t.leaves())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # each leaf trained in its own masks
    # the model passed in is never modified
    ref = model()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in m.state_dict().items())
    assert search_space(m) == t.space


def test_continued_schedule_with_carried_optimizer_resumes_exactly(data, tmp_path):
    """lr_schedule="continued": every path follows one cosine (the leaves end at lr_min); the optimiser
    state is carried to the children; an interrupted run resumes to the same leaves."""
    kw = dict(BASE, warmup_epochs=[1, 1], finetune_epochs=1, lr_schedule="continued", carry_optimizer=True,
              train={"lr": 0.1, "lr_min": 0.01})
    ref = split(model(), data, "random", 2, seed=0, **kw)
    root_lr = ref.root.info["warmup"]["history"][-1]["lr"]
    mid_lr = ref.nodes[ref.root.children[0]].info["warmup"]["history"][-1]["lr"]
    # 3 epochs on every path: the root's last step sits at 1/3 of the cosine, level 1's at 2/3 (history
    # records the learning rate of an epoch's last step)
    steps = len(data.train) // 64 + (len(data.train) % 64 > 0)
    cos = [0.01 + 0.045 * (1 + math.cos(math.pi * (e * steps - 1) / (3 * steps))) for e in (1, 2)]
    assert root_lr == pytest.approx(cos[0]) and mid_lr == pytest.approx(cos[1])
    last = 0.01 + 0.045 * (1 + math.cos(math.pi * (3 * steps - 1) / (3 * steps)))
    assert all(leaf.info["finetune"]["history"][-1]["lr"] == pytest.approx(last) for leaf in ref.leaves())

    restarted = split(model(), data, "random", 2, seed=0, **{**kw, "lr_schedule": "restart"})
    own = 0.01 + 0.045 * (1 + math.cos(math.pi * (steps - 1) / steps))  # the end of the root's own cosine
    assert restarted.root.info["warmup"]["history"][-1]["lr"] == pytest.approx(own)

    def stop_after_first_split(ev: SplitEvent) -> None:
        if ev.kind == "split":
            raise Stop

    with pytest.raises(Stop):
        split(model(), data, "random", 2, seed=0, run_dir=tmp_path, callback=stop_after_first_split, **kw)
    assert (tmp_path / "nodes" / "0" / "optim.pt").exists()
    resumed = split(model(), data, "random", 2, seed=0, run_dir=tmp_path, **kw)
    m = model(1)
    for leaf in resumed.leaves():
        load_leaf(m, resumed, leaf.id)
        assert all(torch.equal(ref.states[leaf.id][k], v) for k, v in m.state_dict().items())
    with pytest.raises(SplitRunError, match="lr_schedule"):
        split(model(), data, "random", 2, seed=0, run_dir=tmp_path, **{**kw, "lr_schedule": "restart"})


def test_schedule_arguments_are_checked(data):
    with pytest.raises(ValueError, match="lr_schedule"):
        split(model(), data, "random", 2, lr_schedule="cosine", **BASE)
    with pytest.raises(TypeError, match="carry_optimizer"):
        split(model(), data, "random", 2, carry_optimizer="yes", **BASE)


# ---- the engine: config, steps, result --------------------------------------------------------------


def test_config_is_frozen_and_resolves_the_criterion_defaults():
    import dataclasses

    from lidsplit.split import SplitConfig

    cfg = SplitConfig("gm", [2, 3], warmup_epochs=[1, 0])
    assert cfg.criterion.name == "gm" and cfg.policy.factors == (2, 3) and cfg.warmup_epochs == (1, 0)
    assert (cfg.rule, cfg.balanced, cfg.batches, cfg.score_batch_size) == ("min_cut", True, 100, 64)
    assert [cfg.warmup(level) for level in range(4)] == [1, 0, 0, 0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="candidates"):
        SplitConfig("random", candidates="all")
    with pytest.raises(ValueError, match="rule"):
        SplitConfig("exhaustive", rule="max_intra")


def test_steps_one_by_one_give_the_run_and_are_idempotent(lid_tree, data, tmp_path):
    """What an executor does: warm_up, score, choose on each node, then fine_tune each leaf, repeating a
    step changes nothing; the tree and the leaves' weights are those of run_split."""
    from lidsplit.split import SplitConfig, SplitRun

    run = SplitRun(model(), data, SplitConfig("lid", 2, warmup_epochs=[1, 0], batches=2, score_batch_size=32,
                                              criterion_options={"k": 5}), run_dir=tmp_path, progress=False)
    frontier = [0]
    for level in range(2):
        nxt = []
        for nid in frontier:
            w = run.warm_up(nid, level)
            assert run.warm_up(nid, level)["history"] == w["history"]  # resumed from its checkpoint
            run.tree.nodes[nid].info["warmup"] = {"epochs": w["epochs"], "history": w["history"]}
            s = run.score(nid)
            again = run.score(nid)
            assert all(np.array_equal(s.scores[e].similarity, again.scores[e].similarity) for e in s.candidates)
            rec = run.choose(nid, 2, s)
            assert run.choose(nid, 2, again) is run.tree.nodes[nid].scores and rec["edge"] == run.tree.nodes[nid].edge
            nxt += run.tree.nodes[nid].children
        frontier = nxt
    for leaf in run.tree.leaves():
        info = run.fine_tune(leaf.id)
        assert run.fine_tune(leaf.id) == info
    assert run.tree == lid_tree
    result = run.run()  # everything is there: nothing is trained again
    m = model(1)
    for leaf in result.leaves():
        assert result.weights[leaf.id] == tmp_path / "nodes" / str(leaf.id) / "final.pt"
        result.load_leaf(m, leaf.id)
        assert all(torch.equal(lid_tree.states[leaf.id][k], v) for k, v in m.state_dict().items())


def test_the_result_holds_the_weights_and_timings(lid_tree, tmp_path):
    from lidsplit.split import SplitResult

    assert isinstance(lid_tree, SplitResult) and lid_tree.run_dir is None and not lid_tree.weights
    assert sorted(lid_tree.states) == lid_tree.leaf_ids()
    assert {"warmup", "score", "per_edge", "breakdown"} <= set(lid_tree.timings["0"])
    assert "finetune" in lid_tree.timings[str(lid_tree.leaf_ids()[0])]
    lid_tree.save(tmp_path / "t.json")
    plain = SplitTree.load(tmp_path / "t.json")
    assert plain == lid_tree and not hasattr(plain, "states")  # a plain tree carries no run attributes


def test_calling_the_package_is_deprecated(data):
    with pytest.warns(DeprecationWarning, match="lidsplit.run_split"):
        t = lidsplit.split(model(), data, "random", 1, seed=0, **dict(BASE, warmup_epochs=0))
    assert t == lidsplit.run_split(model(), data, "random", 1, seed=0, **dict(BASE, warmup_epochs=0))


def test_split_progress_has_a_total(data, monkeypatch):
    """The split bar counts splits and fine-tuned leaves against the planned tree."""
    import lidsplit.split.run as run_mod

    bars = []
    real = run_mod.progress_bar

    def spy(*a, **k):
        bar = real(*a, **k)
        bars.append((k, bar))
        return bar

    monkeypatch.setattr(run_mod, "progress_bar", spy)
    split(model(), data, "random", 1, seed=0, **{**BASE, "warmup_epochs": 0, "progress": True})
    kw, bar = next((k, b) for k, b in bars if k.get("desc") == "split")
    assert kw["total"] == 3 and kw["initial"] == 0 and bar.n == 3  # 1 split + 2 leaves
