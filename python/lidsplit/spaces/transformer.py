"""A small weight-entangled transformer space: a character-level GPT (TangleNAS's language-model space
in miniature) searching the embedding width, the number of layers, and per layer the number of heads
and the MLP ratio.

Edges: ``embed`` (ops ``e{E}``), ``depth`` (ops ``d{L}``), ``layer{l}/heads`` (ops ``h{H}``: the
layer's :class:`EntangledAttention`), ``layer{l}/mlp_ratio`` (ops ``r{R}``: its two MLP
:class:`EntangledLinear` s, hidden = R * E). Every width is a prefix of the largest; the residual stream
has the largest width, zero beyond the chosen one. The embedding width weights the layers writing the
stream (token / position embeddings, attention and MLP outputs); LayerNorms are mixtures of the
LayerNorms of each active width; the depth mixture is the weighted sum of the stream after each active
number of layers. The model returns logits ``(B, T, vocab)``; :func:`lm_loss` is the token-level cross
entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.ops import masked_sum
from lidsplit.spaces.common import Supernet
from lidsplit.supernet.entangled import (
    ArchDim,
    EntangledAttention,
    EntangledLinear,
    PrefixLayerNorm,
    SuperEmbedding,
    product_width,
    same_width,
)


class Block(nn.Module):
    def __init__(self, layer: int, embed: ArchDim, heads: Sequence[int], head_dim: int, ratios: Sequence[float]):
        super().__init__()
        self.ln1 = PrefixLayerNorm(embed)
        self.attn = EntangledAttention(f"layer{layer}/heads", heads, embed=embed, head_dim=head_dim)
        self.ln2 = PrefixLayerNorm(embed)
        lb, names = f"layer{layer}/mlp_ratio", [f"r{r:g}" for r in ratios]
        # fc1 only slices (hidden = ratio * embed); fc2 reads the hidden units and writes the stream: it
        # carries the (ratio x embed) coefficients, so the ratio mixture is exact
        self.fc1 = EntangledLinear(lb, ratios, dims=[embed], out_features=product_width, in_features=same_width,
                                   coeffs=False, names=names)
        self.fc2 = EntangledLinear(lb, ratios, dims=[embed], out_features=same_width, in_features=product_width,
                                   coeffs=True, names=names)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TangleGPT(Supernet):
    def __init__(
        self,
        vocab_size: int,
        block_size: int = 32,
        embed: Sequence[int] = (16, 24, 32),
        depth: Sequence[int] = (1, 2, 3),
        heads: Sequence[int] = (2, 4),
        mlp_ratio: Sequence[float] = (2, 3, 4),
        head_dim: int = 8,
    ):
        super().__init__()
        self.block_size = block_size
        self.embed = ArchDim("embed", embed, prefix="e")
        self.depth = ArchDim("depth", depth, prefix="d")
        self.tok = SuperEmbedding(vocab_size, self.embed)
        self.pos = SuperEmbedding(block_size, self.embed)
        self.blocks = nn.ModuleList(Block(i + 1, self.embed, heads, head_dim, mlp_ratio) for i in range(max(depth)))
        self.ln_f = PrefixLayerNorm(self.embed)
        self.head = nn.Linear(max(embed), vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"lidsplit: sequence of {T} tokens is longer than block_size {self.block_size}")
        pos = torch.arange(T, device=idx.device).expand(idx.shape[0], T)  # batched: grouped mode splits it
        h = self.tok(idx) + self.pos(pos)
        sel = self.depth(h)
        if sel.index is not None:
            for blk in self.blocks[: sel.values[sel.index]]:
                h = blk(h)
        else:
            depths = {sel.values[j] for j in sel.active}
            kept = {}
            for d, blk in enumerate(self.blocks[: max(depths)], start=1):
                h = blk(h)
                if d in depths:
                    kept[d] = h.contiguous()
            outs = [kept[sel.values[j]] for j in sel.active]
            h = masked_sum(outs, sel.weights[..., list(sel.active)].to(outs[0].dtype))
        h = self.ln_f(h)
        return self.head(h)

    def feature_layers(self) -> list[nn.Module]:
        return list(self.blocks)

    def shared_modules(self) -> list[nn.Module]:
        return list(self.blocks)


def lm_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean token cross entropy of logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def transformer(vocab_size: int, **kw) -> TangleGPT:
    """Small weight-entangled character-level GPT supernet (see :class:`TangleGPT`)."""
    return TangleGPT(vocab_size, **kw)
