"""k nearest neighbours and local intrinsic dimension (LID), the NAS-LID characterisation.

Three ops, each also ``torch.ops.lidsplit.<name>`` (custom ops with fake kernels, so they work under
``torch.compile``; none is differentiable):

- ``knn(x, k) -> (sq_dists, index)``: for every row of ``x`` ``(b, m)`` or ``(B, b, m)`` its ``k``
  nearest *other* rows, squared Euclidean distances ascending (float32) and their indices (int64).
  The row itself is excluded by index, never by sort position; equal distances are ordered by lower
  index. Rows equal to the query are neighbours at distance exactly 0.
- ``lid_mle(x, k=20, reduction="mean", estimator="mle", *, return_valid=False)``: the LID of every
  row and (``reduction="mean"``) their mean, one scalar per matrix.
- ``lid_profile(features, k=20, estimator="mle")``: the mean LID of each of L matrices of any widths
  (a network's layer outputs, each ``(b, ...)``, flattened per sample), ``(L,)``; or of P such lists
  at once, ``(P, L)``. One call for all of them.

Estimators (r_j: Euclidean distance to the j-th neighbour, j = 1..k):

- ``"mle"`` (default): NAS-LID eq. 2, ``LID = -k / sum_j log(r_j / r_k)`` (numerator k).
- ``"levina_bickel"``: the same with numerator k - 1, i.e. ``mle * (k - 1) / k``; equals
  scikit-dimension's ``skdim.id.MLE().fit(X, n_neighbors=k, comb="mean")``.
- ``"official"``: the authors' NAS-LID code, for comparing numbers with it: the k nearest other rows,
  zero distances included, ``LID = -k / (sum_j log(r_j / (r_k + 1e-6)) + 1e-6)``, mean over *all*
  rows. (Their code sorts each row of a float32 ``torch.cdist`` distance matrix and drops sorted
  position 0 as "self". The formula and the neighbour rule are theirs, but not their rounding:
  ``torch.cdist`` computes distances by the same |xi|^2 + |xj|^2 - 2<xi, xj> expansion in float32
  without lidsplit's exact recomputation near zero, so a duplicate row can sit at a small positive
  distance there (and self need not be at sorted position 0), and ties between equidistant rows can
  break differently; expect equal values on rows with distinct, well-separated neighbours and
  different ones on duplicate and equidistant rows.) Its known defects
  are kept on purpose: a row with a duplicate gets LID 0, equidistant neighbours make it explode
  (about 1e5 and more), and the 1e-6 terms make it scale-dependent.

The duplicate rule of ``"mle"`` and ``"levina_bickel"``: two rows are at distance 0 exactly when they
are equal (lidsplit computes near-zero distances exactly, so this holds despite float32 cancellation).
Equal rows are not neighbours of each other: the estimate of a row uses its k nearest neighbours at
positive distance. A row is *invalid* (no estimate) when it has fewer than k rows at positive
distance, or when its k neighbours are all at the same distance (the sum of logs is 0, the estimate
infinite). Invalid rows are left out of the mean; ``lid_mle(..., reduction="none")`` gives them NaN
(so ``torch.nanmean`` of the rows equals the mean, and a plain ``mean`` is loudly NaN, never silently
low), and ``return_valid=True`` also returns the boolean mask of valid rows. When no row of a matrix is valid, the mean is undefined and
``lid_mle``/``lid_profile`` raise ValueError. (``torch.ops.lidsplit.lid_mle`` always returns the pair
``(lid, valid)``.) With ``"official"`` every row is valid.

Errors: ``b <= k`` (ValueError naming both), empty input, NaN or Inf (ValueError), non-contiguous
input (ValueError: lidsplit never copies silently), dtypes other than float32/float16/bfloat16.

Numerics: float16/bfloat16 inputs are converted to float32 (one copy); everything accumulates in
float32 and the LID in float64. Distances use |xi|^2 + |xj|^2 - 2<xi, xj>, with the Gram entries from
torch's float32 GEMM; where that is below 2^-10 (|xi|^2 + |xj|^2) (cancellation), the distance is
recomputed exactly from the two rows.

Speed and memory (CPU): the Gram matrix is computed with torch's GEMM in row panels of at most a few
hundred rows, X[i0:i1] @ X[i0:].T (the upper triangle only: each pair is computed once and feeds both
of its rows), into one reused buffer; a fused C++ epilogue (OpenMP, torch's thread count) turns each
panel into squared distances and keeps a running sorted top-k per row. The b x b matrix never exists:
the extra memory is O(b k) for the lists plus the panel buffer (at most 16 MiB unless one panel of
16 rows needs more). On CUDA, one kernel computes distance tiles in shared memory and keeps the top-k
per row (no b x b matrix either), on torch's current stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lidsplit import _C
from lidsplit.ops._dlpack import FLOATS, capsule, check_tensor, describe, plain_eager, stream_of

__all__ = ["knn", "lid_mle", "lid_profile", "ESTIMATORS"]

ESTIMATORS: dict[str, int] = {"mle": 0, "levina_bickel": 1, "official": 2}
REDUCTIONS = ("mean", "none")

# Panel plan: one full Gram panel below this much work (b * b * m multiply-adds) or at most this many
# rows; otherwise about _PANELS panels of _MIN_PANEL to _MAX_PANEL rows, a multiple of 16. (Measured
# here: panels of 64-512 rows keep MKL near its full-GEMM speed, and the triangle halves the work.)
_FULL_GRAM_WORK = 1 << 24
_MIN_PANEL = 64
_MAX_PANEL = 512
_PANELS = 8
# Floats of panel buffer per update call (more only when a single panel needs it).
_BUF_FLOATS = 1 << 22
# Largest squared row norm accepted (csrc/cpu/knn.cpp kMaxSqNorm): float32 max / 4.
_MAX_SQ_NORM = torch.finfo(torch.float32).max / 4


# ---- argument checks -------------------------------------------------------------------------------


def _check_k(k: object, *, minimum: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"lidsplit: k must be an int, got {type(k).__name__}")
    if k < minimum:
        raise ValueError(f"lidsplit: k must be >= {minimum}, got k = {k}")
    return k


def _check_estimator(estimator: object) -> int:
    if estimator not in ESTIMATORS:
        raise ValueError(f"lidsplit: unknown estimator {estimator!r}; expected one of {', '.join(map(repr, ESTIMATORS))}")
    return ESTIMATORS[estimator]  # type: ignore[index]


def _check_rows(name: str, b: int, k: int) -> None:
    if b <= k:
        raise ValueError(
            f"lidsplit: argument '{name}' has b = {b} rows but k = {k} neighbours were asked for; "
            f"every row needs k other rows (b > k)"
        )


def _check_matrix(name: str, x: object, ndims: tuple[int, ...], k: int) -> Tensor:
    x = check_tensor(name, x, ndims=ndims, dtypes=FLOATS)
    if x.numel() == 0:
        raise ValueError(f"lidsplit: argument '{name}' ({describe(x)}) is empty")
    _check_rows(name, x.shape[-2], k)
    return x


def _threads() -> int:
    return torch.get_num_threads()


# ---- CPU driver ------------------------------------------------------------------------------------


def _panel_rows(b: int, m: int) -> int:
    """Rows per Gram panel for a (b, m) matrix."""
    if b <= _MIN_PANEL or (b * b * m < _FULL_GRAM_WORK and b * b <= _BUF_FLOATS):
        return b
    ti = min(_MAX_PANEL, max(_MIN_PANEL, -(-b // _PANELS)))
    ti = -(-ti // 16) * 16
    ti = min(ti, max(16, _BUF_FLOATS // b))
    return min(ti, b)


def _cpu_knn_state(mats: list[Tensor], names: list[str], k: int, skip_zero: bool):
    """Run the whole panel schedule on float32 CPU matrices; returns the finished _C.KnnSet."""
    threads = _threads()
    st = _C.knn_prepare([capsule(t) for t in mats], k, skip_zero, names, threads)
    if len(mats) == 1 and _panel_rows(*mats[0].shape) == mats[0].shape[0]:  # one small Gram matrix
        t = mats[0]
        st.update(capsule(torch.mm(t, t.t()).view(-1)), [(0, 0, 0, t.shape[0])], threads)
        return st
    # Rounds: round r holds panel r of every matrix that has one; a round is cut into chunks whose
    # panels fit the buffer together, one update call each.
    plans = []
    for t in mats:
        b, m = t.shape
        ti = _panel_rows(b, m)
        plans.append((t, b, ti, -(-b // ti)))
    chunks: list[list[tuple[int, int, int, int, int]]] = []
    biggest = 0
    for r in range(max(p[3] for p in plans)):
        chunk: list[tuple[int, int, int, int, int]] = []
        used = 0
        for s, (_, b, ti, n) in enumerate(plans):
            if r >= n:
                continue
            i0 = r * ti
            i1 = min(b, i0 + ti)
            size = (i1 - i0) * (b - i0)
            if chunk and used + size > _BUF_FLOATS:
                chunks.append(chunk)
                chunk, used = [], 0
            chunk.append((s, used, i0, i1, size))
            used += size
            biggest = max(biggest, used)
        if chunk:
            chunks.append(chunk)
    buf = torch.empty(biggest, dtype=torch.float32)
    buf_cap = capsule(buf)
    for chunk in chunks:
        for s, off, i0, i1, size in chunk:
            t = plans[s][0]
            torch.mm(t[i0:i1], t[i0:].t(), out=buf[off : off + size].view(i1 - i0, t.shape[0] - i0))
        st.update(buf_cap, [(s, off, i0, i1) for s, off, i0, i1, _ in chunk], threads)
    return st


def _as_f32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float32 else x.to(torch.float32)


# ---- CUDA driver -----------------------------------------------------------------------------------


def _on_cuda(x: Tensor) -> bool:
    """Whether x takes the CUDA path (a function, so that tests can drive that path with a mock)."""
    return x.is_cuda


def _cuda_lists(x3: Tensor, k: int, skip_zero: bool, name: str) -> tuple[Tensor, Tensor]:
    """(B, b, k) sorted squared distances and indices on the GPU."""
    if not _C.cuda_compiled():
        raise ValueError(
            f"lidsplit: argument '{name}' ({describe(x3)}): this build of lidsplit has no CUDA kernels "
            "(see lidsplit.cuda_info()); move the tensor to the CPU or rebuild with a CUDA compiler"
        )
    # The CPU kernel checks this in its norm pass; here torch does (one host sync).
    sq = torch.linalg.vector_norm(x3, dim=-1).double().square()
    if not bool((sq <= _MAX_SQ_NORM).all()):
        if not bool(torch.isfinite(x3).all()):
            raise ValueError(f"lidsplit: argument '{name}' ({describe(x3)}) contains NaN or Inf")
        raise ValueError(
            f"lidsplit: argument '{name}' ({describe(x3)}) is too large for float32 distances (squared norm "
            "above 8.5e37); rescale the input"
        )
    B, b, _ = x3.shape
    cls = torch.empty(B, b, dtype=torch.int32, device=x3.device)
    for s in range(B):
        cls[s] = torch.unique(x3[s], dim=0, return_inverse=True)[1].to(torch.int32)
    norms = torch.empty(B, b, dtype=torch.float32, device=x3.device)
    dist = torch.empty(B, b, k, dtype=torch.float32, device=x3.device)
    idx = torch.empty(B, b, k, dtype=torch.int64, device=x3.device)
    _C.knn_cuda(capsule(x3), capsule(cls), capsule(norms), k, skip_zero, capsule(dist), capsule(idx), stream_of(x3))
    return dist, idx


def _cuda_rows(dist: Tensor, estimator: int) -> tuple[Tensor, Tensor]:
    B, b, _ = dist.shape
    rows = torch.empty(B, b, dtype=torch.float32, device=dist.device)
    valid = torch.empty(B, b, dtype=torch.bool, device=dist.device)
    _C.lid_rows_cuda(capsule(dist), estimator, capsule(rows), capsule(valid), stream_of(dist))
    return rows, valid


def _masked_mean(rows: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    counts = valid.sum(-1)
    means = (torch.where(valid, rows.double(), 0.0).sum(-1) / counts.clamp(min=1)).to(torch.float32)
    return means, counts


# ---- ops -------------------------------------------------------------------------------------------


def _no_valid_row(what: str, k: int) -> ValueError:
    return ValueError(
        f"lidsplit: no row of {what} has an LID estimate: every row has fewer than k = {k} neighbours at "
        "positive distance (duplicate rows) or k equidistant neighbours; see lidsplit.ops.lid"
    )


def _knn_impl(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    _check_k(k, minimum=1)
    x = _check_matrix("x", x, (2, 3), k)
    out_shape = (*x.shape[:-1], k)
    if _on_cuda(x):
        dist, idx = _cuda_lists(_as_f32(x).reshape(-1, *x.shape[-2:]), k, False, "x")
        return dist.view(out_shape), idx.view(out_shape)
    x32 = _as_f32(x)
    mats = [x32] if x.dim() == 2 else list(x32.unbind(0))
    names = ["x"] if x.dim() == 2 else [f"x[{s}]" for s in range(len(mats))]
    st = _cpu_knn_state(mats, names, k, False)
    dist = torch.empty(out_shape, dtype=torch.float32)
    idx = torch.empty(out_shape, dtype=torch.int64)
    st.finish_knn(capsule(dist), capsule(idx))
    return dist, idx


@torch.library.custom_op("lidsplit::knn", mutates_args=())
def _knn_op(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    return _knn_impl(x, k)


@_knn_op.register_fake
def _knn_fake(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    _check_k(k, minimum=1)
    x = _check_matrix("x", x, (2, 3), k)
    shape = (*x.shape[:-1], k)
    return x.new_empty(shape, dtype=torch.float32), x.new_empty(shape, dtype=torch.int64)


def _check_lid_args(x: object, k: object, reduction: object, estimator: object) -> tuple[Tensor, int]:
    _check_k(k, minimum=2)
    est = _check_estimator(estimator)
    if reduction not in REDUCTIONS:
        raise ValueError(f"lidsplit: unknown reduction {reduction!r}; expected 'mean' or 'none'")
    return _check_matrix("x", x, (2, 3), k), est  # type: ignore[arg-type]


def _lid_mle_impl(x: Tensor, k: int, reduction: str, estimator: str) -> tuple[Tensor, Tensor]:
    x, est = _check_lid_args(x, k, reduction, estimator)
    batched = x.dim() == 3
    lead = x.shape[:-2]
    b = x.shape[-2]
    if _on_cuda(x):
        x3 = _as_f32(x).reshape(-1, *x.shape[-2:])
        dist, _ = _cuda_lists(x3, k, est != ESTIMATORS["official"], "x")
        rows, valid = _cuda_rows(dist, est)
        if reduction == "none":
            return rows.view(*lead, b), valid.view(*lead, b)
        means, counts = _masked_mean(rows, valid)
        if bool((counts == 0).any()):
            s = int((counts == 0).nonzero()[0, 0])
            raise _no_valid_row(f"x[{s}]" if batched else "x", k)
        return means.view(lead), valid.view(*lead, b)
    x32 = _as_f32(x)
    mats = list(x32.unbind(0)) if batched else [x32]
    names = [f"x[{s}]" for s in range(len(mats))] if batched else ["x"]
    st = _cpu_knn_state(mats, names, k, est != ESTIMATORS["official"])
    valid = torch.empty(*lead, b, dtype=torch.bool)
    means = torch.empty(lead, dtype=torch.float32)
    counts = torch.empty(lead, dtype=torch.int64)
    if reduction == "none":
        rows = torch.empty(*lead, b, dtype=torch.float32)
        st.finish_lid(est, capsule(rows), capsule(valid), capsule(means), capsule(counts), _threads())
        return rows, valid
    st.finish_lid(est, None, capsule(valid), capsule(means), capsule(counts), _threads())
    cl = counts.tolist()
    if (cl if batched else [cl]).count(0):
        s = cl.index(0) if batched else 0
        raise _no_valid_row(f"x[{s}]" if batched else "x", k)
    return means, valid


@torch.library.custom_op("lidsplit::lid_mle", mutates_args=())
def _lid_mle_op(x: Tensor, k: int, reduction: str, estimator: str) -> tuple[Tensor, Tensor]:
    return _lid_mle_impl(x, k, reduction, estimator)


@_lid_mle_op.register_fake
def _lid_mle_fake(x: Tensor, k: int, reduction: str, estimator: str) -> tuple[Tensor, Tensor]:
    x, _ = _check_lid_args(x, k, reduction, estimator)
    per_row = x.shape[:-1]
    valid = x.new_empty(per_row, dtype=torch.bool)
    if reduction == "none":
        return x.new_empty(per_row, dtype=torch.float32), valid
    return x.new_empty(x.shape[:-2], dtype=torch.float32), valid


def _check_profile_args(features: Sequence[Tensor], num_profiles: int, k: int, estimator: str) -> tuple[int, int]:
    _check_k(k, minimum=2)
    est = _check_estimator(estimator)
    n = len(features)
    if n == 0:
        raise ValueError("lidsplit: lid_profile got no feature matrices")
    if isinstance(num_profiles, bool) or not isinstance(num_profiles, int) or num_profiles < 1 or n % num_profiles:
        raise ValueError(f"lidsplit: lid_profile: {n} matrices cannot form {num_profiles} profiles of equal length")
    first = None
    for i, f in enumerate(features):
        name = _feature_name(i, n // num_profiles, num_profiles)
        f = _check_matrix(name, f, (2,), k)
        if first is None:
            first = f
        elif f.device != first.device or f.shape[0] != first.shape[0]:
            raise ValueError(
                f"lidsplit: argument '{name}' ({describe(f)}): every feature matrix must have the batch size and "
                f"device of features[0] ({describe(first)})"
            )
    return est, n // num_profiles


def _feature_name(i: int, length: int, profiles: int) -> str:
    return f"features[{i // length}][{i % length}]" if profiles > 1 else f"features[{i}]"


def _lid_profile_impl(features: list[Tensor], num_profiles: int, k: int, estimator: str) -> Tensor:
    est, length = _check_profile_args(features, num_profiles, k, estimator)
    n = len(features)
    names = [_feature_name(i, length, num_profiles) for i in range(n)]
    if _on_cuda(features[0]):
        means_l, counts_l = [], []
        for f in features:
            dist, _ = _cuda_lists(_as_f32(f).unsqueeze(0), k, est != ESTIMATORS["official"], "features")
            rows, valid = _cuda_rows(dist, est)
            mu, ct = _masked_mean(rows, valid)
            means_l.append(mu)
            counts_l.append(ct)
        means, counts = torch.cat(means_l), torch.cat(counts_l).tolist()
    else:
        st = _cpu_knn_state([_as_f32(f) for f in features], names, k, est != ESTIMATORS["official"])
        means = torch.empty(n, dtype=torch.float32)
        counts_t = torch.empty(n, dtype=torch.int64)
        st.finish_lid(est, None, None, capsule(means), capsule(counts_t), _threads())
        counts = counts_t.tolist()
    if 0 in counts:
        raise _no_valid_row(names[counts.index(0)], k)
    return means.view(num_profiles, length)


@torch.library.custom_op("lidsplit::lid_profile", mutates_args=())
def _lid_profile_op(features: list[Tensor], num_profiles: int, k: int, estimator: str) -> Tensor:
    return _lid_profile_impl(features, num_profiles, k, estimator)


@_lid_profile_op.register_fake
def _lid_profile_fake(features: list[Tensor], num_profiles: int, k: int, estimator: str) -> Tensor:
    _, length = _check_profile_args(features, num_profiles, k, estimator)
    return features[0].new_empty((num_profiles, length), dtype=torch.float32)


# ---- public API: the eager fast path (lidsplit.ops._dlpack.plain_eager) or the registered op -------


def knn(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest other rows of every row of ``x`` ``(b, m)`` or ``(B, b, m)``.

    Returns ``(sq_dists, index)``, float32 and int64 of shape ``(..., b, k)``: squared Euclidean
    distances ascending, ties by lower index; the row itself is excluded by index; rows equal to it
    come first, at distance 0. Needs ``b > k``. See the module docstring for numerics and memory.
    """
    if plain_eager((x,)):
        return _knn_impl(x, k)
    return torch.ops.lidsplit.knn(x, k)


