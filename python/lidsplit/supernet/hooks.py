"""Recording the outputs of chosen layers (for characterisation: LID per layer, etc.)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn


def _detach(v):
    if isinstance(v, Tensor):
        return v.detach()
    if isinstance(v, tuple):
        return tuple(_detach(x) for x in v)
    if isinstance(v, list):
        return [_detach(x) for x in v]
    if isinstance(v, dict):
        return {k: _detach(x) for k, x in v.items()}
    return v


@contextmanager
def record_outputs(modules: Sequence[nn.Module], detach: bool = True) -> Iterator[list]:
    """Collect the output of each of `modules` at every call, in forward (call) order, into the yielded
    list. With ``detach=True`` (default) the recorded tensors are detached, so they keep no autograd graph
    alive; with ``detach=False`` they are the live outputs (for losses on features). Hooks are removed on
    exit, even on error. A module listed twice is recorded once per call."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    out: list = []
    handles = []
    seen: set[int] = set()
    try:
        for m in modules:
            if not isinstance(m, nn.Module):
                raise TypeError(f"lidsplit: record_outputs expects nn.Modules, got {type(m).__name__}")
            if id(m) in seen:
                continue
            seen.add(id(m))
            if detach:
                handles.append(m.register_forward_hook(lambda _m, _i, o: out.append(_detach(o))))
            else:
                handles.append(m.register_forward_hook(lambda _m, _i, o: out.append(o)))
        yield out
    finally:
        for h in handles:
            h.remove()
