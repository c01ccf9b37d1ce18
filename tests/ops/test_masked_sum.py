"""masked_sum: kernels vs the reference, zero-weight skipping, errors, autograd, opcheck, torch.compile."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lidsplit
from lidsplit import _C
from lidsplit.ops import masked_sum, reference
from lidsplit.ops._dlpack import capsule
from op_table import DTYPES as OP_DTYPES
from op_table import FIXTURE_OK
from op_table import TOL

DTYPES = OP_DTYPES["masked_sum"]


def assert_close_to_reference(out: torch.Tensor, xs: list[torch.Tensor], w: torch.Tensor) -> None:
    # |kernel - reference| bounded relative to sum_j |w_j x_j| (TOL): both accumulate in float32 (float64)
    # in the same order, so the only differences are FMA contraction and the final rounding.
    ref = reference.masked_sum(xs, w)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.device == ref.device
    g = 1 if w.dim() == 1 else w.shape[0]
    wd = w.double().reshape(g, -1)
    scale = sum(
        (wd[:, j : j + 1] * x.double().reshape(g, -1)).abs() for j, x in enumerate(xs)
    ).reshape(out.shape)
    err = (out.double() - ref.double()).abs()
    bound = TOL[out.dtype] * (scale + 1e-30) + (1e-30 if out.dtype == torch.float64 else 1e-6)
    assert bool((err <= bound).all()), f"max error {float(err.max())} (dtype {out.dtype})"


@st.composite
def cases(draw):
    n = draw(st.integers(1, 5))
    groups = draw(st.sampled_from([0, 1, 2, 3]))  # 0: (n,) weights
    per = draw(st.integers(1, 3))
    batch = max(groups, 1) * per
    rest = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    w_dtype = draw(st.sampled_from([torch.float32, dtype]))
    zeros = draw(st.lists(st.booleans(), min_size=n * max(groups, 1), max_size=n * max(groups, 1)))
    seed = draw(st.integers(0, 2**16))
    return n, groups, (batch, *rest), dtype, w_dtype, zeros, seed


def make_inputs(n, groups, shape, dtype, w_dtype, zeros, seed, device):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(shape, generator=gen).to(dtype).to(device) for _ in range(n)]
    wshape = (n,) if groups == 0 else (groups, n)
    w = torch.randn(wshape, generator=gen)
    w = torch.where(torch.tensor(zeros).reshape(wshape), torch.zeros(()), w)
    return xs, w.to(w_dtype).to(device)


@FIXTURE_OK
@given(case=cases())
def test_matches_reference(dev, case):
    n, groups, shape, dtype, w_dtype, zeros, seed = case
    xs, w = make_inputs(n, groups, shape, dtype, w_dtype, zeros, seed, dev)
    assert_close_to_reference(masked_sum(xs, w), xs, w)


@pytest.mark.parametrize("groups", [0, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_parallel_path(dev, dtype, groups):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(64, 3, 33, 17, generator=gen).to(dtype).to(dev) for _ in range(4)]
    w = torch.randn((4,) if groups == 0 else (groups, 4), generator=gen).to(dev)
    w[..., 1] = 0
    assert_close_to_reference(masked_sum(xs, w), xs, w)


def test_exact_float32_small():
    xs = [torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0]), torch.tensor([100.0, 200.0])]
    out = masked_sum(xs, torch.tensor([1.0, 0.0, -2.0]))
    assert out.tolist() == [-199.0, -398.0]
    out = masked_sum([x.reshape(2, 1) for x in xs], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    assert out.reshape(-1).tolist() == [1.0, 220.0]


def test_all_zero_weights_give_zeros(dev):
    xs = [torch.full((3, 4), float("nan"), device=dev) for _ in range(2)]
    out = masked_sum(xs, torch.zeros(2, device=dev))
    assert bool((out == 0).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_weight_input_is_never_read(dev, dtype):
    """An input whose weight is exactly 0 may hold NaN/Inf: the output stays finite."""
    gen = torch.Generator().manual_seed(1)
    good = [torch.randn(6, 5, generator=gen).to(dtype).to(dev) for _ in range(2)]
    bad = torch.full((6, 5), float("nan"), dtype=dtype, device=dev)
    bad[::2] = float("inf")
    w = torch.tensor([0.5, 0.0, -1.5], device=dev)
    out = masked_sum([good[0], bad, good[1]], w)
    assert bool(torch.isfinite(out).all())
    assert_close_to_reference(out, [good[0], torch.zeros_like(bad), good[1]], w)
    # (G, n): x_1 holds NaN only in group 0 and x_2 only in group 1, where their weights are 0; the
    # other group reads them.
    x1 = torch.randn(6, 5, generator=gen).to(dtype).to(dev)
    x1[:3] = float("nan")
    x2 = torch.randn(6, 5, generator=gen).to(dtype).to(dev)
    x2[3:] = float("inf")
    wg = torch.tensor([[1.0, 0.0, 2.0], [1.0, 3.0, 0.0]], device=dev)
    out = masked_sum([good[0], x1, x2], wg)
    assert bool(torch.isfinite(out).all())
    clean = [good[0], torch.nan_to_num(x1, nan=0.0), torch.nan_to_num(x2, posinf=0.0)]
    assert_close_to_reference(out, clean, wg)


def test_empty_tensors(dev):
    x = torch.empty(0, 3, device=dev, requires_grad=True)
    w = torch.ones(2, 2, device=dev, requires_grad=True)
    out = masked_sum([x, x], w)
    assert out.shape == (0, 3)
    out.sum().backward()  # the upstream grad of an empty tensor may have any strides
    assert x.grad.shape == (0, 3) and torch.equal(w.grad, torch.zeros(2, 2, device=dev))


@pytest.mark.parametrize("groups", [0, 2])
def test_more_inputs_than_one_cuda_launch_takes(dev, groups):
    """70 inputs: more than one forward/spread launch (64) and many weight-gradient launches (8)."""
    gen = torch.Generator().manual_seed(8)
    n = 70
    base = [torch.randn(4, 3, generator=gen).to(dev) for _ in range(n)]
    w0 = torch.randn((n,) if groups == 0 else (groups, n), generator=gen)
    w0[..., ::3] = 0
    xs = [b.clone().requires_grad_() for b in base]
    w = w0.to(dev).requires_grad_()
    out = masked_sum(xs, w)
    assert_close_to_reference(out, base, w.detach())
    up = torch.randn(4, 3, generator=gen).to(dev)
    out.backward(up)
    torch.testing.assert_close(w.grad, reference.masked_sum_grad_weights(base, up, w0.to(dev)), rtol=1e-5, atol=1e-5)
    g = max(groups, 1)
    for j in (0, 1, 68, 69):
        if dev == "cpu" and j % 3 == 0:  # all weights 0: no gradient (eager CPU)
            assert xs[j].grad is None
            continue
        want = (w0.reshape(g, n)[:, j : j + 1].to(dev) * up.reshape(g, -1)).reshape(4, 3)
        torch.testing.assert_close(xs[j].grad, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_never_synchronizes():
    """Weights are read on the device: forward and backward run without a host synchronisation."""
    if not lidsplit.cuda_info()["usable"]:
        pytest.skip(f"lidsplit CUDA kernels unusable: {lidsplit.cuda_info()['reason']}")
    dev = "cuda"
    xs = [torch.randn(8, 5, device=dev, requires_grad=True) for _ in range(3)]
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.5, 0.0]], device=dev, requires_grad=True)
    up = torch.randn(8, 5, device=dev)
    torch.cuda.set_sync_debug_mode("error")
    try:
        masked_sum(xs, w).backward(up)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert w.grad is not None and xs[1].grad is not None


# ---- conversions of the shared header (exercised through the CPU kernel) -------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_conversions_are_exact(dtype):
    """Every 16-bit pattern survives widen + narrow; products round to nearest even like torch."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype)
    out = masked_sum([x], torch.tensor([1.0]))
    nan = torch.isnan(x)
    assert bool(torch.isnan(out[nan]).all())
    assert torch.equal(out[~nan].view(torch.int16), x[~nan].view(torch.int16))
    finite = x[torch.isfinite(x)]
    for w in [0.3, -1.7, 1e-3, 3.0e4, 1.0 / 3.0, 2.0**-20, 7.5e-8]:
        got = masked_sum([finite], torch.tensor([w]))
        want = (torch.tensor(w, dtype=torch.float32) * finite.float()).to(dtype)
        same = (got.view(torch.int16) == want.view(torch.int16)) | (torch.isnan(got) & torch.isnan(want))
        assert bool(same.all()), f"w={w}: {got[~same][:4]} vs {want[~same][:4]}"


