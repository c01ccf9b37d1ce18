"""Data for supernet training and evaluation, held in memory as normalised tensors.

- ``digits()`` (default, ships with scikit-learn), ``cifar10()`` / ``cifar100()`` (local files only),
  ``synthetic()`` (seeded, for tests); ``load(name, **kw)`` picks one by name.
- ``Dataset``: ``x`` (N, C, H, W) float32, ``y`` (N,) int64, ``num_classes``, ``in_channels``,
  ``image_size``. ``DataSplits``: fixed train / val / test ``Dataset`` s plus ``meta``.
- ``TensorLoader``: seeded, resumable batching; ``DataSplits.loaders(...) -> DataLoaders``.
"""

from lidsplit.data.core import (
    DataLoaders,
    DataSplits,
    Dataset,
    TensorLoader,
    derive_seed,
    stratified_split,
)
from lidsplit.data.datasets import (
    DataNotFoundError,
    cifar10,
    cifar100,
    digits,
    find_cifar,
    load,
    synthetic,
)

__all__ = [
    "Dataset",
    "DataSplits",
    "TensorLoader",
    "DataLoaders",
    "stratified_split",
    "derive_seed",
    "digits",
    "cifar10",
    "cifar100",
    "synthetic",
    "load",
    "find_cifar",
    "DataNotFoundError",
]
