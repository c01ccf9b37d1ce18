"""Helpers of the complexity tests (a module of its own: test directories have no __init__.py)."""

from __future__ import annotations

import torch

from lidsplit.spaces import nb201

SMALL_OPS = ("none", "skip_connect", "nor_conv_3x3")  # 3^6 = 729 architectures


def make_small(seed: int = 0):
    """A tiny NB201 supernet (C=2) on 3 ops, initialised with ``seed``."""
    torch.manual_seed(seed)
    return nb201(C=2, ops=SMALL_OPS)
