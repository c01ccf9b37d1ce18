"""Bring your own supernet: turn the mixed ops of another NAS codebase into :class:`Choice` modules in place.

``adapt(model, MixedOp, label=...)`` finds every instance of a user's mixed-op class (DARTS ``MixedOp``,
AutoDL's ``MixedOp`` and NB201 edge lists, NNI's ``LayerChoice``) and changes its class, in place, to a
subclass of both ``Choice`` and the user's class. Nothing is rebuilt or moved, so

* the module keeps its attributes, its other methods and its state-dict keys (``cells.0._ops.0._ops.3.*``
  stays as it is): checkpoints saved before ``adapt`` load after it, and after it into the original code;
* outside any lidsplit mode the user's own forward runs unchanged (``op(x, weights)`` still computes the
  user's weighted sum, a ModuleList edge still iterates and indexes as before);
* inside a lidsplit mode (``use_path``, ``use_sum``, ``use_weighted``, ``use_grouped``,
  ``use_sampled_path``) a call of the module, or of one of its ``methods``, is taken over: the first
  ``inputs`` positional arguments go to the candidates, the user's mixing arguments (weights, indices) are
  ignored.

Foreign code that mixes the candidates itself (AutoDL's NB201 cell: ``sum(layer(x) * w for layer, w in
zip(self.edges[k], weights))``) bypasses the module call, so no mode can take it over; calling a candidate
that way while a lidsplit mode governs its edge raises a RuntimeError naming the edge (never a silent
result of the user's mixture instead of the mode's).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lidsplit.supernet import _state
from lidsplit.supernet.choice import Choice
from lidsplit.supernet.space import Edge

__all__ = ["adapt"]

#: What ``adapt`` matches: a class, a tuple of classes, or a predicate ``(qualified name, module) -> bool``.
Selector = type | tuple[type, ...] | Callable[[str, nn.Module], bool]
#: Op names: one sequence for every match, or ``(qualified name, module) -> names``.
OpNames = Sequence[str] | Callable[[str, nn.Module], Sequence[str]]

# The adapted Choice whose run_op is calling a candidate now (the candidates' guards let that call through).
_RUNNING: contextvars.ContextVar[Any] = contextvars.ContextVar("lidsplit_adapt_running", default=None)


@dataclass(frozen=True)
class _Adapter:
    """What ``adapt`` stores on an adapted module (in its ``__dict__``, not a submodule or buffer)."""

    edge: Edge
    container: str | None  # attribute holding the candidates; None: the module itself (edge lists)
    keys: tuple[str, ...]  # the candidates' keys in the container's ``_modules``, in op order
    inputs: int


class _AdaptedChoice(Choice):
    """Base of the classes ``adapt`` makes (``Adapted<UserClass>``); never instantiated directly."""

    _lidsplit_base: type
    _lidsplit_methods: tuple[str, ...]
    _lidsplit_adapter: _Adapter

    # class-level properties win over the user's class (e.g. NNI's ``label``) and over instance attributes
    @property
    def edge(self) -> Edge:
        return self._lidsplit_adapter.edge

    @property
    def label(self) -> str:
        return self._lidsplit_adapter.edge.label

    @property
    def op_names(self) -> tuple[str, ...]:
        return self._lidsplit_adapter.edge.ops

    @property
    def ops(self) -> tuple[nn.Module, ...]:
        a = self._lidsplit_adapter
        mods = self._modules if a.container is None else self._modules[a.container]._modules
        return tuple(mods[k] for k in a.keys)

    def run_op(self, index: int, *inputs, **kwargs):
        token = _RUNNING.set(self)
        try:
            return self.ops[index](*inputs, **kwargs)
        finally:
            _RUNNING.reset(token)

    def fixed(self, index: int) -> nn.Module:
        """Op `index` behind a wrapper that takes the user's call (``op(x, weights)``) and drops the mixing
        arguments, so that ``materialize`` gives a network the user's forward still runs."""
        return _FixedOp(self.ops[index], self._lidsplit_adapter.inputs)

    def __reduce_ex__(self, protocol: int):
        # the class is made at run time: pickle the user's class and rebuild the adapted one from it
        return _new_adapted, (self._lidsplit_base, self._lidsplit_methods), self.__dict__


class _FixedOp(nn.Module):
    """A chosen op called the way the user's code called its mixed op: the first ``inputs`` positional
    arguments reach the op, the rest (the mixing weights, indices) are dropped."""

    def __init__(self, op: nn.Module, inputs: int) -> None:
        super().__init__()
        self.op, self.inputs = op, inputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.op(*args[: self.inputs])


_CLASSES: dict[tuple[type, tuple[str, ...]], type] = {}
_SEQUENCE = ("__getitem__", "__iter__", "__len__", "__contains__")


