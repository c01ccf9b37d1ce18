"""NAS-Bench-201 supernet, weight-sharing and entangled (nb201(entangled=True))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _spaces_helpers import (
    check_every_op_forward_backward,
    check_grouped_equals_separate,
    check_path_equals_materialized,
    check_sum_equals_manual,
    random_sub,
)

from lidsplit.spaces import NB201_EDGES, NB201_OPS, NB201_SPACE, build, from_nb201_string, nb201, to_nb201_string
from lidsplit.spaces.nb201 import NB201Cell, NB201EntangledEdge, ResNetBlock
from lidsplit.supernet import (
    Choice,
    SubSupernet,
    record_outputs,
    search_space,
    shared_parameters,
    use_path,
    use_sum,
    use_weighted,
)

CANON = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nb201(C=4, N=1)


def x8(b=8, c=1):
    return torch.randn(b, c, 8, 8, generator=torch.Generator().manual_seed(1))


def test_space(net):
    sp = search_space(net)
    assert sp == NB201_SPACE and sp.labels == NB201_EDGES == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert sp.edges[0].ops == NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert sp.size == 15625
    assert sum(isinstance(m, Choice) for m in net.modules()) == 3 * 6  # 3 cells x 6 edges, one space
    assert build("nb201", C=4).space == sp and build("NAS-Bench-201", C=4).space == sp


def test_every_op_forward_backward(net):
    check_every_op_forward_backward(net, x8())


def test_sum_equals_manual(net):
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert check_sum_equals_manual(net, x8(), random_sub(NB201_SPACE, g)) == 18
    check_sum_equals_manual(net, x8(), SubSupernet.full(NB201_SPACE))


def test_grouped_equals_separate(net):
    g = torch.Generator().manual_seed(2)
    subs = [random_sub(NB201_SPACE, g) for _ in range(3)]
    check_grouped_equals_separate(net, subs, x8(12))


def test_grouped_equals_separate_split_children(net):
    kids = SubSupernet.full(NB201_SPACE).split("3<-0", [[0, 3], [1, 2, 4]])
    check_grouped_equals_separate(net, kids, x8(8))


def test_path_equals_materialized(net):
    for s in (CANON, "|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|"):
        check_path_equals_materialized(net, x8(), from_nb201_string(s))


def test_rgb_32():
    m = nb201(C=4, N=1, in_channels=3, num_classes=100)
    with use_sum(m):
        y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 100)


def test_feature_layers_order_and_count():
    m = nb201(C=2, N=5)
    layers = m.feature_layers()
    assert len(layers) == 17
    assert [type(l) for l in layers] == [NB201Cell] * 5 + [ResNetBlock] + [NB201Cell] * 5 + [ResNetBlock] + [NB201Cell] * 5
    order = []
    hooks = [l.register_forward_hook(lambda mod, i, o, k=k: order.append(k)) for k, l in enumerate(layers)]
    with torch.no_grad(), use_sum(m), record_outputs(layers) as outs:
        m(x8(4))
    for h in hooks:
        h.remove()
    assert order == list(range(17)) and len(outs) == 17
    assert [o.shape[1:] for o in outs] == [(2, 8, 8)] * 5 + [(4, 4, 4)] * 6 + [(8, 2, 2)] * 6
    assert all(o.grad_fn is None for o in outs)


def test_shared_parameters_exclude_stem_and_head(net):
    sh = {id(p) for p in shared_parameters(net, "1<-0")}
    assert not sh & {id(p) for p in net.stem.parameters()}
    assert not sh & {id(p) for p in net.classifier.parameters()}
    assert not sh & {id(p) for p in net.lastact.parameters()}
    assert {id(p) for p in net.cells[1].parameters()} <= sh  # reduction block
    assert not sh & {id(p) for c in net.modules() if isinstance(c, Choice) and c.label == "1<-0" for p in c.parameters()}
    assert {id(p) for c in net.modules() if isinstance(c, Choice) and c.label == "3<-2" for p in c.parameters()} <= sh


def test_string_canonical():
    assert from_nb201_string(CANON) == (3, 3, 3, 1, 1, 1)
    assert to_nb201_string((3, 3, 3, 1, 1, 1)) == CANON
    assert to_nb201_string(("nor_conv_3x3",) * 3 + ("skip_connect",) * 3) == CANON


def test_string_and_index_roundtrip_whole_space():
    seen = set()
    for i, arch in enumerate(NB201_SPACE.all_archs()):
        assert NB201_SPACE.arch_to_index(arch) == i
        assert NB201_SPACE.index_to_arch(i) == arch
        s = to_nb201_string(arch)
        assert from_nb201_string(s) == arch
        seen.add(s)
    assert i == 15624 and len(seen) == 15625


def test_string_inputs_in_any_order():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_1x1~0|+|skip_connect~2|skip_connect~1|none~0|"
    assert to_nb201_string(from_nb201_string(s)) == (
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|skip_connect~1|skip_connect~2|"
    )


@pytest.mark.parametrize(
    "bad, err",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 nodes"),
        ("|conv~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|", "unknown op"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad or repeated input"),
        ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "bad or repeated input"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "inputs 0..1"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must look like"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~input"),
    ],
)
def test_string_errors(bad, err):
    with pytest.raises(ValueError, match=err):
        from_nb201_string(bad)


def test_bad_config():
    with pytest.raises(ValueError):
        nb201(C=0)
    with pytest.raises(ValueError, match="unknown NB201 op"):
        nb201(ops=("none", "conv"))


# ---- entangled (TangleNAS): nb201(entangled=True) ------------------------------------------------


@pytest.mark.parametrize("order", [NB201_OPS, ("nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect")])
def test_nb201_weights_matched_by_name(order):
    torch.manual_seed(5)
    edge = NB201EntangledEdge("e", 3, ops=order, affine=False)
    edge.eval()  # running statistics: a per-element function, easy to recompute
    x = torch.randn(2, 3, 5, 5)
    W, b = edge.conv.weight.detach(), edge.conv.bias.detach()
    bn = edge.conv.bn
    for k in (1, 3):
        s = (3 - k) // 2
        z = F.conv2d(F.relu(x), W[:, :, s:s + k, s:s + k], b, padding=k // 2)
        want = F.batch_norm(z, bn.running_mean, bn.running_var, None, None, False, 0.0, bn.eps)
        with use_path(edge, [order.index(f"nor_conv_{k}x{k}")]):
            torch.testing.assert_close(edge(x), want)
        # a weighted mixture with all weight on that op gives the same
        w = torch.zeros(5)
        w[order.index(f"nor_conv_{k}x{k}")] = 1.0
        with use_weighted(edge, {"e": w}, softmax=False):
            torch.testing.assert_close(edge(x), want, rtol=1e-5, atol=1e-5)


def test_nb201_entangled_has_fewer_parameters_same_space():
    ws, we = nb201(C=8, N=1), nb201(C=8, N=1, entangled=True)
    assert search_space(ws) == search_space(we)
    n_ws = sum(p.numel() for p in ws.parameters())
    n_we = sum(p.numel() for p in we.parameters())
    assert n_we < n_ws
