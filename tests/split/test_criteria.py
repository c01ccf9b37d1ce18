"""Split criteria: finite symmetric matrices on every space, reproducibility, common random numbers,
model state untouched, grouped == separate, uninformative batches, similarity formulas, baselines."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lidsplit.data import synthetic
from lidsplit.spaces import darts, mobilenet, nb201
from lidsplit.split import criteria as C
from lidsplit.split.criteria import (
    CRITERIA,
    ExhaustiveCriterion,
    GMCriterion,
    LIDCriterion,
    ProxyCriterion,
    RandomCriterion,
    ScoringSet,
    characterisation_mode,
    lid_profiles,
    lid_similarity,
    make_criterion,
    scoring_set,
)
from lidsplit.split.partition import partition
from lidsplit.split.proxies import PROXIES
from lidsplit.supernet import Choice, SubSupernet, search_space


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return synthetic(96, num_classes=4, in_channels=1, image_size=8, seed=0, noise=0.5)


def tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "nb201":
        return nb201(C=4, N=1, num_classes=4)
    if name == "darts":
        return darts(C=4, layers=3, steps=2, num_classes=4)
    return mobilenet(num_classes=4, first_channels=4, first_block_channels=4, stages=((4, 1, 1), (8, 1, 2)),
                     feature_mix_channels=8, kernels=(3, 5), expansions=(1, 2))


def opts(name: str) -> dict:
    if name == "lid":
        return {"k": 3}
    if name == "ntk":
        return {"options": {"batched": True}}
    return {}


def cheap_sub(model: nn.Module, edge: int) -> SubSupernet:
    """One op on every edge but ``edge`` (all its ops): keeps the sum-mode proxies cheap."""
    space = search_space(model)
    masks = [frozenset((e.num_ops - 1,)) for e in space.edges]
    masks[edge] = frozenset(range(space.edges[edge].num_ops))
    return SubSupernet(space, tuple(masks))


# ---- every criterion on every space ---------------------------------------------------------------


@pytest.mark.parametrize("space_name", ["nb201", "darts", "mobilenet"])
@pytest.mark.parametrize("name", CRITERIA)
def test_finite_symmetric_on_every_space(space_name, name, data):
    model = tiny(space_name)
    space = search_space(model)
    edge = space.num_edges - 1
    full = name in ("lid", "gm", "exhaustive", "random")  # the cheap ones on the full sub-supernet
    sub = SubSupernet.full(space) if full else cheap_sub(model, edge)
    ss = scoring_set(sub, data, 1 if not full else 2, batch_size=8, seed=3)
    before = copy.deepcopy(model.state_dict())
    sc = make_criterion(name, **opts(name)).score_edge(model, ss, edge)
    n = space.edges[edge].num_ops
    assert sc.similarity.shape == (n, n)
    assert np.isfinite(sc.similarity).all()
    np.testing.assert_array_equal(sc.similarity, sc.similarity.T)
    assert sc.ops == tuple(range(n)) and sc.edge == edge and sc.criterion == name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no criterion changes the model
    p = partition(sc.similarity, 2)
    assert sorted(o for g in p.groups for o in g) == list(range(n))


def test_same_seed_identical_matrices(data):
    model = tiny("nb201")
    sub = SubSupernet.full(search_space(model))
    for name in ("lid", "gm", "snip", "random"):
        crit = make_criterion(name, **opts(name))
        a = crit.score_edges(model, scoring_set(sub, data, 2, batch_size=8, seed=11), [0, 5])
        b = crit.score_edges(model, scoring_set(sub, data, 2, batch_size=8, seed=11), [0, 5])
        for e in (0, 5):
            np.testing.assert_array_equal(a[e].similarity, b[e].similarity)
    lid = LIDCriterion(k=3)
    s11 = lid.score_edge(model, scoring_set(sub, data, 2, batch_size=8, seed=11), 5).similarity
    s12 = lid.score_edge(model, scoring_set(sub, data, 2, batch_size=8, seed=12), 5).similarity
    assert not np.array_equal(s11, s12)


def test_scoring_set_is_seeded(data):
    sub = SubSupernet.full(search_space(tiny("nb201")))
    a = scoring_set(sub, data, 3, batch_size=8, seed=5)
    b = scoring_set(sub, data, 3, batch_size=8, seed=5)
    c = scoring_set(sub, data, 3, batch_size=8, seed=6)
    assert a.paths == b.paths and a.describe() == b.describe()
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a.batches, b.batches))
    assert a.describe()["data_sha"] != c.describe()["data_sha"]
    assert all(sub.contains(p) for p in a.paths)
    # more batches than one epoch holds: continues into the next epochs
    many = scoring_set(sub, data, 12, batch_size=16, seed=5)
    assert len(many) == 12 and all(x.shape[0] == 16 for x, _ in many.batches)
    # any iterable of batches: its first R
    it = scoring_set(sub, [(x, y) for x, y in a.batches], 2)
    assert len(it) == 2 and it.batch_size == 8
    with pytest.raises(ValueError, match="larger than the data set"):
        scoring_set(sub, data, 1, batch_size=10_000)
    with pytest.raises(ValueError, match="batches"):
        scoring_set(sub, data, 0)


# ---- common random numbers ------------------------------------------------------------------------


class Recorder:
    """Records, per forward of the model, a digest of the input and the op run on every Choice."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[float, dict[str, int]]] = []
        self.handles = [model.register_forward_pre_hook(self.pre)]
        for ch in (m for m in model.modules() if isinstance(m, Choice)):
            for i, op in enumerate(ch.ops):
                self.handles.append(op.register_forward_hook(lambda _m, _i, _o, lb=ch.label, i=i: self.op(lb, i)))

    def pre(self, _m, args):
        self.calls.append((float(args[0].double().sum()), {}))

    def op(self, label: str, i: int) -> None:
        self.calls[-1][1].setdefault(label, i)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("name", ["lid", "gm"])
