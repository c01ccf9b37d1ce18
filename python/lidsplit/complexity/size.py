"""Search-space size: the exact number of architectures (Python integers, never overflow).

The size of a space, a sub-supernet or a supernet is the product of the number of (enabled) ops per
edge. What "an architecture" is follows the supernet: one op per decision. Reference values (checked in
``tests/complexity/test_size.py``):

==========================================  ===============================================================
NAS-Bench-201 (``nb201``)                   5 ops on 6 edges: 5^6 = 15,625 (the benchmark's count).
DARTS supernet (``darts``)                  8 ops on 14 normal + 14 reduce edges: 8^28 = 2^84 ~ 1.93e25.
                                            Every edge is a decision, ``none`` included, as in DARTS's
                                            supernet. The *genotype* space (per node 2 of its inputs, each
                                            with one of the 7 non-``none`` ops) is much smaller:
                                            ``(prod_{i=2..5} C(i,2) * 7^2)^2 = (180 * 7^8)^2 ~ 1.08e18``
                                            (:func:`darts_genotype_count`), the "10^18" usually quoted.
MobileNet (``mobilenet``, defaults)         6 blocks; zero allowed where stride 1 and widths match:
                                            7 * 7 * 6 * 7 * 6 * 7 = 7^4 * 6^2 = 86,436.
ProxylessNAS (:data:`PROXYLESSNAS_KW`)      ImageNet stages of ProxylessNAS's code: 21 searchable blocks, the
                                            first block of each of the 6 stages without ``zero``:
                                            6^6 * 7^15 = 221,502,229,807,900,608 ~ 2.2e17.
ProxylessNAS as the paper counts it         The complexity paper quotes "over 6.64e17". The product of block
(:data:`PAPER_PROXYLESSNAS_KW`)             choices that gives it is 3 * 6^6 * 7^15 = 664,506,689,423,701,824
                                            ~ 6.645e17: the same 21 blocks plus a searchable first MBConv1
                                            block with kernel 3, 5 or 7 (``first_block_kernels=(3, 5, 7)``).
                                            The paper does not state its configuration; this is the only
                                            natural ProxylessNAS configuration we found that gives 6.64e17
                                            (7^21 = 5.6e17 and 6^6 * 7^15 = 2.2e17 do not).
==========================================  ===============================================================
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from lidsplit.supernet import SearchSpace, SubSupernet, search_space

__all__ = [
    "space_size",
    "log10_size",
    "darts_genotype_count",
    "PROXYLESSNAS_STAGES",
    "PROXYLESSNAS_KW",
    "PAPER_PROXYLESSNAS_KW",
]

#: ProxylessNAS's ImageNet stages (out_channels, blocks, stride of the first block), from its code.
PROXYLESSNAS_STAGES: tuple[tuple[int, int, int], ...] = (
    (24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1),
)

#: ``lidsplit.spaces.mobilenet(**PROXYLESSNAS_KW)``: the ProxylessNAS ImageNet supernet (6^6 * 7^15).
PROXYLESSNAS_KW: dict[str, Any] = {
    "in_channels": 3,
    "num_classes": 1000,
    "first_channels": 32,
    "first_block_channels": 16,
    "stages": PROXYLESSNAS_STAGES,
    "feature_mix_channels": 1280,
    "first_stride": 2,
}

#: The configuration that reproduces the complexity paper's 6.64e17 (3 * 6^6 * 7^15), see module doc.
PAPER_PROXYLESSNAS_KW: dict[str, Any] = {**PROXYLESSNAS_KW, "first_block_kernels": (3, 5, 7)}


def _as_sub(obj: SearchSpace | SubSupernet | nn.Module) -> SubSupernet:
    if isinstance(obj, SubSupernet):
        return obj
    if isinstance(obj, SearchSpace):
        return SubSupernet.full(obj)
    if isinstance(obj, nn.Module):
        return SubSupernet.full(search_space(obj))
    raise TypeError(f"complexity: expected a SearchSpace, SubSupernet or supernet module, got {type(obj).__name__}")


def space_size(obj: SearchSpace | SubSupernet | nn.Module) -> int:
    """Exact number of architectures of a space, a sub-supernet (enabled ops only) or a supernet."""
    return int(_as_sub(obj).size)


def log10_size(size: int) -> float:
    """``log10(size)`` for arbitrarily large integers (exact digits, no float overflow)."""
    size = int(size)
    if size < 1:
        raise ValueError(f"complexity: a size is a positive integer, got {size}")
    digits = len(str(size))
    if digits <= 300:
        return math.log10(size)
    lead = int(str(size)[:17])
    return math.log10(lead) + (digits - 17)


def darts_genotype_count(steps: int = 4, ops: int = 8, has_none: bool = True) -> int:
    """Number of DARTS genotypes (normal and reduction cell): per intermediate node ``i`` (``i`` inputs)
    two distinct inputs, each with one non-``none`` op. ``(prod_i C(i, 2) * k^2)^2``, ``k = ops - 1`` if
    the op list holds ``none`` (DARTS: 8 ops -> k = 7, ~1.08e18)."""
    k = ops - 1 if has_none else ops
    per_cell = math.prod(math.comb(i, 2) * k * k for i in range(2, steps + 2))
    return per_cell * per_cell
