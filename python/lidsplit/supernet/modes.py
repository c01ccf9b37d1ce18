"""Forward modes of a supernet, as context managers.

Each context builds a frame for the Choice modules (and group-aware BatchNorms) of the model it is given,
pushes it on a per-thread stack and removes it in ``finally``: nothing is written on the modules, modes
nest (the innermost frame governing a module wins, so ``use_path(model.cells[3], ...)`` inside
``use_sum(model)`` overrides that cell only), an exception inside the block restores the previous mode,
and another thread never sees the frame.

Modes:
  use_path(model, arch)                       single path: op ``arch[e]`` on every Choice of edge e
  use_sampled_path(model, sub, generator)     single path drawn uniformly inside `sub`, one per forward
  use_sum(model, sub=None)                    sum of the enabled ops' outputs (NAS-LID eq. 4)
  use_weighted(model, weights, softmax, sub)  DARTS-style mixture with architecture weights
  use_grouped(model, subs)                    G sub-supernets in one pass over a batch of G groups
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.supernet import _state
from lidsplit.supernet.batchnorm import is_group_aware
from lidsplit.supernet.choice import Choice, Mixture, group_choices
from lidsplit.supernet.space import Arch, SearchSpace, SubSupernet

# ---- plans: what every Choice of one edge does ---------------------------------------------------


class _PathPlan:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def run(self, choice: Choice, inputs: tuple, kwargs: dict):
        return choice.run_op(self.index, *inputs, **kwargs)


class _SampledPlan:
    __slots__ = ("handle", "edge")

    def __init__(self, handle: SampledPath, edge: int):
        self.handle, self.edge = handle, edge

    def run(self, choice: Choice, inputs: tuple, kwargs: dict):
        return choice.run_op(self.handle._use()[self.edge], *inputs, **kwargs)


def _first_tensor(inputs: tuple, kwargs: dict) -> Tensor:
    for v in (*inputs, *kwargs.values()):
        if isinstance(v, Tensor):
            return v
    raise TypeError("lidsplit: a mixing Choice needs at least one tensor input")


class _StaticPlan:
    """sum and grouped modes: exact 0/1 weights known in advance, cached per (device, dtype)."""

    __slots__ = ("rows", "active", "kind", "groups", "_cache")

    def __init__(self, rows: tuple[tuple[float, ...], ...], active: tuple[int, ...], kind: str, groups):
        self.rows, self.active, self.kind, self.groups = rows, active, kind, groups
        self._cache: dict = {}

    def run(self, choice: Choice, inputs: tuple, kwargs: dict):
        x = _first_tensor(inputs, kwargs)
        key = (x.device, x.dtype)
        w = self._cache.get(key)
        if w is None:
            w = torch.tensor(self.rows, dtype=x.dtype, device=x.device)
            if self.groups is None:
                w = w[0]
            self._cache[key] = w
        return choice.mix(Mixture(w, self.active, self.kind, self.groups), *inputs, **kwargs)


class _WeightedPlan:
    __slots__ = ("source", "label", "softmax", "mask", "active", "_disabled")

    def __init__(self, source, label: str, softmax: bool, mask: tuple[bool, ...]):
        self.source, self.label, self.softmax, self.mask = source, label, softmax, mask
        self.active = tuple(j for j, m in enumerate(mask) if m)
        self._disabled: dict = {}  # device -> bool tensor of the disabled ops

    def run(self, choice: Choice, inputs: tuple, kwargs: dict):
        x = _first_tensor(inputs, kwargs)
        a = self.source()
        if a.shape != (len(self.mask),):
            raise ValueError(
                f"lidsplit: architecture weights of edge {self.label!r} have shape {tuple(a.shape)}, "
                f"expected ({len(self.mask)},)"
            )
        a = a.to(device=x.device)
        if not all(self.mask):
            off = self._disabled.get(x.device)
            if off is None:
                off = self._disabled[x.device] = torch.tensor([not m for m in self.mask], device=x.device)
            a = a.masked_fill(off, float("-inf")) if self.softmax else a.masked_fill(off, 0.0)
        w = torch.softmax(a, dim=-1) if self.softmax else a
        return choice.mix(Mixture(w.to(x.dtype), self.active, "weighted"), *inputs, **kwargs)


# ---- frames ---------------------------------------------------------------------------------------


def _discover(model: nn.Module) -> tuple[SearchSpace, list[list[Choice]], list[nn.Module]]:
    """One walk over the model: its space, its Choices per edge, its group-aware BatchNorms."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"lidsplit: expected an nn.Module, got {type(model).__name__}")
    named, bns = [], []
    for name, m in model.named_modules():
        if isinstance(m, Choice):
            named.append((name, m))
        elif is_group_aware(m):
            bns.append(m)
    chs = group_choices(named)
    if not chs:
        raise ValueError(f"lidsplit: {type(model).__name__} holds no Choice module; it is not a supernet")
    return SearchSpace(tuple(v[0].edge for v in chs.values())), list(chs.values()), bns


