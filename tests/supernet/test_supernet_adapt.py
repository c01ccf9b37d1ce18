"""``adapt``: DARTS, AutoDL and NNI-style supernets (tests/supernet/_foreign.py, no lidsplit code in them)
turned into lidsplit supernets without editing them; their own forwards, training and checkpoints keep
working, and lidsplit's modes, training, splitting and search run on them."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lidsplit
from lidsplit.data import synthetic
from lidsplit.search import LeafEvaluator, RandomSearch, run_search
from lidsplit.spaces.darts import darts_space
from lidsplit.spaces.nb201 import NB201_SPACE
from lidsplit.supernet import (
    Choice,
    SharedModulesWarning,
    adapt,
    materialize,
    search_space,
    use_path,
    use_sampled_path,
    use_sum,
    use_weighted,
)
from lidsplit.train import spos_train

import _foreign as fx

pytestmark = pytest.mark.usefixtures("one_thread")


def darts(seed: int = 0, adapted: bool = True) -> fx.Network:
    torch.manual_seed(seed)
    net = fx.Network()
    return adapt(net, fx.MixedOp, label=fx.darts_label(net), ops=fx.PRIMITIVES) if adapted else net


def nb201_edges(seed: int = 0, adapted: bool = True) -> fx.TinyNetworkDarts:
    torch.manual_seed(seed)
    net = fx.TinyNetworkDarts(N=2)
    if adapted:
        adapt(net, fx.nb201_edge, label=lambda name, m: name.split(".edges.")[1], ops=fx.NB201_OPS)
    return net


def nasnet(seed: int = 0, adapted: bool = True) -> fx.NASNetworkDARTS:
    torch.manual_seed(seed)
    net = fx.NASNetworkDARTS()
    if adapted:
        adapt(net, fx.AutoMixedOp, label=lambda name, m: name.split(".edges.")[1], ops=fx.NB201_OPS,
              methods=("forward_darts", "forward_gdas"))
    return net


@pytest.fixture(scope="module")
def rgb():
    return synthetic(64, num_classes=4, in_channels=3, image_size=8, seed=0, noise=0.5)


X = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# ---- DARTS: own forward, modes, checkpoints ------------------------------------------------------


def test_darts_adapted_in_place_keeps_own_forward_and_keys():
    ref, net = darts(adapted=False).eval(), darts(adapted=False).eval()
    keys = list(net.state_dict())
    out = adapt(net, fx.MixedOp, label=fx.darts_label(net), ops=fx.PRIMITIVES)
    assert out is net
    op = net.cells[0]._ops[0]
    assert isinstance(op, Choice) and isinstance(op, fx.MixedOp) and op.label == "normal/2<-0"
    assert search_space(net) == darts_space(2, fx.PRIMITIVES)  # lidsplit's own DARTS labels and order
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(net(X), ref(X), rtol=0, atol=0)  # op(x, weights) outside any mode
    # adapting again changes nothing
    assert adapt(net, fx.MixedOp, label=fx.darts_label(net), ops=fx.PRIMITIVES) is net


def test_darts_checkpoints_load_both_ways():
    old = darts(seed=1, adapted=False)
    old_sd = copy.deepcopy(old.state_dict())
    net = darts(seed=2)
    net.load_state_dict(old_sd)  # saved before adapt, loaded after
    for a, b in zip(net.arch_parameters(), old.arch_parameters()):  # DARTS keeps its alphas outside the state dict
        a.data.copy_(b)
    old.eval(), net.eval()
    torch.testing.assert_close(net(X), old(X), rtol=0, atol=0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    fresh = darts(seed=3, adapted=False)
    fresh.load_state_dict(net.state_dict())  # saved by lidsplit's side, loaded by the original code
    for a, b in zip(fresh.arch_parameters(), net.arch_parameters()):
        a.data.copy_(b)
    fresh.eval()
    torch.testing.assert_close(fresh(X), net(X), rtol=0, atol=0)


def test_darts_modes_take_over_the_users_call():
    net = darts().eval()
    alphas = torch.cat([net.alphas_normal, net.alphas_reduce])
    own = net(X)
    with use_weighted(net, alphas):  # lidsplit's mixture with DARTS's alphas == DARTS's own forward
        torch.testing.assert_close(net(X), own, rtol=1e-5, atol=1e-6)
    with use_weighted(net, torch.zeros_like(alphas)):  # the user's weights are ignored inside a mode
        assert not torch.allclose(net(X), own)
    arch = {lb: "sep_conv_3x3" for lb in search_space(net).labels}
    with use_path(net, arch):
        path = net(X)
    child = materialize(net, arch)  # a plain network the user's forward (op(x, weights)) still runs
    assert not any(isinstance(m, Choice) for m in child.modules())
    torch.testing.assert_close(child(X), path, rtol=1e-6, atol=1e-6)
    with use_sum(net):
        net(X)  # every op enabled


def test_choice_is_a_sequence_of_its_ops():
    net = darts()
    op = net.cells[1]._ops[0]  # a reduction edge: skip is FactorizedReduce
    assert len(op) == 5 and list(op) == list(op._ops)
    assert op[3] is op._ops[3] and op[-1] is op._ops[4] and op["skip_connect"] is op._ops[3]
    with pytest.raises(IndexError, match="out of range"):
        op[5]
    with pytest.raises(KeyError, match="no op 'conv'"):
        op["conv"]
    native = Choice("e", {"a": nn.Identity(), "b": nn.ReLU()})
    assert len(native) == 2 and [type(m) for m in native] == [nn.Identity, nn.ReLU] and native["b"] is native[1]
    names_only = Choice("e", ["a", "b"])  # an entangled-style choice: no op modules to hand out
    with pytest.raises(TypeError, match="has no op modules to index"):
        names_only[0]
    with pytest.raises(TypeError, match="has no op modules to iterate"):
        list(names_only)


def test_copies_and_pickles_stay_adapted():
    net = darts().eval()
    with use_sum(net):
        ref = net(X)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert type(other.cells[0]._ops[0]) is type(net.cells[0]._ops[0])
        with use_sum(other):
            torch.testing.assert_close(other(X), ref, rtol=0, atol=0)
        torch.testing.assert_close(other(X), net(X), rtol=0, atol=0)


def test_darts_trains_through_own_forward_and_lidsplit(rgb):
    net = darts().train()
    w_opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-3)
    x, y = rgb.train.x[:16], rgb.train.y[:16]
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(2):  # DARTS's first-order step: alphas, then weights, through its own forward
        a_opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        w_opt.step()
    assert net.alphas_normal.grad is not None and net.alphas_normal.grad.abs().sum() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    before = [p.detach().clone() for p in net.parameters()]
    losses = spos_train(net, [(x, y)], steps=2, lr=0.05, seed=0)  # lidsplit's single-path training
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(v)) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


# ---- splitting and search ---------------------------------------------------------------------------

SPLIT = dict(warmup_epochs=[1, 0], batches=2, score_batch_size=24, batch_size=32, progress=False)


def test_darts_split_lid_and_gm_then_search(rgb):
    lid = lidsplit.run_split(darts(), rgb, "lid", 1, seed=0, **SPLIT,
                             criterion_options={"k": 5, "layers": lambda m: list(m.cells)})
    with pytest.warns(SharedModulesWarning, match="defines no shared_modules"):
        gm = lidsplit.run_split(darts(), rgb, "gm", 1, seed=0, **SPLIT)
    for tree in (lid, gm):
        assert tree.space == darts_space(2, fx.PRIMITIVES) and len(tree.leaves()) == 2
    models = {leaf.id: lid.load_leaf(darts(seed=9), leaf.id) for leaf in lid.leaves()}
    ev = LeafEvaluator(lid, models, rgb.loaders(batch_size=32), calib_batches=1, max_batches=1)
    res = run_search(ev, RandomSearch(lid, samples=3, seed=0), progress=False)
    assert res.evaluations == 3 and 0.0 <= res.best.acc <= 1.0
    own = darts(seed=9, adapted=False)  # a leaf's weights load into the user's unadapted model
    own.load_state_dict(models[lid.leaves()[0].id].state_dict())


# ---- AutoDL: NB201 edge lists and NASNet MixedOp ---------------------------------------------------------


def test_autodl_edge_lists_keep_every_forward():
    ref, net = nb201_edges(adapted=False).eval(), nb201_edges().eval()
    assert search_space(net) == NB201_SPACE  # AutoDL's node strings are lidsplit's NB201 labels
    assert list(net.state_dict()) == list(ref.state_dict())
    net.load_state_dict(ref.state_dict())
    torch.testing.assert_close(net(X)[1], ref(X)[1], rtol=0, atol=0)
    cell, feat = net.cells[0], net.stem(X)
    edge = cell.edges["1<-0"]
    assert isinstance(edge, Choice) and isinstance(edge, nn.ModuleList) and len(edge) == 5
    assert [type(m) for m in edge] == [type(m) for m in ref.cells[0].edges["1<-0"]]
    alphas = net.arch_parameters
    index = alphas.argmax(-1, keepdim=True)
    hard = torch.zeros_like(alphas).scatter_(-1, index, 1.0)
    for out in (cell.forward_gdas(feat, hard, index), cell.forward_urs(feat), cell.forward_select(feat, alphas),
                cell.forward_dynamic(feat, [[("nor_conv_3x3", 0)], [("skip_connect", 0), ("nor_conv_1x1", 1)],
                                            [("avg_pool_3x3", 2)]])):
        assert out.shape == feat.shape
    # the cell mixes the ops itself: a lidsplit mode cannot take that over, and says so
    with use_sum(net), pytest.raises(RuntimeError, match="edge '1<-0' was called directly"):
        net(X)
    with use_path(net, [1] * 6):
        edge(feat)  # calling the edge itself is what a mode governs


def test_autodl_nasnet_mixed_op_methods_taken_over(rgb):
    ref, net = nasnet(adapted=False).eval(), nasnet().eval()
    torch.testing.assert_close(net(X)[1], ref(X)[1], rtol=0, atol=0)
    with use_weighted(net, net.arch_normal_parameters):  # forward_darts(x, weights) taken over
        torch.testing.assert_close(net(X)[1], ref(X)[1], rtol=1e-5, atol=1e-6)
    with use_path(net, ["nor_conv_3x3"] * 5):
        path = net(X)[1]
        torch.manual_seed(0)
        gdas = net.forward_gdas(X)[1]  # forward_gdas(x, hardwts, index): the gumbel pick is ignored
    torch.testing.assert_close(gdas, path)
    with use_sampled_path(net, generator=torch.Generator().manual_seed(0)) as h:
        net(X)
        assert len(h.history) == 1
    lid = lidsplit.run_split(nasnet(), rgb, "lid", 1, seed=0, **SPLIT,
                             criterion_options={"k": 5, "layers": lambda m: [m.squeeze]})
    gm = lidsplit.run_split(nasnet(), rgb, "gm", 1, seed=0, **SPLIT,
                            criterion_options={"params": lambda m, label: [m.squeeze.weight]})
    for tree in (lid, gm):
        assert tree.space == search_space(net) and len(tree.leaves()) == 2


# ---- NNI LayerChoice -----------------------------------------------------------------------------------


def _layer_choice_net(layer_choice: type, base: type = nn.Module) -> nn.Module:
    class Space(base):  # NNI wants its choices built inside a ModelSpace's __init__
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.b1 = layer_choice([nn.Conv2d(4, 4, 3, padding=1), nn.Identity(), nn.MaxPool2d(3, 1, 1)],
                                   label="block1")
            self.b2 = layer_choice({"conv": nn.Conv2d(4, 4, 1), "skip": nn.Identity()}, label="block2")

        def forward(self, x):
            return self.b2(self.b1(self.stem(x)))

    torch.manual_seed(0)
    return Space()


def _check_layer_choice(layer_choice: type, base: type = nn.Module) -> None:
    net = _layer_choice_net(layer_choice, base).eval()
    keys, dry = list(net.state_dict()), net(X)
    adapt(net, layer_choice, label=lambda name, m: m.label)
    assert [e.label for e in search_space(net).edges] == ["block1", "block2"]
    assert search_space(net).edges[1].ops == ("conv", "skip") and list(net.state_dict()) == keys
    assert type(net.b1[1]) is nn.Identity and type(net.b2["skip"]) is nn.Identity and len(net.b1) == 3
    torch.testing.assert_close(net(X), dry, rtol=0, atol=0)  # the dry-run forward, as before
    ref = net.b1[2](net.stem(X))
    with use_path(net, {"block1": "2", "block2": "skip"}):
        torch.testing.assert_close(net(X), ref)


def test_nni_layer_choice_interface():
    _check_layer_choice(fx.LayerChoice)


def test_nni_layer_choice_real():
    nni = pytest.importorskip("nni.nas.nn.pytorch", reason="nni not installed or not importable")
    _check_layer_choice(nni.LayerChoice, nni.ModelSpace)


# ---- errors --------------------------------------------------------------------------------------------


def test_adapt_errors_name_the_problem():
    with pytest.raises(ValueError, match="no module of Network matches"):
        adapt(fx.Network(), fx.AutoMixedOp)
    with pytest.raises(ValueError, match="holds 5 candidate ops but ops="):
        adapt(fx.Network(), fx.MixedOp, ops=["a", "b"])
    two = nn.Sequential(nn.Module())
    two[0].a, two[0].b = nn.ModuleList([nn.Identity()]), nn.ModuleList([nn.ReLU()])
    with pytest.raises(TypeError, match="cannot tell where 0 .Module. holds its candidate ops"):
        adapt(two, lambda name, m: name == "0")
    assert not any(isinstance(m, Choice) for m in two.modules())
    adapt(two, lambda name, m: name == "0", candidates="b")
    assert search_space(two).edges[0].label == "0" and two[0][0] is two[0].b[0]
    with pytest.raises(TypeError, match="has no method 'forward_enas'"):
        adapt(fx.NASNetworkDARTS(), fx.AutoMixedOp, methods=("forward_enas",))
    with pytest.raises(TypeError, match="cls must be"):
        adapt(fx.Network(), "MixedOp")
    net = fx.Network()
    with pytest.raises(ValueError, match="edges sharing label 'one' have different ops"):
        adapt(net, fx.MixedOp, label=lambda n, m: "one", ops=lambda n, m: [f"{n}.{i}" for i in range(5)])
    assert not any(isinstance(m, Choice) for m in net.modules())  # refused before anything changed
    with pytest.raises(ValueError, match="label of cells.0._ops.0 must be a non-empty string"):
        adapt(net, fx.MixedOp, label=lambda n, m: "")


def test_gm_fallback_to_the_whole_model_warns():
    from lidsplit.spaces import nb201
    from lidsplit.supernet import shared_parameters

    net = darts()
    with pytest.warns(SharedModulesWarning, match="Network defines no shared_modules"):
        whole = shared_parameters(net, "normal/2<-0")
    assert {id(p) for p in net.stem.parameters()} <= {id(p) for p in whole}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shared_parameters(nb201(C=2, N=1), "1<-0")  # defines shared_modules(): silent
        shared_parameters(net, "normal/2<-0", modules=list(net.cells))  # modules given: silent
