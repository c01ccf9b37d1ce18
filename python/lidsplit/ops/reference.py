"""Plain-PyTorch reference implementations of every lidsplit op.

They define what each op computes; the tests compare the kernels with them. Written for clarity, not
speed or memory (they may build the full b x b distance matrix).
"""

from __future__ import annotations

import torch
from torch import Tensor

# ---- masked_sum ---------------------------------------------------------------------------------


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def masked_sum(xs: list[Tensor], weights: Tensor) -> Tensor:
    """sum_j weights[..., j] * xs[j]; weights (n,) or (G, n) over G equal groups of the batch dim.

    Accumulates in float32 (float64 for float64 inputs) in input order. A weight of exactly 0 skips its
    input (or group slice): its term is 0 even where the input holds NaN or Inf.
    """
    x0 = xs[0]
    acc = _acc_dtype(x0.dtype)
    g = 1 if weights.dim() == 1 else weights.shape[0]
    w = weights.reshape(g, -1).to(acc)
    out = torch.zeros((g, x0.numel() // g), dtype=acc, device=x0.device)
    for j, x in enumerate(xs):
        wj = w[:, j : j + 1]
        out += torch.where(wj != 0, wj * x.reshape(g, -1).to(acc), 0.0)
    return out.reshape(x0.shape).to(x0.dtype)


def masked_sum_grad_weights(xs: list[Tensor], grad: Tensor, weights: Tensor) -> Tensor:
    """<xs[j], grad> per group (float64 accumulation), shaped and typed like weights."""
    g = 1 if weights.dim() == 1 else weights.shape[0]
    gr = grad.reshape(g, -1).double()
    cols = [(x.reshape(g, -1).double() * gr).sum(1) for x in xs]
    return torch.stack(cols, 1).reshape(weights.shape).to(weights.dtype)


# ---- gradient_cosine / gradient_gram -----------------------------------------------------------


def _flat_vectors(grads: list[list[Tensor | None]]) -> Tensor:
    """(n, M) float64: each gradient vector concatenated, None entries as zeros."""
    n = len(grads)
    num_params = len(grads[0]) if n else 0
    device = next((t.device for g in grads for t in g if t is not None), torch.device("cpu"))
    rows: list[list[Tensor]] = [[] for _ in range(n)]
    for p in range(num_params):
        ref = next((g[p] for g in grads if g[p] is not None), None)
        if ref is None:
            continue
        for i in range(n):
            t = grads[i][p]
            rows[i].append((torch.zeros_like(ref) if t is None else t).reshape(-1).double())
    return torch.stack(
        [torch.cat(r) if r else torch.zeros(0, dtype=torch.float64, device=device) for r in rows]
    )


def gradient_gram(grads: list[list[Tensor | None]]) -> Tensor:
    """(n, n) float64 dot products of n gradient vectors given as per-parameter lists (None = zeros)."""
    v = _flat_vectors(grads)
    return v @ v.T


def gradient_cosine(grads: list[list[Tensor | None]]) -> Tensor:
    """(n, n) float64 cosine similarities; a zero vector has cosine 0 with every vector, itself included,
    and any other vector exactly 1 with itself."""
    g = gradient_gram(grads)
    d = g.diagonal()
    nonzero = d > 0
    r = torch.where(nonzero, d.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), 0.0)
    c = (g * r[:, None] * r[None, :]).clamp(-1.0, 1.0)
    c.diagonal().copy_(nonzero.double())
    return c


# ---- knn / lid_mle / lid_profile ----------------------------------------------------------------
