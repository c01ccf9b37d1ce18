"""Checks shared by the tests of every built-in space."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lidsplit.supernet import Choice, SubSupernet, materialize, search_space, use_grouped, use_path, use_sum


def random_sub(space, g: torch.Generator, p: float = 0.5) -> SubSupernet:
    masks = []
    for e in space.edges:
        keep = [j for j in range(e.num_ops) if torch.rand((), generator=g).item() < p]
        if not keep:
            keep = [int(torch.randint(e.num_ops, (), generator=g))]
        masks.append(keep)
    return SubSupernet(space, masks)


def check_every_op_forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    """For each op index j: the path taking op j on every edge that has it (op 0 elsewhere) runs forward
    and backward, and every parameter of every op-j module gets a finite gradient."""
    space = search_space(model)
    names = sorted({n for e in space.edges for n in e.ops})
    chs = [m for m in model.modules() if isinstance(m, Choice)]
    for name in names:
        arch = tuple(e.ops.index(name) if name in e.ops else 0 for e in space.edges)
        model.zero_grad(set_to_none=True)
        with use_path(model, arch):
            y = model(x)
        assert torch.isfinite(y).all(), name
        y.square().mean().backward()
        for c in chs:
            if name not in c.op_names:
                continue
            for pn, p in c.ops[c.op_names.index(name)].named_parameters():
                assert p.grad is not None, f"{c.label}/{name}/{pn} got no gradient"
                assert torch.isfinite(p.grad).all(), f"{c.label}/{name}/{pn}"


def check_sum_equals_manual(model: nn.Module, x: torch.Tensor, sub: SubSupernet, max_choices: int = 1000) -> int:
    """Every Choice output under use_sum(sub) equals the explicit sum of its enabled ops on its input."""
    space = search_space(model)
    chs = [m for m in model.modules() if isinstance(m, Choice)][:max_choices]
    rec = []
    hooks = [c.register_forward_hook(lambda m, i, o: rec.append((m, i[0], o))) for c in chs]
    model.train()
    try:
        with use_sum(model, sub):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert len(rec) == len(chs)
    for c, inp, out in rec:
        enabled = sub.enabled(c.label)
        ref = None
        for j in enabled:
            y = c.ops[j](inp)
            ref = y if ref is None else ref + y
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=lambda m: f"{c.label}: {m}")
    return len(rec)


def check_grouped_equals_separate(model: nn.Module, subs, x: torch.Tensor, atol: float = 1e-4) -> None:
    g = len(subs)
    sep = copy.deepcopy(model)
    model.train()
    sep.train()
    with use_grouped(model, subs):
        y = model(x)
    y.square().sum().backward()
    parts = []
    for sub, xk in zip(subs, x.chunk(g)):
        with use_sum(sep, sub):
            yk = sep(xk)
        yk.square().sum().backward()
        parts.append(yk.detach())
    torch.testing.assert_close(y.detach(), torch.cat(parts), atol=atol, rtol=1e-4)
    ps = dict(sep.named_parameters())
    for n, p in model.named_parameters():
        q = ps[n]
        a = p.grad if p.grad is not None else torch.zeros_like(p)
        b = q.grad if q.grad is not None else torch.zeros_like(q)
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-3, msg=lambda m: f"grad {n}: {m}")
    bs = dict(sep.named_buffers())
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, bs[n], atol=atol, rtol=1e-4, msg=lambda m: f"buffer {n}: {m}")


def check_path_equals_materialized(model: nn.Module, x: torch.Tensor, arch) -> None:
    model.eval()  # running statistics: the copy and the supernet see the same state
    with torch.no_grad(), use_path(model, arch):
        y = model(x)
    fixed = materialize(model, arch).eval()
    assert not any(isinstance(m, Choice) for m in fixed.modules())
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), y)
    model.train()
    fixed.train()
    with use_path(model, arch):
        y = model(x)
    torch.testing.assert_close(fixed(x), y, atol=1e-5, rtol=1e-5)
    # and the singleton sub-supernet in sum mode is the same network
    with use_sum(model, SubSupernet.from_arch(search_space(model), arch)):
        torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-5)
