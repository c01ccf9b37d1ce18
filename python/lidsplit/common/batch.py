"""Model and batch helpers shared by training, splitting, search and reports."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["model_device", "unpack_batch", "logits_of"]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (else first buffer; CPU for a stateless model)."""
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