def test_common_random_numbers(name, data):
    """Two edges are scored on the same batches and the same paths (only the target edge differs)."""
    model = tiny("nb201")
    space = search_space(model)
    sub = SubSupernet.full(space)
    ss = scoring_set(sub, data, 3, batch_size=8, seed=7)
    crit = make_criterion(name, **opts(name))
    seen = {}
    for e in (0, 4):
        rec = Recorder(model)
        try:
            crit.score_edge(model, ss, e)
        finally:
            rec.close()
        seen[e] = rec.calls
    assert len(seen[0]) == len(seen[4]) == 3 * 5  # R batches x n variants
    for (x0, ops0), (x4, ops4), k in zip(seen[0], seen[4], range(15)):
        r, i = divmod(k, 5)
        assert x0 == x4 == pytest.approx(float(ss.batches[r][0].double().sum()))
        path = dict(zip(space.labels, ss.paths[r]))
        # edge 0 scored: op i there, every other edge on path r; edge 4 scored: the same, mirrored
        # (only the ops that ran are recorded: 'none' ops are never called)
        for lb, a in ops0.items():
            assert a == (i if lb == "1<-0" else path[lb])
        for lb, a in ops4.items():
            assert a == (i if lb == "3<-1" else path[lb])


def test_criteria_share_the_scoring_set(data):
    """Different criteria see the same batches: a stub criterion records what it is given."""
    seen = []

    class Stub(C.Criterion):
        name = "stub"

        def _measure(self, model, scoring, edge, ops, r, x, y, timings):
            seen.append((edge, r, float(x.sum()), scoring.paths[r]))
            return np.eye(len(ops)), {}, True, ""

    model = tiny("nb201")
    ss = scoring_set(SubSupernet.full(search_space(model)), data, 2, batch_size=8, seed=1)
    Stub().score_edges(model, ss, [1, 2])
    assert [s[1:] for s in seen if s[0] == 1] == [s[1:] for s in seen if s[0] == 2]


