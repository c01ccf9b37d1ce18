"""lidsplit.data.colour_digits: deterministic, disjoint, 3-channel, balanced; colour_distort checks."""

from __future__ import annotations

import inspect

import pytest
import torch

from lidsplit.data import DataSplits, colour_digits, colour_distort, hard_digits
from lidsplit.data.colour import _LUMA, COLOUR_DIGITS_DEFAULTS
from lidsplit.data.distorted import _load_source

SMALL = dict(variants=(2, 1, 3))  # keep the tests fast


@pytest.fixture(scope="module")
def cd() -> DataSplits:
    return colour_digits(**SMALL)


def test_shapes_sizes_and_per_channel_standardisation(cd: DataSplits) -> None:
    assert (cd.num_classes, cd.in_channels, cd.image_size) == (10, 3, (8, 8))
    src = cd.meta["source_sizes"]
    assert [len(cd.train), len(cd.val), len(cd.test)] == [2 * src[0], 1 * src[1], 3 * src[2]] == cd.meta["sizes"]
    for part in (cd.train, cd.val, cd.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert torch.isfinite(part.x).all()
    x = cd.train.x.double()
    assert x.mean(dim=(0, 2, 3)).abs().max().item() < 1e-4  # standardised with train statistics
    assert (x.std(dim=(0, 2, 3), unbiased=False) - 1.0).abs().max().item() < 1e-4
    assert len(cd.meta["mean"]) == len(cd.meta["std"]) == 3


def test_labels_balanced_in_every_split(cd: DataSplits) -> None:
    for part in (cd.train, cd.val, cd.test):
        counts = torch.bincount(part.y, minlength=10)
        assert counts.min() > 0 and counts.max() <= 1.25 * counts.min()  # per-class split of the sources


def test_deterministic_and_seeded(cd: DataSplits) -> None:
    again = colour_digits(**SMALL)
    for a, b in zip((cd.train, cd.val, cd.test), (again.train, again.val, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = colour_digits(seed=1, **SMALL)
    assert not torch.equal(other.test.x, cd.test.x)
    assert cd.meta["source_index"] != other.meta["source_index"]


def test_sources_disjoint_and_not_hard_digits_split(cd: DataSplits) -> None:
    tr, va, te = (set(i) for i in cd.meta["source_index"])
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == _load_source()[0].shape[0]
    # the same seed of hard_digits tests other source digits: the two tables are independent draws
    hd_test = set(hard_digits(variants=(1, 1, 1)).meta["source_index"][2])
    assert len(te & hd_test) < 0.6 * len(te)


def test_default_sizes_match_the_table_task() -> None:
    params = inspect.signature(colour_digits).parameters
    assert params["variants"].default == (10, 4, 32) and params["fractions"].default == (0.5, 0.15, 0.35)
    assert params["image_size"].default == 8


def test_copies_are_colour_and_different_draws(cd: DataSplits) -> None:
    n_src = cd.meta["source_sizes"][2]
    assert torch.equal(cd.test.y[:n_src], cd.test.y[n_src:2 * n_src])  # variant-major order
    assert (cd.test.x[:n_src] - cd.test.x[n_src:2 * n_src]).abs().flatten(1).amax(1).min() > 0
    raw = colour_distort(_load_source()[0][:200], torch.Generator().manual_seed(0))
    assert raw.shape == (200, 3, 8, 8) and raw.min() >= 0.0 and raw.max() <= 1.0
    # colour, not grey: the channels of an image differ
    assert (raw[:, 0] - raw[:, 1]).abs().flatten(1).amax(1).median() > 0.05


def test_strength_zero_keeps_shape_and_polarity() -> None:
    x = _load_source()[0][:50]
    out = colour_distort(x, torch.Generator().manual_seed(1), fov=1.0, strength=0.0)
    luma = (out * _LUMA.view(1, 3, 1, 1)).sum(1)  # (n, 8, 8)
    stroke, ground = x[:, 0] > 0.9, x[:, 0] < 0.05
    for i in range(50):  # no geometry, no damage: the stroke is brighter than the background
        assert luma[i][stroke[i]].mean() > luma[i][ground[i]].mean()
    big = colour_distort(x, torch.Generator().manual_seed(1), image_size=10)
    assert big.shape == (50, 3, 10, 10)


def test_reproducible_from_generator() -> None:
    x = _load_source()[0][:50]
    a = colour_distort(x, torch.Generator().manual_seed(3))
    b = colour_distort(x, torch.Generator().manual_seed(3))
    c = colour_distort(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments() -> None:
    g = torch.Generator()
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="colour_distort: x must be"):
        colour_distort(torch.zeros(2, 3, 8, 8), g)
    with pytest.raises(ValueError, match="x must be"):
        colour_distort(torch.zeros(2, 1, 8, 8, dtype=torch.int64), g)
    with pytest.raises(ValueError, match="image_size in 4..10"):
        colour_distort(x, g, image_size=16)
    with pytest.raises(ValueError, match="strength"):
        colour_distort(x, g, strength=-1.0)
    with pytest.raises(ValueError, match="unknown magnitudes"):
        colour_distort(x, g, magnitudes={"spin": 1.0})
    with pytest.raises(ValueError, match="contrast_min"):
        colour_distort(x, g, magnitudes={"contrast_min": 0.95, "contrast_max": 0.9})
    with pytest.raises(ValueError, match="stripes"):
        colour_distort(x, g, magnitudes={"stripes": 1.5})
    with pytest.raises(ValueError, match="colour_digits: variants"):
        colour_digits(variants=(1, 0, 1))
    with pytest.raises(ValueError, match="colour_digits needs 3 fractions"):
        colour_digits(fractions=(0.5, 0.5))
    assert set(COLOUR_DIGITS_DEFAULTS) >= {"perspective", "blur_max", "stripes", "salt_pepper"}
