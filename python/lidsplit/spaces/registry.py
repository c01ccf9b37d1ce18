"""The one registry of built-in search spaces: name -> builder ``(**kw) -> supernet``, with aliases.

``lidsplit.spaces.build(name, **kw)`` and the command line read it. A space registers its builder where
it is defined::

    @register_space("myspace", aliases=("my_space",))
    def myspace(num_classes: int = 10, in_channels: int = 1, **kw) -> MySupernet: ...

Names are matched case-insensitively with ``-`` and ``_`` removed (``NAS-Bench-201`` finds
``nasbench201``). Builders take at least ``num_classes`` and ``in_channels`` (what the pipeline passes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_space", "space_names", "build", "BUILDERS"]

#: normalised name or alias -> builder (every spelling ``build`` accepts)
BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_NAMES: list[str] = []

F = TypeVar("F", bound=Callable[..., nn.Module])


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def register_space(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Class or function decorator: register a supernet builder under ``name`` and ``aliases`` (a name
    already taken is an error)."""

    def add(builder: F) -> F:
        keys = [_key(n) for n in (name, *aliases)]
        taken = [k for k in keys if k in BUILDERS]
        if taken:
            raise ValueError(f"register_space({name!r}): {taken} already registered")
        for k in keys:
            BUILDERS[k] = builder
        _NAMES.append(name)
        return builder

    return add


def space_names() -> tuple[str, ...]:
    """The registered space names (no aliases), in registration order."""
    return tuple(_NAMES)


def build(name: str, **kw: Any) -> nn.Module:
    """Build a registered supernet by name (nb201 | darts | mobilenet; aliases nasbench201, proxyless)."""
    try:
        fn = BUILDERS[_key(name)]
    except (KeyError, AttributeError):
        raise ValueError(f"lidsplit: unknown search space {name!r}; choose from {list(_NAMES)}") from None
    return fn(**kw)
