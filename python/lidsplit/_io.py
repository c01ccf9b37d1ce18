"""Deprecated location of the atomic writes: use :mod:`lidsplit.common.io` (kept for one release)."""

from lidsplit.common.io import atomic_torch_save, atomic_write, atomic_write_text

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save"]
