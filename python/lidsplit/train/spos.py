"""Step-based uniform single-path (SPOS) training with any loss, and the loss / batch helpers the
gradient-based search shares with it.

:func:`spos_train` is the first stage of TangleNAS's two-stage baselines (SPOS+RS, SPOS+ES): a fixed
number of steps, one architecture drawn per step inside ``sub``, any ``loss_fn`` (the language model's
token cross entropy too). Classification supernets that want checkpoints and resume use
:func:`lidsplit.train.train_subsupernet` (epoch-based, cross entropy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.supernet import SubSupernet, search_space, use_path
from lidsplit.train._util import logits_of, model_device, unpack_batch

__all__ = ["LossFn", "classification_loss", "cycle_batches", "spos_train"]

#: ``loss_fn(model output, targets) -> scalar loss``
LossFn = Callable[[Any, Tensor], Tensor]


def classification_loss(out: Any, y: Tensor) -> Tensor:
    """Cross entropy of the logits of ``out`` (a tensor, or a tuple whose first element is the logits)."""
    return F.cross_entropy(logits_of(out), y)


def cycle_batches(loader: Iterable) -> Iterator:
    """The batches of ``loader`` epoch after epoch, forever (``iter_epoch(e)`` when the loader has it,
    so a seeded loader gives the same sequence every time); ValueError if an epoch is empty."""
    epoch = 0
    while True:
        it = loader.iter_epoch(epoch) if hasattr(loader, "iter_epoch") else iter(loader)
        empty = True
        for b in it:
            empty = False
            yield b
        if empty:
            raise ValueError("lidsplit: a loader yielded no batches")
        epoch += 1


def spos_train(
    model: nn.Module,
    loader: Iterable,
    steps: int,
    *,
    sub: SubSupernet | None = None,
    loss_fn: LossFn = classification_loss,
    optimizer: str = "sgd",
    lr: float = 0.025,
    lr_min: float = 0.001,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    grad_clip: float | None = 5.0,
    seed: int = 0,
) -> list[float]:
    """Uniform single-path training of ``model`` (in place) for ``steps`` steps (one architecture drawn
    per step inside ``sub``, default the whole space; cosine learning rate from ``lr`` to ``lr_min``);
    returns the per-step losses."""
    space = search_space(model)
    sub = SubSupernet.full(space) if sub is None else sub
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    device = model_device(model)
    it = cycle_batches(loader)
    losses = []
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        x, y = unpack_batch(next(it), device)
        arch = sub.sample(gen)
        with use_path(model, arch):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses
