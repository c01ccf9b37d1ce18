"""Data for supernet training and evaluation, held in memory as normalised tensors.

- ``digits()`` (default, ships with lidsplit), ``cifar10()`` / ``cifar100()`` (local files only),
  ``synthetic()`` (seeded, for tests); ``load(name, **kw)`` picks one by name from ``DATASETS``.
- ``Dataset``: ``x`` (N, C, H, W) float32, ``y`` (N,) int64, ``num_classes``, ``in_channels``,
  ``image_size``. ``DataSplits``: fixed train / val / test ``Dataset`` s plus ``meta``.
- ``TensorLoader``: seeded, resumable batching; ``DataSplits.loaders(...) -> DataLoaders``.
- ``hard_digits()``: a harder, deterministic task of distorted digit copies (ground-truth tables).
- ``colour_digits()``: a second one, 3-channel digits under projective warps, colours and stripes.
- ``ground_truth(name) -> Table``: shipped standalone-training tables (``nb201_digits``, ``nb201_colour``).
- ``stdlib_text()``, ``CharCorpus``, ``LMBatches``: character-level text shipped with Python, for LMs.
"""

from lidsplit.common.errors import DataNotFoundError
from lidsplit.common.seeds import derive_seed  # re-exported here for one release
from lidsplit.data.core import (
    DataLoaders,
    DataSplits,
    Dataset,
    TensorLoader,
    stratified_split,
)
from lidsplit.data.datasets import (
    cifar10,
    cifar100,
    digits,
    find_cifar,
    synthetic,
)
from lidsplit.data.colour import colour_digits, colour_distort
from lidsplit.data.distorted import distort_digits, hard_digits
from lidsplit.data.registry import DATASETS, dataset_names, load, open_dataset
from lidsplit.data.text import CharCorpus, LMBatches, stdlib_text
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
    "DATASETS",
    "dataset_names",
    "open_dataset",
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
    "CharCorpus",
    "LMBatches",
    "stdlib_text",
]