# ---- autograd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wshape", [(3,), (2, 3)])
def test_gradcheck_float64(dev, wshape):
    gen = torch.Generator().manual_seed(2)
    xs = [torch.randn(4, 3, generator=gen, dtype=torch.float64).to(dev).requires_grad_() for _ in range(3)]
    w = torch.randn(wshape, generator=gen, dtype=torch.float64).to(dev).requires_grad_()
    assert torch.autograd.gradcheck(lambda w, *xs: masked_sum(list(xs), w), (w, *xs))


@pytest.mark.parametrize("wshape", [(3,), (2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference(dev, dtype, wshape):
    gen = torch.Generator().manual_seed(3)
    base = [torch.randn(4, 5, generator=gen).to(dtype) for _ in range(3)]
    w0 = torch.randn(wshape, generator=gen)
    w0[..., 1] = 0  # a zero weight: zero grad to x_1, but dL/dw_1 = <x_1, grad> all the same
    up = torch.randn(4, 5, generator=gen).to(dtype).to(dev)

    xs = [b.to(dev).requires_grad_() for b in base]
    w = w0.to(dev).requires_grad_()
    (masked_sum(xs, w) * up).sum().backward()

    g = 1 if w.dim() == 1 else w.shape[0]
    wd = w0.double().reshape(g, -1)
    upd = up.double().reshape(g, -1)
    for j, x in enumerate(xs):
        if j == 1 and dev == "cpu":  # all weights 0: no gradient at all (eager CPU)
            assert x.grad is None
            continue
        want = (wd[:, j : j + 1] * upd).reshape(4, 5)
        assert x.grad.dtype == dtype
        torch.testing.assert_close(x.grad.double().cpu(), want.cpu(), rtol=TOL[dtype] * 4, atol=TOL[dtype] * 4)
    if dev != "cpu":
        assert bool((xs[1].grad == 0).all())
    want_w = reference.masked_sum_grad_weights([b.to(dev) for b in base], up, w0.to(dev))
    assert w.grad.dtype == torch.float32 and w.grad.shape == w.shape
    torch.testing.assert_close(w.grad, want_w, rtol=1e-5, atol=1e-5)


def test_weights_of_input_dtype_get_gradient_of_that_dtype(dev):
    xs = [torch.randn(4, 2, dtype=torch.float16, device=dev).requires_grad_() for _ in range(2)]
    w = torch.tensor([0.5, 2.0], dtype=torch.float16, device=dev).requires_grad_()
    masked_sum(xs, w).float().sum().backward()
    assert w.grad.dtype == torch.float16
    torch.testing.assert_close(w.grad.float(), torch.stack([x.detach().float().sum() for x in xs]), rtol=2e-3, atol=2e-3)


def test_only_weights_require_grad(dev):
    xs = [torch.randn(3, 2, device=dev) for _ in range(2)]
    w = torch.tensor([1.0, 0.0], device=dev, requires_grad=True)
    masked_sum(xs, w).sum().backward()
    torch.testing.assert_close(w.grad, torch.stack([x.sum() for x in xs]))


def test_noncontiguous_upstream_grad(dev):
    xs = [torch.randn(3, 4, device=dev, requires_grad=True) for _ in range(2)]
    w = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 1.0]], device=dev)
    masked_sum(xs, w).t().sum(0).sum().backward()  # upstream grad arrives transposed / expanded
    torch.testing.assert_close(xs[1].grad, w[:, 1:2].expand(3, 4))