def _frame(found, plan_for_edge, groups: int = 1) -> _state.Frame:
    _, per_edge, bns = found
    frame = _state.Frame()
    for e, mods in enumerate(per_edge):
        plan = plan_for_edge(e)
        for m in mods:
            frame.plans[id(m)] = plan
            frame.keep.append(m)
    for m in bns:
        frame.bn_groups[id(m)] = groups
        frame.keep.append(m)
    return frame


def _check_sub(sub: SubSupernet, space: SearchSpace, what: str = "sub") -> SubSupernet:
    if not isinstance(sub, SubSupernet):
        raise TypeError(f"lidsplit: '{what}' must be a SubSupernet, got {type(sub).__name__}")
    if sub.space != space:
        raise ValueError(
            f"lidsplit: '{what}' belongs to a different search space ({sub.space!r}) than the model ({space!r})"
        )
    return sub


@contextmanager
def _active(frame: _state.Frame) -> Iterator[None]:
    _state.push(frame)
    try:
        yield
    finally:
        _state.pop(frame)


# ---- public context managers ---------------------------------------------------------------------


@contextmanager
def use_path(model: nn.Module, arch: Sequence[int | str]) -> Iterator[Arch]:
    """Single path: every Choice of edge e runs op ``arch[e]`` (index or op name). Yields the arch."""
    found = _discover(model)
    arch = found[0].validate_arch(arch)
    frame = _frame(found, lambda e: _PathPlan(arch[e]))
    with _active(frame):
        yield arch


class SampledPath:
    """Handle yielded by :func:`use_sampled_path`.

    One architecture is drawn per forward call of the model given to the context (drawn lazily, when the
    first Choice runs); all Choices of one edge use the same op within that forward. Calling sub-modules
    directly (not through the model) reuses the current architecture. ``arch`` is the architecture of the
    latest forward, or the one the next forward will use if read before it; ``history`` every one used.
    """

    def __init__(self, sub: SubSupernet, generator: torch.Generator | None):
        self.sub, self.generator = sub, generator
        self._arch: Arch | None = None
        self._used = False
        self.history: list[Arch] = []

    def _use(self) -> Arch:
        if self._arch is None:
            self._arch = self.sub.sample(self.generator)
        if not self._used:
            self._used = True
            self.history.append(self._arch)
        return self._arch

    def _new_forward(self) -> None:
        if self._used:
            self._arch, self._used = None, False

    @property
    def arch(self) -> Arch:
        if self._arch is None:
            self._arch = self.sub.sample(self.generator)
        return self._arch

    def resample(self) -> Arch:
        """Draw a new architecture now (used by the next Choice call)."""
        self._arch, self._used = None, False
        return self.arch


@contextmanager
def use_sampled_path(
    model: nn.Module, sub: SubSupernet | None = None, generator: torch.Generator | None = None
) -> Iterator[SampledPath]:
    """Single path drawn uniformly inside `sub` (default: the whole space), a fresh draw for every forward
    call of `model` (see :class:`SampledPath`); reproducible from the generator's seed."""
    found = _discover(model)
    space = found[0]
    sub = SubSupernet.full(space) if sub is None else _check_sub(sub, space)
    handle = SampledPath(sub, generator)
    frame = _frame(found, lambda e: _SampledPlan(handle, e))
    owner = threading.get_ident()

    def pre_hook(_module, _args):
        if threading.get_ident() == owner:
            handle._new_forward()

    hook = model.register_forward_pre_hook(pre_hook)
    try:
        with _active(frame):
            yield handle
    finally:
        hook.remove()


def _static(sub: SubSupernet, e: int) -> _StaticPlan:
    n = sub.space.edges[e].num_ops
    m = sub.masks[e]
    return _StaticPlan((tuple(1.0 if j in m else 0.0 for j in range(n)),), tuple(sorted(m)), "sum", None)


@contextmanager
def use_sum(model: nn.Module, sub: SubSupernet | None = None) -> Iterator[SubSupernet]:
    """Every Choice outputs the sum of its enabled ops' outputs (NAS-LID eq. 4), via masked_sum; ops
    outside `sub` (default: the whole space) and ``none`` ops are not computed. Yields the sub-supernet."""
    found = _discover(model)
    space = found[0]
    sub = SubSupernet.full(space) if sub is None else _check_sub(sub, space)
    frame = _frame(found, lambda e: _static(sub, e))
    with _active(frame):
        yield sub


