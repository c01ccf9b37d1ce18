"""Progress bars: tqdm when installed and wanted, otherwise a silent stand-in with the same methods."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress_bar"]


class _NoBar:
    """Stands in for a tqdm bar when progress is off or tqdm is not installed."""

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self._it = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._it if self._it is not None else ())

    def set_postfix(self, *_a: Any, **_k: Any) -> None:
        pass

    def update(self, *_a: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (tqdm is optional: without it, or with ``enabled=False``, none)."""
    if not enabled:
        return _NoBar(iterable)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        return _NoBar(iterable)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