# ---- model state ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouped", [False, True])
def test_lid_keeps_bn_running_stats(grouped, data):
    model = tiny("nb201")
    model.train()
    model.cells[0].train(False)  # a mixed mode must be restored too
    flags = [(m, m.training) for m in model.modules()]
    before = copy.deepcopy(model.state_dict())
    ss = scoring_set(SubSupernet.full(search_space(model)), data, 2, batch_size=8, seed=0)
    LIDCriterion(k=3, grouped=grouped).score_edges(model, ss)
    after = model.state_dict()
    bn_keys = [k for k in before if "running_" in k or "num_batches_tracked" in k]
    assert bn_keys
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training == t for m, t in flags)
    assert all(p.grad is None for p in model.parameters())


def test_characterisation_mode_uses_batch_stats_without_update():
    bn = nn.BatchNorm1d(3)
    model = nn.Sequential(nn.Linear(2, 3), bn, nn.Dropout(0.5))
    model.eval()
    x = torch.randn(16, 2)
    with characterisation_mode(model):
        assert bn.training and not model[2].training
        y = model(x)
    assert not bn.training and bn.track_running_stats
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)  # batch statistics
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(3))


def test_lid_grouped_equals_separate(data):
    model = tiny("nb201")
    ss = scoring_set(SubSupernet.full(search_space(model)), data, 2, batch_size=8, seed=2)
    for others in ("path", "sum"):
        a = LIDCriterion(k=3, others=others).score_edge(model, ss, 3)
        b = LIDCriterion(k=3, others=others, grouped=True).score_edge(model, ss, 3)
        c = LIDCriterion(k=3, others=others, batched=True).score_edge(model, ss, 3)
        np.testing.assert_allclose(a.measurements["lid"], b.measurements["lid"], rtol=1e-4)
        np.testing.assert_allclose(a.measurements["lid"], c.measurements["lid"], rtol=1e-6)


def test_gm_matches_concatenated_cosine(data):
    """gm on one batch = cosine of the flattened loss gradients of the shared weights (reference)."""
    model = tiny("nb201")
    space = search_space(model)
    ss = scoring_set(SubSupernet.full(space), data, 1, batch_size=8, seed=4)
    edge = 2
    crit = GMCriterion()
    got = crit.score_edge(model, ss, edge).similarity
    from lidsplit.supernet import shared_parameters, use_path

    params = shared_parameters(model, space.edges[edge].label)
    x, y = ss.batches[0]
    vecs = []
    with characterisation_mode(model):
        for i in range(5):
            arch = list(ss.paths[0])
            arch[edge] = i
            with use_path(model, arch):
                loss = nn.functional.cross_entropy(model(x), y)
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            vecs.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().double()
                                   for g, p in zip(gs, params)]))
    v = torch.stack(vecs)
    nrm = v.norm(dim=1)
    ref = (v @ v.T) / (nrm[:, None] * nrm[None, :]).clamp_min(1e-300)
    ref = torch.where((nrm[:, None] > 0) & (nrm[None, :] > 0), ref, torch.zeros_like(ref))
    ref.fill_diagonal_(1.0)
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-6)


# ---- uninformative batches ------------------------------------------------------------------------


def test_dead_edge_batches_are_skipped(data):
    """NB201 edge 1<-0 is dead when 2<-1 and 3<-1 are 'none': those batches are left out."""
    model = tiny("nb201")
    space = search_space(model)
    sub = SubSupernet.full(space)
    base = scoring_set(sub, data, 2, batch_size=8, seed=0)
    dead = (1, 1, 0, 1, 0, 1)  # 2<-1 = none, 3<-1 = none
    live = (1, 1, 3, 1, 3, 1)
    ss = ScoringSet(sub, base.batches, (dead, live), 0, 8)
    for crit in (LIDCriterion(k=3), GMCriterion(), ProxyCriterion("snip", others="path")):
        sc = crit.score_edge(model, ss, 0)
        assert sc.informative and sc.batches == 1 and sc.skipped == 1, (crit, sc.notes)
        assert sc.notes and sc.notes[0].startswith("batch 0")
        alone = crit.score_edge(model, ScoringSet(sub, base.batches[1:], (live,), 0, 8), 0)
        np.testing.assert_allclose(sc.similarity, alone.similarity)
        keep = copy.copy(crit)
        keep.skip_uninformative = False
        assert keep.score_edge(model, ss, 0).batches == 2
    only_dead = LIDCriterion(k=3).score_edge(model, ScoringSet(sub, base.batches[:1], (dead,), 0, 8), 0)
    assert not only_dead.informative and only_dead.batches == 1