def _adapted_class(base: type, methods: tuple[str, ...]) -> type:
    key = (base, methods)
    cls = _CLASSES.get(key)
    if cls is not None:
        return cls
    ns: dict[str, Any] = {"__module__": __name__, "_lidsplit_base": base, "_lidsplit_methods": methods}
    for name in methods:
        ns[name] = _taken_over(base, name)
    # a user's container keeps its own sequence semantics (a ModuleDict iterates its keys)
    for name in _SEQUENCE:
        if any(name in k.__dict__ for k in base.__mro__ if k not in (nn.Module, object)):
            ns[name] = getattr(base, name)
    cls = type(f"Adapted{base.__name__}", (_AdaptedChoice, base), ns)
    cls.__qualname__ = cls.__name__
    _CLASSES[key] = cls
    return cls


def _new_adapted(base: type, methods: tuple[str, ...]) -> nn.Module:
    """Unpickling: an empty instance of the adapted class (its ``__dict__`` is restored by pickle)."""
    return object.__new__(_adapted_class(base, methods))


def _taken_over(base: type, name: str) -> Callable[..., Any]:
    own = getattr(base, name, None)
    if name == "forward" and own is nn.Module.forward:
        own = None  # a bare ModuleList edge has no forward: behave as a Choice outside a mode
    if own is None and name != "forward":
        raise TypeError(f"lidsplit: adapt: {base.__name__} has no method {name!r} (named in methods)")

    def method(self: _AdaptedChoice, *args: Any, **kwargs: Any) -> Any:
        plan = _state.plan_for(self)
        if plan is None:
            return Choice.forward(self, *args, **kwargs) if own is None else own(self, *args, **kwargs)
        n = self._lidsplit_adapter.inputs
        if len(args) < n:
            raise TypeError(
                f"lidsplit: adapted edge {self.label!r}: {name}() got {len(args)} positional argument(s); its "
                f"candidates take the first {n} (adapt(..., inputs={n}))"
            )
        return plan.run(self, args[:n], {})

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(own, "__doc__", None)
    return method


class _Guard:
    """Forward pre-hook on every candidate: refuses a direct call (by the user's own mixing code) while a
    lidsplit mode governs the candidate's edge."""

    def __init__(self, owner: _AdaptedChoice, index: int) -> None:
        self.owner = weakref.ref(owner)
        self.index = index

    def __call__(self, module: nn.Module, args: tuple) -> None:
        owner = self.owner()
        if owner is None or _RUNNING.get() is owner or _state.plan_for(owner) is None:
            return
        raise RuntimeError(
            f"lidsplit: op {owner.op_names[self.index]!r} of edge {owner.label!r} was called directly by the "
            "model's own code inside a lidsplit forward mode, which therefore cannot decide what the edge "
            "computes. Call the edge module instead (edge(x), or a method passed to adapt(methods=...)); code "
            "that mixes the candidates itself (e.g. sum(op(x) * w for op, w in zip(edge, weights))) only runs "
            "outside lidsplit modes"
        )

    def __deepcopy__(self, memo: dict) -> _Guard:
        owner = self.owner()
        new = memo.get(id(owner), owner)  # the copy of the edge when the edge is copied with it
        return _Guard(new, self.index) if new is not None else self

    def __reduce__(self):  # weakrefs do not pickle: the owner is pickled with the model anyway
        return _Guard, (self.owner(), self.index)


def _matcher(cls: Selector) -> Callable[[str, nn.Module], bool]:
    if isinstance(cls, type) or (isinstance(cls, tuple) and cls and all(isinstance(c, type) for c in cls)):
        return lambda _name, m: isinstance(m, cls)
    if callable(cls):
        return cls
    raise TypeError(
        f"lidsplit: adapt: cls must be a module class, a tuple of classes or a callable (name, module) -> bool, "
        f"got {cls!r}"
    )


def _container(name: str, m: nn.Module, candidates: str | None) -> tuple[str | None, tuple[str, ...], bool]:
    """(attribute or None for the module itself, candidate keys, whether the keys are op names)."""
    where = name or "<model>"
    if candidates is not None:
        c = m._modules.get(candidates)
        if not isinstance(c, (nn.ModuleList, nn.ModuleDict)):
            raise TypeError(
                f"lidsplit: adapt: {where} ({type(m).__name__}) has no nn.ModuleList / nn.ModuleDict attribute "
                f"{candidates!r} (candidates=); its children are {list(m._modules)}"
            )
        return candidates, tuple(c._modules), isinstance(c, nn.ModuleDict)
    if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
        return None, tuple(m._modules), isinstance(m, nn.ModuleDict)
    names = getattr(m, "names", None)  # NNI LayerChoice: candidates are the children named in ``names``
    if isinstance(names, (list, tuple)) and names and all(str(n) in m._modules for n in names):
        return None, tuple(str(n) for n in names), True
    lists = [k for k, c in m._modules.items() if isinstance(c, (nn.ModuleList, nn.ModuleDict))]
    if len(lists) != 1:
        raise TypeError(
            f"lidsplit: adapt: cannot tell where {where} ({type(m).__name__}) holds its candidate ops: "
            f"{'no' if not lists else len(lists)} nn.ModuleList / nn.ModuleDict children "
            f"({lists if lists else list(m._modules)}); pass candidates='<attribute>'"
        )
    c = m._modules[lists[0]]
    return lists[0], tuple(c._modules), isinstance(c, nn.ModuleDict)


