"""Data for supernet training and evaluation, held in memory as normalised tensors.

- ``digits()`` (default, ships with lidsplit), ``cifar10()`` / ``cifar100()`` (local files only),
  ``synthetic()`` (seeded, for tests); ``load(name, **kw)`` picks one by name.
- ``Dataset``: ``x`` (N, C, H, W) float32, ``y`` (N,) int64, ``num_classes``, ``in_channels``,
  ``image_size``. ``DataSplits``: fixed train / val / test ``Dataset`` s plus ``meta``.
- ``TensorLoader``: seeded, resumable batching; ``DataSplits.loaders(...) -> DataLoaders``.
- ``hard_digits()``: a harder, deterministic task of distorted digit copies (ground-truth tables).
- ``colour_digits()``: a second one, 3-channel digits under projective warps, colours and stripes.
- ``ground_truth(name) -> Table``: shipped standalone-training tables (``nb201_digits``, ``nb201_colour``).
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
from lidsplit.data.colour import colour_digits, colour_distort
from lidsplit.data.distorted import distort_digits, hard_digits
from lidsplit.data.truth import TABLES, Table, TableEntry, ground_truth

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
    "hard_digits",
    "distort_digits",
    "colour_digits",
    "colour_distort",
    "ground_truth",
    "Table",
    "TableEntry",
    "TABLES",
]
