"""The machinery shared by the weight-entangled ops: selections, architecture dimensions, combi
coefficients, boxes and the superposed / sliced weights, prefix BatchNorm.

A *dimension* of the space (a kernel size, a channel count, a number of heads, ...) is an edge of the
search space. Its selection in a forward (:class:`Sel`) is either one choice (single-path modes:
``use_path``, ``use_sampled_path``) or a weight vector over its choices (``use_weighted``: softmax or
given weights; ``use_sum``: exact 0/1; ``use_grouped``: one row per group).

An entangled op owns the weights of its largest choice. Choice ``v`` (a tuple of values, one per
dimension the op depends on) uses a *box* of every weight tensor: a product of index ranges (channel
prefixes ``[0, c)``, centred kernel slices ``[(K - k) // 2, (K - k) // 2 + k)``). Superposition with
coefficients ``a_v`` is ``sum_v a_v * pad(W[box_v]) = W * c`` with ``c(idx) = sum of a_v over the boxes
containing idx``, computed by :func:`lidsplit.ops.superpose` in one pass.

Combi-superposition: when an op depends on several weighted dimensions, the coefficient of a choice
tuple is the product of the dimensions' weights, enumerated in ``itertools.product`` order over the
dimensions' active choices (first dimension most significant: row-major flattening of the outer
product). Dimensions that only *slice* a tensor (e.g. the input channels of a conv, whose input already
carries the previous layer's coefficients) contribute no factor and are taken at their largest active
value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.ops import superpose
from lidsplit.supernet import _state
from lidsplit.supernet.choice import Choice, Mixture

Box = tuple[tuple[int, int], ...]


# ---- selections ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sel:
    """What one dimension selects in the current forward.

    values: the dimension's choice values (e.g. kernel sizes), in op-index order.
    index: the chosen op (single path), or None.
    weights: ``(n,)`` or ``(G, n)`` weights over all choices (zeros outside ``active``), or None.
    active: the choices whose weight may be non-zero (sorted; ``(index,)`` on a single path).
    groups: grouped mode: per group, the enabled choices.
    """

    values: tuple
    index: int | None = None
    weights: Tensor | None = None
    active: tuple[int, ...] = ()
    groups: tuple[frozenset[int], ...] | None = None

    @staticmethod
    def one(index: int, values: Sequence) -> Sel:
        return Sel(tuple(values), int(index), None, (int(index),))

    @staticmethod
    def fixed(value) -> Sel:
        return Sel((value,), 0, None, (0,))

    @staticmethod
    def from_mixture(m: Mixture, values: Sequence) -> Sel:
        values = tuple(values)
        if m.groups is None and m.kind == "sum" and len(m.active) == 1:
            return Sel.one(m.active[0], values)  # an exact one-hot: a single path
        return Sel(values, None, m.weights, tuple(m.active), m.groups)

    @property
    def is_path(self) -> bool:
        return self.index is not None

    @property
    def num_groups(self) -> int:
        return 1 if self.groups is None else len(self.groups)

    def row(self, g: int) -> Sel:
        """Group g's selection (grouped mode); itself otherwise."""
        if self.groups is None:
            return self
        return Sel(self.values, None, self.weights[g], tuple(sorted(self.groups[g])), None)

    def subset(self, indices: Sequence[int], values: Sequence) -> Sel | None:
        """The selection restricted to the choices ``indices`` (renumbered 0..), with those ``values``;
        None when none of them is active (a path on another choice, or all weights known zero)."""
        pos = {j: k for k, j in enumerate(indices)}
        values = tuple(values)
        if self.index is not None:
            return Sel.one(pos[self.index], values) if self.index in pos else None
        active = tuple(pos[j] for j in self.active if j in pos)
        if not active:
            return None
        groups = None
        if self.groups is not None:
            groups = tuple(frozenset(pos[j] for j in g if j in pos) for g in self.groups)
        w = self.weights[..., list(indices)]
        return Sel(values, None, w, active, groups)

    def candidates(self) -> tuple[int, ...]:
        return (self.index,) if self.index is not None else self.active

    def largest(self) -> int:
        """The candidate choice with the largest value (ties: the first)."""
        cands = self.candidates()
        return max(cands, key=lambda j: (self.values[j], -j))

    def value(self) -> object:
        if self.index is None:
            raise ValueError("lidsplit: a mixture has no single value")
        return self.values[self.index]


