"""Group-aware BatchNorm: in a grouped forward (``use_grouped`` with G sub-supernets) batch statistics
are computed per contiguous group of the batch, so one grouped call equals G separate calls.

Outside a grouped mode these are plain ``nn.BatchNorm{1,2,3}d`` (same state dict, same fast path).
Running statistics in grouped mode are updated group by group, in group order, and only with the groups
in which the enclosing op is enabled: exactly the updates G separate ``use_sum`` calls would make.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.supernet import _state


class _GroupAware:
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        g = _state.groups_for(self)
        if g == 1:
            return super().forward(x)  # type: ignore[misc]
        self._check_input_dim(x)  # type: ignore[attr-defined]
        batch_stats = self.training or self.running_mean is None  # type: ignore[attr-defined]
        if not batch_stats:  # running statistics: per sample, groups do not matter
            return super().forward(x)  # type: ignore[misc]
        if x.shape[0] % g:
            raise ValueError(
                f"lidsplit: BatchNorm in grouped mode: batch of {x.shape[0]} not divisible into {g} groups"
            )
        return _grouped_bn(self, x, g)  # type: ignore[arg-type]


def _grouped_bn(bn: _BatchNorm, x: Tensor, g: int) -> Tensor:
    b, c = x.shape[0] // g, x.shape[1]
    xs = x.reshape(g, b, *x.shape[1:])
    work = xs.float() if xs.dtype in (torch.float16, torch.bfloat16) else xs
    dims = (1, *range(3, xs.dim()))
    var, mean = torch.var_mean(work, dim=dims, correction=0, keepdim=True)
    if b * work[0, 0, 0].numel() <= 1 and bn.training:
        raise ValueError(f"lidsplit: BatchNorm in grouped mode: expected more than 1 value per channel per group, got input {tuple(x.shape)} in {g} groups")
    y = (work - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        view = (1, 1, c) + (1,) * (xs.dim() - 3)
        y = y * bn.weight.view(view) + bn.bias.view(view)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        active = _state.ACTIVE_GROUPS.get()
        n = b * work[0, 0, 0].numel()
        with torch.no_grad():
            m_all = mean.reshape(g, c)
            v_all = var.reshape(g, c) * (n / max(n - 1, 1))
            for i in range(g):
                if active is not None and not active[i]:
                    continue
                bn.num_batches_tracked.add_(1)
                mom = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - mom).add_(m_all[i].to(bn.running_mean.dtype), alpha=mom)
                bn.running_var.mul_(1 - mom).add_(v_all[i].to(bn.running_var.dtype), alpha=mom)
    return y.to(x.dtype).reshape(x.shape)


class BatchNorm1d(_GroupAware, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with per-group statistics in grouped mode."""


class BatchNorm2d(_GroupAware, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with per-group statistics in grouped mode."""


class BatchNorm3d(_GroupAware, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` with per-group statistics in grouped mode."""


_SWAP = {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.BatchNorm3d: BatchNorm3d}


def is_group_aware(m: nn.Module) -> bool:
    return isinstance(m, _GroupAware)


def convert_batchnorm(model: nn.Module) -> nn.Module:
    """Replace (in place) every plain ``nn.BatchNorm{1,2,3}d`` of `model` by its group-aware subclass,
    keeping parameters, buffers, hooks and mode (a module shared in several places stays shared).
    Returns `model`, or its replacement if `model` is itself such a BatchNorm."""
    memo: dict[int, tuple[nn.Module, nn.Module]] = {}  # id(old) -> (old kept alive, new)

    def swap(m: nn.Module) -> nn.Module:
        cls = _SWAP.get(type(m))
        if cls is None:
            return m
        if id(m) not in memo:
            new = cls.__new__(cls)
            new.__dict__ = m.__dict__
            memo[id(m)] = (m, new)
        return memo[id(m)][1]

    def walk(m: nn.Module) -> None:
        for name, child in list(m.named_children()):
            new = swap(child)
            if new is not child:
                setattr(m, name, new)
            else:
                walk(child)

    walk(model)
    return swap(model)
