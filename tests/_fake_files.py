"""Tiny stand-ins for files and packages lidsplit reads but does not ship: CIFAR python batches and the
NAS-Bench-201 API (``nas_201_api``). Written by the tests, never downloaded."""

from __future__ import annotations

import pickle
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _batch(rng: np.random.Generator, n: int, keys: dict[bytes, list[int]]) -> dict[bytes, object]:
    d: dict[bytes, object] = {b"batch_label": b"tiny", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                              b"filenames": [b"x.png"] * n}
    d.update(keys)
    return d


def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        labels = [(i * per_batch + k) % 10 for k in range(per_batch)]
        with open(d / name, "wb") as f:
            pickle.dump(_batch(rng, per_batch, {b"labels": labels}), f)
    return d


def write_cifar100(root: Path, n: int = 8) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        fine = [int(v) for v in rng.integers(0, 100, n)]
        with open(d / name, "wb") as f:
            pickle.dump(_batch(rng, n, {b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine]}), f)
    return d


def fake_nas_201_api(arch_strings: Sequence[str], infos: Sequence[dict[str, float]], *,
                     expect: dict[str, Any] | None = None) -> types.SimpleNamespace:
    """A module standing in for ``nas_201_api`` (install with ``monkeypatch.setitem(sys.modules, ...)``):
    ``NASBench201API(path)`` lists ``arch_strings``; ``get_more_info(i, ...)`` returns ``infos[i]`` and
    checks its arguments against ``expect`` (``dataset``, ``hp``, ``is_random``)."""

    class NASBench201API:
        def __init__(self, path: str, verbose: bool = False) -> None:
            self.path = path

        def __len__(self) -> int:
            return len(arch_strings)

        def arch(self, i: int) -> str:
            return arch_strings[i]

        def get_more_info(self, i: int, dataset: str, hp: str = "12", is_random: bool = True) -> dict[str, float]:
            got = {"dataset": dataset, "hp": hp, "is_random": is_random}
            assert all(got[k] == v for k, v in (expect or {}).items()), (got, expect)
            return infos[i]

    return types.SimpleNamespace(NASBench201API=NASBench201API)
