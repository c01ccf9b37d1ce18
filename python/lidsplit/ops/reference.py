"""Plain-PyTorch reference implementations of every lidsplit op.

They define what each op computes; the tests compare the kernels with them. Written for clarity, not
speed or memory (they may build the full b x b distance matrix).
"""

from __future__ import annotations

import torch
from torch import Tensor

# ---- masked_sum ---------------------------------------------------------------------------------


def masked_sum(xs: list[Tensor], weights: Tensor) -> Tensor:
    """sum_j weights[..., j] * xs[j]; weights (n,) or (G, n) over G equal groups of the batch dim."""
    if weights.dim() == 1:
        return sum(w * x for w, x in zip(weights, xs))
    g = weights.shape[0]
    chunks = [torch.stack([x.reshape(g, -1, *x.shape[1:])[i] for x in xs]) for i in range(g)]
    out = [torch.einsum("n,n...->...", weights[i].to(c.dtype), c) for i, c in enumerate(chunks)]
    return torch.cat(out, 0)


# ---- gradient_cosine / gradient_gram -----------------------------------------------------------

# ---- knn / lid_mle / lid_profile ----------------------------------------------------------------
