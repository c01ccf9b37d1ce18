"""Shared fixtures of the complexity tests: a tiny supernet, a fixed batch, one CPU thread."""

from __future__ import annotations

import pytest
import torch
from _complexity_helpers import make_small


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # type: ignore[no-untyped-def]
    """Every test here runs on one torch thread."""


@pytest.fixture
def small():
    return make_small()


@pytest.fixture
def batch():
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
