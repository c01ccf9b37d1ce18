"""The choice module (a labelled list of candidate ops) and search-space discovery on a model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import warnings

import torch
from torch import Tensor, nn

from lidsplit.supernet import _state
from lidsplit.supernet.space import Edge, SearchSpace


@dataclass(frozen=True)
class Mixture:
    """What a mixing mode asks of a :class:`Choice` (handed to :meth:`Choice.mix`).

    weights: ``(n,)``, or ``(G, n)`` in grouped mode (row g for the g-th contiguous group of the batch),
        over ALL n ops of the choice, in the dtype/device of the input; exact zeros on disabled ops.
        May require grad (weighted mode).
    active: the ops whose weight may be non-zero (known without looking at the tensor), sorted. Ops outside
        it must not be computed.
    kind: ``"sum"`` (weights are exact 0/1), ``"weighted"`` or ``"grouped"`` (exact 0/1 per group).
    groups: grouped mode only: per group, the set of enabled ops.
    """

    weights: Tensor
    active: tuple[int, ...]
    kind: str
    groups: tuple[frozenset[int], ...] | None = None

    @property
    def num_groups(self) -> int:
        return 1 if self.groups is None else len(self.groups)


class Choice(nn.Module):
    """A labelled list of candidate ops (in the spirit of NNI's LayerChoice); a model holding any is a
    supernet. Choices sharing a label are one edge of the space (same op names required).

    What it computes is decided by the innermost active mode context (``use_path``, ``use_sampled_path``,
    ``use_sum``, ``use_weighted``, ``use_grouped``), never by state stored on the module. Outside any
    context a Choice with a single op runs it; otherwise it raises.

    Extension points (weight-entangled choices, TangleNAS): a subclass overrides
    :meth:`run_op` (one op, single-path modes) and :meth:`mix` (any mixture: it receives the per-op
    weights and may e.g. superpose sliced kernels into one convolution instead of running every op). Such a
    subclass may pass op names only (``ops`` a sequence of ``str``); ``self.ops`` is then ``None``.

    An op module whose attribute ``is_zero`` is true outputs exact zeros (``none``); mixtures skip it.

    A Choice is a sequence of its op modules (``len``, ``choice[i]`` or ``choice["name"]``, iteration), as
    NNI's LayerChoice is, so forwards that index or iterate edges (GDAS / SETN / ENAS) run; calling an op
    module directly bypasses the modes. Another codebase's mixed ops become Choices in place with
    :func:`~lidsplit.supernet.adapt` (their own forward, methods and state-dict keys kept).

    The supernet contract (what the rest of lidsplit asks of the model holding Choices): nothing beyond
    the Choices themselves. Two optional methods on the model tune the split criteria:

    * ``feature_layers() -> list[nn.Module]``: the modules whose outputs characterise the network, in
      forward order; the ``lid`` criterion profiles them (without it, pass
      ``criterion_options={"layers": callable(model)}``; ``lid`` raises otherwise), as do the report's
      LID profiles.
    * ``shared_modules() -> list[nn.Module]``: GM-NAS's "shared weights", the searchable body without stem
      and classifier, whose gradients ``gm`` matches (see :func:`shared_parameters`); without it ``gm``
      takes every parameter of the model outside the edge and warns (:class:`SharedModulesWarning`).
    """

    def __init__(self, label: str, ops: Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]] | Sequence[str]):
        super().__init__()
        if isinstance(ops, Mapping):
            items = list(ops.items())
        else:
            items = list(ops)
        if items and all(isinstance(it, str) for it in items):
            names, modules = tuple(items), None
        else:
            try:
                names = tuple(n for n, _ in items)
                modules = [m for _, m in items]
            except (TypeError, ValueError):
                raise TypeError(
                    f"lidsplit: Choice {label!r}: ops must be a mapping name -> module or (name, module) pairs"
                ) from None
            for n, m in zip(names, modules):
                if not isinstance(m, nn.Module):
                    raise TypeError(f"lidsplit: Choice {label!r}: op {n!r} is a {type(m).__name__}, not an nn.Module")
        self._edge = Edge(label, names)  # validates label and names
        self.label: str = label
        self.op_names: tuple[str, ...] = self._edge.ops
        self.ops: nn.ModuleList | None = nn.ModuleList(modules) if modules is not None else None

    @property
    def edge(self) -> Edge:
        return self._edge

    def __len__(self) -> int:
        return len(self.op_names)

    # a sequence of its candidates, as NNI's LayerChoice and a plain ModuleList edge are, so that foreign
    # forwards indexing or iterating edges (GDAS / SETN / ENAS) run
    def __getitem__(self, index: int | str) -> nn.Module:
        """The op module at position `index` (negative counts from the end) or named `index`."""
        if self.ops is None:
            raise TypeError(f"lidsplit: Choice {self.label!r} ({type(self).__name__}) has no op modules to index; "
                            "use fixed(i) for a standalone module of op i")
        if isinstance(index, str):
            if index not in self.op_names:
                raise KeyError(f"lidsplit: Choice {self.label!r} has no op {index!r}; ops are {list(self.op_names)}")
            return self.ops[self.op_names.index(index)]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"lidsplit: Choice {self.label!r}: index ops by int or op name, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"lidsplit: Choice {self.label!r}: op index {index} out of range for {len(self)} ops")
        return self.ops[index % len(self)]

    def __iter__(self) -> Iterator[nn.Module]:
        """The op modules, in op order."""
        if self.ops is None:
            raise TypeError(f"lidsplit: Choice {self.label!r} ({type(self).__name__}) has no op modules to iterate")
        return iter(tuple(self.ops))

    def extra_repr(self) -> str:
        return f"label={self.label!r}, ops={list(self.op_names)}"

    # ---- extension points -------------------------------------------------------------------------
    def is_zero(self, index: int) -> bool:
        """Whether op `index` outputs exact zeros whatever its input (it is then skipped in mixtures)."""
        return self.ops is not None and bool(getattr(self.ops[index], "is_zero", False))

    def run_op(self, index: int, *inputs, **kwargs):
        if self.ops is None:
            raise NotImplementedError(f"{type(self).__name__} must override run_op (it has no op modules)")
        return self.ops[index](*inputs, **kwargs)

    def fixed(self, index: int) -> nn.Module:
        """A standalone module computing op `index` (used by :func:`materialize`)."""
        if self.ops is None:
            raise NotImplementedError(f"{type(self).__name__} must override fixed (it has no op modules)")
        return self.ops[index]

    def mix(self, mixture: Mixture, *inputs, **kwargs) -> Tensor:
        """``sum_j weights[..., j] * op_j(inputs)`` over ``mixture.active`` via :func:`lidsplit.ops.masked_sum`.

        Zero ops are not computed; in grouped mode every op runs on the whole batch (its rows in groups that
        disable it get weight 0), with BatchNorm running statistics updated only from the groups enabling it.
        Op outputs of different dtypes (autocast: a skip next to a half-precision conv) are promoted to a
        common dtype, and non-contiguous ones (channels_last) made contiguous, before the masked_sum call.
        """
        from lidsplit import ops as lops

        compute = [j for j in mixture.active if not self.is_zero(j)]
        if not compute:  # only zero ops enabled: zeros of the right shape
            return self.run_op(mixture.active[0], *inputs, **kwargs)
        if mixture.groups is None:
            outs = [self.run_op(j, *inputs, **kwargs) for j in compute]
            if mixture.kind == "sum" and len(outs) == 1:
                return outs[0]
            w = mixture.weights if len(compute) == len(self) else mixture.weights[compute]
            return _masked_sum(lops, outs, w)
        groups = mixture.groups
        if inputs and isinstance(inputs[0], Tensor) and inputs[0].shape[0] % len(groups):
            raise ValueError(
                f"lidsplit: Choice {self.label!r}: batch of {inputs[0].shape[0]} is not divisible into "
                f"{len(groups)} equal groups"
            )
        outer = _state.ACTIVE_GROUPS.get()
        outs = []
        for j in compute:
            act = tuple(j in g for g in groups)
            if outer is not None:
                act = tuple(a and o for a, o in zip(act, outer))
            token = _state.ACTIVE_GROUPS.set(act)
            try:
                outs.append(self.run_op(j, *inputs, **kwargs))
            finally:
                _state.ACTIVE_GROUPS.reset(token)
        w = mixture.weights if len(compute) == len(self) else mixture.weights[:, compute]
        return _masked_sum(lops, outs, w)

    # ---- forward ----------------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        plan = _state.plan_for(self)
        if plan is None:
            if len(self) == 1:
                return self.run_op(0, *inputs, **kwargs)
            raise RuntimeError(
                f"lidsplit: Choice {self.label!r} called outside any forward mode; wrap the call in "
                "use_path / use_sampled_path / use_sum / use_weighted / use_grouped"
            )
        return plan.run(self, inputs, kwargs)


def _masked_sum(lops, outs: list[Tensor], w: Tensor) -> Tensor:
    dt = outs[0].dtype
    for o in outs[1:]:
        if o.dtype != dt:
            dt = torch.promote_types(dt, o.dtype)
    outs = [o if o.dtype == dt and o.is_contiguous() else o.to(dt).contiguous() for o in outs]
    return lops.masked_sum(outs, w if w.dtype == dt else w.to(dt))


def group_choices(named: list[tuple[str, Choice]]) -> dict[str, list[Choice]]:
    """(module path, Choice) pairs grouped by label, labels in first-seen order; checks op names agree."""
    out: dict[str, list[Choice]] = {}
    first: dict[str, tuple[str, Choice]] = {}
    for name, m in named:
        if m.label in out:
            ref_name, ref = first[m.label]
            if m.op_names != ref.op_names:
                raise ValueError(
                    f"lidsplit: Choice modules sharing label {m.label!r} have different ops: "
                    f"{ref_name or '<model>'} has {list(ref.op_names)}, {name or '<model>'} has {list(m.op_names)}"
                )
            out[m.label].append(m)
        else:
            out[m.label] = [m]
            first[m.label] = (name, m)
    return out


def choices(model: nn.Module) -> dict[str, list[Choice]]:
    """The model's Choice modules grouped by label, labels in first-registration order.

    Raises ValueError if Choices sharing a label disagree on their op names.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lidsplit: expected an nn.Module, got {type(model).__name__}")
    return group_choices([(name, m) for name, m in model.named_modules() if isinstance(m, Choice)])


def search_space(model: nn.Module) -> SearchSpace:
    """The search space of a supernet: one edge per Choice label, in first-registration order."""
    chs = choices(model)
    if not chs:
        raise ValueError(f"lidsplit: {type(model).__name__} holds no Choice module; it is not a supernet")
    return SearchSpace(tuple(v[0].edge for v in chs.values()))


def edge_parameters(model: nn.Module, label: str) -> list[nn.Parameter]:
    """The parameters inside every Choice labelled `label` (deduplicated, in module order)."""
    chs = choices(model)
    if label not in chs:
        raise KeyError(f"lidsplit: no Choice labelled {label!r}; labels are {list(chs)}")
    seen: set[int] = set()
    out = []
    for c in chs[label]:
        for p in c.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class SharedModulesWarning(UserWarning):
    """A supernet without ``shared_modules()``: GM-NAS's shared weights fall back to the whole model."""


def shared_parameters(
    model: nn.Module, exclude_label: str, modules: Sequence[nn.Module] | None = None
) -> list[nn.Parameter]:
    """GM-NAS "shared weights" for splitting edge `exclude_label`: the parameters of `modules` (default:
    ``model.shared_modules()`` when the model defines it, e.g. the NB201 cells and ResNet blocks without
    stem, final BN and classifier; else the whole model, with a :class:`SharedModulesWarning`) minus those
    of the edge's ops."""
    excluded = {id(p) for p in edge_parameters(model, exclude_label)}
    if modules is None:
        if hasattr(model, "shared_modules"):
            modules = model.shared_modules()
        else:
            warnings.warn(
                f"lidsplit: {type(model).__name__} defines no shared_modules(), so GM-NAS's shared weights are "
                "every parameter of the whole model outside the edge (stem and classifier included, unlike "
                "GM-NAS). Define shared_modules() on the model (the searchable body) or pass "
                "criterion_options={'params': callable(model, label)}",
                SharedModulesWarning,
                stacklevel=2,
            )
            modules = [model]
    seen: set[int] = set()
    out = []
    for mod in modules:
        for p in mod.parameters():
            if id(p) not in excluded and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def materialize(model: nn.Module, arch) -> nn.Module:
    """A deep copy of `model` in which every Choice is replaced by its op of `arch` (a plain network, no
    mode needed; the other ops are dropped). ``model`` itself is left unchanged."""
    import copy

    space = search_space(model)
    arch = space.validate_arch(arch)
    pos = {lb: i for i, lb in enumerate(space.labels)}
    new = copy.deepcopy(model)
    if isinstance(new, Choice):
        return new.fixed(arch[pos[new.label]])
    done: dict[int, nn.Module] = {}

    def walk(m: nn.Module) -> None:
        for name, child in list(m.named_children()):
            if isinstance(child, Choice):
                if id(child) not in done:
                    done[id(child)] = child.fixed(arch[pos[child.label]])
                    walk(done[id(child)])  # nested choices inside the chosen op
                setattr(m, name, done[id(child)])
            else:
                walk(child)

    walk(new)
    return new


def zeros_like_output(x: Tensor, channels: int | None = None, stride: int = 1) -> Tensor:
    """Zeros shaped like the output of a (channels, stride) op on NC... input `x` (for ``none`` ops)."""
    shape = list(x.shape)
    if channels is not None:
        shape[1] = channels
    if stride != 1:
        shape[2:] = [(s + stride - 1) // stride for s in shape[2:]]
    return torch.zeros(shape, dtype=x.dtype, device=x.device)