WeightsArg = Mapping[str, Tensor] | Tensor | nn.ParameterDict


@contextmanager
def use_weighted(
    model: nn.Module, weights: WeightsArg, softmax: bool = True, sub: SubSupernet | None = None
) -> Iterator[None]:
    """DARTS-style mixture: Choice of edge e outputs ``sum_j w_j op_j(x)`` with
    ``w = softmax(weights[label])`` over the ops enabled in `sub` (exact 0 elsewhere), or with
    ``w = weights[label]`` (masked to `sub`) when ``softmax=False`` (e.g. DrNAS / GDAS samples).

    weights: a mapping label -> tensor (n,) (a dict or ``nn.ParameterDict``), or one (num_edges, n) tensor
    when every edge has n ops. Read at every Choice call (not at entry), so the autograd graph of the
    weights is rebuilt each forward and parameters updated inside the block are seen.
    """
    found = _discover(model)
    space = found[0]
    sub = SubSupernet.full(space) if sub is None else _check_sub(sub, space)
    if isinstance(weights, Tensor):
        widths = {e.num_ops for e in space.edges}
        if weights.dim() != 2 or weights.shape[0] != space.num_edges or len(widths) != 1 or weights.shape[1] != widths.pop():
            raise ValueError(
                f"lidsplit: weights tensor of shape {tuple(weights.shape)}: expected (num_edges={space.num_edges}, "
                "n) with every edge holding n ops; pass a mapping label -> (n,) tensor otherwise"
            )
        sources = [lambda e=e: weights[e] for e in range(space.num_edges)]
    else:
        try:
            keys = set(weights.keys())
        except AttributeError:
            raise TypeError(
                f"lidsplit: weights must be a mapping label -> Tensor or a 2-D tensor, got {type(weights).__name__}"
            ) from None
        missing = [lb for lb in space.labels if lb not in keys]
        if missing:
            raise KeyError(f"lidsplit: architecture weights missing for edges {missing}")
        sources = [lambda lb=lb: weights[lb] for lb in space.labels]
    for e, src in enumerate(sources):
        if not isinstance(src(), Tensor) or src().shape != (space.edges[e].num_ops,):
            raise ValueError(
                f"lidsplit: architecture weights of edge {space.edges[e].label!r} must be a tensor of shape "
                f"({space.edges[e].num_ops},)"
            )
    masks = [tuple(j in sub.masks[e] for j in range(space.edges[e].num_ops)) for e in range(space.num_edges)]
    frame = _frame(found, lambda e: _WeightedPlan(sources[e], space.edges[e].label, softmax, masks[e]))
    with _active(frame):
        yield


def _check_grouped_bn(model: nn.Module) -> None:
    bad = [
        name or "<model>"
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and not is_group_aware(m) and (m.training or m.running_mean is None)
    ]
    if bad:
        raise TypeError(
            f"lidsplit: use_grouped needs group-aware BatchNorm (per-group statistics); {len(bad)} plain BatchNorm "
            f"module(s) use batch statistics, e.g. {bad[:3]}. Build with lidsplit.supernet.BatchNorm2d or call "
            "lidsplit.supernet.convert_batchnorm(model) first"
        )


@contextmanager
def use_grouped(model: nn.Module, subs: Sequence[SubSupernet]) -> Iterator[tuple[SubSupernet, ...]]:
    """G sub-supernets in one pass: the batch holds G equal contiguous groups, group g computed as under
    ``use_sum(model, subs[g])``. Each Choice runs the union of the groups' enabled ops once on the whole
    batch and mixes them with one masked_sum call with (G, n) 0/1 weights; ops enabled in no group are not
    computed. BatchNorm statistics are per group (group-aware BatchNorm required, see
    :func:`convert_batchnorm`), so the result, gradients and running statistics equal G separate
    ``use_sum`` calls (running statistics: as if called in group order)."""
    found = _discover(model)
    space = found[0]
    if isinstance(subs, SubSupernet):
        raise TypeError("lidsplit: use_grouped takes a sequence of SubSupernets")
    subs = tuple(_check_sub(s, space, f"subs[{i}]") for i, s in enumerate(subs))
    if not subs:
        raise ValueError("lidsplit: use_grouped needs at least one sub-supernet")
    _check_grouped_bn(model)
    g = len(subs)

    def plan(e: int) -> _StaticPlan:
        n = space.edges[e].num_ops
        groups = tuple(s.masks[e] for s in subs)
        rows = tuple(tuple(1.0 if j in m else 0.0 for j in range(n)) for m in groups)
        active = tuple(sorted(frozenset().union(*groups)))
        return _StaticPlan(rows, active, "grouped", groups)

    frame = _frame(found, plan, groups=g)
    with _active(frame):
        yield subs