@pytest.mark.parametrize("wshape", [(3,), (2, 3)])
def test_dispatcher_route_matches_eager_fast_path(dev, wshape):
    """masked_sum() skips the dispatcher in plain eager mode; torch.ops.lidsplit.masked_sum must agree."""
    gen = torch.Generator().manual_seed(7)
    base = [torch.randn(4, 6, generator=gen).to(dev) for _ in range(3)]
    w0 = torch.randn(wshape, generator=gen).to(dev)
    results = []
    for fn in (masked_sum, torch.ops.lidsplit.masked_sum):
        xs = [b.clone().requires_grad_() for b in base]
        w = w0.clone().requires_grad_()
        out = fn(xs, w)
        (out * torch.arange(24.0, device=dev).reshape(4, 6)).sum().backward()
        results.append((out.detach(), w.grad, *[x.grad for x in xs]))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_dispatch_modes_take_the_registered_op():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    xs = [torch.randn(2, 3) for _ in range(2)]
    with Record() as rec:
        masked_sum(xs, torch.tensor([1.0, 2.0]))
    assert torch.ops.lidsplit.masked_sum.default in rec.ops


def test_no_double_backward():
    xs = [torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(masked_sum(xs, w).sum(), w, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


# ---- opcheck / torch.compile ---------------------------------------------------------------------


@pytest.mark.parametrize("wshape", [(3,), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dev, dtype, wshape):
    gen = torch.Generator().manual_seed(4)
    xs = [torch.randn(4, 3, generator=gen).to(dtype).to(dev).requires_grad_() for _ in range(3)]
    w = torch.randn(wshape, generator=gen).to(dtype).to(dev).requires_grad_()
    torch.library.opcheck(torch.ops.lidsplit.masked_sum.default, (xs, w))
    torch.library.opcheck(torch.ops.lidsplit.masked_sum.default, ([x.detach() for x in xs], w.detach()))
    grad = torch.randn(4, 3, generator=gen).to(dtype).to(dev)
    torch.library.opcheck(torch.ops.lidsplit.masked_sum_grad_inputs.default, (grad, w.detach(), 3))
    torch.library.opcheck(
        torch.ops.lidsplit.masked_sum_grad_weights.default, ([x.detach() for x in xs], grad, w.detach())
    )


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile(dev, backend):
    def f(xs, alphas):
        return masked_sum([torch.relu(x) for x in xs], alphas.softmax(-1)).square().sum()

    gen = torch.Generator().manual_seed(5)
    base = [torch.randn(4, 3, 5, generator=gen).to(dev) for _ in range(3)]
    a0 = torch.randn(2, 3, generator=gen).to(dev)
    grads = []
    for fn in (f, torch.compile(f, backend=backend, fullgraph=True)):
        xs = [b.clone().requires_grad_() for b in base]
        a = a0.clone().requires_grad_()
        loss = fn(xs, a)
        loss.backward()
        grads.append((loss.detach(), a.grad, *[x.grad for x in xs]))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want)


# ---- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="'xs'.*empty"):
        masked_sum([], torch.ones(0))
    with pytest.raises(TypeError, match="'xs'"):
        masked_sum(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"'xs\[1\]'.*shape \(4, 2\).*same shape"):
        masked_sum([x, torch.randn(4, 2)], torch.ones(2))
    with pytest.raises(ValueError, match=r"'xs\[1\]'.*float64"):
        masked_sum([x, x.double()], torch.ones(2))
    with pytest.raises(TypeError, match=r"'xs\[0\]'.*int64"):
        masked_sum([torch.ones(3, dtype=torch.long)], torch.ones(1))
    with pytest.raises(ValueError, match=r"'xs\[0\]'.*contiguous"):
        masked_sum([x.t()], torch.ones(1))
    with pytest.raises(ValueError, match="'weights'.*size 2"):
        masked_sum([x, x], torch.ones(3))
    with pytest.raises(TypeError, match="'weights'.*float32"):
        masked_sum([x, x], torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="'weights'.*3 groups.*equal"):
        masked_sum([x, x], torch.ones(3, 2))
    with pytest.raises(ValueError, match="'weights'.*dimensions"):
        masked_sum([x, x], torch.ones(1, 1, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"'xs\[1\]'.*cuda"):
        masked_sum([x, x.cuda()], torch.ones(2))
    with pytest.raises(ValueError, match="'weights'.*device"):
        masked_sum([x, x], torch.ones(2, device="cuda"))


def test_cpp_side_rechecks():
    """The C++ bindings never trust the Python checks."""
    x = torch.randn(4, 3)
    out = torch.empty(4, 3)
    with pytest.raises(ValueError, match=r"'xs\[1\]'.*same shape as 'xs\[0\]'"):
        _C.masked_sum([capsule(x), capsule(torch.randn(3, 4))], capsule(torch.ones(2)), capsule(out), 0)
    with pytest.raises(ValueError, match=r"'xs\[1\]'.*same dtype"):
        _C.masked_sum([capsule(x), capsule(x.double())], capsule(torch.ones(2)), capsule(out), 0)
    with pytest.raises(ValueError, match="'weights'.*last dimension"):
        _C.masked_sum([capsule(x)], capsule(torch.ones(2)), capsule(out), 0)
    with pytest.raises(ValueError, match="'weights'.*groups"):
        _C.masked_sum([capsule(x)], capsule(torch.ones(3, 1)), capsule(out), 0)
    with pytest.raises(ValueError, match="'weights'.*dtype float32 or float16"):
        _C.masked_sum([capsule(x.half())], capsule(torch.ones(1).double()), capsule(out.half()), 0)
    with pytest.raises(ValueError, match="'out'.*same shape"):
        _C.masked_sum([capsule(x)], capsule(torch.ones(1)), capsule(torch.empty(3)), 0)
    with pytest.raises(ValueError, match="'xs'.*at least one"):
        _C.masked_sum([], capsule(torch.ones(1)), capsule(out), 0)
    with pytest.raises(ValueError, match=r"'xs\[0\]'.*DLPack capsule"):
        _C.masked_sum([x], capsule(torch.ones(1)), capsule(out), 0)
    with pytest.raises(ValueError, match="'xs\\[0\\]'.*contiguous"):
        _C.masked_sum([capsule(x.t())], capsule(torch.ones(1)), capsule(torch.empty(3, 4)), 0)
    with pytest.raises(ValueError, match="'out'.*elements"):
        _C.masked_sum_wgrad([capsule(x)], capsule(x), capsule(torch.ones(2, 1)), capsule(torch.empty(1).double()), None, 0)
    with pytest.raises(ValueError, match=r"'outs\[0\]'.*same shape"):
        _C.masked_sum_spread(capsule(x), capsule(torch.ones(1)), [capsule(torch.empty(2))], 0)


@pytest.mark.parametrize("versioned", [False, True])
def test_legacy_and_versioned_capsules(versioned):
    gen = torch.Generator().manual_seed(6)
    xs = [torch.randn(4, 3, generator=gen) for _ in range(2)]
    w = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    out = torch.empty(4, 3)
    _C.masked_sum([capsule(x, versioned) for x in xs], capsule(w, versioned), capsule(out, versioned), 0)
    torch.testing.assert_close(out, reference.masked_sum(xs, w))
    outs = [torch.empty(4, 3) for _ in range(2)]
    _C.masked_sum_spread(capsule(xs[0], versioned), capsule(w, versioned), [capsule(o, versioned) for o in outs], 0)
    torch.testing.assert_close(outs[1], xs[0] * w[:, 1].repeat_interleave(2)[:, None])
    gw = torch.empty(2, 2, dtype=torch.float64)
    _C.masked_sum_wgrad([capsule(x, versioned) for x in xs], capsule(xs[0], versioned), capsule(w, versioned),
                        capsule(gw, versioned), None, 0)
    torch.testing.assert_close(gw, reference.masked_sum_grad_weights(xs, xs[0], w.double()))


def test_zero_weight_branch_gets_no_gradient_on_cpu():
    """Eager CPU: an input whose weights are all 0 gets None, so the branch that computed it is not run."""
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    w = torch.tensor([[1.0, 0.0], [0.5, 0.0]], requires_grad=True)
    masked_sum([a * 2, b * 3], w).sum().backward()
    assert b.grad is None
    torch.testing.assert_close(a.grad, torch.tensor([1.0, 1.0, 0.5, 0.5]).repeat_interleave(3).view(4, 3) * 2)
    torch.testing.assert_close(w.grad, torch.stack([(a * 2).detach().view(2, -1).sum(1), (b * 3).detach().view(2, -1).sum(1)], 1))


def test_meta_tensors_and_list_weights_are_named():
    """Not DLPack's BufferError or a dispatcher error: lidsplit's own message naming the argument."""
    xs = [torch.randn(4, 5) for _ in range(3)]
    with pytest.raises(ValueError, match="'weights'.*CPU or CUDA"):
        masked_sum(xs, torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match=r"'xs\[0\]'.*CPU or CUDA"):
        masked_sum([x.to("meta") for x in xs], torch.ones(3))
    with pytest.raises(TypeError, match="'weights' must be a torch.Tensor, got list"):
        masked_sum(xs, [1.0, 1.0, 1.0])