def grouped(sels: Sequence[Sel | None]) -> int:
    """The number of groups G of a grouped forward (1 if none of `sels` is grouped)."""
    gs = {s.num_groups for s in sels if s is not None and s.groups is not None}
    if len(gs) > 1:
        raise ValueError(f"lidsplit: selections of one op disagree on the number of groups: {sorted(gs)}")
    return gs.pop() if gs else 1


# ---- architecture dimensions --------------------------------------------------------------------------


class ArchDim(Choice):
    """A searchable dimension with no computation of its own (an edge whose ops are values).

    Entangled ops call it with any tensor of the forward (for device and dtype) and get its
    :class:`Sel`. Several ops may hold the same ArchDim (one decision shared by all of them), or
    several ArchDims may share a label (one edge).
    """

    def __init__(self, label: str, values: Sequence, names: Sequence[str] | None = None, prefix: str = ""):
        values = tuple(values)
        if not values:
            raise ValueError(f"lidsplit: ArchDim {label!r} needs at least one value")
        if names is None:
            names = [f"{prefix}{v}" for v in values]
        if len(names) != len(values):
            raise ValueError(f"lidsplit: ArchDim {label!r}: {len(names)} names for {len(values)} values")
        super().__init__(label, list(names))
        self.values = values

    def run_op(self, index: int, *inputs, **kwargs) -> Sel:
        return Sel.one(index, self.values)

    def mix(self, mixture: Mixture, *inputs, **kwargs) -> Sel:
        return Sel.from_mixture(mixture, self.values)

    def fixed(self, index: int) -> nn.Module:
        return FixedDim(self.label, self.values, index)

    def is_zero(self, index: int) -> bool:
        return False

    def extra_repr(self) -> str:
        return f"label={self.label!r}, values={list(self.values)}"


class FixedDim(nn.Module):
    """What :func:`lidsplit.supernet.materialize` puts in place of an ArchDim: always one choice."""

    def __init__(self, label: str, values: Sequence, index: int):
        super().__init__()
        self.label, self.values, self.index = label, tuple(values), int(index)

    def forward(self, *inputs, **kwargs) -> Sel:
        return Sel.one(self.index, self.values)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, value={self.values[self.index]!r}"


class Scaled(nn.Module):
    """An ArchDim seen through a function of its values (e.g. expansion ratio -> channel count):
    ``Scaled(expand, factor=c_in)`` selects ``c_in * e``. The ArchDim stays the decision."""

    def __init__(self, dim: ArchDim, factor: float = 1.0, offset: int = 0):
        super().__init__()
        self.dim, self.factor, self.offset = dim, factor, offset

    def map(self, v) -> int:
        return int(round(v * self.factor)) + self.offset

    @property
    def values(self) -> tuple:
        return tuple(self.map(v) for v in self.dim.values)

    def forward(self, x: Tensor) -> Sel:
        s = self.dim(x)
        return Sel(tuple(self.map(v) for v in s.values), s.index, s.weights, s.active, s.groups)


DimArg = int | ArchDim | FixedDim | Scaled


def resolve(dim: DimArg, x: Tensor) -> Sel:
    """The selection of a dimension given as an int (fixed) or a module (ArchDim, FixedDim, Scaled)
    called on `x` (a floating tensor of the forward: its device and dtype are the weights')."""
    if isinstance(dim, int):
        return Sel.fixed(dim)
    return dim(x)


