"""Choice modules and forward modes on toy supernets."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

import lidsplit.ops
from lidsplit.supernet import (
    BatchNorm1d,
    Choice,
    Mixture,
    SharedModulesWarning,
    SubSupernet,
    choices,
    convert_batchnorm,
    edge_parameters,
    materialize,
    record_outputs,
    search_space,
    shared_parameters,
    use_grouped,
    use_path,
    use_sampled_path,
    use_sum,
    use_weighted,
)
from lidsplit.spaces.common import Zero


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def lin_ops(d=4, names=("l1", "l2", "none", "sq")):
    ops = []
    for n in names:
        if n == "none":
            ops.append((n, Zero()))
        elif n == "sq":
            ops.append((n, nn.Sequential(nn.Linear(d, d), BatchNorm1d(d), nn.Tanh())))
        else:
            ops.append((n, nn.Linear(d, d)))
    return ops


class Toy(nn.Module):
    """Two layers share label 'x'; 'y' is its own edge; a BN outside any choice."""

    def __init__(self, d=4):
        super().__init__()
        self.pre = nn.Sequential(nn.Linear(d, d), BatchNorm1d(d))
        self.c1 = Choice("x", lin_ops(d))
        self.c2 = Choice("y", lin_ops(d, ("a", "none", "b")) and [("a", nn.Linear(d, d)), ("none", Zero()), ("b", nn.Sequential(BatchNorm1d(d), nn.Linear(d, d)))])
        self.c3 = Choice("x", lin_ops(d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        x = self.pre(x)
        x = torch.relu(self.c1(x))
        x = self.c2(x) + x
        x = self.c3(x)
        return self.head(x)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy()


def test_space_discovery(toy):
    sp = search_space(toy)
    assert sp.labels == ("x", "y")
    assert sp.edges[0].ops == ("l1", "l2", "none", "sq") and sp.edges[1].ops == ("a", "none", "b")
    chs = choices(toy)
    assert chs["x"] == [toy.c1, toy.c3] and chs["y"] == [toy.c2]


def test_shared_label_mismatch_is_clear():
    m = nn.Sequential(Choice("e", [("a", nn.Identity()), ("b", nn.Identity())]), Choice("e", [("a", nn.Identity()), ("c", nn.Identity())]))
    with pytest.raises(ValueError, match=r"sharing label 'e' have different ops: 0 has \['a', 'b'\], 1 has \['a', 'c'\]"):
        search_space(m)
    with pytest.raises(ValueError, match="different ops"):
        with use_sum(m):
            pass


def test_choice_validation():
    with pytest.raises(TypeError, match="not an nn.Module"):
        Choice("e", [("a", 3)])
    with pytest.raises(ValueError, match="duplicate"):
        Choice("e", [("a", nn.Identity()), ("a", nn.Identity())])
    with pytest.raises(ValueError, match="no Choice"):
        search_space(nn.Linear(2, 2))


def test_outside_mode_raises(toy):
    with pytest.raises(RuntimeError, match="outside any forward mode"):
        toy(torch.randn(4, 4))
    single = Choice("s", [("only", nn.Identity())])
    x = torch.randn(2, 3)
    assert torch.equal(single(x), x)


def recorder(ins, outs):
    def hook(_m, i, o):
        ins.append(i[0])
        outs.append(o)

    return hook


def manual_choice_sum(choice, x, enabled):
    outs = [choice.ops[j](x) for j in enabled]
    return sum(outs[1:], outs[0])


def test_sum_equals_manual_loop(toy):
    """Each Choice output in sum mode == explicit sum over its enabled ops on the recorded input."""
    x = torch.randn(8, 4)
    sp = search_space(toy)
    for masks in [({0, 1, 2, 3}, {0, 1, 2}), ({1, 3}, {0, 2}), ({2}, {1}), ({0, 2}, {2})]:
        sub = SubSupernet(sp, masks)
        ins, outs = [], []
        hooks = [c.register_forward_hook(recorder(ins, outs)) for c in (toy.c1, toy.c2, toy.c3)]
        try:
            with use_sum(toy, sub):
                toy(x)
        finally:
            for h in hooks:
                h.remove()
        for c, i, o in zip((toy.c1, toy.c2, toy.c3), ins, outs):
            e = sp.edge_index(c.label)
            ref = manual_choice_sum(c, i, sorted(sub.masks[e]))
            torch.testing.assert_close(o, ref)


def test_sum_skips_zero_and_disabled_ops(toy, monkeypatch):
    calls = []
    for c in (toy.c1, toy.c2, toy.c3):
        for name, op in zip(c.op_names, c.ops):
            op.register_forward_hook(lambda m, i, o, n=(c.label, name): calls.append(n))
    sub = SubSupernet(search_space(toy), ({0, 2}, {0, 1}))
    with use_sum(toy, sub):
        toy(torch.randn(4, 4))
    assert ("x", "none") not in calls and ("y", "none") not in calls
    assert ("x", "l2") not in calls and ("x", "sq") not in calls and ("y", "b") not in calls
    assert calls.count(("x", "l1")) == 2 and calls.count(("y", "a")) == 1
    calls.clear()
    only_none = SubSupernet(search_space(toy), ({2}, {1}))
    with use_sum(toy, only_none):
        y = toy(torch.randn(4, 4))
    assert calls.count(("x", "none")) == 2 and y.shape == (4, 3)  # zeros of the right shape


def test_path_equals_materialized_and_singleton_sum(toy):
    x = torch.randn(6, 4)
    for arch in [(0, 0), (3, 2), (2, 1), (1, 2)]:
        with use_path(toy, arch) as a:
            assert a == arch
            y = toy(x)
        fixed = materialize(toy, arch)
        assert not any(isinstance(m, Choice) for m in fixed.modules())
        torch.testing.assert_close(fixed(x), y)
        with use_sum(toy, SubSupernet.from_arch(search_space(toy), arch)):
            torch.testing.assert_close(toy(x), y)
    with use_path(toy, ("sq", "b")):
        y1 = toy(x)
    with use_path(toy, (3, 2)):
        torch.testing.assert_close(toy(x), y1)
    with pytest.raises(ValueError, match="expected 0..2"):
        with use_path(toy, (0, 3)):
            pass


def test_path_runs_only_chosen_op(toy):
    seen = []
    for j, op in enumerate(toy.c1.ops):
        op.register_forward_pre_hook(lambda m, i, j=j: seen.append(j))
    with use_path(toy, (1, 0)):
        toy(torch.randn(3, 4))
    assert seen == [1]  # c1 only; c3 has its own op modules


def test_weighted_equals_manual(toy):
    x = torch.randn(5, 4)
    sp = search_space(toy)
    alphas = {"x": torch.randn(4, requires_grad=True), "y": torch.randn(3, requires_grad=True)}
    for sub in [None, SubSupernet(sp, ({0, 3}, {0, 2}))]:
        ins, outs = [], []
        h = toy.c3.register_forward_hook(recorder(ins, outs))
        try:
            with use_weighted(toy, alphas, sub=sub):
                y = toy(x)
        finally:
            h.remove()
        en = list(range(4)) if sub is None else sorted(sub.masks[0])
        w = torch.softmax(alphas["x"][en], 0)
        ref = sum(w[k] * toy.c3.ops[j](ins[0]) for k, j in enumerate(en))
        torch.testing.assert_close(outs[0], ref)
        y.sum().backward()
        assert alphas["x"].grad is not None and alphas["y"].grad is not None
        if sub is not None:
            assert alphas["x"].grad[1] == 0 and alphas["x"].grad[2] == 0
        alphas["x"].grad = alphas["y"].grad = None
    # given weights, no softmax
    wts = {"x": torch.tensor([0.5, 0.0, 0.0, 2.0]), "y": torch.tensor([1.0, 0.0, 0.0])}
    ins, outs = [], []
    h = toy.c1.register_forward_hook(recorder(ins, outs))
    with use_weighted(toy, wts, softmax=False):
        toy(x)
    h.remove()
    torch.testing.assert_close(outs[0], 0.5 * toy.c1.ops[0](ins[0]) + 2.0 * toy.c1.ops[3](ins[0]))


def test_weighted_errors(toy):
    with pytest.raises(KeyError, match="missing"):
        with use_weighted(toy, {"x": torch.zeros(4)}):
            pass
    with pytest.raises(ValueError, match="shape"):
        with use_weighted(toy, {"x": torch.zeros(3), "y": torch.zeros(3)}):
            pass
    with pytest.raises(ValueError, match="num_edges"):
        with use_weighted(toy, torch.zeros(2, 4)):  # edges have 4 and 3 ops
            pass


def test_weighted_tensor_and_parameterdict():
    torch.manual_seed(1)
    m = nn.Sequential(Choice("a", lin_ops(4, ("l1", "l2"))), Choice("b", lin_ops(4, ("l1", "l2"))))
    x = torch.randn(3, 4)
    alpha = torch.randn(2, 2)
    with use_weighted(m, alpha):
        y1 = m(x)
    with use_weighted(m, nn.ParameterDict({"a": nn.Parameter(alpha[0].clone()), "b": nn.Parameter(alpha[1].clone())})):
        y2 = m(x)
    torch.testing.assert_close(y1, y2)


# ---- mode state: nesting, exceptions, threads ----------------------------------------------------


def test_modes_restore_and_nest(toy):
    x = torch.randn(4, 4)
    with use_path(toy, (0, 0)):
        ya = toy(x)
        with use_path(toy, (1, 2)):
            yb = toy(x)
            with use_sum(toy):
                ys = toy(x)
            torch.testing.assert_close(toy(x), yb)
        torch.testing.assert_close(toy(x), ya)
    with pytest.raises(RuntimeError, match="outside"):
        toy(x)
    assert not torch.allclose(ya, yb) and not torch.allclose(ya, ys)


def test_inner_context_on_submodule_overrides_only_it(toy):
    x = torch.randn(4, 4)
    with use_path(toy, (0, 0)):
        with use_path(toy.c3, (1,)):
            y = toy(x)
    ref = materialize(toy, (0, 0))
    ref.c3 = copy.deepcopy(toy.c3.ops[1])
    torch.testing.assert_close(ref(x), y)


def test_exception_inside_restores(toy):
    x = torch.randn(4, 4)
    with use_path(toy, (0, 0)):
        y0 = toy(x)
        with pytest.raises(ZeroDivisionError):
            with use_sum(toy):
                1 / 0
        torch.testing.assert_close(toy(x), y0)
        with pytest.raises(ZeroDivisionError):
            with use_sampled_path(toy, None, torch.Generator().manual_seed(0)):
                1 / 0
        assert len(toy._forward_pre_hooks) == 0  # sampled path removed its hook
        torch.testing.assert_close(toy(x), y0)
    with pytest.raises(RuntimeError, match="outside"):
        toy(x)


def test_other_thread_does_not_see_mode(toy):
    x = torch.randn(4, 4)
    errors = []

    def run():
        try:
            toy(x)
        except RuntimeError as exc:
            errors.append(str(exc))

    with use_sum(toy):
        t = threading.Thread(target=run)
        t.start()
        t.join()
    assert errors and "outside" in errors[0]


def test_wrong_space_sub_rejected(toy):
    other = nn.Sequential(Choice("q", lin_ops(4, ("l1", "l2"))))
    sub = SubSupernet.full(search_space(other))
    for ctx in (lambda: use_sum(toy, sub), lambda: use_sampled_path(toy, sub), lambda: use_grouped(toy, [sub])):
        with pytest.raises(ValueError, match="different search space"):
            with ctx():
                pass


# ---- sampled path ----------------------------------------------------------------------------------


def test_sampled_path_per_forward_reproducible(toy):
    x = torch.randn(4, 4)
    sp = search_space(toy)
    sub = SubSupernet(sp, ({0, 1, 3}, {0, 2}))

    def run(seed):
        outs = []
        with use_sampled_path(toy, sub, torch.Generator().manual_seed(seed)) as h:
            for _ in range(12):
                outs.append(toy(x))
                with use_path(toy, h.arch):  # the recorded arch reproduces the forward
                    torch.testing.assert_close(toy(x), outs[-1])
        return h.history, outs

    hist, outs = run(3)
    assert len(hist) == 12 and all(sub.contains(a) for a in hist)
    assert len(set(hist)) > 1  # resampled per forward
    g = torch.Generator().manual_seed(3)
    assert hist == [sub.sample(g) for _ in range(12)]  # one sample per forward, same stream
    hist2, outs2 = run(3)
    assert hist2 == hist and all(torch.equal(a, b) for a, b in zip(outs, outs2))


def test_sampled_path_arch_before_forward(toy):
    with use_sampled_path(toy, None, torch.Generator().manual_seed(0)) as h:
        a = h.arch
        toy(torch.randn(2, 4))
        assert h.history == [a]
        b = h.resample()
        toy(torch.randn(2, 4))
        assert h.history == [a, b]


def test_sampled_path_shares_op_across_label(toy):
    """c1 and c3 share label 'x': within one forward they run the same op index."""
    seen = {1: [], 3: []}
    for k, c in ((1, toy.c1), (3, toy.c3)):
        for j, op in enumerate(c.ops):
            op.register_forward_pre_hook(lambda m, i, j=j, k=k: seen[k].append(j))
    with use_sampled_path(toy, None, torch.Generator().manual_seed(5)):
        for _ in range(10):
            toy(torch.randn(2, 4))
    nz = [j for j in seen[1]]
    assert nz == seen[3] and len(nz) + 0 > 0


# ---- grouped ---------------------------------------------------------------------------------------


def grads(model):
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def check_grouped_equals_separate(model, subs, x, atol=1e-4):
    g = len(subs)
    sep = copy.deepcopy(model)
    model.train()
    sep.train()
    with use_grouped(model, subs):
        y = model(x)
    y.square().sum().backward()
    parts = []
    for k, (sub, xk) in enumerate(zip(subs, x.chunk(g))):
        with use_sum(sep, sub):
            yk = sep(xk)
        yk.square().sum().backward()
        parts.append(yk.detach())
    torch.testing.assert_close(y.detach(), torch.cat(parts), atol=atol, rtol=1e-4)
    gm, gs = grads(model), grads(sep)
    for n in gm:
        torch.testing.assert_close(gm[n], gs[n], atol=atol, rtol=1e-4, msg=lambda m: f"grad {n}: {m}")
    bm, bs = buffers(model), buffers(sep)
    for n in bm:
        torch.testing.assert_close(bm[n], bs[n], atol=atol, rtol=1e-4, msg=lambda m: f"buffer {n}: {m}")


def test_grouped_equals_separate_sums(toy):
    sp = search_space(toy)
    subs = [SubSupernet(sp, ({0, 3}, {0, 2})), SubSupernet(sp, ({1, 2}, {2})), SubSupernet(sp, ({2}, {1}))]
    torch.manual_seed(0)
    check_grouped_equals_separate(toy, subs, torch.randn(12, 4) * 3 + 1)


def test_grouped_one_masked_sum_call_and_skips_unused_ops(toy, monkeypatch):
    calls = []
    real = lidsplit.ops.masked_sum

    def spy(xs, w):
        calls.append((len(xs), tuple(w.shape)))
        return real(xs, w)

    monkeypatch.setattr(lidsplit.ops, "masked_sum", spy)
    ran = []
    for j, op in enumerate(toy.c1.ops):
        op.register_forward_pre_hook(lambda m, i, j=j: ran.append(j))
    sp = search_space(toy)
    subs = [SubSupernet(sp, ({0, 2}, {0, 2})), SubSupernet(sp, ({0, 1}, {2}))]
    with use_grouped(toy, subs):
        toy(torch.randn(6, 4))
    assert sorted(ran) == [0, 1]  # op 3 enabled in no group, op 2 is none: not computed
    # c1, c2, c3: one call each with (G, computed ops) weights
    assert calls == [(2, (2, 2)), (2, (2, 2)), (2, (2, 2))]


def test_grouped_errors(toy):
    sp = search_space(toy)
    subs = [SubSupernet.full(sp)] * 2
    with pytest.raises(ValueError, match="divisible"):
        with use_grouped(toy, subs):
            toy(torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least one"):
        with use_grouped(toy, []):
            pass
    with pytest.raises(TypeError, match="sequence"):
        with use_grouped(toy, subs[0]):
            pass


def test_grouped_needs_group_aware_bn():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), Choice("a", lin_ops(4, ("l1", "l2"))))
    subs = [SubSupernet.full(search_space(m))] * 2
    with pytest.raises(TypeError, match="convert_batchnorm"):
        with use_grouped(m, subs):
            pass
    m.eval()  # running statistics: per-sample, allowed
    with use_grouped(m, subs):
        m(torch.randn(4, 4))
    m.train()
    bn = m[1]
    convert_batchnorm(m)
    assert isinstance(m[1], BatchNorm1d) and m[1].weight is bn.weight
    sp = search_space(m)
    check_grouped_equals_separate(m, [SubSupernet(sp, ({0},)), SubSupernet(sp, ({1},))], torch.randn(8, 4))


def test_convert_batchnorm_keeps_state_and_sharing():
    bn = nn.BatchNorm2d(3)
    bn.running_mean.fill_(2.0)
    m = nn.Sequential(bn, nn.Sequential(bn))
    convert_batchnorm(m)
    assert m[0] is m[1][0] and type(m[0]).__name__ == "BatchNorm2d" and m[0].running_mean[0] == 2.0
    sd = m.state_dict()
    assert set(sd) == {"0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked", "1.0.weight", "1.0.bias", "1.0.running_mean", "1.0.running_var", "1.0.num_batches_tracked"}


def test_grouped_bn_momentum_none_and_affine_free():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(4, 4),
        BatchNorm1d(4, momentum=None),
        Choice("a", [("p", nn.Sequential(nn.Linear(4, 4), BatchNorm1d(4, affine=False))), ("q", nn.Linear(4, 4))]),
    )
    sp = search_space(m)
    check_grouped_equals_separate(m, [SubSupernet(sp, ({0},)), SubSupernet(sp, ({0, 1},)), SubSupernet(sp, ({1},))], torch.randn(9, 4))


# ---- extension point: entangled choices --------------------------------------------------------------


class Entangled(Choice):
    """Toy weight-entangled choice: op k uses the first k+1 rows of one shared weight; `mix` superposes the
    weights (one matmul) instead of running each op."""

    def __init__(self, label, d=4):
        super().__init__(label, ["k1", "k2", "k3"])
        self.weight = nn.Parameter(torch.randn(d, d))
        self.seen: list[Mixture] = []

    def sliced(self, k):
        w = torch.zeros_like(self.weight)
        w[: k + 1] = self.weight[: k + 1]
        return w

    def run_op(self, index, x):
        return x @ self.sliced(index).t()

    def mix(self, mixture, x):
        self.seen.append(mixture)
        stack = torch.stack([self.sliced(k) for k in range(len(self))])
        if mixture.groups is None:
            w = torch.einsum("n,nij->ij", mixture.weights, stack)
            return x @ w.t()
        g = mixture.num_groups
        w = torch.einsum("gn,nij->gij", mixture.weights, stack)
        xs = x.reshape(g, -1, x.shape[-1])
        return torch.einsum("gbj,gij->gbi", xs, w).reshape(x.shape[0], -1)


def test_entangled_subclass_receives_weights():
    torch.manual_seed(0)
    c = Entangled("e")
    m = nn.Sequential(c)
    sp = search_space(m)
    x = torch.randn(6, 4)
    with use_sum(m, SubSupernet(sp, ({0, 2},))):
        y = m(x)
    mx = c.seen[-1]
    assert mx.kind == "sum" and mx.active == (0, 2) and mx.weights.tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(y, c.run_op(0, x) + c.run_op(2, x))
    alpha = {"e": torch.randn(3, requires_grad=True)}
    with use_weighted(m, alpha):
        m(x).sum().backward()
    assert c.seen[-1].kind == "weighted" and c.seen[-1].weights.shape == (3,) and alpha["e"].grad is not None
    subs = [SubSupernet(sp, ({0},)), SubSupernet(sp, ({1, 2},))]
    with use_grouped(m, subs):
        yg = m(x)
    assert c.seen[-1].weights.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]] and c.seen[-1].groups == (frozenset({0}), frozenset({1, 2}))
    torch.testing.assert_close(yg, torch.cat([c.run_op(0, x[:3]), c.run_op(1, x[3:]) + c.run_op(2, x[3:])]))
    with use_path(m, (1,)):
        torch.testing.assert_close(m(x), c.run_op(1, x))
    c.seen.clear()
    with pytest.raises(NotImplementedError):
        materialize(m, (0,))


# ---- record_outputs / parameters -------------------------------------------------------------------


def test_record_outputs(toy):
    x = torch.randn(4, 4)
    layers = [toy.c3, toy.pre, toy.c1]
    with use_sum(toy), record_outputs(layers) as outs:
        y = toy(x)
    assert len(outs) == 3
    # forward order, not list order
    with use_sum(toy):
        pre = toy.pre(x)
        c1 = toy.c1(pre)
    torch.testing.assert_close(outs[0], pre)
    torch.testing.assert_close(outs[1], c1)
    assert all(not o.requires_grad and o.grad_fn is None for o in outs)
    assert y.requires_grad
    assert all(len(m._forward_hooks) == 0 for m in layers)  # removed on exit
    with use_sum(toy), record_outputs(layers, detach=False) as live:
        toy(x)
    assert all(o.grad_fn is not None for o in live)
    live[0].sum().backward()  # a loss on a recorded feature
    with pytest.raises(ZeroDivisionError):
        with record_outputs(layers):
            1 / 0
    assert all(len(m._forward_hooks) == 0 for m in layers)


def test_record_outputs_no_grad_keeps_no_graph(toy):
    with torch.no_grad(), use_sum(toy), record_outputs([toy.c1, toy.c2]) as outs:
        toy(torch.randn(4, 4))
        toy(torch.randn(4, 4))
    assert len(outs) == 4


def test_edge_and_shared_parameters(toy):
    ex = edge_parameters(toy, "x")
    ids = {id(p) for p in ex}
    assert ids == {id(p) for p in toy.c1.parameters()} | {id(p) for p in toy.c3.parameters()}
    with pytest.warns(SharedModulesWarning, match="shared_modules"):
        sh = shared_parameters(toy, "x")
    assert not ids & {id(p) for p in sh}
    assert {id(p) for p in sh} == {id(p) for p in toy.parameters()} - ids
    sh2 = shared_parameters(toy, "x", modules=[toy.c2])
    assert {id(p) for p in sh2} == {id(p) for p in toy.c2.parameters()}
    with pytest.raises(KeyError):
        edge_parameters(toy, "nope")


# ---- dtypes / devices --------------------------------------------------------------------------------


def test_sum_under_cpu_autocast_mixes_dtypes():
    """skip_connect keeps float32 while convs give bfloat16 under autocast: the mixture promotes."""
    from lidsplit.spaces import nb201

    torch.manual_seed(0)
    m = nb201(C=4, N=1)
    x = torch.randn(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16), use_sum(m):
        y = m(x)
    y.float().sum().backward()
    with use_sum(m):
        ref = m(x)
    torch.testing.assert_close(y.float(), ref, atol=0.2, rtol=0.1)


def test_mixture_promotes_dtypes():
    torch.manual_seed(0)
    m = nn.Sequential(Choice("a", [("id", nn.Identity()), ("lin", nn.Linear(4, 4))]))
    x = torch.randn(6, 4)
    sub = SubSupernet.full(search_space(m))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for ctx in (lambda: use_sum(m), lambda: use_grouped(m, [sub, sub]), lambda: use_weighted(m, {"a": torch.zeros(2)})):
            with ctx():
                y = m(x)
            assert y.dtype == torch.float32
    with use_sum(m):
        ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16), use_sum(m):
        torch.testing.assert_close(m(x), ref, atol=0.05, rtol=0.05)


def test_channels_last_inputs():
    from lidsplit.spaces import nb201

    torch.manual_seed(0)
    m = nb201(C=4, N=1).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 8, 8)
    with use_sum(m):
        y1 = m(x.contiguous(memory_format=torch.channels_last))
        y2 = m(x)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grouped_equals_separate_cuda():
    from lidsplit.spaces import nb201

    torch.manual_seed(0)
    m = nb201(C=4, N=1).cuda()
    sp = search_space(m)
    g = torch.Generator().manual_seed(0)
    subs = [SubSupernet(sp, [[j for j in range(5) if torch.rand((), generator=g) < 0.6] or [1] for _ in range(6)]) for _ in range(3)]
    check_grouped_equals_separate(m, subs, torch.randn(12, 1, 8, 8, device="cuda"))
    with use_weighted(m, {lb: torch.randn(5, device="cuda", requires_grad=True) for lb in sp.labels}):
        m(torch.randn(4, 1, 8, 8, device="cuda")).sum().backward()
    with use_sampled_path(m, None, torch.Generator(device="cuda").manual_seed(0)) as h:
        m(torch.randn(4, 1, 8, 8, device="cuda"))
    assert sp.validate_arch(h.arch) == h.arch
