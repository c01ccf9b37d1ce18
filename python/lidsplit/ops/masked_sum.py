"""PLACEHOLDER (to be replaced by the kernel-backed op): masked_sum via the reference."""

from __future__ import annotations

from torch import Tensor

from lidsplit.ops import reference


def masked_sum(xs: list[Tensor], weights: Tensor) -> Tensor:
    return reference.masked_sum(list(xs), weights)
