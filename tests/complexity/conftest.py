"""Shared fixtures of the complexity tests: a tiny supernet, a fixed batch, one CPU thread."""

from __future__ import annotations

import pytest
import torch
from _complexity_helpers import make_small


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny models run fastest on one thread (and do not stall when the machine is busy)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def small():
    return make_small()


@pytest.fixture
def batch():
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
