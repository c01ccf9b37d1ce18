"""The one registry of split criteria: name -> factory, with aliases.

Everything that needs the criterion names reads them here (:func:`criterion_names`): ``make_criterion``,
the pipeline config's choices, the command line and the tests. A criterion registers itself where it is
defined, so adding one is one module plus one decorator::

    @register_criterion("mine", aliases=("my_criterion",))
    class MyCriterion(Criterion):
        name = "mine"
        def _measure(self, model, scoring, edge, ops, r, x, y, timings): ...

and importing that module (the built-ins are imported by ``lidsplit.split.criteria``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lidsplit.split.criteria.base import Criterion

__all__ = ["register_criterion", "criterion_names", "make_criterion", "resolve_name"]

#: name -> factory ``(**options) -> Criterion``, in registration order (the order of ``criterion_names``).
_REGISTRY: dict[str, Callable[..., Criterion]] = {}
#: alias -> name (aliases are matched after lower-casing and ``-`` -> ``_``).
_ALIASES: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def register_criterion(name: str, factory: Callable[..., Criterion] | None = None, *,
                       aliases: tuple[str, ...] = ()) -> Any:
    """Register ``factory`` (a Criterion subclass or any callable ``(**options) -> Criterion``) under
    ``name`` and ``aliases``. Used as a class decorator (``@register_criterion("lid")``) or called with
    the factory. A name or alias already taken is an error (nothing is replaced silently)."""
    if not isinstance(name, str) or not name or _key(name) != name:
        raise ValueError(f"register_criterion: name must be a non-empty lower-case str without '-', got {name!r}")

    def add(f: F) -> F:
        if not callable(f):
            raise TypeError(f"register_criterion({name!r}): expected a Criterion class or factory, got {f!r}")
        taken = [n for n in (name, *map(_key, aliases)) if n in _REGISTRY or n in _ALIASES]
        if taken:
            raise ValueError(f"register_criterion({name!r}): {taken} already registered")
        _REGISTRY[name] = f
        for a in aliases:
            _ALIASES[_key(a)] = name
        return f

    return add if factory is None else add(factory)  # type: ignore[arg-type]


def criterion_names() -> tuple[str, ...]:
    """The registered criterion names (no aliases), in registration order."""
    return tuple(_REGISTRY)


def resolve_name(name: str) -> str:
    """The registered name behind ``name`` or one of its aliases (ValueError naming the choices)."""
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"criterion: unknown {name!r}; expected one of {list(_REGISTRY)}")
    return key


def make_criterion(criterion: str | Criterion, **options: Any) -> Criterion:
    """A criterion by name (``lid``, ``gm``, a proxy name, ``exhaustive``, ``random``, or any registered
    name; aliases such as ``gradient_matching``, ``lr``, ``jacobcov``) with its options, or a Criterion
    returned as is."""
    if isinstance(criterion, Criterion):
        if options:
            raise TypeError("make_criterion: options are for criteria given by name")
        return criterion
    if not isinstance(criterion, str):
        raise TypeError(f"criterion: expected a name or a Criterion, got {type(criterion).__name__}")
    key = resolve_name(criterion)
    crit = _REGISTRY[key](**options)
    if not isinstance(crit, Criterion):
        raise TypeError(f"criterion {key!r}: its factory returned a {type(crit).__name__}, not a Criterion")
    return crit