def test_edge_with_a_zero_input_is_skipped(data):
    """NB201 edge 3<-2 reads node 2 = none(node 0) + conv(node 1 = none(node 0)): zero up to rounding. The
    variants then differ by rounding only, and 'inverse' would give their pairs ~1e6."""
    model = tiny("nb201")
    sub = SubSupernet.full(search_space(model))
    base = scoring_set(sub, data, 2, batch_size=8, seed=0)
    dead = (0, 0, 3, 1, 1, 1)  # 1<-0 = none, 2<-0 = none, 2<-1 = nor_conv_3x3
    live = (1, 1, 3, 1, 1, 1)
    ss = ScoringSet(sub, base.batches, (dead, live), 0, 8)
    for crit in (LIDCriterion(k=3), GMCriterion()):
        sc = crit.score_edge(model, ss, "3<-2")
        assert sc.batches == 1 and sc.skipped == 1 and "input is zero" in sc.notes[0], (crit, sc.notes)
        alone = crit.score_edge(model, ScoringSet(sub, base.batches[1:], (live,), 0, 8), "3<-2")
        np.testing.assert_allclose(sc.similarity, alone.similarity)
    keep = LIDCriterion(k=3, skip_uninformative=False).score_edge(model, ss, "3<-2")
    off_diagonal = keep.similarity[~np.eye(5, dtype=bool)]
    assert keep.batches == 2 and off_diagonal.max() > 1e3  # what the skipped batch would have added
    assert LIDCriterion(k=3).score_edge(model, ss, "3<-2").similarity[~np.eye(5, dtype=bool)].max() < 1e3


# ---- formulas ---------------------------------------------------------------------------------------


def test_lid_similarity_kinds():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 5.0], [2.0, 4.0, 6.0], [4.0, 4.0, 4.0]])
    d01 = 2.0
    s = lid_similarity(a, "inverse")
    assert s[0, 1] == pytest.approx(1 / (d01 + 1e-6)) and s[0, 0] == pytest.approx(1e6)
    assert lid_similarity(a, "inverse", eps=0.5)[0, 1] == pytest.approx(1 / 2.5)
    assert lid_similarity(a, "inverse_plus_one")[0, 1] == pytest.approx(1 / (d01 + 1 + 1e-6))
    cos = lid_similarity(a, "cosine")
    assert cos[0, 2] == pytest.approx(1.0) and cos[0, 1] == pytest.approx(a[0] @ a[1] / np.linalg.norm(a[0]) / np.linalg.norm(a[1]))
    p = lid_similarity(a, "pearson")
    assert p[0, 2] == pytest.approx(1.0) and p[0, 1] == pytest.approx(np.corrcoef(a[0], a[1])[0, 1])
    assert p[0, 3] == 0.0 and p[3, 3] == 1.0  # constant profile: no correlation defined -> 0
    for k in ("inverse", "inverse_plus_one", "cosine", "pearson"):
        m = lid_similarity(a, k)
        np.testing.assert_allclose(m, m.T)
    with pytest.raises(ValueError, match="similarity"):
        lid_similarity(a, "euclid")


def test_lid_profiles_degenerate_layer_is_zero():
    torch.manual_seed(0)
    good = torch.randn(16, 6)
    flat = torch.zeros(16, 4)  # every sample equal: a point, LID 0
    prof, bad = lid_profiles([[good, flat], [good, good]], k=5)
    assert bad == 1 and prof[0, 1] == 0.0 and prof[0, 0] > 0 and prof[0, 0] == pytest.approx(prof[1, 0])
    with pytest.raises(ValueError, match="exceed k"):
        lid_profiles([[good]], k=16)


