"""lidsplit.data: digits / synthetic splits, the common description, the seeded loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lidsplit.data import (
    DataSplits,
    Dataset,
    TensorLoader,
    digits,
    load,
    stratified_split,
    synthetic,
)


@pytest.fixture(scope="module")
def dig() -> DataSplits:
    return digits()


def test_digits_shapes_and_description(dig: DataSplits) -> None:
    assert (dig.num_classes, dig.in_channels, dig.image_size) == (10, 1, (8, 8))
    assert [len(dig.train), len(dig.val), len(dig.test)] == dig.meta["sizes"]
    assert sum(dig.meta["sizes"]) == 1797
    assert dig.meta["fractions"] == [0.6, 0.2, 0.2]
    for part in (dig.train, dig.val, dig.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert part.x.shape[1:] == (1, 8, 8)
        assert set(part.y.unique().tolist()) == set(range(10))  # stratified: every class everywhere
    # normalised with train statistics
    assert abs(dig.train.x.mean().item()) < 1e-4
    assert abs(dig.train.x.std(unbiased=False).item() - 1.0) < 1e-4


def test_digits_split_fixed_and_seeded(dig: DataSplits) -> None:
    again = digits()
    for a, b in zip((dig.train, dig.val, dig.test), (again.train, again.val, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = digits(seed=1)
    assert not torch.equal(other.train.y, dig.train.y) or not torch.equal(other.train.x, dig.train.x)
    # the three parts are disjoint: no image of val/test appears in train
    tr = {tuple(r) for r in dig.train.x.flatten(1).tolist()}
    shared = sum(tuple(r) in tr for r in dig.test.x.flatten(1).tolist())
    assert shared <= 2  # the digits set holds a couple of exact duplicate images


def test_stratified_split_partition() -> None:
    y = torch.arange(103) % 7
    parts = stratified_split(y, (0.5, 0.3, 0.2), seed=3)
    allidx = torch.cat(parts).sort().values
    assert torch.equal(allidx, torch.arange(103))
    assert all(torch.equal(p, p.sort().values) for p in parts)
    assert [torch.equal(a, b) for a, b in zip(parts, stratified_split(y, (0.5, 0.3, 0.2), seed=3))] == [True] * 3
    with pytest.raises(ValueError):
        stratified_split(y, (0.5, 0.6), seed=0)


def test_synthetic_shapes_and_seed() -> None:
    s = synthetic(60, num_classes=3, in_channels=2, image_size=(5, 7), seed=4)
    assert (s.num_classes, s.in_channels, s.image_size) == (3, 2, (5, 7))
    assert len(s.train) + len(s.val) + len(s.test) == 60
    t = synthetic(60, num_classes=3, in_channels=2, image_size=(5, 7), seed=4)
    assert torch.equal(s.train.x, t.train.x) and torch.equal(s.test.y, t.test.y)
    u = synthetic(60, num_classes=3, in_channels=2, image_size=(5, 7), seed=5)
    assert not torch.equal(s.train.x, u.train.x)
    assert load("synthetic", n=20, num_classes=2).num_classes == 2


def test_dataset_validation() -> None:
    with pytest.raises(ValueError):
        Dataset(torch.zeros(3, 8, 8), torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError):
        Dataset(torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.int32), 2)
    with pytest.raises(ValueError):
        Dataset(torch.zeros(3, 1, 8, 8), torch.full((3,), 5, dtype=torch.int64), 2)
    d = Dataset(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 1]), 2)
    assert d[1][1].item() == 1 and len(d.subset([0, 2])) == 2
    with pytest.raises(ValueError):
        load("mnist")


def test_loader_reproducible_and_resumable() -> None:
    s = synthetic(50, num_classes=5, seed=0)
    a = TensorLoader(s.train, 8, shuffle=True, seed=11)
    b = TensorLoader(s.train, 8, shuffle=True, seed=11)
    ea0, ea1 = [y for _, y in a], [y for _, y in a]  # epochs 0, 1
    eb0 = [y for _, y in b]
    assert all(torch.equal(u, v) for u, v in zip(ea0, eb0))
    assert not all(torch.equal(u, v) for u, v in zip(ea0, ea1))  # a new order each epoch
    assert len(ea0) == len(a) == 4 and sum(len(y) for y in ea0) == 30
    # every sample once per epoch
    assert sorted(torch.cat(ea1).tolist()) == sorted(s.train.y.tolist())
    # set_epoch + mid-epoch start reproduce the tail of an epoch; iter_epoch leaves the counter alone
    b.set_epoch(1)
    tail = [y for _, y in b.iter_epoch(1, start=2)]
    assert all(torch.equal(u, v) for u, v in zip(ea1[2:], tail)) and b.epoch == 1
    c = TensorLoader(s.train, 8, shuffle=True, seed=12)
    assert not all(torch.equal(u, v) for u, v in zip(ea0, [y for _, y in c]))
    # drop_last and unshuffled order
    d = TensorLoader(s.train, 8, drop_last=True)
    assert len(d) == 3 and torch.equal(torch.cat([y for _, y in d]), s.train.y[:24])


def test_loaders_helper(dig: DataSplits) -> None:
    L = dig.loaders(100, eval_batch_size=500, seed=1)
    assert L.train.shuffle and not L.val.shuffle and not L.test.shuffle
    assert len(L.val) == 1 and len(L.train) == 11
    x, y = next(iter(L.test))
    assert torch.equal(x, dig.test.x) and torch.equal(y, dig.test.y)


def test_shipped_digits_equal_scikit_learn() -> None:
    # the command line's default data must not need scikit-learn; the shipped copy must be the same data
    from lidsplit.data.datasets import load_digits_arrays

    sk = pytest.importorskip("sklearn.datasets").load_digits()
    images, target = load_digits_arrays()
    assert images.dtype == np.float64 and target.dtype == np.int64
    np.testing.assert_array_equal(images, sk.images)
    np.testing.assert_array_equal(target, sk.target)
