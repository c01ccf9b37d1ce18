"""Evaluate one architecture with a (sub-)supernet's shared weights.

BatchNorm running statistics of a weight-sharing supernet are a blend over all the paths trained; before
evaluating one architecture they are recalibrated for it (default): every tracking BatchNorm is reset,
its ``momentum`` set to ``None`` (cumulative average) and ``calib_batches`` training batches are run
through the architecture's path under ``no_grad`` with the BatchNorms in train mode (every other module
in eval mode, so e.g. dropout does not disturb the statistics). The model is then evaluated in eval
mode. Afterwards every buffer, ``momentum`` and train/eval flag is restored: the model's state after
``evaluate_arch`` equals its state before, and no architecture's statistics leak into the next.

Calibration batches are the same for every architecture and every call: with a ``TensorLoader`` the
first ``calib_batches`` batches of its epoch ``calib_epoch`` (its epoch counter is not touched); with a
torch ``DataLoader`` holding a ``generator``, its generator state is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.supernet import search_space, use_path
from lidsplit.train._util import logits_of, model_device, progress_bar, unpack_batch

__all__ = ["EvalResult", "evaluate_arch", "evaluate_archs", "preserved_state", "recalibrate_bn"]


@dataclass(frozen=True)
class EvalResult:
    arch: tuple[int, ...]
    accuracy: float  # fraction in [0, 1]
    loss: float  # mean cross-entropy
    n: int  # samples evaluated


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every buffer (in place), BatchNorm ``momentum`` and module train/eval flag on exit."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in model.modules() if isinstance(m, _BatchNorm)]
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, t in modes:
            m.training = t
        for m, mom in momenta:
            m.momentum = mom


def _calibration_batches(loader: Any, n: int, epoch: int) -> Iterator[Any]:
    if hasattr(loader, "iter_epoch"):
        it: Iterable[Any] = loader.iter_epoch(epoch)
        for i, b in enumerate(it):
            if i >= n:
                return
            yield b
        return
    gen = getattr(loader, "generator", None)
    state = gen.get_state() if isinstance(gen, torch.Generator) else None
    try:
        for i, b in enumerate(loader):
            if i >= n:
                return
            yield b
    finally:
        if state is not None:
            gen.set_state(state)


def recalibrate_bn(model: nn.Module, arch: Sequence[int], loader: Any, batches: int = 10, *, epoch: int = 0) -> int:
    """Reset the tracking BatchNorms and re-estimate their statistics on ``arch``'s path (cumulative
    average over ``batches`` batches of ``loader``). Modifies the model (use ``preserved_state`` around
    it to undo). Leaves the model in eval mode. Returns the number of batches used."""
    device = model_device(model)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
           and m.running_mean is not None]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.train()
    used = 0
    with torch.no_grad(), use_path(model, arch):
        for raw in _calibration_batches(loader, batches, epoch):
            x, _ = unpack_batch(raw, device)
            model(x)
            used += 1
    model.eval()
    return used


def evaluate_arch(
    model: nn.Module,
    arch: Sequence[int | str],
    loader: Any,
    *,
    split: str = "val",
    calib_loader: Any = None,
    calib_batches: int = 10,
    calib_epoch: int = 0,
    recalibrate: bool = True,
    max_batches: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Accuracy and loss of ``arch`` with the model's shared weights; the model's state is unchanged.

    loader: a ``DataLoaders`` (evaluates its ``split``, 'val' or 'test', and calibrates on its
        ``train`` loader unless ``calib_loader`` is given) or any iterable of ``(x, y)`` batches (then
        ``calib_loader`` is required when recalibrating).
    recalibrate: re-estimate BatchNorm statistics for ``arch`` first (see the module doc).
    max_batches: evaluate only the first ``max_batches`` batches.
    """
    if hasattr(loader, "train") and hasattr(loader, split):
        calib_loader = loader.train if calib_loader is None else calib_loader
        loader = getattr(loader, split)
    if recalibrate and calib_loader is None:
        raise ValueError("evaluate_arch: recalibrate=True needs calib_loader (training batches), or pass a "
                         "DataLoaders, or recalibrate=False")
    device = model_device(model)
    total_loss, correct, n = 0.0, 0, 0
    with preserved_state(model):
        a = search_space(model).validate_arch(arch)
        if recalibrate:
            recalibrate_bn(model, a, calib_loader, calib_batches, epoch=calib_epoch)
        model.eval()
        try:
            total = len(loader) if max_batches is None else min(len(loader), max_batches)
        except TypeError:
            total = max_batches
        bar = progress_bar(loader, enabled=progress, desc="eval", total=total)
        with torch.no_grad(), use_path(model, a):
            for i, raw in enumerate(bar):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = unpack_batch(raw, device)
                logits = logits_of(model(x))
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                n += int(y.shape[0])
        bar.close()
    return EvalResult(a, correct / n if n else float("nan"), total_loss / n if n else float("nan"), n)


def evaluate_archs(
    model: nn.Module, archs: Iterable[Sequence[int | str]], loader: Any, *, progress: bool = True, **kwargs: Any
) -> list[EvalResult]:
    """``evaluate_arch`` for each architecture (same calibration batches for all), with a progress bar."""
    archs = list(archs)
    bar = progress_bar(archs, enabled=progress, desc="architectures")
    return [evaluate_arch(model, a, loader, **kwargs) for a in bar]