def test_lid_profiles_unknown_estimator_is_an_error_not_a_degenerate_layer():
    good = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown estimator 'mlee'"):
        lid_profiles([[good]], k=5, estimator="mlee")


def test_proxy_normalisation(data):
    model = tiny("nb201")
    space = search_space(model)
    sub = cheap_sub(model, 1)
    ss = scoring_set(sub, data, 1, batch_size=8, seed=0)
    sn = ProxyCriterion("snip").score_edge(model, ss, 1)
    v, ref = sn.measurements["values"], float(sn.measurements["reference"])
    m = (v - ref) / abs(ref)
    np.testing.assert_allclose(sn.similarity, -np.abs(m[:, None] - m[None, :]))
    gn = ProxyCriterion("gradnorm").score_edge(model, ss, 1)
    assert "reference" not in gn.measurements
    g = gn.measurements["values"]
    np.testing.assert_allclose(gn.similarity, -np.abs(g[:, None] - g[None, :]))
    dis = ProxyCriterion("snip", variant="disable").score_edge(model, ss, 1)
    assert dis.similarity.shape == (5, 5) and not np.allclose(dis.measurements["values"], v)
    assert space.edges[1].num_ops == 5


def test_baselines(data):
    model = tiny("nb201")
    sub = SubSupernet.full(search_space(model))
    ss = scoring_set(sub, data, 1, batch_size=8, seed=0)
    ex = ExhaustiveCriterion().score_edge(None, ss, 2)
    assert ex.similarity.shape == (5, 5) and ExhaustiveCriterion.exhaustive
    r1 = RandomCriterion().score_edge(None, ss, 2).similarity
    r2 = RandomCriterion().score_edge(None, ss, 3).similarity
    r3 = RandomCriterion().score_edge(None, scoring_set(sub, data, 1, batch_size=8, seed=1), 2).similarity
    np.testing.assert_array_equal(r1, RandomCriterion().score_edge(None, ss, 2).similarity)
    assert not np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    np.testing.assert_array_equal(r1, r1.T)


def test_make_criterion_names_and_errors():
    assert isinstance(make_criterion("gradient_matching"), GMCriterion)
    assert make_criterion("lr").name == "linear_regions" and make_criterion("jacobcov").name == "jacob_cov"
    assert set(PROXIES) <= set(CRITERIA)
    c = LIDCriterion(similarity="cosine")
    assert make_criterion(c) is c and c.config()["similarity"] == "cosine"
    with pytest.raises(ValueError, match="unknown"):
        make_criterion("nope")
    with pytest.raises(ValueError, match="similarity"):
        LIDCriterion(similarity="l1")
    with pytest.raises(ValueError, match="arch_weights"):
        GMCriterion(others="weighted")
    with pytest.raises(ValueError, match="grouped"):
        LIDCriterion(grouped=True, others="weighted", arch_weights=torch.zeros(6, 5))
    with pytest.raises(TypeError):
        make_criterion("exhaustive", k=3)


def test_weighted_others(data):
    model = tiny("nb201")
    space = search_space(model)
    ss = scoring_set(SubSupernet.full(space), data, 1, batch_size=8, seed=0)
    w = torch.zeros(space.num_edges, 5)  # uniform mixture = sum / 5 on every other edge
    sc = GMCriterion(others="weighted", arch_weights=w).score_edge(model, ss, 0)
    assert np.isfinite(sc.similarity).all() and sc.similarity.shape == (5, 5)


def test_single_op_edge_is_refused(data):
    model = tiny("nb201")
    space = search_space(model)
    sub = SubSupernet.full(space).restrict(0, [2])
    ss = scoring_set(sub, data, 1, batch_size=8, seed=0)
    with pytest.raises(ValueError, match="single enabled op"):
        LIDCriterion(k=3).score_edge(model, ss, 0)
    assert 0 not in ExhaustiveCriterion().score_edges(None, ss)  # default edges: those with >= 2 ops
