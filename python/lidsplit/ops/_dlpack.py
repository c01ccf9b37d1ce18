"""Hand tensors to lidsplit._C as DLPack capsules, with the checks every op shares.

Checks happen here first so that the error names the Python argument and says what was expected; the
C++ side checks again (dtype, device, contiguity, shape) because it must never trust its caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {str(t.dtype).removeprefix('torch.')}, device {t.device}"


def capsule(t: Tensor, versioned: bool = False) -> object:
    """A zero-copy DLPack capsule of `t` (legacy ``dltensor`` or versioned ``dltensor_versioned``)."""
    t = t.detach()
    if versioned:
        return t.__dlpack__(max_version=(1, 0))
    return to_dlpack(t)


def stream_of(t: Tensor) -> int:
    """The raw handle of torch's current stream on `t`'s device (0 on the CPU)."""
    if t.is_cuda:
        return torch.cuda.current_stream(t.device).cuda_stream
    return 0


def check_tensor(
    name: str,
    t: object,
    *,
    ndims: Iterable[int] | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    device: torch.device | None = None,
    contiguous: bool = True,
    finite: bool = False,
) -> Tensor:
    """Raise a ValueError/TypeError naming `name` unless `t` is a tensor of the expected kind."""
    if not isinstance(t, Tensor):
        raise TypeError(f"lidsplit: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if ndims is not None:
        ndims = tuple(ndims)
        if t.dim() not in ndims:
            want = " or ".join(str(d) for d in ndims)
            raise ValueError(f"lidsplit: argument '{name}' ({describe(t)}): expected {want} dimensions")
    if dtypes is not None and t.dtype not in dtypes:
        want = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"lidsplit: argument '{name}' ({describe(t)}): expected dtype {want}")
    if device is not None and t.device != device:
        raise ValueError(f"lidsplit: argument '{name}' ({describe(t)}): expected device {device}")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"lidsplit: argument '{name}' ({describe(t)}): expected a CPU or CUDA tensor")
    if contiguous and not t.is_contiguous():
        raise ValueError(
            f"lidsplit: argument '{name}' ({describe(t)}, strides {t.stride()}): expected a contiguous "
            "tensor; call .contiguous() first (lidsplit never copies silently)"
        )
    if finite and t.numel() > 0 and not bool(torch.isfinite(t).all()):
        raise ValueError(f"lidsplit: argument '{name}' ({describe(t)}): contains NaN or Inf")
    return t
