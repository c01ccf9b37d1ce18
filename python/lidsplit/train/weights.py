"""The weights a child sub-supernet starts from: its parent's (inherit) or fresh ones (restart).

GM-NAS lets children inherit their parent's trained weights during the splitting phase and re-initialises
("restarts") the leaves after the final split, so that the weight sharing of the splitting phase does not
carry over into the search.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from lidsplit.train._util import model_device

__all__ = ["child_weights", "reinitialize"]


def reinitialize(model: nn.Module, *, seed: int | None = None,
                 init_fn: Callable[[nn.Module], None] | None = None) -> nn.Module:
    """Re-initialise ``model`` in place, reproducibly when ``seed`` is given (the global RNG is left as it
    was: the draws happen inside ``torch.random.fork_rng``).

    With ``init_fn`` it is called on the model. Otherwise, if the model itself defines
    ``reset_parameters()`` that is called (the model's own full initialisation); else every sub-module's
    ``reset_parameters()`` is called (conv, linear, BatchNorm (also resets its running statistics), ...)
    and a module holding parameters of its own without ``reset_parameters`` is an error (pass ``init_fn``).
    """
    dev = model_device(model)
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            if init_fn is not None:
                init_fn(model)
            elif callable(getattr(model, "reset_parameters", None)):
                model.reset_parameters()
            else:
                bad = [name or "<model>" for name, m in model.named_modules()
                       if any(True for _ in m.parameters(recurse=False))
                       and not callable(getattr(m, "reset_parameters", None))]
                if bad:
                    raise ValueError(
                        f"cannot re-initialise: module(s) {bad[:5]} hold parameters but have no reset_parameters(); "
                        "pass init_fn=callable(model)"
                    )
                for m in model.modules():
                    if m is not model and callable(getattr(m, "reset_parameters", None)):
                        m.reset_parameters()
    return model


def child_weights(
    parent_model: nn.Module,
    mode: str = "inherit",
    *,
    seed: int | None = None,
    init_fn: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """A new model for a child sub-supernet: a deep copy of ``parent_model`` (same device, same
    parameter values and buffers) with ``mode='inherit'``, or the copy re-initialised
    (``reinitialize(copy, seed=seed, init_fn=init_fn)``) with ``mode='restart'``. The parent is never
    modified, and children never share tensors with it or with each other."""
    if mode not in ("inherit", "restart"):
        raise ValueError(f"child_weights: mode must be 'inherit' or 'restart', got {mode!r}")
    child = copy.deepcopy(parent_model)
    if mode == "restart":
        reinitialize(child, seed=seed, init_fn=init_fn)
    return child
