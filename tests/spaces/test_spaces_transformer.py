"""The weight-entangled character-level GPT space (lidsplit.spaces.transformer): exact head / MLP-ratio
mixtures, zero beyond the chosen width, materialize."""

from __future__ import annotations

import torch

from lidsplit.spaces import transformer
from lidsplit.supernet import materialize, use_path, use_weighted


def test_transformer_head_and_ratio_mixtures_are_exact():
    """Embedding fixed: the attention mixture over heads is the weighted sum of the attention of each
    number of heads; the MLP mixture over ratios that of each MLP."""
    torch.manual_seed(7)
    g = transformer(20, block_size=8, embed=(8, 16), depth=(1,), heads=(1, 2), mlp_ratio=(1, 2, 3), head_dim=8)
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
    g = transformer(20, block_size=8)
    g.eval()
    x = torch.randint(0, 20, (2, 8))
    arch = (0, 1, 0, 2, 1, 0, 1, 1)  # embed 16 of 32
    with use_path(g, arch):
        y = g(x)
        h = g.tok(x)
    assert bool((h[..., 16:] == 0).all())
    torch.testing.assert_close(materialize(g, arch)(x), y)
