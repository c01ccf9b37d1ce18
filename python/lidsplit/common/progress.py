"""Progress bars: tqdm on a terminal; plain lines (no carriage returns, no ANSI codes) when stderr is
redirected to a file or pipe; nothing when progress is off.

Every bar should have a total: :func:`progress_bar` takes ``len(iterable)`` when the caller gives none,
and a caller iterating something without a length passes ``total=``. In line mode a bar writes one line
``desc: n/total (elapsed)`` at most every :data:`LINE_INTERVAL` seconds, and a last one when it closes
after running that long, so a redirected log of a long run shows its progress and a short bar writes
nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["progress_bar", "LINE_INTERVAL"]

#: Seconds between two lines of a bar when stderr is not a terminal.
LINE_INTERVAL = 30.0


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


class _LineBar(_NoBar):
    """A bar for a redirected stderr: a plain line now and then (module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None, desc: str, total: int | None, initial: int,
                 file: IO[str]) -> None:
        super().__init__(iterable)
        self.desc, self.total, self.n, self.file = desc or "progress", total, initial, file
        self.interval = LINE_INTERVAL
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for x in super().__iter__():
                yield x
                self.update(1)
        finally:
            self.close()

    def set_postfix(self, *_a: Any, refresh: bool = True, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, now: float) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        extra = f", {self.postfix}" if self.postfix else ""
        self.file.write(f"{self.desc}: {self.n}{of} ({now - self.start:.0f} s{extra})\n")
        self.file.flush()
        self.last = now

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self._line(now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        if now - self.start >= self.interval:  # a long bar says where it ended; a short one stays silent
            self._line(now)


def _is_terminal(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A progress bar over ``iterable`` with tqdm's keywords (``desc``, ``total``, ``initial``, ...):
    tqdm on a terminal, plain lines when stderr is redirected, none with ``enabled=False`` (or without
    tqdm on a terminal). ``total`` defaults to ``len(iterable)``."""
    if not enabled:
        return _NoBar(iterable)
    if kwargs.get("total") is None and iterable is not None and hasattr(iterable, "__len__"):
        kwargs["total"] = len(iterable)  # type: ignore[arg-type]
    file = kwargs.get("file") or sys.stderr
    if not _is_terminal(file):
        return _LineBar(iterable, kwargs.get("desc", ""), kwargs.get("total"), int(kwargs.get("initial", 0)), file)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        return _NoBar(iterable)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
