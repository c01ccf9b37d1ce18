"""Step-based uniform single-path (SPOS) training with any loss, and the loss / batch helpers the
gradient-based search shares with it.

:func:`spos_train` is the first stage of TangleNAS's two-stage baselines (SPOS+RS, SPOS+ES): a fixed
number of steps, one architecture drawn per step inside ``sub``, any ``loss_fn`` (the language model's
token cross entropy too). It is :func:`lidsplit.train.train_subsupernet` over the steps as one epoch
(call that directly for checkpoints and resume).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.common.batch import logits_of
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train.distributed import DataParallel
from lidsplit.train.loop import train_subsupernet

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


class _Steps:
    """``steps`` batches of ``loader`` (cycled over its epochs, :func:`cycle_batches`) as one epoch."""

    def __init__(self, loader: Iterable, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator:
        return itertools.islice(cycle_batches(self.loader), start, self.steps)


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
    parallel: DataParallel | None = None,
) -> list[float]:
    """Uniform single-path training of ``model`` (in place) for ``steps`` steps: :func:`train_subsupernet`
    over ``steps`` batches of ``loader`` as one epoch (one architecture drawn per step inside ``sub``,
    default the whole space; cosine learning rate from ``lr`` to ``lr_min``; SGD without nesterov, or
    Adam); returns the per-step losses (of the global batch when data-parallel: ``parallel``, see
    :func:`train_subsupernet`)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    if steps == 0:
        return []
    sub = SubSupernet.full(search_space(model)) if sub is None else sub
    losses: list[float] = []
    train_subsupernet(model, sub, _Steps(loader, steps), epochs=1, optimizer=optimizer, lr=lr, lr_min=lr_min,
                      momentum=momentum, nesterov=False, weight_decay=weight_decay, grad_clip=grad_clip, seed=seed,
                      loss_fn=loss_fn, progress=False, on_step=lambda ev: losses.append(float(ev.loss)),
                      parallel=parallel)
    return losses
