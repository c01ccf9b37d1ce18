"""Entangled ops (lidsplit.supernet.entangled): superposition == explicit weighted sum of the sliced ops,
combi order, centred discrete path, BatchNorm scaling, grouped mode, prefix BatchNorm."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lidsplit.spaces import NB201EntangledEdge, toy_macro
from lidsplit.spaces.nb201 import NB201_OPS
from lidsplit.supernet import SubSupernet, materialize, search_space, use_grouped, use_path, use_sum, use_weighted
from lidsplit.supernet import entangled as E


def _conv_ref(x, w, k, c, K):
    """pad(conv(x, W[:c, :, centred k x k])) to W's output channels."""
    s = (K - k) // 2
    y = F.conv2d(x, w[:c, :, s:s + k, s:s + k], padding=k // 2)
    return F.pad(y, (0, 0, 0, 0, 0, w.shape[0] - c))


@settings(max_examples=20, deadline=None)
@given(
    kernels=st.lists(st.sampled_from([1, 3, 5, 7]), min_size=1, max_size=4, unique=True),
    chans=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True),
    c_in=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_superposition_equals_weighted_sum_of_sliced_convs(kernels, chans, c_in, seed):
    torch.manual_seed(seed)
    kernels, chans = sorted(kernels), sorted(chans)
    dim = E.ArchDim("ch", chans, prefix="c")
    conv = E.EntangledConv2d("k", c_in, dim, kernels, bias=False, bn=False).double()
    wk = torch.rand(len(kernels), dtype=torch.float64)
    wc = torch.rand(len(chans), dtype=torch.float64)
    x = torch.randn(2, c_in, 9, 9, dtype=torch.float64)
    with use_weighted(conv, {"k": wk, "ch": wc}, softmax=False):
        y = conv(x)
    K = max(kernels)
    W = conv.conv.weight.detach()
    want = sum(wk[i] * wc[j] * _conv_ref(x, W, k, c, K)
               for (i, k), (j, c) in itertools.product(enumerate(kernels), enumerate(chans)))
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    # the explicit (weight-sharing) computation agrees
    E.set_mixture(conv, "explicit")
    with use_weighted(conv, {"k": wk, "ch": wc}, softmax=False):
        torch.testing.assert_close(conv(x), want, rtol=1e-10, atol=1e-10)


def test_combi_order_is_itertools_product():
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0, 7.0]), torch.tensor([11.0, 13.0])
    want = torch.tensor([x * y * z for x, y, z in itertools.product(a, b, c)])
    torch.testing.assert_close(E.combi_weights(a, b, c), want)
    sels = [E.Sel(("a0", "a1"), None, a, (0, 1)), E.Sel((10, 20, 30), None, b, (0, 1, 2)), E.Sel(("z0", "z1"), None, c, (0, 1))]
    cmb = E.combos(sels, (True, True, True))
    assert cmb.values == tuple(itertools.product(("a0", "a1"), (10, 20, 30), ("z0", "z1")))
    torch.testing.assert_close(cmb.coeffs, want)
    # a dimension without coefficients is taken at its largest active value and adds no factor
    cmb = E.combos(sels, (True, False, True))
    assert cmb.values == tuple(itertools.product(("a0", "a1"), (30,), ("z0", "z1")))
    torch.testing.assert_close(cmb.coeffs, E.combi_weights(a, c))
    # inactive choices are skipped
    s2 = E.Sel((10, 20, 30), None, torch.tensor([3.0, 0.0, 7.0]), (0, 2))
    assert E.combos([s2], (True,)).values == ((10,), (30,))


def test_combi_superposed_weight_matches_documented_order():
    """The conv weight of a (kernel x channel) mixture = sum over itertools.product of w_k w_c pad(slice)."""
    torch.manual_seed(1)
    dim = E.ArchDim("ch", (2, 4), prefix="c")
    conv = E.EntangledConv2d("k", 3, dim, (3, 5), bn=False).double()
    wk, wc = torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([0.6, 0.4], dtype=torch.float64)
    W = conv.conv.weight.detach()
    sup = torch.zeros_like(W)
    for (k, a), (c, b) in itertools.product(zip((3, 5), wk), zip((2, 4), wc)):
        s = (5 - k) // 2
        sup[:c, :, s:s + k, s:s + k] += a * b * W[:c, :, s:s + k, s:s + k]
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    with use_weighted(conv, {"k": wk, "ch": wc}, softmax=False):
        torch.testing.assert_close(conv(x), F.conv2d(x, sup, padding=2))


