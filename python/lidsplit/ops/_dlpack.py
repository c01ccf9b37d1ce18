"""What every op shares: DLPack capsules for lidsplit._C, the argument checks, and the eager fast path.

Checks happen here first so that the error names the Python argument and says what was expected; the
C++ side checks again (dtype, device, contiguity, shape) because it must never trust its caller.

Adding an op: a kernel in csrc/cpu (and csrc/cuda), a binding in csrc/bind_<op>.cpp, and in
lidsplit/ops/<op>.py a ``torch.library.custom_op`` with a fake kernel (and autograd if differentiable)
plus a public function that calls the implementation directly when :func:`plain_eager` allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

# ---- eager fast path ---------------------------------------------------------------------------------
# The dispatcher route of a Python custom op costs tens of microseconds per call (more with a list input
# or autograd), as much as a whole small op. In plain eager mode the public functions therefore call the
# same implementation directly. Anything that needs the registered op (torch.compile, FX/export tracing,
# fake or subclass tensors, torch.func transforms, dispatch or function modes) takes the torch.ops
# route; both compute the same thing with the same kernels.

_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)
# Private torch hooks; if a torch version lacks one, always take the registered op (the safe route).
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: True)
_dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 1)
_function_modes = getattr(torch._C, "_is_torch_function_mode_enabled", lambda: True)


def plain_eager(tensors: Iterable[object]) -> bool:
    """True when the registered op may be bypassed: plain tensors (None entries allowed), no
    compile/trace, transform or mode. (The first dispatcher call of a Python custom op also imports
    torch._dynamo, seconds of start-up.)"""
    for t in tensors:
        if t is not None and type(t) not in _PLAIN_TENSORS:
            return False
    return not (torch.compiler.is_compiling() or _transforms_active() or _dispatch_modes() or _function_modes())



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
