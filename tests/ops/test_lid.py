"""lidsplit.ops.lid: knn, lid_mle and lid_profile against the reference and known dimensions, on every
device present; the C++ entry points' checks."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lidsplit
from lidsplit import _C
from lidsplit.ops import lid as lid_mod
from lidsplit.ops import knn, lid_mle, lid_profile, reference
from op_table import DTYPES as OP_DTYPES
from op_table import FIXTURE_OK

DTYPES = OP_DTYPES["lid"]
ESTIMATORS = ["mle", "levina_bickel", "official"]


def subspace_gaussian(n: int, d: int, m: int, seed: int) -> torch.Tensor:
    """n standard Gaussian points of a random d-dimensional subspace of R^m."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, d, generator=g, dtype=torch.float64))
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ q.T).float()


@FIXTURE_OK
@given(
    b=st.integers(4, 48),
    m=st.integers(1, 10),
    kfrac=st.floats(0.0, 1.0),
    dtype=st.sampled_from(DTYPES),
    estimator=st.sampled_from(ESTIMATORS),
    seed=st.integers(0, 2**31 - 1),
    dups=st.integers(0, 3),
)
def test_lid_rows_match_reference(
    dev: str, panels: str, b: int, m: int, kfrac: float, dtype, estimator: str, seed: int, dups: int
) -> None:
    k = 2 + int(kfrac * (b - 3))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, generator=g)
    for _ in range(dups):
        i, j = torch.randint(0, b, (2,), generator=g).tolist()
        x[i] = x[j]
    x = x.to(dtype)
    rows, valid = lid_mle(x.to(dev), k, "none", estimator, return_valid=True)
    ref_rows, ref_valid = reference.lid_mle(x.float(), k, "none", estimator, return_valid=True)
    assert rows.dtype == torch.float32 and rows.shape == (b,) and valid.dtype == torch.bool
    assert torch.equal(valid.cpu(), ref_valid)
    assert bool(torch.isfinite(rows[valid]).all()) or estimator == "official"
    assert bool(rows.cpu()[~ref_valid].isnan().all())  # no estimate: NaN, so a plain mean is loudly NaN
    torch.testing.assert_close(rows.cpu(), ref_rows, rtol=2e-3, atol=1e-3, equal_nan=True)
    if bool(ref_valid.any()):
        mean = lid_mle(x.to(dev), k, "mean", estimator)
        assert mean.shape == ()
        torch.testing.assert_close(mean.cpu(), reference.lid_mle(x.float(), k, "mean", estimator), rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_lid_batch(dev: str, panels: str, estimator: str) -> None:
    x = torch.randn(3, 80, 7)
    x[2, 5] = x[2, 6]
    mean, valid = lid_mle(x.to(dev), 10, "mean", estimator, return_valid=True)
    rows = lid_mle(x.to(dev), 10, "none", estimator)
    assert mean.shape == (3,) and valid.shape == (3, 80) and rows.shape == (3, 80)
    for s in range(3):
        torch.testing.assert_close(mean[s], lid_mle(x[s].to(dev), 10, "mean", estimator))
        torch.testing.assert_close(rows[s], lid_mle(x[s].to(dev), 10, "none", estimator))
        torch.testing.assert_close(rows[s].cpu(), reference.lid_mle(x[s], 10, "none", estimator), rtol=2e-3, atol=1e-3)


def test_lid_b_equals_k_plus_one(dev: str) -> None:
    x = torch.randn(21, 6)
    torch.testing.assert_close(lid_mle(x.to(dev), 20).cpu(), reference.lid_mle(x, 20), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("b, k", [(20, 20), (5, 20), (3, 3)])
def test_lid_b_le_k_names_both(dev: str, b: int, k: int) -> None:
    with pytest.raises(ValueError, match=rf"b = {b} rows but k = {k}"):
        lid_mle(torch.randn(b, 4, device=dev), k)


def test_lid_duplicate_rule(dev: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(60, 5)
    x[10] = x[3]
    x[11] = x[3]
    x[40] = x[41]
    rows, valid = lid_mle(x.to(dev), 8, "none", return_valid=True)
    assert bool(valid.all()) and bool((rows > 0).all()) and bool(torch.isfinite(rows).all())
    # Duplicates are skipped: the estimate of row 3 equals the one with its copies removed.
    keep = [i for i in range(60) if i not in (10, 11)]
    alone = lid_mle(x[keep].to(dev), 8, "none")
    torch.testing.assert_close(rows[3], alone[3])
    # The authors' rule: a duplicated row gets exactly 0.
    off = lid_mle(x.to(dev), 8, "none", "official")
    assert off[[3, 10, 11, 40, 41]].tolist() == [0.0] * 5
    assert bool((off[[i for i in range(60) if i not in (3, 10, 11, 40, 41)]] > 0).all())
    torch.testing.assert_close(off.cpu(), reference.lid_mle(x, 8, "none", "official"), rtol=2e-3, atol=1e-3)


def test_lid_too_few_positive_neighbours(dev: str) -> None:
    # Rows 0 and 1 are equal: each has only 6 rows at positive distance, too few for k = 7.
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(4))
    x[1] = x[0]
    rows, valid = lid_mle(x.to(dev), 7, "none", return_valid=True)
    ref_rows, ref_valid = reference.lid_mle(x, 7, "none", return_valid=True)
    assert valid.cpu().tolist() == ref_valid.tolist() == [False, False] + [True] * 6
    assert bool(rows[:2].isnan().all())
    torch.testing.assert_close(rows.cpu(), ref_rows, rtol=1e-4, atol=1e-5, equal_nan=True)
    torch.testing.assert_close(lid_mle(x.to(dev), 7).cpu(), ref_rows[2:].mean(), rtol=1e-4, atol=1e-5)
    # nanmean of the rows (and the mask) give the mean; a plain mean is NaN, not silently low
    torch.testing.assert_close(torch.nanmean(rows).cpu(), lid_mle(x.to(dev), 7).cpu())
    torch.testing.assert_close(rows[valid].mean().cpu(), lid_mle(x.to(dev), 7).cpu())
    assert bool(rows.mean().isnan())


def test_lid_equidistant_rows_invalid(dev: str) -> None:
    # Simplex vertices: all neighbours equidistant, the MLE is infinite -> invalid; mean undefined.
    x = torch.eye(10)
    rows, valid = lid_mle(x.to(dev), 4, "none", return_valid=True)
    assert not bool(valid.any()) and bool(rows.isnan().all())
    with pytest.raises(ValueError, match="no row of x has an LID estimate"):
        lid_mle(x.to(dev), 4)
    # The authors' formula explodes instead, like their code.
    assert lid_mle(x.to(dev), 4, estimator="official").item() > 1e5


def test_lid_all_duplicates_raise(dev: str) -> None:
    x = torch.ones(30, 4)
    with pytest.raises(ValueError, match="no row of x has an LID estimate"):
        lid_mle(x.to(dev), 5)
    xb = torch.randn(2, 30, 4)
    xb[1] = 1.0
    with pytest.raises(ValueError, match=r"no row of x\[1\]"):
        lid_mle(xb.to(dev), 5)
    assert lid_mle(x.to(dev), 5, estimator="official").item() == 0.0


def test_levina_bickel_is_scaled_mle(dev: str) -> None:
    x = torch.randn(200, 6)
    k = 12
    mle = lid_mle(x.to(dev), k, "none")
    lb = lid_mle(x.to(dev), k, "none", "levina_bickel")
    torch.testing.assert_close(lb, mle * (k - 1) / k)


@pytest.mark.parametrize("d, lo, hi", [(2, 1.7, 2.4), (5, 4.3, 5.8), (10, 8.5, 11.0)])
def test_lid_known_dimension(dev: str, d: int, lo: float, hi: float) -> None:
    x = subspace_gaussian(1000, d, 64, seed=d)
    est = lid_mle(x.to(dev), 20).item()
    assert lo < est < hi, est


@pytest.mark.parametrize("d, expected", [(2, 2.27), (5, 5.05), (10, 7.96), (20, 12.7)])
def test_official_reference_values(dev: str, d: int, expected: float) -> None:
    # NAS-LID code, standard Gaussian in d dims, N = 128, k = 20 (shared/notes/official-code.md).
    vals = [lid_mle(torch.randn(128, d, generator=torch.Generator().manual_seed(s)).to(dev), 20, estimator="official").item() for s in range(5)]
    assert abs(sum(vals) / len(vals) - expected) < 0.08 * expected, vals


def test_official_is_scale_dependent_like_the_code() -> None:
    x = subspace_gaussian(128, 5, 5, seed=3)
    assert lid_mle(x, 20, estimator="official").item() > 4
    assert lid_mle(x * 1e-8, 20, estimator="official").item() < 1
    torch.testing.assert_close(lid_mle(x * 1e-8, 20), lid_mle(x, 20), rtol=1e-3, atol=0)


def test_matches_skdim_if_installed() -> None:
    skdim = pytest.importorskip("skdim")
    x = subspace_gaussian(300, 4, 12, seed=7).double().numpy()
    ours = lid_mle(torch.from_numpy(x).float(), 15, estimator="levina_bickel").item()
    theirs = skdim.id.MLE().fit(x, n_neighbors=15, comb="mean").dimension_
    assert abs(ours - theirs) < 1e-3 * theirs


@pytest.mark.parametrize(
    "make, kw, exc, match",
    [
        (lambda: torch.randn(30, 3), {"k": 1}, ValueError, r"k must be >= 2"),
        (lambda: torch.randn(30, 3), {"estimator": "harmonic"}, ValueError, r"unknown estimator"),
        (lambda: torch.randn(30, 3), {"reduction": "sum"}, ValueError, r"unknown reduction"),
        (lambda: torch.randn(0, 3), {}, ValueError, r"empty|b = 0"),
        (lambda: torch.randn(30, 0), {}, ValueError, r"empty"),
        (lambda: torch.randn(3, 30).t(), {}, ValueError, r"contiguous"),
        (lambda: torch.randn(30, 3, dtype=torch.float64), {}, TypeError, r"dtype"),
        (lambda: torch.randint(0, 5, (30, 3)), {}, TypeError, r"dtype"),
        (lambda: torch.full((30, 3), float("nan")), {}, ValueError, r"NaN or Inf"),
        (lambda: torch.randn(30, 3).index_fill_(0, torch.tensor([7]), float("-inf")), {}, ValueError, r"NaN or Inf"),
    ],
)
def test_lid_errors(dev: str, make, kw: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        lid_mle(make().to(dev), **{"k": 20, **kw})


def test_lid_opcheck(dev: str) -> None:
    x = torch.randn(40, 6, device=dev)
    for reduction in ("mean", "none"):
        for est in ESTIMATORS:
            torch.library.opcheck(torch.ops.lidsplit.lid_mle.default, (x, 5, reduction, est))
    torch.library.opcheck(torch.ops.lidsplit.lid_mle.default, (x.view(2, 20, 6).contiguous().bfloat16(), 5, "mean", "mle"))
    feats = [torch.randn(30, 4, device=dev), torch.randn(30, 9, device=dev), torch.randn(30, 2, device=dev)]
    torch.library.opcheck(torch.ops.lidsplit.lid_profile.default, (feats, 1, 5, "mle"))
    torch.library.opcheck(torch.ops.lidsplit.lid_profile.default, (feats + feats[::-1], 2, 5, "official"))


def test_lid_under_torch_compile(dev: str) -> None:
    torch._dynamo.reset()

    def f(x: torch.Tensor) -> torch.Tensor:
        return lid_mle(torch.relu(x) * 2.0, k=8) + lid_mle(x, k=8, estimator="levina_bickel")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(64, 12, device=dev)
    torch.testing.assert_close(compiled(x), f(x))


# ---- lid_profile -----------------------------------------------------------------------------------


def test_profile_matches_reference(dev: str, panels: str) -> None:
    torch.manual_seed(1)
    feats = [torch.randn(48, 3, 4, 4), torch.randn(48, 40).half(), torch.randn(48, 2, 5).bfloat16(), torch.randn(48, 7)]
    feats[0][5] = feats[0][6]
    for est in ESTIMATORS:
        out = lid_profile([f.to(dev) for f in feats], k=10, estimator=est)
        assert out.shape == (4,) and out.dtype == torch.float32
        torch.testing.assert_close(out.cpu(), reference.lid_profile([f.float() for f in feats], 10, est), rtol=2e-3, atol=1e-3)
        for i, f in enumerate(feats):
            torch.testing.assert_close(out[i], lid_mle(f.reshape(48, -1).to(dev), 10, estimator=est))


def test_profile_batch_of_profiles(dev: str, panels: str) -> None:
    torch.manual_seed(2)
    profs = [[torch.randn(40, 6), torch.randn(40, 2, 3), torch.randn(40, 11)] for _ in range(4)]
    out = lid_profile([[f.to(dev) for f in p] for p in profs], k=7)
    assert out.shape == (4, 3)
    for p in range(4):
        torch.testing.assert_close(out[p], lid_profile([f.to(dev) for f in profs[p]], k=7))
    torch.testing.assert_close(out.cpu(), reference.lid_profile(profs, 7), rtol=2e-3, atol=1e-3)


def test_profile_errors(dev: str) -> None:
    a = torch.randn(30, 4, device=dev)
    with pytest.raises(ValueError, match=r"features\[1\].*contiguous"):
        lid_profile([a, torch.randn(4, 30, device=dev).t()])
    with pytest.raises(ValueError, match=r"features\[1\].*batch size"):
        lid_profile([a, torch.randn(31, 4, device=dev)], k=5)
    with pytest.raises(ValueError, match=r"features\[0\]' has b = 30 rows but k = 30"):
        lid_profile([a], k=30)
    with pytest.raises(ValueError, match=r"no row of features\[1\]"):
        lid_profile([a, torch.ones(30, 3, device=dev)], k=5)
    with pytest.raises(ValueError, match=r"profile 1 has 1 matrices"):
        lid_profile([[a, a], [a]], k=5)
    with pytest.raises(ValueError, match=r"no feature matrices"):
        lid_profile([], k=5)
    with pytest.raises(TypeError, match=r"list of tensors"):
        lid_profile(a, k=5)
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        lid_profile([a, torch.full((30, 2), float("nan"), device=dev)], k=5)


# ---- memory ----------------------------------------------------------------------------------------


def test_panel_plan_bounds_memory() -> None:
    for b, m in [(128, 256), (4096, 256), (2048, 1024), (65536, 64), (100000, 8)]:
        ti = lid_mod._panel_rows(b, m)
        assert 1 <= ti <= b
        if ti < b:
            assert ti * b <= max(lid_mod._BUF_FLOATS, 16 * b)


PEAK_RSS_SCRIPT = """
import json, sys, torch
import lidsplit.ops as ops
b, m, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
x = torch.randn(b, m)
run = {
    "lid_mle": lambda: ops.lid_mle(x, 20),
    "knn": lambda: ops.knn(x, 20),
    "cdist": lambda: torch.cdist(x, x),
}[what]
ops.lid_mle(torch.randn(300, m), 20)  # warm up thread pools and the allocator
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the RSS high-water mark to the current RSS
before = status("VmHWM")
run()
print(json.dumps(status("VmHWM") - before))
"""


def peak_extra_rss(b: int, m: int, what: str) -> int:
    """Peak RSS above the starting point during one call, in a fresh process (Linux)."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(b), str(m), what], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        pytest.skip(f"peak RSS cannot be measured here: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_is_not_b_squared() -> None:
    b, m = 4096, 32
    bb = b * b * 4
    assert peak_extra_rss(b, m, "cdist") > bb * 0.9  # the measurement sees a b x b matrix
    assert peak_extra_rss(b, m, "lid_mle") < bb / 4  # an 8 MiB panel + O(b k) against 64 MiB
    assert peak_extra_rss(b, m, "knn") < bb / 4


# ---- the Python side of the CUDA path, driven on the CPU with a mock of the two CUDA entry points ----


def _mock_knn_cuda(x, cls, norms, k, skip_zero, dist, idx, stream) -> None:
    x, cls, dist, idx = (torch.from_dlpack(c) for c in (x, cls, dist, idx))
    for s in range(x.shape[0]):
        d2 = reference._sq_dists(x[s])
        same = cls[s][:, None] == cls[s][None, :]
        d2[same] = 0.0
        d2.fill_diagonal_(float("inf"))
        if skip_zero:
            d2[same] = float("inf")
        vals, order = torch.sort(d2, dim=1, stable=True)
        dist[s] = vals[:, :k].float()
        idx[s] = order[:, :k]


def _mock_lid_rows_cuda(dist, estimator, rows, valid, stream) -> None:
    dist, rows, valid = (torch.from_dlpack(c) for c in (dist, rows, valid))
    d2 = dist.double().reshape(-1, dist.shape[-1])
    k = d2.shape[1]
    if estimator == lid_mod.ESTIMATORS["official"]:
        r = d2.sqrt()
        out = -k / (torch.log(r / (r[:, -1:] + 1e-6)).sum(1) + 1e-6)
        ok = torch.ones_like(out, dtype=torch.bool)
    else:
        s = 0.5 * torch.log(d2 / d2[:, -1:]).sum(1)
        ok = torch.isfinite(d2[:, -1]) & (d2[:, 0] > 0) & (s < 0)
        num = k - 1 if estimator == lid_mod.ESTIMATORS["levina_bickel"] else k
        out = torch.where(ok, -num / torch.where(ok, s, -1.0), 0.0)
    rows.view(-1).copy_(out.float())
    valid.view(-1).copy_(ok)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_cuda_glue_with_mock(estimator: str) -> None:
    torch.manual_seed(5)
    x = torch.randn(2, 40, 6)
    x[0, 3] = x[0, 4]
    feats = [torch.randn(40, 3, 2), torch.randn(40, 5).half()]
    want = (
        knn(x, 4),
        lid_mle(x, 6, "mean", estimator, return_valid=True),
        lid_mle(x[1], 6, "none", estimator, return_valid=True),
        lid_profile(feats, 6, estimator),
        lid_profile([feats, feats[::-1]], 6, estimator),
    )
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(lid_mod, "_on_cuda", lambda t: True)
        mp.setattr(lid_mod._C, "cuda_compiled", lambda: True)  # the glue runs in a CPU-only build too
        mp.setattr(lid_mod._C, "knn_cuda", _mock_knn_cuda)
        mp.setattr(lid_mod._C, "lid_rows_cuda", _mock_lid_rows_cuda)
        got = (
            knn(x, 4),
            lid_mle(x, 6, "mean", estimator, return_valid=True),
            lid_mle(x[1], 6, "none", estimator, return_valid=True),
            lid_profile(feats, 6, estimator),
            lid_profile([feats, feats[::-1]], 6, estimator),
        )
        with pytest.raises(ValueError, match="no row of x has an LID estimate") if estimator != "official" else contextlib.nullcontext():
            lid_mle(torch.ones(30, 3), 5, estimator=estimator)
        with pytest.raises(ValueError, match=r"no row of x\[1\]") if estimator != "official" else contextlib.nullcontext():
            lid_mle(torch.stack([torch.randn(30, 3), torch.ones(30, 3)]), 5, estimator=estimator)
        with pytest.raises(ValueError, match="NaN or Inf"):
            lid_mle(torch.full((30, 3), float("nan")), 5)
        with pytest.raises(ValueError, match="too large"):
            knn(torch.tensor([[0.0, 1.0], [3e38, 1.0], [2.0, 2.0]]), 1)
    finally:
        mp.undo()
    assert torch.equal(got[0][1], want[0][1])
    torch.testing.assert_close(got[0][0], want[0][0])
    for g, w in zip(got[1:3], want[1:3]):
        torch.testing.assert_close(g[0], w[0], rtol=1e-4, atol=1e-5)
        assert torch.equal(g[1], w[1])
    torch.testing.assert_close(got[3], want[3], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[4], want[4], rtol=1e-4, atol=1e-5)


# ---- knn ---------------------------------------------------------------------------------------------


def exact_sq(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return (x[i] - x[j]).pow(2).sum(-1)


def check_knn(x: torch.Tensor, k: int, dist: torch.Tensor, idx: torch.Tensor) -> None:
    """dist/idx are a correct answer for x (b, m): the right distances in order, valid distinct indices."""
    b = x.shape[0]
    ref_d, ref_i = reference.knn(x.cpu(), k)
    dist, idx = dist.cpu(), idx.cpu()
    assert dist.dtype == torch.float32 and idx.dtype == torch.int64
    assert dist.shape == idx.shape == (b, k)
    scale = x.double().pow(2).sum(1).max().item() + 1e-30
    tol = 1e-5 * scale
    torch.testing.assert_close(dist.double(), ref_d.double(), atol=tol, rtol=1e-5)
    rows = torch.arange(b).unsqueeze(1).expand(b, k)
    assert bool((idx >= 0).all() and (idx < b).all())
    assert bool((idx != rows).all()), "a row is its own neighbour"
    assert all(len(set(r)) == k for r in idx.tolist()), "repeated neighbour"
    torch.testing.assert_close(exact_sq(x.cpu(), rows, idx), ref_d.double(), atol=tol, rtol=1e-5)
    assert bool((dist[:, 1:] >= dist[:, :-1]).all())
    # Where the reference distances are well separated (from their neighbours in the order, the
    # (k+1)-th included) the indices must agree exactly.
    rd = reference.knn(x.cpu(), min(k + 1, b - 1))[0].double()
    if rd.shape[1] == k:
        rd = torch.cat([rd, torch.full((b, 1), float("inf"), dtype=torch.float64)], 1)
    diff = rd[:, 1:] - rd[:, :-1]
    gap = torch.cat([torch.full((b, 1), float("inf"), dtype=torch.float64), diff], 1)
    gap = torch.minimum(gap[:, :k], diff[:, :k])
    sure = gap > 100 * tol
    assert bool((idx[sure] == ref_i[sure]).all())


@FIXTURE_OK
@given(
    b=st.integers(2, 40),
    m=st.integers(1, 12),
    kfrac=st.floats(0.0, 1.0),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**31 - 1),
    dups=st.booleans(),
)
def test_knn_matches_reference(dev: str, panels: str, b: int, m: int, kfrac: float, dtype, seed: int, dups: bool) -> None:
    k = 1 + int(kfrac * (b - 2))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, generator=g)
    if dups and b > 2:
        src = torch.randint(0, b, (b // 3,), generator=g)
        dst = torch.randint(0, b, (b // 3,), generator=g)
        x[dst] = x[src]
    x = x.to(dtype)
    dist, idx = knn(x.to(dev), k)
    check_knn(x.float(), k, dist, idx)


def test_knn_ties_by_lower_index(dev: str, panels: str) -> None:
    # Integer grid points: many exactly equal distances; float32 arithmetic is exact on them.
    g = torch.stack(torch.meshgrid(torch.arange(7.0), torch.arange(6.0), indexing="ij"), -1).reshape(-1, 2)
    x = torch.cat([g, g[:5]])  # and exact duplicates
    for k in (1, 4, 8, 20, x.shape[0] - 1):
        dist, idx = knn(x.to(dev), k)
        ref_d, ref_i = reference.knn(x, k)
        assert torch.equal(dist.cpu(), ref_d) and torch.equal(idx.cpu(), ref_i)


def test_knn_duplicates_first_at_zero(dev: str) -> None:
    x = torch.randn(30, 5)
    x[7] = x[3]
    x[20] = x[3]
    dist, idx = knn(x.to(dev), 3)
    assert dist[3, :2].tolist() == [0.0, 0.0] and idx[3, :2].tolist() == [7, 20]
    assert dist[7, :2].tolist() == [0.0, 0.0] and idx[7, :2].tolist() == [3, 20]
    assert dist[20, :2].tolist() == [0.0, 0.0] and idx[20, :2].tolist() == [3, 7]
    assert bool((dist[3, 2:] > 0).all())


def test_knn_near_duplicates_are_positive(dev: str) -> None:
    # Rows that differ in the last bits: the expanded distance cancels to ~0; the kernel recomputes it.
    x = torch.randn(50, 64) * 100
    x[1] = x[0]
    x[1, 5] = torch.nextafter(x[0, 5], torch.tensor(float("inf")))
    dist, idx = knn(x.to(dev), 2)
    assert idx[0, 0].item() == 1 and 0 < dist[0, 0].item() < 1e-8
    check_knn(x, 2, dist, idx)


def test_knn_b_equals_k_plus_one(dev: str) -> None:
    x = torch.randn(9, 4)
    dist, idx = knn(x.to(dev), 8)
    check_knn(x, 8, dist, idx)
    assert sorted(idx[0].tolist()) == list(range(1, 9))


def test_knn_batch(dev: str, panels: str) -> None:
    x = torch.randn(3, 70, 6)
    x[1, 10] = x[1, 11]
    dist, idx = knn(x.to(dev), 5)
    assert dist.shape == idx.shape == (3, 70, 5)
    for s in range(3):
        d1, i1 = knn(x[s].to(dev), 5)
        assert torch.equal(dist[s], d1) and torch.equal(idx[s], i1)
        check_knn(x[s], 5, dist[s], idx[s])


def test_knn_larger_uses_panels() -> None:
    # Big enough for the default plan to cut the Gram matrix into symmetric panels.
    x = torch.randn(1100, 16)
    assert lid_mod._panel_rows(1100, 16) < 1100
    dist, idx = knn(x, 10)
    check_knn(x, 10, dist, idx)


def test_knn_all_equal_rows(dev: str) -> None:
    x = torch.ones(12, 3)
    dist, idx = knn(x.to(dev), 4)
    assert bool((dist == 0).all())
    assert idx[0].tolist() == [1, 2, 3, 4] and idx[5].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "make, k, exc, match",
    [
        (lambda: torch.randn(5, 3), 5, ValueError, r"b = 5 rows but k = 5"),
        (lambda: torch.randn(5, 3), 0, ValueError, r"k must be >= 1"),
        (lambda: torch.randn(0, 3), 1, ValueError, r"empty|b = 0"),
        (lambda: torch.randn(6, 0), 1, ValueError, r"empty"),
        (lambda: torch.randn(6, 3).t(), 1, ValueError, r"contiguous"),
        (lambda: torch.randn(6, 3, dtype=torch.float64), 1, TypeError, r"dtype float32 or float16 or bfloat16"),
        (lambda: torch.randn(6), 1, ValueError, r"2 or 3 dimensions"),
        (lambda: torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [2.0, 2.0]]), 1, ValueError, r"NaN or Inf"),
        (lambda: torch.tensor([[0.0, 1.0], [float("inf"), 1.0], [2.0, 2.0]]), 1, ValueError, r"NaN or Inf"),
        (lambda: torch.tensor([[0.0, 1.0], [3e38, 1.0], [2.0, 2.0]]), 1, ValueError, r"too large"),
    ],
)
def test_knn_errors(dev: str, make, k: int, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        knn(make().to(dev), k)


def test_knn_non_contiguous_batch_errors() -> None:
    x = torch.randn(4, 6, 3).transpose(0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        knn(x, 2)


def test_knn_opcheck(dev: str) -> None:
    x = torch.randn(20, 5, device=dev)
    torch.library.opcheck(torch.ops.lidsplit.knn.default, (x, 4))
    torch.library.opcheck(torch.ops.lidsplit.knn.default, (x.view(2, 10, 5).contiguous(), 3))
    torch.library.opcheck(torch.ops.lidsplit.knn.default, (x.half(), 4))


# ---- the C++ side directly --------------------------------------------------------------------------


def run_c_knn(x: torch.Tensor, k: int, versioned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU entry points called by hand: one full Gram panel."""
    cap = x.__dlpack__(max_version=(1, 0)) if versioned else torch.utils.dlpack.to_dlpack(x)
    s = _C.knn_prepare([cap], k, False, ["x"], 2)
    buf = torch.empty(x.shape[0] * x.shape[0])
    torch.mm(x, x.t(), out=buf.view(x.shape[0], x.shape[0]))
    bcap = buf.__dlpack__(max_version=(1, 0)) if versioned else torch.utils.dlpack.to_dlpack(buf)
    s.update(bcap, [(0, 0, 0, x.shape[0])], 2)
    dist = torch.empty(x.shape[0], k)
    idx = torch.empty(x.shape[0], k, dtype=torch.int64)
    s.finish_knn(torch.utils.dlpack.to_dlpack(dist), torch.utils.dlpack.to_dlpack(idx))
    return dist, idx


@pytest.mark.parametrize("versioned", [False, True])
def test_c_accepts_both_capsule_kinds(versioned: bool) -> None:
    x = torch.randn(25, 4)
    dist, idx = run_c_knn(x, 3, versioned)
    ref_d, ref_i = knn(x, 3)
    assert torch.equal(dist, ref_d) and torch.equal(idx, ref_i)


def test_c_checks_arguments() -> None:
    x = torch.randn(10, 4)
    cap = torch.utils.dlpack.to_dlpack
    with pytest.raises(ValueError, match="dtype float32"):
        _C.knn_prepare([cap(x.double())], 2, False, ["x"], 1)
    with pytest.raises(ValueError, match="contiguous"):
        _C.knn_prepare([cap(x.t())], 2, False, ["x"], 1)
    with pytest.raises(ValueError, match="2 dimensions"):
        _C.knn_prepare([cap(x.view(2, 5, 4))], 2, False, ["x"], 1)
    with pytest.raises(ValueError, match=r"b = 10 rows and k = 10"):
        _C.knn_prepare([cap(x)], 10, False, ["x"], 1)
    used = cap(x)
    torch.from_dlpack(used)  # consumes the capsule
    with pytest.raises(ValueError, match="unconsumed DLPack capsule"):
        _C.knn_prepare([used], 2, False, ["x"], 1)
    s = _C.knn_prepare([cap(x)], 2, False, ["x"], 1)
    buf = torch.zeros(100)
    with pytest.raises(ValueError, match="out of order"):
        s.update(cap(buf), [(0, 0, 5, 10)], 1)
    with pytest.raises(ValueError, match="elements from offset"):
        s.update(cap(buf), [(0, 10, 0, 10)], 1)
    with pytest.raises(ValueError, match="before every panel"):
        s.finish_knn(cap(torch.empty(10, 2)), cap(torch.empty(10, 2, dtype=torch.int64)))
    s.update(cap(buf), [(0, 0, 0, 10)], 1)
    with pytest.raises(ValueError, match="int64"):
        s.finish_knn(cap(torch.empty(10, 2)), cap(torch.empty(10, 2)))
    with pytest.raises(ValueError, match="20 elements"):
        s.finish_knn(cap(torch.empty(10, 3)), cap(torch.empty(10, 3, dtype=torch.int64)))


def test_c_cuda_entry_refuses_cpu_or_missing_build() -> None:
    x = torch.randn(3, 10, 4)
    cap = torch.utils.dlpack.to_dlpack
    with pytest.raises(ValueError, match="expected a CUDA tensor"):
        _C.knn_cuda(
            cap(x), cap(torch.zeros(3, 10, dtype=torch.int32)), cap(torch.zeros(3, 10)), 2, False,
            cap(torch.zeros(3, 10, 2)), cap(torch.zeros(3, 10, 2, dtype=torch.int64)), 0,
        )
    with pytest.raises(ValueError, match="expected a CUDA tensor"):
        _C.lid_rows_cuda(cap(torch.zeros(3, 10, 2)), 0, cap(torch.zeros(30)), cap(torch.zeros(30, dtype=torch.bool)), 0)
    assert lidsplit.cuda_info()["compiled"] == _C.cuda_compiled()
