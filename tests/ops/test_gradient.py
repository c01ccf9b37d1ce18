"""gradient_gram / gradient_cosine: kernels vs concatenation + matmul, None entries, zero vectors, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lidsplit
from lidsplit import _C
from lidsplit.ops import gradient_cosine, gradient_gram, reference
from lidsplit.ops._dlpack import capsule
from op_table import DTYPES as OP_DTYPES
from op_table import FIXTURE_OK

DTYPES = OP_DTYPES["gradient"]

def assert_gram_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Both accumulate exact products in float64: agreement to ~1e-12 of the norms."""
    assert got.dtype == torch.float64 and got.shape == want.shape and got.device == want.device
    d = want.diagonal().abs()
    scale = (d[:, None] * d[None, :]).sqrt() + 1e-300
    err = ((got - want).abs() / scale).max() if got.numel() else torch.tensor(0.0)
    assert float(err) < 1e-10, f"relative error {float(err)}"


def assert_cosine_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == torch.float64 and got.shape == want.shape
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert bool((got.abs() <= 1).all())


@st.composite
def cases(draw):
    n = draw(st.integers(1, 6))
    num_params = draw(st.integers(1, 5))
    shapes = [tuple(draw(st.lists(st.integers(1, 7), min_size=0, max_size=3))) for _ in range(num_params)]
    dtypes = [draw(st.sampled_from(DTYPES)) for _ in range(num_params)]
    missing = draw(st.lists(st.booleans(), min_size=n * num_params, max_size=n * num_params))
    zero_vector = draw(st.sampled_from([None, *range(n)]))
    seed = draw(st.integers(0, 2**16))
    return n, shapes, dtypes, missing, zero_vector, seed


def make_grads(n, shapes, dtypes, missing, zero_vector, seed, device):
    gen = torch.Generator().manual_seed(seed)
    grads = []
    for i in range(n):
        row = []
        for p, (shape, dtype) in enumerate(zip(shapes, dtypes)):
            t = torch.randn(shape, generator=gen).to(dtype).to(device)
            if i == zero_vector:
                t = torch.zeros_like(t)
            row.append(None if missing[i * len(shapes) + p] else t)
        grads.append(row)
    return grads


@FIXTURE_OK
@given(case=cases())
def test_matches_concatenation(dev, case):
    grads = make_grads(*case, dev)
    assert_gram_close(gradient_gram(grads), reference.gradient_gram(grads))
    assert_cosine_close(gradient_cosine(grads), reference.gradient_cosine(grads))


@pytest.mark.parametrize("n", [1, 5, 9, 17])
def test_many_vectors_and_large_parameters(dev, n):
    """Large enough for the parallel CPU path; n > 8 takes the tiled CUDA path."""
    gen = torch.Generator().manual_seed(n)
    shapes = [(300, 129), (7,), (64, 3, 3, 3), ()]
    dtypes = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    grads = [[torch.randn(s, generator=gen).to(d).to(dev) for s, d in zip(shapes, dtypes)] for _ in range(n)]
    grads[0][1] = None
    if n > 2:
        grads[2] = [None] * len(shapes)  # an all-missing vector is a zero vector
    assert_gram_close(gradient_gram(grads), reference.gradient_gram(grads))
    cos = gradient_cosine(grads)
    assert_cosine_close(cos, reference.gradient_cosine(grads))
    if n > 2:
        assert bool((cos[2] == 0).all()) and bool((cos[:, 2] == 0).all())


def test_known_values():
    a = [torch.tensor([1.0, 0.0]), torch.tensor([2.0])]
    b = [torch.tensor([0.0, 3.0]), None]
    c = [torch.tensor([-1.0, 0.0]), torch.tensor([-2.0])]
    z = [torch.zeros(2), torch.zeros(1)]
    gram = gradient_gram([a, b, c, z])
    assert gram.tolist() == [[5.0, 0.0, -5.0, 0.0], [0.0, 9.0, 0.0, 0.0], [-5.0, 0.0, 5.0, 0.0], [0.0] * 4]
    cos = gradient_cosine([a, b, c, z])
    assert cos.tolist() == [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0], [0.0] * 4]
    assert torch.equal(gradient_cosine([a, a]), torch.ones(2, 2, dtype=torch.float64))
    # squared norms near the float64 limits: the cosine stays finite and in [-1, 1]
    tiny = [[torch.tensor([1e-160, 0.0], dtype=torch.float64)], [torch.tensor([2e-160, 1e-161], dtype=torch.float64)]]
    cos = gradient_cosine(tiny)
    assert bool(torch.isfinite(cos).all()) and abs(float(cos[0, 1]) - 2 / 4.01**0.5) < 1e-2


