"""superpose: a weight tensor scaled elementwise by the summed coefficients of the boxes containing
each element (TangleNAS weight superposition, without building padded copies).

``superpose(weight, coeffs, boxes)`` returns ``weight * c`` where, for every index ``idx`` of
``weight``, ``c(idx) = sum_i coeffs[i] * [idx lies in box i]``, and box i is the product of the
half-open ranges ``[boxes[i, d, 0], boxes[i, d, 1])`` over the dimensions d. With box i the region of
``weight`` that choice i of an entangled op uses (a centred kernel slice, a channel prefix, ...) this is
exactly ``sum_i coeffs[i] * pad(slice_i(weight))``, the superposed weight, computed in one pass.

- weight: 1 to 8 dimensions, float32 / float16 / bfloat16 / float64, contiguous.
- coeffs: ``(n,)`` of any of those float dtypes, on weight's device (read on the device on CUDA).
- boxes: int64 ``(n, weight.dim(), 2)`` (start, stop) per dimension, on weight's device. On the CPU
  every range must satisfy ``0 <= start <= stop <= size`` (ValueError otherwise); on CUDA they are not
  checked (that would need a device synchronisation): the kernels clamp them to the tensor.

``c`` is accumulated in box order in float32 (float64 for float64 weights); the output has weight's
dtype. Registered as ``torch.ops.lidsplit.superpose`` (schema ``(Tensor weight, Tensor coeffs, Tensor
boxes) -> Tensor``, any strides) with a fake kernel and autograd:

- ``d/dweight = superpose(grad, coeffs, boxes)`` (the same op),
- ``d/dcoeffs[i] = sum over box i of grad * weight``, float64 accumulation (deterministic order), by
  ``torch.ops.lidsplit.superpose_coeff_grad(grad, weight, boxes)`` (returns float64, cast to coeffs'
  dtype).

Both backward formulas are themselves differentiable (the op is bilinear in weight and coeffs), so
double backward works. Nothing is differentiable in ``boxes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lidsplit import _C
from lidsplit.ops._dlpack import capsule, check_tensor, describe, plain_eager, stream_of

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MAX_DIMS = 8


def _check(weight: object, coeffs: object, boxes: object, *, range_check: bool = True) -> int:
    """Raise naming the argument unless the three arguments fit; return the number of boxes n."""
    w = check_tensor("weight", weight, dtypes=DTYPES)
    if not 1 <= w.dim() <= MAX_DIMS:
        raise ValueError(f"lidsplit: argument 'weight' ({describe(w)}): expected 1 to {MAX_DIMS} dimensions")
    b = check_tensor("boxes", boxes, ndims=(3,), dtypes=(torch.int64,), device=w.device)
    if b.shape[1] != w.dim() or b.shape[2] != 2:
        raise ValueError(
            f"lidsplit: argument 'boxes' ({describe(b)}): expected shape (n, {w.dim()}, 2): one (start, stop) "
            "pair per dimension of 'weight'"
        )
    n = b.shape[0]
    c = check_tensor("coeffs", coeffs, ndims=(1,), dtypes=DTYPES, device=w.device)
    if c.shape[0] != n:
        raise ValueError(f"lidsplit: argument 'coeffs' ({describe(c)}): expected size {n} (the number of boxes)")
    if range_check and b.device.type == "cpu" and n:
        size = torch.tensor(w.shape, dtype=torch.int64)
        start, stop = b[..., 0], b[..., 1]
        bad = (start < 0) | (start > stop) | (stop > size)
        if bool(bad.any()):
            i, d = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"lidsplit: argument 'boxes': box {i} has range [{int(start[i, d])}, {int(stop[i, d])}) in "
                f"dimension {d} of size {w.shape[d]}; expected 0 <= start <= stop <= size"
            )
    return n


# ---- kernels: the C++ side checks everything; the Python checks only run to name a failure -----


def _forward(weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
    out = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    try:
        _C.superpose(capsule(weight), capsule(coeffs), capsule(boxes), capsule(out), stream_of(out))
    except (ValueError, TypeError, BufferError):  # BufferError: DLPack refuses e.g. meta tensors
        _check(weight, coeffs, boxes)
        raise
    return out


def _coeff_grad_impl(grad: Tensor, weight: Tensor, boxes: Tensor) -> Tensor:
    n = boxes.shape[0] if isinstance(boxes, Tensor) and boxes.dim() == 3 else 0
    out = torch.empty((n,), dtype=torch.float64, device=weight.device)
    ws = None
    if weight.is_cuda:
        ws = capsule(torch.empty(_C.superpose_coeff_grad_workspace(n), dtype=torch.float64, device=weight.device))
    try:
        _C.superpose_coeff_grad(capsule(grad), capsule(weight), capsule(boxes), capsule(out), ws, stream_of(weight))
    except (ValueError, TypeError, BufferError):  # BufferError: DLPack refuses e.g. meta tensors
        _check(weight, out.new_zeros(n), boxes)
        raise
    return out


# ---- torch.library registration ------------------------------------------------------------------


@torch.library.custom_op("lidsplit::superpose", mutates_args=())
def _superpose(weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
    # A compiled graph may hand over any layout (inductor picks channels-last for conv weight
    # gradients): the registered op takes any strides; the eager public function insists on contiguous.
    return _forward(weight.contiguous(), coeffs.contiguous(), boxes.contiguous())


@_superpose.register_fake
def _(weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
    _check(weight.contiguous(), coeffs.contiguous(), boxes.contiguous(), range_check=False)
    return weight.new_empty(weight.shape)


@torch.library.custom_op("lidsplit::superpose_coeff_grad", mutates_args=())
def _coeff_grad(grad: Tensor, weight: Tensor, boxes: Tensor) -> Tensor:
    """(n,) float64: sum over box i of grad * weight, the gradient of superpose w.r.t. its coeffs."""
    return _coeff_grad_impl(grad.contiguous(), weight.contiguous(), boxes.contiguous())


@_coeff_grad.register_fake
def _(grad: Tensor, weight: Tensor, boxes: Tensor) -> Tensor:
    n = _check(weight.contiguous(), weight.new_zeros(boxes.shape[0] if boxes.dim() == 3 else 0), boxes.contiguous(),
               range_check=False)
    if grad.shape != weight.shape or grad.dtype != weight.dtype:
        raise ValueError(f"lidsplit: argument 'grad' ({describe(grad)}): expected the shape and dtype of 'weight'")
    return weight.new_empty((n,), dtype=torch.float64)


def _setup_superpose(ctx, inputs, output) -> None:
    weight, coeffs, boxes = inputs
    ctx.coeff_dtype = coeffs.dtype
    ctx.save_for_backward(weight if coeffs.requires_grad else None, coeffs, boxes)


def _backward_superpose(ctx, grad: Tensor):
    weight, coeffs, boxes = ctx.saved_tensors
    need_w, need_c, _ = ctx.needs_input_grad
    grad = grad.contiguous()
    gw = torch.ops.lidsplit.superpose(grad, coeffs, boxes) if need_w else None
    gc = torch.ops.lidsplit.superpose_coeff_grad(grad, weight, boxes).to(ctx.coeff_dtype) if need_c else None
    return gw, gc, None


_superpose.register_autograd(_backward_superpose, setup_context=_setup_superpose)


def _setup_coeff_grad(ctx, inputs, output) -> None:
    grad, weight, boxes = inputs
    ctx.save_for_backward(grad, weight, boxes)


def _backward_coeff_grad(ctx, gg: Tensor):
    grad, weight, boxes = ctx.saved_tensors
    need_g, need_w, _ = ctx.needs_input_grad
    gg = gg.contiguous()
    d_grad = torch.ops.lidsplit.superpose(weight, gg, boxes) if need_g else None
    d_weight = torch.ops.lidsplit.superpose(grad, gg, boxes) if need_w else None
    return d_grad, d_weight, None


_coeff_grad.register_autograd(_backward_coeff_grad, setup_context=_setup_coeff_grad)


class _SuperposeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, coeffs: Tensor, boxes: Tensor) -> Tensor:
        ctx.coeff_dtype = coeffs.dtype
        ctx.save_for_backward(weight if coeffs.requires_grad else None, coeffs, boxes)
        return _forward(weight, coeffs, boxes)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, coeffs, boxes = ctx.saved_tensors
        need_w, need_c, _ = ctx.needs_input_grad
        grad = grad.contiguous()
        gw = superpose(grad, coeffs, boxes) if need_w else None
        gc = superpose_coeff_grad(grad, weight, boxes).to(ctx.coeff_dtype) if need_c else None
        return gw, gc, None


class _CoeffGradFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad: Tensor, weight: Tensor, boxes: Tensor) -> Tensor:
        ctx.save_for_backward(grad, weight, boxes)
        return _coeff_grad_impl(grad, weight, boxes)

    @staticmethod
    def backward(ctx, gg: Tensor):
        grad, weight, boxes = ctx.saved_tensors
        need_g, need_w, _ = ctx.needs_input_grad
        gg = gg.contiguous()
        return (superpose(weight, gg, boxes) if need_g else None, superpose(grad, gg, boxes) if need_w else None, None)


def _as_boxes(boxes: Tensor | Sequence, weight: Tensor) -> Tensor:
    if isinstance(boxes, Tensor):
        return boxes
    try:
        return torch.as_tensor(boxes, dtype=torch.int64, device=weight.device if isinstance(weight, Tensor) else None)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"lidsplit: argument 'boxes' must be an int64 tensor (n, ndim, 2) or nested sequences: {e}") from None


def superpose(weight: Tensor, coeffs: Tensor, boxes: Tensor | Sequence) -> Tensor:
    """``weight * c`` with ``c(idx) = sum_i coeffs[i] * [idx in box i]`` (see the module doc).

    Args:
        weight: the full (largest) weight, 1 to 8 dimensions, float, contiguous.
        coeffs: ``(n,)`` float (any float dtype), one coefficient per box, on weight's device.
        boxes: int64 ``(n, weight.dim(), 2)`` start/stop per dimension (nested sequences are converted).

    Returns:
        A new tensor shaped and typed like ``weight``; differentiable in weight and coeffs (twice).
    """
    boxes = _as_boxes(boxes, weight)
    if not isinstance(weight, Tensor) or not isinstance(coeffs, Tensor):
        _check(weight, coeffs, boxes)  # raises, naming the argument
    if not plain_eager((weight, coeffs, boxes)):
        return torch.ops.lidsplit.superpose(weight, coeffs, boxes)
    if torch.is_grad_enabled() and (weight.requires_grad or coeffs.requires_grad):
        return _SuperposeFunction.apply(weight, coeffs, boxes)
    return _forward(weight, coeffs, boxes)


def superpose_coeff_grad(grad: Tensor, weight: Tensor, boxes: Tensor | Sequence) -> Tensor:
    """``(n,)`` float64: ``sum over box i of grad * weight`` (the gradient of superpose w.r.t. coeffs)."""
    boxes = _as_boxes(boxes, weight)
    if not isinstance(weight, Tensor) or not isinstance(grad, Tensor):
        check_tensor("weight", weight)
        check_tensor("grad", grad)
    if not plain_eager((grad, weight, boxes)):
        return torch.ops.lidsplit.superpose_coeff_grad(grad, weight, boxes)
    if torch.is_grad_enabled() and (grad.requires_grad or weight.requires_grad):
        return _CoeffGradFunction.apply(grad, weight, boxes)
    return _coeff_grad_impl(grad, weight, boxes)
