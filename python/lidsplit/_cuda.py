"""What the compiled extension knows about CUDA."""

from __future__ import annotations

from typing import Any

import torch

from lidsplit import _C


def cuda_info() -> dict[str, Any]:
    """Whether lidsplit's CUDA kernels can run here, and if not, why.

    Returns a dict with ``compiled`` (the extension holds CUDA kernels), ``runtime_version`` (the
    CUDA runtime linked in, e.g. 13000), ``device_count`` (devices the runtime sees), ``usable``
    (compiled, a device is present, and torch itself can use CUDA) and ``reason`` (empty when usable).
    """
    status = dict(_C.cuda_status())
    compiled = bool(_C.cuda_compiled())
    torch_cuda = torch.cuda.is_available()
    reason = status["reason"]
    if compiled and not reason and not torch_cuda:
        reason = f"torch {torch.__version__} cannot use CUDA (CPU build of torch, or no driver)"
    usable = compiled and status["device_count"] > 0 and torch_cuda
    return {
        "compiled": compiled,
        "runtime_version": int(status["runtime_version"]),
        "device_count": int(status["device_count"]),
        "torch_cuda": torch_cuda,
        "usable": usable,
        "reason": "" if usable else reason,
    }
