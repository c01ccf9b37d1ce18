"""Seeds derived from names: every random stream lidsplit draws is a pure function of its parts."""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["derive_seed"]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed derived deterministically (platform- and run-independent) from ``parts``."""
    text = "\x1f".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)
