"""lidsplit.ops.knn against the reference, on every device present; the C++ entry points' checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lidsplit
from lidsplit import _C
from lidsplit.ops import knn, lid as lid_mod, reference

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=["full", "panels"])
def panels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each CPU test with the default plan and with tiny panels and buffer (symmetric path, chunking)."""
    if request.param == "panels":
        monkeypatch.setattr(lid_mod, "_FULL_GRAM_WORK", 0)
        monkeypatch.setattr(lid_mod, "_MIN_PANEL", 16)
        monkeypatch.setattr(lid_mod, "_MAX_PANEL", 16)
        monkeypatch.setattr(lid_mod, "_PANELS", 1 << 20)
        monkeypatch.setattr(lid_mod, "_BUF_FLOATS", 256)
    return request.param


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
def test_knn_matches_reference(device: str, panels: str, b: int, m: int, kfrac: float, dtype, seed: int, dups: bool) -> None:
    k = 1 + int(kfrac * (b - 2))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, generator=g)
    if dups and b > 2:
        src = torch.randint(0, b, (b // 3,), generator=g)
        dst = torch.randint(0, b, (b // 3,), generator=g)
        x[dst] = x[src]
    x = x.to(dtype)
    dist, idx = knn(x.to(device), k)
    check_knn(x.float(), k, dist, idx)


def test_knn_ties_by_lower_index(device: str, panels: str) -> None:
    # Integer grid points: many exactly equal distances; float32 arithmetic is exact on them.
    g = torch.stack(torch.meshgrid(torch.arange(7.0), torch.arange(6.0), indexing="ij"), -1).reshape(-1, 2)
    x = torch.cat([g, g[:5]])  # and exact duplicates
    for k in (1, 4, 8, 20, x.shape[0] - 1):
        dist, idx = knn(x.to(device), k)
        ref_d, ref_i = reference.knn(x, k)
        assert torch.equal(dist.cpu(), ref_d) and torch.equal(idx.cpu(), ref_i)


def test_knn_duplicates_first_at_zero(device: str) -> None:
    x = torch.randn(30, 5)
    x[7] = x[3]
    x[20] = x[3]
    dist, idx = knn(x.to(device), 3)
    assert dist[3, :2].tolist() == [0.0, 0.0] and idx[3, :2].tolist() == [7, 20]
    assert dist[7, :2].tolist() == [0.0, 0.0] and idx[7, :2].tolist() == [3, 20]
    assert dist[20, :2].tolist() == [0.0, 0.0] and idx[20, :2].tolist() == [3, 7]
    assert bool((dist[3, 2:] > 0).all())


def test_knn_near_duplicates_are_positive(device: str) -> None:
    # Rows that differ in the last bits: the expanded distance cancels to ~0; the kernel recomputes it.
    x = torch.randn(50, 64) * 100
    x[1] = x[0]
    x[1, 5] = torch.nextafter(x[0, 5], torch.tensor(float("inf")))
    dist, idx = knn(x.to(device), 2)
    assert idx[0, 0].item() == 1 and 0 < dist[0, 0].item() < 1e-8
    check_knn(x, 2, dist, idx)


def test_knn_b_equals_k_plus_one(device: str) -> None:
    x = torch.randn(9, 4)
    dist, idx = knn(x.to(device), 8)
    check_knn(x, 8, dist, idx)
    assert sorted(idx[0].tolist()) == list(range(1, 9))


def test_knn_batch(device: str, panels: str) -> None:
    x = torch.randn(3, 70, 6)
    x[1, 10] = x[1, 11]
    dist, idx = knn(x.to(device), 5)
    assert dist.shape == idx.shape == (3, 70, 5)
    for s in range(3):
        d1, i1 = knn(x[s].to(device), 5)
        assert torch.equal(dist[s], d1) and torch.equal(idx[s], i1)
        check_knn(x[s], 5, dist[s], idx[s])


def test_knn_larger_uses_panels() -> None:
    # Big enough for the default plan to cut the Gram matrix into symmetric panels.
    x = torch.randn(1100, 16)
    assert lid_mod._panel_rows(1100, 16) < 1100
    dist, idx = knn(x, 10)
    check_knn(x, 10, dist, idx)


def test_knn_all_equal_rows(device: str) -> None:
    x = torch.ones(12, 3)
    dist, idx = knn(x.to(device), 4)
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
def test_knn_errors(device: str, make, k: int, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        knn(make().to(device), k)


def test_knn_non_contiguous_batch_errors() -> None:
    x = torch.randn(4, 6, 3).transpose(0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        knn(x, 2)


def test_knn_opcheck(device: str) -> None:
    x = torch.randn(20, 5, device=device)
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
