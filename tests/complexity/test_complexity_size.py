"""Exact sizes of the built-in spaces, sub-supernets and the ProxylessNAS configurations."""

from __future__ import annotations

import math

import pytest
import torch

from lidsplit.complexity import (
    PAPER_PROXYLESSNAS_KW,
    PROXYLESSNAS_KW,
    darts_genotype_count,
    log10_size,
    space_size,
)
from lidsplit.spaces import DARTS_SPACE, NB201_SPACE, build, darts, mobilenet, nb201
from lidsplit.supernet import SubSupernet, materialize, search_space, use_path


def test_nb201_size():
    assert space_size(NB201_SPACE) == 5**6 == 15625
    assert space_size(nb201(C=2)) == 15625


def test_darts_size():
    # every one of the 14 normal + 14 reduce edges is a decision over 8 ops, `none` included
    assert space_size(DARTS_SPACE) == 8**28 == 2**84
    assert space_size(darts(C=4, layers=3)) == 8**28
    # DARTS genotypes: per node i (i inputs) 2 distinct inputs x 7 non-none ops each, two cell types
    per_cell = (1 * 7**2) * (3 * 7**2) * (6 * 7**2) * (10 * 7**2)
    assert darts_genotype_count() == per_cell**2 == (180 * 7**8) ** 2
    assert 1.07e18 < darts_genotype_count() < 1.08e18


def test_mobilenet_default_size():
    m = mobilenet()
    # stages (8,2,1), (16,2,2), (24,2,2) after an 8-wide first block: zero allowed (7 ops) on blocks
    # 1, 2 (8->8, stride 1), 4 and 6; blocks 3 and 5 change width/stride (6 ops)
    assert [e.num_ops for e in m.space.edges] == [7, 7, 6, 7, 6, 7]
    assert space_size(m) == 7**4 * 6**2 == 86436


def test_proxylessnas_size():
    m = build("mobilenet", **PROXYLESSNAS_KW)
    assert m.space.num_edges == 21
    assert space_size(m) == 6**6 * 7**15 == 221502229807900608


def test_paper_proxylessnas_size():
    m = build("mobilenet", **PAPER_PROXYLESSNAS_KW)
    assert m.space.num_edges == 22 and m.space.labels[0] == "block0"
    assert m.space.edges[0].ops == ("3x3_MBConv1", "5x5_MBConv1", "7x7_MBConv1")
    size = space_size(m)
    assert size == 3 * 6**6 * 7**15 == 664506689423701824
    assert 6.64e17 < size < 6.65e17  # the paper: "over 6.64 x 10^17"
    assert 7**21 < 6.64e17  # 21 blocks x 7 choices would not reach it


def test_searchable_first_block_runs():
    torch.manual_seed(0)
    m = mobilenet(first_channels=4, first_block_channels=4, stages=((4, 1, 1),), feature_mix_channels=8,
                  first_block_kernels=(3, 5))
    sp = search_space(m)
    assert sp.labels == ("block0", "block1") and sp.size == 2 * 7
    x = torch.randn(2, 1, 8, 8)
    arch = ("5x5_MBConv1", "3x3_MBConv6")
    m.eval()
    with torch.no_grad(), use_path(m, arch):
        y = m(x)
    torch.testing.assert_close(materialize(m, arch).eval()(x), y)
    with pytest.raises(ValueError, match="odd"):
        mobilenet(first_block_kernels=(3, 4))
    with pytest.raises(ValueError, match="at least one"):
        mobilenet(first_block_kernels=())


def test_sub_supernet_size():
    sub = SubSupernet.full(NB201_SPACE).restrict(0, [1, 2]).restrict(5, [4])
    assert space_size(sub) == 2 * 5**4 * 1
    assert space_size(SubSupernet.from_arch(NB201_SPACE, (0,) * 6)) == 1


def test_log10_size_big_ints():
    assert log10_size(15625) == pytest.approx(math.log10(15625))
    assert log10_size(10**400) == pytest.approx(400.0)
    assert log10_size(3 * 10**500) == pytest.approx(500 + math.log10(3))
    with pytest.raises(ValueError):
        log10_size(0)


def test_space_size_type_error():
    with pytest.raises(TypeError):
        space_size("nb201")  # type: ignore[arg-type]
