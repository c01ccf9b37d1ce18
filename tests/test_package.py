"""The package imports anywhere and says why CUDA is (not) usable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import lidsplit


def test_cuda_info_is_consistent() -> None:
    info = lidsplit.cuda_info()
    assert set(info) >= {"compiled", "runtime_version", "device_count", "usable", "reason", "torch_cuda"}
    if info["usable"]:
        assert info["reason"] == "" and info["device_count"] > 0 and torch.cuda.is_available()
    else:
        assert info["reason"], "an unusable CUDA build must say why"


@pytest.mark.parametrize("first, preset, expected", [
    ("import lidsplit", None, "PASSIVE"),           # the CLI's case: lidsplit loads torch
    ("import lidsplit", "ACTIVE", "ACTIVE"),        # the user's choice stands
    ("import torch; import lidsplit", None, None),  # too late to matter: lidsplit leaves it alone
])
def test_openmp_wait_policy_is_passive_when_lidsplit_loads_torch(first: str, preset: str | None,
                                                                 expected: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = f"{first}; import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(expected)
