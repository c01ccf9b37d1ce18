"""The common data description (``Dataset``, ``DataSplits``) and a fast, seeded tensor loader.

Every dataset lidsplit loads is held in memory as tensors:

- ``x``: ``(N, C, H, W)`` float32, already normalised;
- ``y``: ``(N,)`` int64 class indices in ``[0, num_classes)``.

``DataSplits`` holds a fixed train / validation / test split of one dataset. ``TensorLoader`` yields
mini-batches by indexing those tensors (no per-sample collate). Its order is a pure function of
``(seed, epoch)``, so a run can be resumed mid-way and still see exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset as _TorchDataset

from lidsplit.common.seeds import derive_seed  # re-exported here for one release

__all__ = [
    "Dataset",
    "DataSplits",
    "TensorLoader",
    "DataLoaders",
    "stratified_split",
    "derive_seed",
]


@dataclass(frozen=True, eq=False)
class Dataset(_TorchDataset):
    """Images ``x`` (N, C, H, W) float32 and labels ``y`` (N,) int64 of a ``num_classes``-way task.

    Also a ``torch.utils.data.Dataset`` (``ds[i] -> (x[i], y[i])``), so it works with a plain
    ``DataLoader`` too; ``TensorLoader`` is the faster way to batch it.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    name: str = ""

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"Dataset.x must be a 4-D tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        if x.dtype != torch.float32:
            raise ValueError(f"Dataset.x must be float32, got {x.dtype}")
        if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype != torch.int64:
            raise ValueError(f"Dataset.y must be a 1-D int64 tensor, got {getattr(y, 'dtype', type(y))} "
                             f"{tuple(getattr(y, 'shape', ()))}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"Dataset: {x.shape[0]} images but {y.shape[0]} labels")
        if self.num_classes < 1:
            raise ValueError(f"Dataset.num_classes must be >= 1, got {self.num_classes}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"Dataset.y holds labels outside [0, {self.num_classes})")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return self.x[i], self.y[i]

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x.shape[2]), int(self.x.shape[3])

    def subset(self, index: Tensor | Sequence[int]) -> Dataset:
        index = torch.as_tensor(index, dtype=torch.int64)
        return Dataset(self.x[index], self.y[index], self.num_classes, self.name)

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.x.to(device), self.y.to(device), self.num_classes, self.name)

    def __repr__(self) -> str:
        return (f"Dataset({self.name or '?'}: {len(self)} x {tuple(self.x.shape[1:])}, "
                f"{self.num_classes} classes)")


@dataclass(frozen=True, eq=False)
class DataSplits:
    """A fixed train / validation / test split of one dataset.

    ``meta`` records how the split was made (source, seed, proportions, normalisation constants);
    it is JSON-serialisable.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if len({(d.num_classes, tuple(d.x.shape[1:])) for d in parts}) != 1:
            raise ValueError("DataSplits: train/val/test disagree on num_classes or image shape")

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.image_size

    def loaders(
        self,
        batch_size: int = 64,
        *,
        eval_batch_size: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> DataLoaders:
        """Train (shuffled, order a function of ``seed`` and the epoch) / val / test (fixed order)."""
        eb = eval_batch_size or batch_size
        return DataLoaders(
            train=TensorLoader(self.train, batch_size, shuffle=True, seed=seed, drop_last=drop_last, device=device),
            val=TensorLoader(self.val, eb, shuffle=False, device=device),
            test=TensorLoader(self.test, eb, shuffle=False, device=device),
        )

    def __repr__(self) -> str:
        return (f"DataSplits({self.name or '?'}: train {len(self.train)}, val {len(self.val)}, "
                f"test {len(self.test)}; {self.in_channels}x{self.image_size[0]}x{self.image_size[1]}, "
                f"{self.num_classes} classes)")


class TensorLoader:
    """Mini-batches ``(x, y)`` of a ``Dataset``, by tensor indexing.

    With ``shuffle=True`` the order of epoch ``e`` is the permutation drawn by a ``torch.Generator``
    seeded with ``derive_seed(seed, e)``: reproducible, independent of earlier epochs, and cheap to
    resume mid-epoch (``iter_epoch(e, start=b)``). ``iter(loader)`` uses an internal epoch counter
    that starts at 0 and advances by one per ``iter`` call; ``set_epoch(e)`` sets it (the training loop
    calls it every epoch). ``iter_epoch`` never touches the counter.

    ``device``: if given, the whole dataset is moved there once and batches are sliced from it.
    """

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = data if device is None else data.to(device)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> Tensor:
        """The sample order of ``epoch`` (a CPU int64 permutation, or ``arange`` without shuffle)."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(derive_seed("TensorLoader", self.seed, int(epoch)))
        return torch.randperm(n, generator=g)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch``, from batch index ``start`` on."""
        order = self.order(epoch)
        x, y = self.dataset.x, self.dataset.y
        if x.device.type != "cpu":
            order = order.to(x.device)
        bs = self.batch_size
        for b in range(int(start), len(self)):
            idx = order[b * bs:(b + 1) * bs]
            yield x[idx], y[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self.iter_epoch(epoch)

    def __repr__(self) -> str:
        return (f"TensorLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")


@dataclass
class DataLoaders:
    """The train / val / test loaders of a ``DataSplits`` (see ``DataSplits.loaders``)."""

    train: TensorLoader
    val: TensorLoader
    test: TensorLoader


def stratified_split(y: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Split sample indices into ``len(fractions)`` parts, per class, in the given proportions.

    Within each class the indices are permuted by a generator seeded from ``seed`` and cut at the
    rounded cumulative proportions, so every part holds about the same class balance. Each part is
    returned sorted (ascending indices); the parts are disjoint and cover every sample.
    ``fractions`` must be non-negative and sum to 1.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    y = torch.as_tensor(y, dtype=torch.int64).cpu()
    g = torch.Generator().manual_seed(derive_seed("stratified_split", int(seed)))
    parts: list[list[Tensor]] = [[] for _ in fr]
    cum = [sum(fr[: i + 1]) for i in range(len(fr))]
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c, as_tuple=False).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n = idx.numel()
        bounds = [0] + [int(math.floor(cf * n + 0.5)) for cf in cum]
        bounds[-1] = n
        for i in range(len(fr)):
            parts[i].append(idx[bounds[i]:bounds[i + 1]])
    return [torch.sort(torch.cat(p)).values if p else torch.zeros(0, dtype=torch.int64) for p in parts]


def channel_stats(x: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of ``x`` (N, C, H, W), in float64."""
    if x.shape[0] == 0:
        return [0.0] * x.shape[1], [1.0] * x.shape[1]
    xd = x.double()
    mean = xd.mean(dim=(0, 2, 3))
    std = xd.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-12)
    return mean.tolist(), std.tolist()


def normalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((x.double() - m) / s).float().contiguous()
