"""Small helpers of the training package: progress bars, atomic saves, batches, logits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn


class _NoBar:
    """Stands in for a tqdm bar when progress is off or tqdm is not installed."""

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self._it = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._it if self._it is not None else ())

    def set_postfix(self, *_a: Any, **_k: Any) -> None:
        pass

    def update(self, *_a: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (tqdm is optional: without it, or with ``enabled=False``, none)."""
    if not enabled:
        return _NoBar(iterable)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        return _NoBar(iterable)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def unpack_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a batch (a pair/list, or a mapping with 'x'/'y' or 'image'/'label'), on ``device``."""
    if isinstance(batch, dict):
        x = batch.get("x", batch.get("image"))
        y = batch.get("y", batch.get("label"))
    else:
        x, y = batch[0], batch[1]
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def logits_of(out: Any) -> Tensor:
    """The logits of a model output: the tensor itself, the last element of a tuple/list (NB201-style
    ``(features, logits)``), or ``out['logits']``."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[-1], Tensor):
        return out[-1]
    if isinstance(out, dict) and isinstance(out.get("logits"), Tensor):
        return out["logits"]
    raise TypeError(f"cannot find the logits in a model output of type {type(out).__name__}")
