"""The datasets by name: one registry that ``load`` and the pipeline's ``data.name`` choices read.

To add a dataset: write a function returning :class:`~lidsplit.data.core.DataSplits` that takes ``seed``
(and ``path`` when it reads local files) as keywords, and add it to :data:`DATASETS`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from lidsplit.data.core import DataSplits
from lidsplit.data.datasets import cifar10, cifar100, digits, synthetic
from lidsplit.data.distorted import hard_digits

__all__ = ["DATASETS", "dataset_names", "load", "open_dataset"]

#: Dataset builders by name (``digits`` ships with lidsplit; ``cifar*`` read local files).
DATASETS: dict[str, Callable[..., DataSplits]] = {
    "digits": digits, "hard_digits": hard_digits, "cifar10": cifar10, "cifar100": cifar100, "synthetic": synthetic,
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def dataset_names() -> tuple[str, ...]:
    return tuple(DATASETS)


def _builder(name: str) -> Callable[..., DataSplits]:
    fns = {_key(k): fn for k, fn in DATASETS.items()}
    key = _key(name) if isinstance(name, str) else ""
    if key not in fns:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return fns[key]


def load(name: str, **kwargs: Any) -> DataSplits:
    """``load('digits' | 'hard_digits' | 'cifar10' | 'cifar100' | 'synthetic', **kwargs)``."""
    return _builder(name)(**kwargs)


def open_dataset(name: str, *, seed: int = 0, path: str | os.PathLike[str] | None = None) -> DataSplits:
    """Dataset ``name`` split with ``seed``; ``path`` goes to the datasets that read local files."""
    fn = _builder(name)
    return fn(path=path, seed=seed) if "path" in inspect.signature(fn).parameters else fn(seed=seed)
