"""lidsplit.data.hard_digits: deterministic, disjoint, shaped as documented; distort_digits checks."""

from __future__ import annotations

import pytest
import torch

from lidsplit.data import DataSplits, distort_digits, hard_digits
from lidsplit.data.distorted import _load_source

SMALL = dict(variants=(2, 1, 3))  # keep the tests fast


@pytest.fixture(scope="module")
def hd() -> DataSplits:
    return hard_digits(**SMALL)


def test_shapes_sizes_and_normalisation(hd: DataSplits) -> None:
    assert (hd.num_classes, hd.in_channels, hd.image_size) == (10, 1, (8, 8))
    src = hd.meta["source_sizes"]
    assert [len(hd.train), len(hd.val), len(hd.test)] == [2 * src[0], 1 * src[1], 3 * src[2]] == hd.meta["sizes"]
    for part in (hd.train, hd.val, hd.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert torch.isfinite(part.x).all()
        assert set(part.y.unique().tolist()) == set(range(10))
    assert abs(hd.train.x.mean().item()) < 1e-4
    assert abs(hd.train.x.std(unbiased=False).item() - 1.0) < 1e-4


def test_default_sizes_many_thousand_test_images() -> None:
    # the documented defaults without building them: 32 copies of ~35 % of the ~1.8k sources
    import inspect

    x, _ = _load_source()
    assert 1700 < x.shape[0] <= 1797
    params = inspect.signature(hard_digits).parameters
    assert params["variants"].default == (10, 4, 32) and params["fractions"].default[2] == 0.35
    assert int(0.35 * x.shape[0]) * 32 > 19000


def test_deterministic_and_seeded(hd: DataSplits) -> None:
    again = hard_digits(**SMALL)
    for a, b in zip((hd.train, hd.val, hd.test), (again.train, again.val, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = hard_digits(seed=1, **SMALL)
    assert not torch.equal(other.test.x, hd.test.x)
    assert hd.meta["source_index"] != other.meta["source_index"]


def test_sources_disjoint_and_no_duplicate_sources(hd: DataSplits) -> None:
    tr, va, te = (set(i) for i in hd.meta["source_index"])
    assert not (tr & va) and not (tr & te) and not (va & te)
    x, _ = _load_source()
    assert len(tr | va | te) == x.shape[0]
    flat = x.flatten(1)
    assert torch.unique(flat, dim=0).shape[0] == flat.shape[0]  # exact duplicates removed


def test_copies_differ_and_are_distorted(hd: DataSplits) -> None:
    n_src = hd.meta["source_sizes"][2]
    first, second = hd.test.x[:n_src], hd.test.x[n_src:2 * n_src]
    assert torch.equal(hd.test.y[:n_src], hd.test.y[n_src:2 * n_src])  # variant-major order
    assert (first - second).abs().flatten(1).amax(1).min() > 0  # every copy is a different draw


def test_distort_strength_zero_is_clean_resampling() -> None:
    x, _ = _load_source()
    x = x[:20]
    g = torch.Generator().manual_seed(0)
    out = distort_digits(x, g, image_size=8, fov=1.0, strength=0.0)
    # identity geometry at the source resolution reproduces the image exactly
    assert torch.allclose(out, x, atol=1e-5)
    big = distort_digits(x, torch.Generator().manual_seed(0), image_size=16, strength=1.0)
    assert big.shape == (20, 1, 16, 16)


def test_distort_reproducible_from_generator() -> None:
    x, _ = _load_source()
    a = distort_digits(x[:50], torch.Generator().manual_seed(3))
    b = distort_digits(x[:50], torch.Generator().manual_seed(3))
    c = distort_digits(x[:50], torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match="x must be"):
        distort_digits(torch.zeros(2, 3, 8, 8), g)
    with pytest.raises(ValueError, match="image_size"):
        distort_digits(torch.zeros(2, 1, 8, 8), g, image_size=2)
    with pytest.raises(ValueError, match="unknown magnitudes"):
        distort_digits(torch.zeros(2, 1, 8, 8), g, magnitudes={"spin": 1.0})
    with pytest.raises(ValueError, match="variants"):
        hard_digits(variants=(1, 0, 1))