def adapt(
    model: nn.Module,
    cls: Selector,
    *,
    label: Callable[[str, nn.Module], str] | None = None,
    ops: OpNames | None = None,
    candidates: str | None = None,
    inputs: int = 1,
    methods: Sequence[str] = ("forward",),
) -> nn.Module:
    """Make every instance of a user's mixed-op class in ``model`` a :class:`Choice`, in place; returns
    ``model`` (see the module docstring for what keeps working and what lidsplit takes over).

    cls: the mixed-op class (or a tuple of classes), or ``(name, module) -> bool`` for modules that have
        no class of their own, e.g. AutoDL's NB201 edge lists:
        ``lambda name, m: isinstance(m, nn.ModuleList) and ".edges." in name``.
    label: ``(qualified name, module) -> str``, the edge label; default the qualified name (every instance
        its own edge). Equal labels share one decision (DARTS: all normal cells one alpha), so they must
        have the same op names.
    ops: the op names, in candidate order: one sequence (e.g. DARTS ``PRIMITIVES``) or
        ``(name, module) -> names``; default the keys of a dict of candidates, else ``"0"``, ``"1"``, ...
    candidates: the attribute holding the candidates (an ``nn.ModuleList`` or ``nn.ModuleDict``); default:
        the module itself when it is one, the children listed in ``module.names`` (NNI ``LayerChoice``),
        else its one ModuleList / ModuleDict child.
    inputs: how many leading positional arguments of a taken-over call go to the candidates (the rest,
        e.g. DARTS's ``weights``, are the user's mixing arguments).
    methods: the user's methods a lidsplit mode takes over (AutoDL's ``MixedOp``:
        ``("forward_darts", "forward_gdas")``); outside a mode each runs unchanged.

    Already adapted modules and other Choices are left as they are, so calling ``adapt`` twice is harmless.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lidsplit: adapt: model must be an nn.Module, got {type(model).__name__}")
    match = _matcher(cls)
    if label is not None and not callable(label):
        raise TypeError(f"lidsplit: adapt: label must be a callable (name, module) -> str, got {label!r}")
    if isinstance(inputs, bool) or not isinstance(inputs, int) or inputs < 1:
        raise ValueError(f"lidsplit: adapt: inputs must be an int >= 1, got {inputs!r}")
    if isinstance(methods, str) or not methods or not all(isinstance(m, str) and m for m in methods):
        raise TypeError(f"lidsplit: adapt: methods must be a non-empty sequence of method names, got {methods!r}")
    methods = tuple(methods)
    matched = [(n, m) for n, m in model.named_modules() if match(n, m)]
    if not matched:
        raise ValueError(f"lidsplit: adapt: no module of {type(model).__name__} matches {cls!r}")
    found = [(n, m) for n, m in matched if not isinstance(m, Choice)]
    plans = []
    for name, m in found:
        where = name or "<model>"
        attr, keys, named = _container(name, m, candidates)
        if not keys:
            raise ValueError(f"lidsplit: adapt: {where} ({type(m).__name__}) holds no candidate ops")
        names = ops(name, m) if callable(ops) else ops
        if names is None:
            names = keys if named else tuple(str(i) for i in range(len(keys)))
        if isinstance(names, str) or len(names) != len(keys):
            raise ValueError(
                f"lidsplit: adapt: {where} holds {len(keys)} candidate ops but ops= names {names!r}"
            )
        lb = name if label is None else label(name, m)
        if not isinstance(lb, str) or not lb:
            raise ValueError(f"lidsplit: adapt: the label of {where} must be a non-empty string, got {lb!r}")
        plans.append((name, m, _Adapter(Edge(lb, tuple(names)), attr, keys, inputs)))
    _check_shared_labels([(n, a.edge) for n, _, a in plans] + [(n, c.edge) for n, c in model.named_modules()
                                                                if isinstance(c, Choice)])
    for _, m, adapter in plans:  # nothing is changed before every match is checked
        m.__class__ = _adapted_class(type(m), methods)
        m.__dict__["_lidsplit_adapter"] = adapter
        for i, op in enumerate(m.ops):
            op.register_forward_pre_hook(_Guard(m, i))
    return model


def _check_shared_labels(edges: list[tuple[str, Edge]]) -> None:
    first: dict[str, tuple[str, Edge]] = {}
    for name, e in edges:
        ref = first.setdefault(e.label, (name, e))
        if ref[1].ops != e.ops:
            raise ValueError(
                f"lidsplit: adapt: edges sharing label {e.label!r} have different ops: {ref[0] or '<model>'} has "
                f"{list(ref[1].ops)}, {name or '<model>'} has {list(e.ops)}"
            )