def test_discrete_path_is_centred_and_materialize_agrees():
    torch.manual_seed(2)
    dim = E.ArchDim("ch", (3, 5), prefix="c")
    conv = E.EntangledConv2d("k", 2, dim, (3, 5, 7), bias=True, bn=False)
    x = torch.randn(2, 2, 8, 8)
    W, b = conv.conv.weight.detach(), conv.conv.bias.detach()
    with use_path(conv, ("3x3", "c3")):
        y = conv(x)
    want = F.pad(F.conv2d(x, W[:3, :, 2:5, 2:5], b[:3], padding=1), (0, 0, 0, 0, 0, 2))
    torch.testing.assert_close(y, want)
    # (wrapped: materialize of a bare Choice does not walk into the op it returns)
    fixed = materialize(torch.nn.Sequential(conv), ("3x3", "c3"))
    torch.testing.assert_close(fixed(x), want)
    assert isinstance(fixed[0], E.FixedEntangled) and isinstance(fixed[0].out_dim, E.FixedDim)


def test_path_equals_one_hot_mixture_with_batchnorm():
    """bn_scale='after': one-hot weights give exactly the sliced conv + BatchNorm of the path."""
    torch.manual_seed(3)
    m = toy_macro(width_mult=0.25, in_channels=1, num_classes=3)
    space = search_space(m)
    arch = (2, 0, 1, 2, 0, 1, 1, 0)
    x = torch.randn(6, 1, 8, 8)
    onehot = {e.label: F.one_hot(torch.tensor(arch[i]), e.num_ops).float() for i, e in enumerate(space.edges)}
    with use_path(m, arch):
        y_path = m(x)
    with use_weighted(m, onehot, softmax=False):
        y_mix = m(x)
    torch.testing.assert_close(y_mix, y_path, rtol=1e-5, atol=1e-5)


def test_batchnorm_scale_after_keeps_the_group_weight():
    """NB201 edge: the conv group's total weight survives the BatchNorm with bn_scale='after', is
    normalised away with 'before' (the authors' variant)."""
    torch.manual_seed(4)
    x = torch.randn(8, 4, 6, 6)
    i1, i3 = NB201_OPS.index("nor_conv_1x1"), NB201_OPS.index("nor_conv_3x3")
    outs = {}
    for scale in ("after", "before"):
        edge = NB201EntangledEdge("e", 4, bn_scale=scale)
        for f in (1.0, 2.0):
            w = torch.zeros(5)
            w[i1], w[i3] = 0.25 * f, 0.5 * f
            with use_weighted(edge, {"e": w}, softmax=False):
                outs[scale, f] = edge(x)
    torch.testing.assert_close(outs["after", 2.0], 2 * outs["after", 1.0], rtol=1e-5, atol=1e-5)
    # 'before': only the BatchNorm eps tells the two apart
    torch.testing.assert_close(outs["before", 2.0], outs["before", 1.0], rtol=2e-3, atol=2e-3)


def test_grouped_equals_separate_sums():
    torch.manual_seed(9)
    m = toy_macro(width_mult=0.25, in_channels=1, num_classes=4)
    space = search_space(m)
    subs = SubSupernet.full(space).split("conv2/channels", [[0], [1, 2]])
    subs = [subs[0], subs[1].split("conv1/kernel", [[0, 1], [2]])[1]]
    x = torch.randn(8, 1, 8, 8)
    with use_grouped(m, subs):
        y = m(x)
    for g, s in enumerate(subs):
        with use_sum(m, s):
            torch.testing.assert_close(y[4 * g:4 * (g + 1)], m(x[4 * g:4 * (g + 1)]), rtol=1e-5, atol=1e-5)


def test_prefix_batchnorm_updates_only_its_channels():
    bn = E.SuperConv2d(2, 6, 1, bn=True).bn
    before_mean = bn.running_mean.clone()
    y = E.prefix_batch_norm(bn, torch.randn(16, 4, 3, 3) + 3)
    assert y.shape == (16, 4, 3, 3)
    assert bool((bn.running_mean[:4] != before_mean[:4]).all())
    assert torch.equal(bn.running_mean[4:], before_mean[4:])
    assert int(bn.num_batches_tracked) == 1