def dim_values(dim: DimArg) -> tuple:
    if isinstance(dim, int):
        return (dim,)
    if isinstance(dim, FixedDim):
        return (dim.values[dim.index],)
    return tuple(dim.values)


class Entangled(Choice):
    """A Choice over one dimension of a weight-entangled op (op names only; ``values`` the choices).

    ``run_op`` (single path) and ``mix`` (any mixture) hand the dimension's :class:`Sel` to
    :meth:`compute`; ``fixed(i)`` returns a module computing the op with this dimension fixed to
    choice i (its other dimensions, ArchDims, stay as they are until materialize replaces them).
    """

    def __init__(self, label: str, values: Sequence, names: Sequence[str] | None = None, prefix: str = ""):
        values = tuple(values)
        if names is None:
            names = [f"{prefix}{v}" for v in values]
        super().__init__(label, list(names))
        self.values = values

    def compute(self, own: Sel, *inputs, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def run_op(self, index: int, *inputs, **kwargs):
        return self.compute(Sel.one(index, self.values), *inputs, **kwargs)

    def mix(self, mixture: Mixture, *inputs, **kwargs):
        return self.compute(Sel.from_mixture(mixture, self.values), *inputs, **kwargs)

    def is_zero(self, index: int) -> bool:
        return False

    def fixed(self, index: int) -> nn.Module:
        return _fixed_class(type(self))(self, index)


class FixedEntangled(nn.Module):
    """An entangled op with its own dimension fixed (see :meth:`Entangled.fixed`): the same parameters,
    buffers, submodules (ArchDims included) and settings as the Choice, which it does not hold; its
    forward is the Choice's :meth:`Entangled.compute` on a single path."""

    _SKIP = frozenset({"_edge", "label", "op_names", "ops", "values", "training"})

    def __init__(self, choice: Entangled, index: int):
        super().__init__()
        internals = set(self.__dict__)
        for k, v in choice.__dict__.items():
            if k not in internals and k not in self._SKIP:
                self.__dict__[k] = v
        for name, p in choice._parameters.items():
            self.register_parameter(name, p)
        for name, b in choice._buffers.items():
            self.register_buffer(name, b, persistent=name not in choice._non_persistent_buffers_set)
        for name, m in choice._modules.items():
            self.add_module(name, m)
        self.label, self.index, self.values = choice.label, int(index), choice.values
        self.training = choice.training

    def forward(self, *inputs, **kwargs):
        return self.compute(Sel.one(self.index, self.values), *inputs, **kwargs)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, value={self.values[self.index]!r}"


_NOT_COPIED = frozenset({"__init__", "forward", "run_op", "mix", "fixed", "is_zero", "extra_repr", "__dict__",
                         "__weakref__", "__module__", "__doc__", "__qualname__", "__annotations__"})
_FIXED_CLASSES: dict[type, type] = {}


def _fixed_class(cls: type) -> type:
    """A non-Choice twin of an Entangled subclass: FixedEntangled with the subclass's own methods
    (compute and its helpers), so that a materialized network holds no Choice."""
    fixed = _FIXED_CLASSES.get(cls)
    if fixed is None:
        ns: dict = {}
        for klass in reversed(cls.__mro__):
            if isinstance(klass, type) and issubclass(klass, Entangled) and klass is not Entangled:
                ns.update({k: v for k, v in vars(klass).items() if k not in _NOT_COPIED})
        fixed = _FIXED_CLASSES[cls] = type(f"Fixed{cls.__name__}", (FixedEntangled,), ns)
    return fixed


# ---- combinations and coefficients -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Combos:
    """The choice tuples an op runs and their coefficients.

    values: per combination, the tuple of its values (one per dimension, in the op's dimension order).
    coeffs: ``(len(values),)`` tensor, or None when no coefficient dimension is weighted (pure slicing).
    """

    values: tuple[tuple, ...]
    coeffs: Tensor | None


def combos(sels: Sequence[Sel], coeff: Sequence[bool]) -> Combos:
    """Enumerate the combinations: coefficient dimensions with weights over their active choices (their
    weights multiply: itertools.product order, first dimension most significant), every other dimension
    at its chosen value (path) or its largest active value (mixture). Single groups only (use
    :meth:`Sel.row` first)."""
    lists: list[tuple[int, ...]] = []
    factors: list[Tensor] = []
    for s, c in zip(sels, coeff):
        if s.groups is not None:
            raise ValueError("lidsplit: combos() takes one group's selections (Sel.row)")
        if s.index is not None or not c:
            lists.append((s.index if s.index is not None else s.largest(),))
        else:
            lists.append(s.active)
            factors.append(s.weights[list(s.active)])
    coeffs = None
    for f in factors:
        coeffs = f if coeffs is None else (coeffs[:, None] * f[None, :]).reshape(-1)
    vals = tuple(tuple(s.values[j] for s, j in zip(sels, t)) for t in itertools.product(*lists))
    return Combos(vals, coeffs)


def combi_weights(*weights: Tensor) -> Tensor:
    """The combi-superposition coefficients of several dimensions: the outer product of their weight
    vectors, flattened row-major (itertools.product order over the choice lists)."""
    out = None
    for w in weights:
        out = w if out is None else (out[..., :, None] * w[..., None, :]).flatten(-2)
    return out


def bounding(boxes: Sequence[Box]) -> Box:
    return tuple((min(b[d][0] for b in boxes), max(b[d][1] for b in boxes)) for d in range(len(boxes[0])))


def centred(k: int, k_max: int) -> tuple[int, int]:
    """The centred range of a size-k slice of a size-k_max dimension (start = (k_max - k) // 2)."""
    s = (k_max - k) // 2
    return (s, s + k)


class BoxCache:
    """Box tensors per (tensor key, combinations, device), built once."""

    def __init__(self) -> None:
        self._d: dict = {}

    def get(self, key, boxes: Sequence[Box], device: torch.device) -> Tensor:
        k = (key, tuple(boxes), device)
        t = self._d.get(k)
        if t is None:
            if len(self._d) > 4096:
                self._d.clear()
            t = self._d[k] = torch.tensor([list(map(list, b)) for b in boxes], dtype=torch.int64, device=device)
        return t

    def __deepcopy__(self, memo) -> BoxCache:
        return BoxCache()


def entangled_weight(
    cache: BoxCache, key, weight: Tensor, cmb: Combos, box_fn: Callable[[tuple], Box]
) -> tuple[Tensor, Box]:
    """The weight for a forward: the superposition ``sum_v a_v pad(W[box_v])`` over the combinations
    (or the plain slice when they carry no coefficient), cut to the bounding box of the combinations'
    boxes. Returns (tensor, bounding box)."""
    boxes = [box_fn(v) for v in cmb.values]
    region = bounding(boxes)
    sl = tuple(slice(a, b) for a, b in region)
    if cmb.coeffs is None:
        return weight[sl], region
    bt = cache.get(key, boxes, weight.device)
    return superpose(weight, cmb.coeffs, bt)[sl], region


def coefficient_profile(cache: BoxCache, key, size: int, cmb: Combos, range_fn: Callable[[tuple], tuple[int, int]],
                        like: Tensor) -> Tensor:
    """``t[o] = sum of the coefficients of the combinations whose range (range_fn) contains o``, a
    (size,) tensor (the per-channel total weight of an op: what a following BatchNorm normalises away)."""
    if cmb.coeffs is None:
        raise ValueError("lidsplit: no coefficients")
    bt = cache.get(key, [(range_fn(v),) for v in cmb.values], like.device)
    ones = torch.ones(size, dtype=like.dtype, device=like.device)
    return superpose(ones, cmb.coeffs, bt)


# ---- BatchNorm on a channel prefix -----------------------------------------------------------------


def prefix_batch_norm(bn: _BatchNorm, x: Tensor, c: int | None = None) -> Tensor:
    """``bn`` applied to the first ``c = x.shape[1]`` of its channels (parameters and running statistics
    sliced, the others untouched): the BatchNorm of a network whose layer has c channels. Group-aware
    (per-group statistics in grouped mode, as :mod:`lidsplit.supernet.batchnorm`)."""
    c = x.shape[1] if c is None else c
    if c == bn.num_features:
        return bn(x)
    w = bn.weight[:c] if bn.weight is not None else None
    b = bn.bias[:c] if bn.bias is not None else None
    rm = bn.running_mean[:c] if bn.running_mean is not None else None
    rv = bn.running_var[:c] if bn.running_var is not None else None
    batch_stats = bn.training or rm is None
    g = _state.groups_for(bn)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    sync = getattr(bn, "_lidsplit_sync_bn", None)  # set while a data-parallel run (lidsplit.train) trains
    if sync is not None and batch_stats and g == 1:
        return sync(x, c)
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None and g == 1:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    if g == 1 or not batch_stats:
        return F.batch_norm(x, rm, rv, w, b, batch_stats, momentum, bn.eps)
    # grouped: per-group statistics
    if x.shape[0] % g:
        raise ValueError(f"lidsplit: BatchNorm in grouped mode: batch of {x.shape[0]} not divisible into {g} groups")
    xs = x.reshape(g, x.shape[0] // g, *x.shape[1:])
    work = xs.float() if xs.dtype in (torch.float16, torch.bfloat16) else xs
    dims = (1, *range(3, xs.dim()))
    var, mean = torch.var_mean(work, dim=dims, correction=0, keepdim=True)
    y = (work - mean) * torch.rsqrt(var + bn.eps)
    if w is not None:
        view = (1, 1, c) + (1,) * (xs.dim() - 3)
        y = y * w.view(view) + b.view(view)
    if bn.training and bn.track_running_stats and rm is not None:
        active = _state.ACTIVE_GROUPS.get()
        n = (x.shape[0] // g) * work[0, 0, 0].numel()
        with torch.no_grad():
            m_all, v_all = mean.reshape(g, c), var.reshape(g, c) * (n / max(n - 1, 1))
            for i in range(g):
                if active is not None and not active[i]:
                    continue
                bn.num_batches_tracked.add_(1)
                mom = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                rm.mul_(1 - mom).add_(m_all[i].to(rm.dtype), alpha=mom)
                rv.mul_(1 - mom).add_(v_all[i].to(rv.dtype), alpha=mom)
    return y.to(x.dtype).reshape(x.shape)


def pad_dim(x: Tensor, dim: int, size: int) -> Tensor:
    """Zero-pad dimension `dim` of x at the end to `size`."""
    extra = size - x.shape[dim]
    if extra == 0:
        return x
    if extra < 0:
        raise ValueError(f"lidsplit: cannot pad dimension {dim} of size {x.shape[dim]} to {size}")
    dim = dim % x.dim()
    pad = [0, 0] * (x.dim() - dim - 1) + [0, extra]
    return F.pad(x, pad)


# ---- the mixture mode of entangled ops --------------------------------------------------------------

MIXTURES = ("superpose", "explicit")


def set_mixture(model: nn.Module, mode: str) -> nn.Module:
    """How every entangled op of `model` computes a mixture: ``"superpose"`` (default: one pass with the
    superposed weight) or ``"explicit"`` (every combination run separately on its slice of the shared
    weights and the outputs summed with their coefficients, BatchNorm applied per choice: the
    weight-sharing computation, for comparisons and as a reference). Returns the model."""
    if mode not in MIXTURES:
        raise ValueError(f"lidsplit: mixture mode must be one of {MIXTURES}, got {mode!r}")
    for m in model.modules():
        if hasattr(m, "mixture_mode"):
            m.mixture_mode = mode
    return model
