"""Shared fixtures of the training tests: a tiny NB201 supernet (the tiny data: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from lidsplit.spaces import nb201


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # type: ignore[no-untyped-def]
    """Every test here runs on one torch thread."""


@pytest.fixture
def make_model() -> Callable[[int], nn.Module]:
    def make(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nb201(C=4, N=1, num_classes=4, in_channels=1)

    return make

