"""Atomic writes and safe reads of the files lidsplit saves.

Writes: nothing a user saved is lost or half-written when a run is interrupted (a temp file in the
same directory, fsync, ``os.replace``). Reads: every file lidsplit reads back goes through
:func:`read_json` or :func:`load_checkpoint`, which turn a damaged file (truncated, zero-filled, edited)
into a :class:`~lidsplit.common.errors.DamagedFileError` naming the file and what to do. Checkpoints are
always loaded with ``weights_only=True`` (never torch's unsafe ``weights_only=False`` advice).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

from lidsplit.common.errors import DamagedFileError

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "read_json", "load_checkpoint", "load_weights",
           "parse_file"]

PathLike = str | os.PathLike[str]
T = TypeVar("T")


def atomic_write(path: PathLike, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temp file in ``path``'s directory, fsync, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def read_json(path: PathLike, *, what: str = "file", remedy: str = "delete it and re-run the command") -> Any:
    """The JSON value in ``path``. A file that is not UTF-8 JSON raises ``DamagedFileError`` naming
    ``path``, ``what`` it is and the ``remedy``; a missing file raises ``FileNotFoundError`` as usual."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise DamagedFileError(path, what, f"not UTF-8 text at byte {e.start}", remedy) from None
    except json.JSONDecodeError as e:
        raise DamagedFileError(path, what, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", remedy) from None
    except RecursionError:
        raise DamagedFileError(path, what, "JSON nested too deeply", remedy) from None


def load_checkpoint(path: PathLike, *, map_location: Any = "cpu", what: str = "checkpoint",
                    remedy: str = "delete it and re-run the command to re-create it") -> Any:
    """``torch.load(path, weights_only=True)``; a file torch cannot read raises ``DamagedFileError``
    naming ``path`` and the ``remedy`` (never torch's advice to load with ``weights_only=False``,
    which would run code from the file). A missing file raises ``FileNotFoundError`` as usual."""
    with open(path, "rb") as f:  # a missing or unreadable file raises its OSError, not "damaged"
        try:
            return torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch's unpickler fails in many ways on a damaged file
            # torch's own message may advise weights_only=False (unsafe): keep only the exception's type.
            raise DamagedFileError(path, what, f"not a complete torch file: {type(e).__name__}", remedy) from None


def load_weights(model: Any, path: PathLike, *, what: str = "weights file", map_location: Any = "cpu",
                 remedy: str = "delete it and re-run the command to re-create it") -> Any:
    """Load the state dict in ``path`` into ``model`` (an ``nn.Module``, returned); a damaged file, or one
    that does not hold this model's weights, raises ``DamagedFileError`` naming ``path``."""
    state = load_checkpoint(path, map_location=map_location, what=what, remedy=remedy)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DamagedFileError(path, what, f"it does not hold this model's weights: {first[:200]}", remedy) from None
    return model


def parse_file(path: PathLike, parse: Callable[[Any], T], *, what: str,
               remedy: str = "delete it and re-run the command") -> T:
    """``parse(read_json(path))``; a file whose JSON ``parse`` rejects (``ValueError``, ``KeyError``,
    ``TypeError``, ...) is damaged too: ``DamagedFileError`` naming ``path`` and ``parse``'s reason."""
    data = read_json(path, what=what, remedy=remedy)
    try:
        return parse(data)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        raise DamagedFileError(path, what, why[:300], remedy) from None
