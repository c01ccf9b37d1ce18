"""Entangled ops: superposition == explicit weighted sum of the sliced ops, combi order, centred
discrete path, BatchNorm scaling, name matching, exact head / MLP-ratio mixtures, grouped mode."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lidsplit import tangle as T
from lidsplit.spaces.nb201 import NB201_OPS
from lidsplit.supernet import SubSupernet, materialize, search_space, use_grouped, use_path, use_sum, use_weighted


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
    dim = T.ArchDim("ch", chans, prefix="c")
    conv = T.EntangledConv2d("k", c_in, dim, kernels, bias=False, bn=False).double()
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
    T.set_mixture(conv, "explicit")
    with use_weighted(conv, {"k": wk, "ch": wc}, softmax=False):
        torch.testing.assert_close(conv(x), want, rtol=1e-10, atol=1e-10)


def test_combi_order_is_itertools_product():
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0, 7.0]), torch.tensor([11.0, 13.0])
    want = torch.tensor([x * y * z for x, y, z in itertools.product(a, b, c)])
    torch.testing.assert_close(T.combi_weights(a, b, c), want)
    sels = [T.Sel(("a0", "a1"), None, a, (0, 1)), T.Sel((10, 20, 30), None, b, (0, 1, 2)), T.Sel(("z0", "z1"), None, c, (0, 1))]
    cmb = T.combos(sels, (True, True, True))
    assert cmb.values == tuple(itertools.product(("a0", "a1"), (10, 20, 30), ("z0", "z1")))
    torch.testing.assert_close(cmb.coeffs, want)
    # a dimension without coefficients is taken at its largest active value and adds no factor
    cmb = T.combos(sels, (True, False, True))
    assert cmb.values == tuple(itertools.product(("a0", "a1"), (30,), ("z0", "z1")))
    torch.testing.assert_close(cmb.coeffs, T.combi_weights(a, c))
    # inactive choices are skipped
    s2 = T.Sel((10, 20, 30), None, torch.tensor([3.0, 0.0, 7.0]), (0, 2))
    assert T.combos([s2], (True,)).values == ((10,), (30,))


def test_combi_superposed_weight_matches_documented_order():
    """The conv weight of a (kernel x channel) mixture = sum over itertools.product of w_k w_c pad(slice)."""
    torch.manual_seed(1)
    dim = T.ArchDim("ch", (2, 4), prefix="c")
    conv = T.EntangledConv2d("k", 3, dim, (3, 5), bn=False).double()
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
    dim = T.ArchDim("ch", (3, 5), prefix="c")
    conv = T.EntangledConv2d("k", 2, dim, (3, 5, 7), bias=True, bn=False)
    x = torch.randn(2, 2, 8, 8)
    W, b = conv.conv.weight.detach(), conv.conv.bias.detach()
    with use_path(conv, ("3x3", "c3")):
        y = conv(x)
    want = F.pad(F.conv2d(x, W[:3, :, 2:5, 2:5], b[:3], padding=1), (0, 0, 0, 0, 0, 2))
    torch.testing.assert_close(y, want)
    # (wrapped: materialize of a bare Choice does not walk into the op it returns)
    fixed = materialize(torch.nn.Sequential(conv), ("3x3", "c3"))
    torch.testing.assert_close(fixed(x), want)
    assert isinstance(fixed[0], T.FixedEntangled) and isinstance(fixed[0].out_dim, T.FixedDim)


def test_path_equals_one_hot_mixture_with_batchnorm():
    """bn_scale='after': one-hot weights give exactly the sliced conv + BatchNorm of the path."""
    torch.manual_seed(3)
    m = T.toy_macro(width_mult=0.25, in_channels=1, num_classes=3)
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
        edge = T.NB201EntangledEdge("e", 4, bn_scale=scale)
        for f in (1.0, 2.0):
            w = torch.zeros(5)
            w[i1], w[i3] = 0.25 * f, 0.5 * f
            with use_weighted(edge, {"e": w}, softmax=False):
                outs[scale, f] = edge(x)
    torch.testing.assert_close(outs["after", 2.0], 2 * outs["after", 1.0], rtol=1e-5, atol=1e-5)
    # 'before': only the BatchNorm eps tells the two apart
    torch.testing.assert_close(outs["before", 2.0], outs["before", 1.0], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("order", [NB201_OPS, ("nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect")])
def test_nb201_weights_matched_by_name(order):
    torch.manual_seed(5)
    edge = T.NB201EntangledEdge("e", 3, ops=order, affine=False)
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
    from lidsplit.spaces import nb201

    ws, we = nb201(C=8, N=1), T.nb201_entangled(C=8, N=1)
    assert search_space(ws) == search_space(we)
    n_ws = sum(p.numel() for p in ws.parameters())
    n_we = sum(p.numel() for p in we.parameters())
    assert n_we < n_ws


def test_gradients_reach_every_architecture_weight():
    torch.manual_seed(6)
    for model, x in ((T.toy_macro(width_mult=0.25, in_channels=1), torch.randn(4, 1, 8, 8)),
                     (T.mobilenet_entangled(), torch.randn(2, 1, 12, 12)),
                     (T.nb201_entangled(C=4), torch.randn(2, 1, 8, 8))):
        alphas = T.arch_parameters(model, init_std=0.5)
        with use_weighted(model, alphas):
            model(x).square().sum().backward()
        for label, a in alphas.items():
            assert a.grad is not None and bool(a.grad.abs().sum() > 0), (type(model).__name__, label)


def test_transformer_head_and_ratio_mixtures_are_exact():
    """Embedding fixed: the attention mixture over heads is the weighted sum of the attention of each
    number of heads; the MLP mixture over ratios that of each MLP."""
    torch.manual_seed(7)
    g = T.transformer(20, block_size=8, embed=(8, 16), depth=(1,), heads=(1, 2), mlp_ratio=(1, 2, 3), head_dim=8)
    blk = g.blocks[0]
    z = torch.randn(3, 8, 16)
    wh, wr = torch.tensor([0.3, 0.7]), torch.tensor([0.2, 0.5, 0.3])
    weights = {"embed": torch.tensor([0.0, 1.0]), "depth": torch.tensor([1.0]), "layer1/heads": wh, "layer1/mlp_ratio": wr}

    def mlp(x):
        return blk.fc2(blk.act(blk.fc1(x)))

    with use_weighted(g, weights, softmax=False):
        a_mix, m_mix = blk.attn(z), mlp(z)
    a_want = m_want = 0
    for i, a in enumerate(wh):
        with use_path(g, (1, 0, i, 0)):
            a_want = a_want + a * blk.attn(z)
    for j, b in enumerate(wr):
        with use_path(g, (1, 0, 0, j)):
            m_want = m_want + b * mlp(z)
    torch.testing.assert_close(a_mix, a_want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m_mix, m_want, rtol=1e-5, atol=1e-6)


def test_transformer_path_zero_beyond_width_and_materialize():
    torch.manual_seed(8)
    g = T.transformer(20, block_size=8)
    g.eval()
    x = torch.randint(0, 20, (2, 8))
    arch = (0, 1, 0, 2, 1, 0, 1, 1)  # embed 16 of 32
    with use_path(g, arch):
        y = g(x)
        h = g.tok(x)
    assert bool((h[..., 16:] == 0).all())
    torch.testing.assert_close(materialize(g, arch)(x), y)


def test_grouped_equals_separate_sums():
    torch.manual_seed(9)
    m = T.toy_macro(width_mult=0.25, in_channels=1, num_classes=4)
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
    bn = T.SuperConv2d(2, 6, 1, bn=True).bn
    before_mean = bn.running_mean.clone()
    y = T.prefix_batch_norm(bn, torch.randn(16, 4, 3, 3) + 3)
    assert y.shape == (16, 4, 3, 3)
    assert bool((bn.running_mean[:4] != before_mean[:4]).all())
    assert torch.equal(bn.running_mean[4:], before_mean[4:])
    assert int(bn.num_batches_tracked) == 1


@pytest.mark.parametrize("space", ["toy_macro", "nb201", "mobilenet", "transformer"])
def test_every_space_materializes_to_a_plain_network(space):
    from lidsplit.supernet import Choice

    torch.manual_seed(10)
    if space == "toy_macro":
        m, x = T.toy_macro(width_mult=0.25, in_channels=1), torch.randn(2, 1, 8, 8)
    elif space == "nb201":
        m, x = T.nb201_entangled(C=4), torch.randn(2, 1, 8, 8)
    elif space == "mobilenet":
        m, x = T.mobilenet_entangled(), torch.randn(2, 1, 12, 12)
    else:
        m, x = T.transformer(20, block_size=8), torch.randint(0, 20, (2, 8))
    m.eval()
    sp = search_space(m)
    for seed in range(3):
        arch = sp.random_arch(torch.Generator().manual_seed(seed))
        net = materialize(m, arch)
        assert not any(isinstance(mod, Choice) for mod in net.modules())
        with use_path(m, arch):
            torch.testing.assert_close(net(x), m(x))
