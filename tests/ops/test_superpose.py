"""superpose: kernels vs the reference and the padded-copies definition, autograd (twice), opcheck,
torch.compile, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lidsplit
from lidsplit import _C
from lidsplit.ops import reference, superpose, superpose_coeff_grad
from lidsplit.ops._dlpack import capsule
from op_table import DTYPES as OP_DTYPES
from op_table import FIXTURE_OK

DTYPES = OP_DTYPES["superpose"]

def random_boxes(shape, n, gen) -> torch.Tensor:
    if n == 0:
        return torch.zeros(0, len(shape), 2, dtype=torch.int64)
    a = torch.stack([torch.randint(0, s + 1, (n,), generator=gen) for s in shape], 1)
    b = torch.stack([torch.randint(0, s + 1, (n,), generator=gen) for s in shape], 1)
    return torch.stack([torch.minimum(a, b), torch.maximum(a, b)], -1)


@st.composite
def cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=5)))
    n = draw(st.integers(0, 6))
    dtype = draw(st.sampled_from(DTYPES))
    c_dtype = draw(st.sampled_from([torch.float32, torch.float64, dtype]))
    seed = draw(st.integers(0, 2**16))
    return shape, n, dtype, c_dtype, seed


@FIXTURE_OK
@given(case=cases())
def test_matches_reference_exactly(dev, case):
    """Same accumulation dtype and box order as the reference: bit-identical, every dtype."""
    shape, n, dtype, c_dtype, seed = case
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen).to(dtype)
    c = torch.randn(n, generator=gen).to(c_dtype)
    boxes = random_boxes(shape, n, gen)
    out = superpose(w.to(dev), c.to(dev), boxes.to(dev))
    ref = reference.superpose(w, c, boxes)
    assert out.dtype == dtype and out.shape == w.shape
    assert torch.equal(out.cpu(), ref)


@FIXTURE_OK
@given(case=cases())
def test_equals_sum_of_padded_slices(dev, case):
    shape, n, _, _, seed = case
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    c = torch.randn(n, generator=gen, dtype=torch.float64)
    boxes = random_boxes(shape, n, gen)
    out = superpose(w.to(dev), c.to(dev), boxes.to(dev)).cpu()
    torch.testing.assert_close(out, reference.superpose_padded(w, c, boxes), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(70000,), (3, 20000), (200, 300, 2), (64, 32, 7, 7), (2, 3, 5000)])
@pytest.mark.parametrize("n", [1, 3, 70])
def test_large_and_many_boxes(dev, shape, n):
    """The blocked CPU path (outer rows, cached inner blocks, chunked long last dimension, > 64 boxes)."""
    gen = torch.Generator().manual_seed(n)
    w = torch.randn(shape, generator=gen)
    c = torch.randn(n, generator=gen)
    boxes = random_boxes(shape, n, gen)
    assert torch.equal(superpose(w.to(dev), c.to(dev), boxes.to(dev)).cpu(), reference.superpose(w, c, boxes))
    g = torch.randn(shape, generator=gen)
    got = superpose_coeff_grad(g.to(dev), w.to(dev), boxes.to(dev)).cpu()
    torch.testing.assert_close(got, reference.superpose_coeff_grad(g, w, boxes), rtol=1e-10, atol=1e-9)


def test_entangled_kernel_example():
    """3x3 / 5x5 / 7x7 centred slices and channel prefixes: the TangleNAS superposed kernel."""
    w = torch.randn(8, 4, 7, 7, dtype=torch.float64)
    coeffs = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    boxes = torch.tensor([[[0, 2], [0, 4], [2, 5], [2, 5]], [[0, 4], [0, 4], [1, 6], [1, 6]], [[0, 8], [0, 4], [0, 7], [0, 7]]])
    out = superpose(w, coeffs, boxes)
    expect = torch.zeros_like(w)
    expect[:2, :, 2:5, 2:5] += 0.2 * w[:2, :, 2:5, 2:5]
    expect[:4, :, 1:6, 1:6] += 0.3 * w[:4, :, 1:6, 1:6]
    expect += 0.5 * w
    torch.testing.assert_close(out, expect, rtol=1e-14, atol=1e-14)


# ---- autograd -------------------------------------------------------------------------------------


def _inputs(dev, dtype=torch.float64, shape=(3, 2, 5, 5), n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen, dtype=dtype).to(dev).requires_grad_()
    c = torch.randn(n, generator=gen, dtype=dtype).to(dev).requires_grad_()
    boxes = random_boxes(shape, n, gen).to(dev)
    return w, c, boxes


@pytest.mark.parametrize("route", ["eager", "registered"])
def test_gradcheck_and_gradgradcheck(dev, route):
    w, c, boxes = _inputs(dev)
    f = superpose if route == "eager" else torch.ops.lidsplit.superpose
    assert torch.autograd.gradcheck(lambda a, b: f(a, b, boxes), (w, c))
    assert torch.autograd.gradgradcheck(lambda a, b: f(a, b, boxes), (w, c))
    g = torch.randn_like(w).requires_grad_()
    h = superpose_coeff_grad if route == "eager" else torch.ops.lidsplit.superpose_coeff_grad
    assert torch.autograd.gradcheck(lambda a, b: h(a, b, boxes), (g, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_backward_matches_formulas(dev, dtype):
    w, c, boxes = _inputs(dev, torch.float32, (4, 6, 3), 4, seed=3)
    w = w.detach().to(dtype).requires_grad_()
    c = c.detach().requires_grad_()
    out = superpose(w, c, boxes)
    grad = torch.randn(out.shape, dtype=torch.float32).to(dtype).to(dev)
    out.backward(grad)
    wc, cc, bc, gc = w.detach().cpu(), c.detach().cpu(), boxes.cpu(), grad.cpu()
    assert torch.equal(w.grad.cpu(), reference.superpose(gc, cc, bc))
    want = reference.superpose_coeff_grad(gc, wc, bc).float()
    torch.testing.assert_close(c.grad.cpu(), want, rtol=1e-6, atol=1e-6)
    assert c.grad.dtype == torch.float32


def test_only_coeffs_or_only_weight_require_grad(dev):
    w, c, boxes = _inputs(dev)
    superpose(w.detach(), c, boxes).sum().backward()
    assert c.grad is not None
    superpose(w, c.detach(), boxes).sum().backward()
    assert w.grad is not None


def test_dispatcher_route_matches_eager(dev):
    w, c, boxes = _inputs(dev, seed=7)
    a = superpose(w, c, boxes)
    b = torch.ops.lidsplit.superpose(w, c, boxes)
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.square().sum(), (w, c))
    gb = torch.autograd.grad(b.square().sum(), (w, c))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# ---- opcheck / torch.compile ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dev, dtype):
    w, c, boxes = _inputs(dev, dtype, seed=11)
    torch.library.opcheck(torch.ops.lidsplit.superpose.default, (w, c, boxes))
    torch.library.opcheck(torch.ops.lidsplit.superpose.default, (w.detach(), c.detach(), boxes))
    g = torch.randn_like(w)
    torch.library.opcheck(torch.ops.lidsplit.superpose_coeff_grad.default, (g, w.detach(), boxes))
    torch.library.opcheck(torch.ops.lidsplit.superpose_coeff_grad.default, (g.requires_grad_(), w, boxes))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile(dev, backend):
    def f(w, alphas, boxes, x):
        return torch.nn.functional.conv2d(x, superpose(w, alphas.softmax(-1), boxes), padding=2).square().sum()

    gen = torch.Generator().manual_seed(5)
    w0 = torch.randn(4, 3, 5, 5, generator=gen).to(dev)
    a0 = torch.randn(2, generator=gen).to(dev)
    x = torch.randn(2, 3, 6, 6, generator=gen).to(dev)
    boxes = torch.tensor([[[0, 4], [0, 3], [1, 4], [1, 4]], [[0, 4], [0, 3], [0, 5], [0, 5]]]).to(dev)
    grads = []
    for fn in (f, torch.compile(f, backend=backend, fullgraph=True)):
        w, a = w0.clone().requires_grad_(), a0.clone().requires_grad_()
        loss = fn(w, a, boxes, x)
        loss.backward()
        grads.append((loss.detach(), w.grad, a.grad))
    for got, want in zip(grads[1], grads[0]):  # float32 convolutions of different backends
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


# ---- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    w = torch.randn(4, 3)
    c = torch.ones(1)
    ok = torch.tensor([[[0, 2], [0, 3]]])
    with pytest.raises(ValueError, match="'boxes'.*box 0.*\\[0, 5\\).*dimension 0 of size 4"):
        superpose(w, c, torch.tensor([[[0, 5], [0, 3]]]))
    with pytest.raises(ValueError, match="'boxes'.*\\[3, 2\\)"):
        superpose(w, c, torch.tensor([[[0, 2], [3, 2]]]))
    with pytest.raises(ValueError, match="'boxes'.*\\(n, 2, 2\\)"):
        superpose(w, c, torch.tensor([[[0, 2]]]))
    with pytest.raises(ValueError, match="'coeffs'.*size 1"):
        superpose(w, torch.ones(2), ok)
    with pytest.raises(TypeError, match="'weight'.*int64"):
        superpose(torch.ones(4, 3, dtype=torch.long), c, ok)
    with pytest.raises(ValueError, match="'weight'.*contiguous"):
        superpose(torch.randn(3, 4).t(), c, ok)
    with pytest.raises(TypeError, match="'boxes'.*int64"):
        superpose(w, c, ok.int())
    with pytest.raises(ValueError, match="'weight'.*1 to 8"):
        superpose(torch.tensor(1.0), c, torch.zeros(1, 0, 2, dtype=torch.long))
    # nested sequences are accepted for boxes
    torch.testing.assert_close(superpose(w, c, [[[0, 2], [0, 3]]]), superpose(w, c, ok))


def test_cpp_side_rechecks():
    w = torch.randn(4, 3)
    out = torch.empty_like(w)
    c = torch.ones(1)
    with pytest.raises(ValueError, match="'boxes'.*0 <= start <= stop <= size"):
        _C.superpose(capsule(w), capsule(c), capsule(torch.tensor([[[0, 9], [0, 3]]])), capsule(out), 0)
    with pytest.raises(ValueError, match="'coeffs'.*size 1"):
        _C.superpose(capsule(w), capsule(torch.ones(2)), capsule(torch.tensor([[[0, 1], [0, 3]]])), capsule(out), 0)
    with pytest.raises(ValueError, match="'out'.*same shape"):
        _C.superpose(capsule(w), capsule(c), capsule(torch.tensor([[[0, 1], [0, 3]]])), capsule(torch.empty(3)), 0)
    with pytest.raises(ValueError, match="'out'.*2 elements"):
        _C.superpose_coeff_grad(capsule(w), capsule(w), capsule(torch.tensor([[[0, 1], [0, 3]]] * 2)),
                                capsule(torch.empty(3, dtype=torch.float64)), None, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_boxes_are_clamped():
    w = torch.randn(4, 3, device="cuda")
    boxes = torch.tensor([[[-3, 9], [1, 2]], [[3, 1], [0, 3]]], device="cuda")
    c = torch.tensor([2.0, 5.0], device="cuda")
    assert torch.equal(superpose(w, c, boxes).cpu(), reference.superpose(w.cpu(), c.cpu(), boxes.cpu()))


def test_meta_tensors_are_named():
    """Not DLPack's BufferError: lidsplit's own message naming the argument."""
    boxes = torch.tensor([[[0, 2], [0, 2]]])
    with pytest.raises(ValueError, match="'weight'.*CPU or CUDA"):
        superpose(torch.randn(4, 5, device="meta"), torch.ones(1, device="meta"), boxes.to("meta"))
    with pytest.raises(ValueError, match="'coeffs'"):
        superpose(torch.randn(4, 5), torch.ones(1, device="meta"), boxes)
