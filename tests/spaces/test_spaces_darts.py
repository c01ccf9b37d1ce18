"""DARTS supernet and genotypes."""

from __future__ import annotations

import random

import pytest
import torch
from _spaces_helpers import (
    check_every_op_forward_backward,
    check_grouped_equals_separate,
    check_path_equals_materialized,
    check_sum_equals_manual,
    random_sub,
)

from lidsplit.spaces import (
    DARTS_OPS,
    DARTS_SPACE,
    Genotype,
    arch_to_genotype,
    build,
    canonical_genotype,
    darts,
    derive_genotype,
    genotype_to_arch,
    parse_genotype,
)
from lidsplit.spaces.darts import DartsCell, cell_edges
from lidsplit.supernet import Choice, SubSupernet, record_outputs, search_space, use_sum

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return darts(C=2, layers=3, stem_multiplier=1)


def x8(b=4):
    return torch.randn(b, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_space(net):
    sp = search_space(net)
    assert sp == DARTS_SPACE and sp.num_edges == 28
    assert DARTS_OPS == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert sp.labels[:5] == ("normal/2<-0", "normal/2<-1", "normal/3<-0", "normal/3<-1", "normal/3<-2")
    assert sp.labels[14:16] == ("reduce/2<-0", "reduce/2<-1") and sp.labels[-1] == "reduce/5<-4"
    assert [c.reduction for c in net.cells] == [False, True, True]
    assert sum(isinstance(m, Choice) for m in net.modules()) == 3 * 14
    assert build("darts", C=2, layers=3).space == sp
    with pytest.raises(ValueError, match="layers >= 3"):
        darts(layers=2)


def test_every_op_forward_backward(net):
    check_every_op_forward_backward(net, x8())


def test_reduction_ops_handle_stride(net):
    """In reduction cells, every op on an input edge (none and skip included) halves the size."""
    cell = net.cells[1]
    x = torch.randn(2, cell.edges[0].ops[0].c_out, 8, 8)
    for k, (i, j) in enumerate(cell_edges()):
        for name, op in zip(cell.edges[k].op_names, cell.edges[k].ops):
            y = op(x if j < 2 else x[:, :, ::2, ::2])
            assert y.shape == (2, x.shape[1], 4, 4), (i, j, name)


def test_sum_equals_manual(net):
    g = torch.Generator().manual_seed(0)
    assert check_sum_equals_manual(net, x8(), random_sub(DARTS_SPACE, g, p=0.4)) == 42
    check_sum_equals_manual(net, x8(), SubSupernet.full(DARTS_SPACE), max_choices=14)


def test_grouped_equals_separate():
    torch.manual_seed(0)
    m = darts(C=2, layers=3, stem_multiplier=1)
    g = torch.Generator().manual_seed(3)
    check_grouped_equals_separate(m, [random_sub(DARTS_SPACE, g, p=0.3) for _ in range(2)], x8(4))


def test_path_equals_materialized(net):
    check_path_equals_materialized(net, x8(), genotype_to_arch(parse_genotype(DARTS_V2)))


def test_feature_layers(net):
    with torch.no_grad(), use_sum(net), record_outputs(net.feature_layers()) as outs:
        net(x8(2))
    assert len(outs) == 3 and all(isinstance(c, DartsCell) for c in net.feature_layers())
    assert [o.shape[1:] for o in outs] == [(8, 8, 8), (16, 4, 4), (32, 2, 2)]


def test_rgb_32():
    m = darts(C=2, layers=3, in_channels=3)
    with torch.no_grad(), use_sum(m):
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ---- genotypes --------------------------------------------------------------------------------------


def random_genotype(rng: random.Random) -> Genotype:
    def cell():
        pairs = []
        for i in range(2, 6):
            for j in rng.sample(range(i), 2):
                pairs.append((rng.choice(DARTS_OPS[1:]), j))
        return pairs

    return Genotype(cell(), [2, 3, 4, 5], cell(), [2, 3, 4, 5])


def test_genotype_roundtrip_random():
    rng = random.Random(0)
    for _ in range(500):
        g = random_genotype(rng)
        arch = genotype_to_arch(g)
        assert len(arch) == 28 and DARTS_SPACE.validate_arch(arch) == arch
        assert sum(a != 0 for a in arch) == 16  # 2 inputs x 4 nodes x 2 cell types
        back = arch_to_genotype(arch)
        assert back == canonical_genotype(g)
        assert genotype_to_arch(back) == arch


def test_genotype_darts_v2():
    g = parse_genotype(DARTS_V2)
    assert g.normal[0] == ("sep_conv_3x3", 0) and g.reduce_concat == [2, 3, 4, 5]
    assert parse_genotype(DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)")) == g
    arch = genotype_to_arch(g)
    assert arch_to_genotype(arch) == canonical_genotype(g)
    names = DARTS_SPACE.names(arch)
    assert names[0:2] == ("sep_conv_3x3", "sep_conv_3x3")  # normal/2<-0, 2<-1
    assert names[cell_edges().index((5, 2))] == "dil_conv_3x3" and names[cell_edges().index((5, 1))] == "none"


def test_arch_to_genotype_lossless_on_genotype_form_archs():
    rng = random.Random(1)
    for _ in range(200):
        arch = list(genotype_to_arch(random_genotype(rng)))
        assert genotype_to_arch(arch_to_genotype(arch)) == tuple(arch)


def test_arch_to_genotype_more_than_two_inputs():
    arch = [DARTS_OPS.index("sep_conv_3x3")] * 28  # every edge live
    g = arch_to_genotype(arch)  # keeps the two lowest inputs
    assert g.normal[4:6] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    strengths = [float(k) for k in range(28)]  # later inputs stronger
    g2 = arch_to_genotype(arch, strengths)
    assert g2.normal[4:6] == [("sep_conv_3x3", 2), ("sep_conv_3x3", 3)]  # node 4: inputs 2, 3 strongest
    with pytest.raises(ValueError, match="strengths"):
        arch_to_genotype(arch, strengths[:3])


def test_arch_to_genotype_too_few_inputs():
    arch = [0] * 28
    with pytest.raises(ValueError, match="non-none input"):
        arch_to_genotype(arch)
    with pytest.raises(ValueError, match="even number"):
        arch_to_genotype([1] * 27)


@pytest.mark.parametrize(
    "mutate, err",
    [
        (lambda g: g._replace(normal=g.normal[:7]), "pairs"),
        (lambda g: g._replace(normal=[("none", 0)] + g.normal[1:]), "non-none"),
        (lambda g: g._replace(normal=[("conv", 0)] + g.normal[1:]), "non-none"),
        (lambda g: g._replace(normal=[("sep_conv_3x3", 2)] + g.normal[1:]), "input 2"),
        (lambda g: g._replace(normal=[g.normal[1]] + g.normal[1:]), "twice"),
        (lambda g: g._replace(reduce_concat=[2, 3]), "reduce_concat"),
    ],
)
def test_genotype_to_arch_errors(mutate, err):
    with pytest.raises(ValueError, match=err):
        genotype_to_arch(mutate(parse_genotype(DARTS_V2)))


def test_derive_genotype():
    torch.manual_seed(0)
    alphas = {lb: torch.randn(8) for lb in DARTS_SPACE.labels}
    g = derive_genotype(alphas)
    # brute force the DARTS rule
    for kind, pairs in (("normal", g.normal), ("reduce", g.reduce)):
        for n, i in enumerate(range(2, 6)):
            scored = []
            for j in range(i):
                w = alphas[f"{kind}/{i}<-{j}"].softmax(0)
                k = int(w[1:].argmax()) + 1
                scored.append((float(w[k]), j, DARTS_OPS[k]))
            top = sorted(scored, reverse=True)[:2]
            assert sorted(pairs[2 * n : 2 * n + 2], key=lambda t: t[1]) == sorted(((op, j) for _, j, op in top), key=lambda t: t[1])
    alphas["normal/2<-0"] = torch.tensor([100.0, 0, 0, 0, 5.0, 0, 0, 0])  # none never chosen
    assert derive_genotype(alphas).normal[0] == ("sep_conv_3x3", 0)
