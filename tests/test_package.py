"""The package imports anywhere and says why CUDA is (not) usable."""

from __future__ import annotations

import torch

import lidsplit


def test_cuda_info_is_consistent() -> None:
    info = lidsplit.cuda_info()
    assert set(info) >= {"compiled", "runtime_version", "device_count", "usable", "reason", "torch_cuda"}
    if info["usable"]:
        assert info["reason"] == "" and info["device_count"] > 0 and torch.cuda.is_available()
    else:
        assert info["reason"], "an unusable CUDA build must say why"

