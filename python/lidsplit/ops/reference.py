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


def _sq_dists(x: Tensor) -> Tensor:
    """Exact pairwise squared Euclidean distances of the rows of x (b, m), float64, row by row."""
    x = x.detach().to(torch.float64)
    return torch.stack([(x - x[i]).pow(2).sum(1) for i in range(x.shape[0])])


def knn(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest other rows: (squared distances float32, indices int64), ascending, ties by lower index."""
    if x.dim() == 3:
        outs = [knn(xi, k) for xi in x]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
    d = _sq_dists(x)
    d.fill_diagonal_(float("inf"))  # self excluded by index
    vals, idx = torch.sort(d, dim=1, stable=True)  # stable: equal distances keep index order
    return vals[:, :k].to(torch.float32), idx[:, :k]


def lid_mle(
    x: Tensor, k: int = 20, reduction: str = "mean", estimator: str = "mle", *, return_valid: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """LID per row / mean over valid rows; the rules are those of lidsplit.ops.lid (module docstring)."""
    if x.dim() == 3:
        outs = [lid_mle(xi, k, reduction, estimator, return_valid=True) for xi in x]
        lid, valid = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
        return (lid, valid) if return_valid else lid
    b = x.shape[0]
    if b <= k:
        raise ValueError(f"b = {b} rows, k = {k}")
    d = _sq_dists(x)
    rows, valid = torch.full((b,), float("nan"), dtype=torch.float64), torch.zeros(b, dtype=torch.bool)
    for i in range(b):
        if estimator == "official":
            # The authors' code: sort the full row (self at 0 included), drop sorted position 0.
            r = torch.sort(d[i]).values[1 : k + 1].sqrt()
            rows[i] = -k / (torch.log(r / (r[-1] + 1e-6)).sum() + 1e-6)
            valid[i] = True
            continue
        others = torch.cat([d[i, :i], d[i, i + 1 :]])
        pos = torch.sort(others[others > 0]).values[:k]  # equal rows (distance 0) are skipped
        if pos.numel() < k:
            continue
        s = 0.5 * torch.log(pos / pos[-1]).sum()
        if s == 0:
            continue
        num = k - 1 if estimator == "levina_bickel" else k
        rows[i], valid[i] = -num / s, True
    if reduction == "none":
        lid = rows.to(torch.float32)
    else:
        if not bool(valid.any()):
            raise ValueError("no valid row")
        lid = rows[valid].mean().to(torch.float32)
    return (lid, valid) if return_valid else lid


def lid_profile(features, k: int = 20, estimator: str = "mle") -> Tensor:
    """Mean LID of each matrix (flattened per sample): (L,) for a list, (P, L) for a list of lists."""
    if features and not isinstance(features[0], Tensor):
        return torch.stack([lid_profile(list(p), k, estimator) for p in features])
    return torch.stack([lid_mle(f.reshape(f.shape[0], -1), k, "mean", estimator) for f in features])


# ---- superpose ------------------------------------------------------------------------------------


def superpose_coefficients(shape: tuple[int, ...], coeffs: Tensor, boxes: Tensor) -> Tensor:
    """c(idx) = sum_i coeffs[i] * [idx in box i], ranges clamped to the shape; float64, on coeffs' device."""
    c = torch.zeros(tuple(shape), dtype=torch.float64, device=coeffs.device)
    for i in range(boxes.shape[0]):
        sl = tuple(slice(max(0, min(int(a), s)), max(0, min(int(b), s))) for (a, b), s in zip(boxes[i].tolist(), shape))
        c[sl] += coeffs[i].double()
    return c


def superpose_padded(weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
    """The definition with padded copies: sum_i coeffs[i] * pad(slice_i(weight)) (float64)."""
    out = torch.zeros(weight.shape, dtype=torch.float64, device=weight.device)
    for i in range(boxes.shape[0]):
        sl = tuple(slice(int(a), int(b)) for a, b in boxes[i].tolist())
        padded = torch.zeros_like(out)
        padded[sl] = weight[sl].double()
        out += coeffs[i].double() * padded
    return out


def superpose(weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
    """weight * c(idx); c summed in box order in float32 (float64 for float64 weights), as the kernels."""
    acc = _acc_dtype(weight.dtype)
    c = torch.zeros(weight.shape, dtype=acc, device=weight.device)
    for i in range(boxes.shape[0]):
        sl = tuple(
            slice(max(0, min(int(a), s)), max(0, min(int(b), s))) for (a, b), s in zip(boxes[i].tolist(), weight.shape)
        )
        c[sl] += coeffs[i].to(acc)
    return (weight.to(acc) * c).to(weight.dtype)


def superpose_coeff_grad(grad: Tensor, weight: Tensor, boxes: Tensor) -> Tensor:
    """(n,) float64: sum over box i of grad * weight."""
    prod = grad.double() * weight.double()
    out = []
    for i in range(boxes.shape[0]):
        sl = tuple(
            slice(max(0, min(int(a), s)), max(0, min(int(b), s))) for (a, b), s in zip(boxes[i].tolist(), weight.shape)
        )
        out.append(prod[sl].sum())
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64, device=weight.device)