def test_all_missing_gives_zeros_on_cpu():
    out = gradient_cosine([[None, None], [None, None]])
    assert out.device.type == "cpu" and torch.equal(out, torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(gradient_gram([[], []]), torch.zeros(2, 2, dtype=torch.float64))


def test_mixed_dtypes_accumulate_in_float64():
    big = torch.full((1000,), 1e-4, dtype=torch.float16)
    grads = [[big, torch.tensor([1e8], dtype=torch.float64)], [big, torch.tensor([1.0], dtype=torch.float64)]]
    gram = gradient_gram(grads)
    expect = 1000 * float(big[0]) ** 2
    assert abs(float(gram[0, 1]) - (expect + 1e8)) < 1e-6
    assert abs(float(gram[1, 1]) - (expect + 1.0)) < 1e-12


def test_opcheck(dev):
    gen = torch.Generator().manual_seed(3)
    grads = [[torch.randn(4, 3, generator=gen).to(dev), None, torch.randn(5, generator=gen).half().to(dev)]
             for _ in range(3)]
    grads[1][1] = torch.randn(2, generator=gen).to(dev)
    flat = [t for row in grads for t in row]
    torch.library.opcheck(torch.ops.lidsplit.gradient_gram.default, (flat, 3))
    torch.library.opcheck(torch.ops.lidsplit.gradient_cosine.default, (flat, 3))
    # the public functions bypass the dispatcher in plain eager mode: same results
    assert torch.equal(torch.ops.lidsplit.gradient_gram(flat, 3), gradient_gram(grads))
    assert torch.equal(torch.ops.lidsplit.gradient_cosine(flat, 3), gradient_cosine(grads))


def test_torch_compile():
    def f(g0, g1):
        return gradient_cosine([[g0, g1], [g0 * 2, -g1]]).sum()

    g0, g1 = torch.randn(5, 3), torch.randn(4)
    assert torch.equal(torch.compile(f, backend="aot_eager", fullgraph=True)(g0, g1), f(g0, g1))


@pytest.mark.parametrize("versioned", [False, True])
def test_legacy_and_versioned_capsules(versioned):
    gen = torch.Generator().manual_seed(4)
    grads = [[torch.randn(6, generator=gen), torch.randn(2, 2, generator=gen).double()] for _ in range(2)]
    out = torch.empty(2, 2, dtype=torch.float64)
    flat = [capsule(t, versioned) for row in grads for t in row]
    _C.gradient_gram(flat, 2, capsule(out, versioned), None, False, 0)
    assert_gram_close(out, reference.gradient_gram(grads))


# ---- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    a = torch.randn(3)
    with pytest.raises(ValueError, match="'grads'.*at least one"):
        gradient_cosine([])
    with pytest.raises(TypeError, match="'grads'"):
        gradient_cosine(a)
    with pytest.raises(TypeError, match=r"'grads\[1\]'"):
        gradient_cosine([[a], a])
    with pytest.raises(ValueError, match=r"'grads\[1\]'.*expected 1 per-parameter entries.*got 2"):
        gradient_cosine([[a], [a, a]])
    with pytest.raises(ValueError, match=r"'grads\[1\]\[0\]'.*shape \(4,\).*'grads\[0\]\[0\]'"):
        gradient_cosine([[a], [torch.randn(4)]])
    with pytest.raises(ValueError, match=r"'grads\[1\]\[0\]'.*float64"):
        gradient_cosine([[a], [a.double()]])
    with pytest.raises(ValueError, match=r"'grads\[0\]\[0\]'.*contiguous"):
        gradient_cosine([[torch.randn(3, 4).t()], [None]])
    with pytest.raises(TypeError, match=r"'grads\[0\]\[0\]'.*int64"):
        gradient_cosine([[torch.ones(3, dtype=torch.long)]])


def test_cpp_side_rechecks():
    a = torch.randn(3)
    out = torch.empty(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"'grads\[1\]\[0\]'.*same shape as 'grads\[0\]\[0\]'"):
        _C.gradient_gram([capsule(a), capsule(torch.randn(4))], 2, capsule(out), None, True, 0)
    with pytest.raises(ValueError, match=r"'grads\[1\]\[0\]'.*same dtype"):
        _C.gradient_gram([capsule(a), capsule(a.double())], 2, capsule(out), None, True, 0)
    with pytest.raises(ValueError, match="'grads'.*3 entries"):
        _C.gradient_gram([capsule(a), None, None], 2, capsule(out), None, True, 0)
    with pytest.raises(ValueError, match="'out'.*size 2"):
        _C.gradient_gram([capsule(a), None], 2, capsule(torch.empty(3, 3, dtype=torch.float64)), None, True, 0)
    with pytest.raises(ValueError, match="'out'.*float64"):
        _C.gradient_gram([capsule(a), None], 2, capsule(torch.empty(2, 2)), None, True, 0)
    with pytest.raises(ValueError, match=r"'grads\[0\]\[0\]'.*capsule or None"):
        _C.gradient_gram([a, None], 2, capsule(out), None, True, 0)
    with pytest.raises(ValueError, match="'n'"):
        _C.gradient_gram([], 0, capsule(out), None, True, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch():
    a = torch.randn(3)
    with pytest.raises(ValueError, match=r"'grads\[1\]\[0\]'.*device"):
        gradient_cosine([[a], [a.cuda()]])


def test_many_tiny_parameters_share_chunks():
    """Hundreds of tensors of a few elements, some missing or empty, between large ones: the CPU kernel lays
    them end to end in shared chunks (gaps filled with zeros) and must still match the reference."""
    gen = torch.Generator().manual_seed(11)
    n, sizes = 7, [int(s) for s in torch.randint(0, 9, (400,), generator=gen)] + [3000, 1, 5000]
    grads = [[None if (i + p) % 5 == 0 else torch.randn(s, generator=gen) for p, s in enumerate(sizes)] for i in range(n)]
    assert_gram_close(gradient_gram(grads), reference.gradient_gram(grads))


def test_result_does_not_depend_on_the_thread_count():
    gen = torch.Generator().manual_seed(12)
    grads = [[torch.randn(70000, generator=gen), torch.randn(33, generator=gen)] for _ in range(4)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gradient_gram(grads)
        torch.set_num_threads(2)
        two = gradient_gram(grads)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
