"""CIFAR-10/100 from local python-pickle batches: tiny files written here, never a download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _fake_files import write_cifar10, write_cifar100

from lidsplit.data import DataNotFoundError, cifar10, cifar100, find_cifar, load

ENV = ("LIDSPLIT_CIFAR10", "LIDSPLIT_CIFAR100", "LIDSPLIT_DATA")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ENV:
        monkeypatch.delenv(k, raising=False)


def test_cifar10_tiny_file(tmp_path: Path) -> None:
    d = write_cifar10(tmp_path)
    s = cifar10(d, val_fraction=0.5)
    assert (s.num_classes, s.in_channels, s.image_size) == (10, 3, (32, 32))
    assert len(s.train) + len(s.val) == 20 and len(s.test) == 4
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    # the pixels survive the (N, 3072) -> (N, 3, 32, 32) layout: channel-major planes
    with open(d / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    m, sd = torch.tensor(s.meta["mean"]), torch.tensor(s.meta["std"])
    back = (s.test.x * sd.view(1, 3, 1, 1) + m.view(1, 3, 1, 1)) * 255.0
    ref = torch.from_numpy(raw[b"data"].reshape(-1, 3, 32, 32).astype(np.float32))
    assert torch.allclose(back, ref, atol=1e-3)
    assert s.test.y.tolist() == raw[b"labels"]
    # parent directory works too, and the split is seeded
    s2 = cifar10(tmp_path, val_fraction=0.5)
    assert torch.equal(s.train.x, s2.train.x)
    assert len(cifar10(d, val_fraction=0.0).val) == 0


def test_cifar100_tiny_file(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    s = cifar100(tmp_path, val_fraction=0.25)
    assert s.num_classes == 100 and len(s.test) == 8
    c = cifar100(tmp_path, label="coarse")
    assert c.num_classes == 20 and int(c.test.y.max()) < 20


def test_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_cifar10(tmp_path / "a")
    monkeypatch.setenv("LIDSPLIT_CIFAR10", str(d))
    assert find_cifar("cifar10") == d
    assert len(load("cifar10").test) == 4
    monkeypatch.delenv("LIDSPLIT_CIFAR10")
    monkeypatch.setenv("LIDSPLIT_DATA", str(tmp_path / "a"))
    assert find_cifar("cifar10") == d
    write_cifar100(tmp_path / "a")
    assert len(cifar100().test) == 8
    # the explicit argument wins over the environment
    d2 = write_cifar10(tmp_path / "b")
    assert find_cifar("cifar10", tmp_path / "b") == d2


def test_missing_path_error_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataNotFoundError) as e:
        cifar10()
    msg = str(e.value)
    for needle in ("data_batch_1", "test_batch", "cifar-10-batches-py", "LIDSPLIT_CIFAR10", "LIDSPLIT_DATA",
                   "path argument", "never downloads"):
        assert needle in msg, needle
    with pytest.raises(DataNotFoundError, match="'fine_labels'|train, test"):
        cifar100(tmp_path)
    # a given but wrong location is an error, not a silent fallback to another one
    write_cifar10(tmp_path / "ok")
    monkeypatch.setenv("LIDSPLIT_DATA", str(tmp_path / "ok"))
    monkeypatch.setenv("LIDSPLIT_CIFAR10", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="LIDSPLIT_CIFAR10"):
        cifar10()
    # an incomplete directory names what is missing
    (tmp_path / "ok" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        cifar10(tmp_path / "ok" / "cifar-10-batches-py")


def test_refuses_foreign_pickles(tmp_path: Path) -> None:
    d = write_cifar10(tmp_path)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": pickle.PicklingError}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cifar10(d)