def lid_mle(
    x: Tensor, k: int = 20, reduction: str = "mean", estimator: str = "mle", *, return_valid: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Local intrinsic dimension of every row of ``x`` ``(b, m)`` or ``(B, b, m)``, from its k neighbours.

    ``reduction="mean"`` returns the mean over the valid rows, shape ``()`` or ``(B,)``;
    ``reduction="none"`` the per-row estimates ``(b,)`` or ``(B, b)``, NaN for invalid rows (average
    them with ``torch.nanmean`` or the mask of ``return_valid=True``, not a plain mean).
    ``estimator``: ``"mle"`` (NAS-LID eq. 2), ``"levina_bickel"`` (k - 1 numerator) or ``"official"``
    (the NAS-LID code's formula and neighbour rule). With ``return_valid=True`` also returns the bool
    mask of valid rows, ``(b,)`` or ``(B, b)``. Raises ValueError when ``b <= k`` or, for the mean, when
    no row of a matrix has an estimate. Duplicate rule and numerics: see the module docstring.
    """
    if plain_eager((x,)):
        lid, valid = _lid_mle_impl(x, k, reduction, estimator)
    else:
        lid, valid = torch.ops.lidsplit.lid_mle(x, k, reduction, estimator)
    return (lid, valid) if return_valid else lid


def lid_profile(
    features: Sequence[Tensor] | Sequence[Sequence[Tensor]], k: int = 20, estimator: str = "mle"
) -> Tensor:
    """Mean LID of each feature matrix, in one call: ``(L,)`` for L tensors ``(b, ...)``, ``(P, L)`` for P lists.

    Each tensor is flattened per sample (``(b, ...) -> (b, -1)``, a view: it must be contiguous). All
    tensors share the batch size b and the device. Same estimators and rules as :func:`lid_mle`
    (mean over valid rows; ValueError if a matrix has none).
    """
    if isinstance(features, Tensor):
        raise TypeError("lidsplit: lid_profile takes a list of tensors (one per layer), not a tensor")
    features = list(features)
    nested = bool(features) and not isinstance(features[0], Tensor)
    groups = [list(p) for p in features] if nested else [features]
    length = len(groups[0])
    flat: list[Tensor] = []
    for p, group in enumerate(groups):
        if len(group) != length:
            raise ValueError(f"lidsplit: lid_profile: profile {p} has {len(group)} matrices, profile 0 has {length}")
        for i, f in enumerate(group):
            name = f"features[{p}][{i}]" if nested else f"features[{i}]"
            f = check_tensor(name, f, dtypes=FLOATS)
            if f.dim() < 2:
                raise ValueError(f"lidsplit: argument '{name}' ({describe(f)}): expected (b, ...) with at least 2 dimensions")
            flat.append(f if f.dim() == 2 else f.view(f.shape[0], -1))
    if plain_eager(flat):
        out = _lid_profile_impl(flat, len(groups), k, estimator)
    else:
        out = torch.ops.lidsplit.lid_profile(flat, len(groups), k, estimator)
    return out if nested else out[0]
