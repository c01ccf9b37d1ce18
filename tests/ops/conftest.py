"""Fixtures of the op tests: ``dev`` (every device present, usable CUDA only) and the CPU panel plans."""

from __future__ import annotations

import pytest

import lidsplit
from lidsplit.ops import lid as lid_mod


@pytest.fixture
def dev(device: str) -> str:
    """The device of the table (tests/conftest.py), skipping CUDA where lidsplit's kernels cannot run."""
    if device == "cuda" and not lidsplit.cuda_info()["usable"]:
        pytest.skip(f"lidsplit CUDA kernels unusable: {lidsplit.cuda_info()['reason']}")
    return device


@pytest.fixture(params=["full", "panels"])
def panels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each knn / lid test with the default plan and with tiny panels and buffer (symmetric path, chunking)."""
    if request.param == "panels":
        monkeypatch.setattr(lid_mod, "_FULL_GRAM_WORK", 0)
        monkeypatch.setattr(lid_mod, "_MIN_PANEL", 16)
        monkeypatch.setattr(lid_mod, "_MAX_PANEL", 16)
        monkeypatch.setattr(lid_mod, "_PANELS", 1 << 20)
        monkeypatch.setattr(lid_mod, "_BUF_FLOATS", 256)
    return request.param
