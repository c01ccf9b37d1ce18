"""MobileNet / ProxylessNAS supernet."""

from __future__ import annotations

import pytest
import torch
from _spaces_helpers import (
    check_every_op_forward_backward,
    check_grouped_equals_separate,
    check_path_equals_materialized,
    check_sum_equals_manual,
    random_sub,
)

from lidsplit.spaces import build, mobilenet
from lidsplit.spaces.mobilenet import mb_op_names
from lidsplit.supernet import SubSupernet, record_outputs, search_space, use_path, use_sum

MB = ("3x3_MBConv3", "3x3_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "7x7_MBConv3", "7x7_MBConv6")


@pytest.fixture
def net():
    torch.manual_seed(0)
    return mobilenet(first_channels=4, first_block_channels=4, stages=((4, 2, 1), (8, 2, 2)), feature_mix_channels=8)


def x8(b=4, c=1):
    return torch.randn(b, c, 8, 8, generator=torch.Generator().manual_seed(1))


def test_space(net):
    sp = search_space(net)
    assert mb_op_names() == MB
    assert sp.labels == ("block1", "block2", "block3", "block4")
    # zero exactly where stride 1 and widths match: 4->4 s1, 4->4 s1, 4->8 s2, 8->8 s1
    assert [e.ops for e in sp.edges] == [MB + ("zero",), MB + ("zero",), MB, MB + ("zero",)]
    assert sp.size == 7 * 7 * 6 * 7
    assert search_space(build("proxyless")) == search_space(mobilenet())


def test_zero_means_skip(net):
    x = x8()
    arch = ("zero", "zero", "3x3_MBConv3", "zero")
    with torch.no_grad(), use_path(net, arch), record_outputs([net.first_block, *net.blocks]) as outs:
        net(x)
    torch.testing.assert_close(outs[1], outs[0])  # block1 skipped
    torch.testing.assert_close(outs[4], outs[3])


def test_every_op_forward_backward(net):
    check_every_op_forward_backward(net, x8())


def test_sum_equals_manual(net):
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        check_sum_equals_manual(net, x8(), random_sub(net.space, g))
    check_sum_equals_manual(net, x8(), SubSupernet.full(net.space))


def test_grouped_equals_separate(net):
    g = torch.Generator().manual_seed(4)
    check_grouped_equals_separate(net, [random_sub(net.space, g) for _ in range(3)], x8(6))


def test_path_equals_materialized(net):
    check_path_equals_materialized(net, x8(), ("7x7_MBConv6", "zero", "5x5_MBConv3", "3x3_MBConv6"))


def test_feature_layers_and_rgb():
    m = mobilenet(in_channels=3, first_stride=2, num_classes=100)
    layers = m.feature_layers()
    assert len(layers) == 1 + 6 + 2 and layers[-1] is m.classifier
    with torch.no_grad(), use_sum(m), record_outputs(layers) as outs:
        y = m(torch.randn(2, 3, 32, 32))
    assert len(outs) == 9 and torch.equal(outs[-1], y) and y.shape == (2, 100)
    assert outs[0].shape[-1] == 16 and outs[6].shape[-1] == 4


def test_bad_kernel():
    with pytest.raises(ValueError, match="odd"):
        mobilenet(kernels=(3, 4))


# ---- entangled (TangleNAS): mobilenet(entangled=True) ---------------------------------------------


def test_entangled_mobilenet_edges_and_checks():
    m = mobilenet(entangled=True)
    labels = search_space(m).labels
    assert labels[:3] == ("block1/kernel", "block1/expand", "block2/kernel")
    assert "stage1/depth" in labels and not any(lb.startswith("block0") for lb in labels)
    assert "stage1/depth" not in search_space(mobilenet(entangled=True, search_depth=False)).labels
    assert [type(b).__name__ for b in m.feature_layers()[1:-2]] == ["EntangledMBConv"] * 6
    with pytest.raises(ValueError, match="first_block_kernels must hold one kernel size"):
        mobilenet(entangled=True, first_block_kernels=(3, 5))
    with pytest.raises(ValueError, match="at least one searchable block"):
        mobilenet(entangled=True, stages=())
