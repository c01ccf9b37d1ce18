"""masked_sum: the weighted sum of n same-shaped tensors, where a zero weight skips its input.

``masked_sum(xs, weights)`` computes ``sum_j weights[j] * xs[j]`` for a list of n tensors (no stacking
copy). With ``weights`` of shape ``(G, n)`` the leading (batch) dimension of the tensors is split into G
equal groups and group g is summed with row g. A weight of exactly 0 skips its input: the input (or
its group slice) is never read, so it may hold anything, NaN included; on CUDA the kernel reads the
weight on the device and skips the load, without a host synchronisation.

Accumulation is in float32 (float64 for float64 inputs), in input order; weights may be float32 or the
inputs' dtype. Registered as ``torch.ops.lidsplit.masked_sum`` (schema ``(Tensor[] xs, Tensor weights)
-> Tensor``) with a fake kernel (torch.compile) and first-order autograd:

- ``d/dxs[j] = weights[..., j] * grad`` per group, computed for all j in one pass over ``grad`` by
  ``torch.ops.lidsplit.masked_sum_grad_inputs``. An input whose weights are all 0 costs nothing in the
  eager CPU backward: it gets no gradient (``None``, so ``x.grad`` stays ``None`` for a leaf and the
  branch that computed a non-leaf input is not back-propagated at all). On CUDA, and through the
  registered op (torch.compile, tracing, torch.func), it gets a materialized zero gradient instead
  (written without reading ``grad``): deciding to return ``None`` there would need the weights'
  values on the host, i.e. a device synchronisation on CUDA and a data-dependent graph under
  torch.compile. (An optimizer skips a parameter whose ``.grad`` is ``None``: no weight decay or
  momentum step for a masked-out op's parameters on the CPU, as for an op that was not run.)
- ``d/dweights[..., j] = <xs[j], grad>`` per group, for zero weights too (this reads every input), in one
  pass over the n inputs and ``grad`` by ``torch.ops.lidsplit.masked_sum_grad_weights``: float64
  accumulation (on the CPU, float32 within chunks of 1024 elements for 32/16-bit inputs, float64 across
  chunks), returned in the weights' dtype.

The backward kernels are not themselves differentiable (no double backward).

Inputs must be contiguous (lidsplit never copies silently): a channels_last tensor needs
``.contiguous()`` first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lidsplit import _C
from lidsplit.ops._dlpack import capsule, check_tensor, describe, plain_eager, stream_of

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check_list(name: str, xs: object, like: Tensor | None = None, contiguous: bool = True) -> list[Tensor]:
    """xs as a list of same-shaped, same-dtype, same-device contiguous tensors (like `like` if given)."""
    if isinstance(xs, Tensor) or not isinstance(xs, Sequence):
        raise TypeError(f"lidsplit: argument '{name}' must be a list of tensors, got {type(xs).__name__}")
    xs = list(xs)
    if not xs:
        raise ValueError(f"lidsplit: argument '{name}': expected at least one tensor, got an empty list")
    ref_name = f"{name}[0]" if like is None else "grad"
    ref = check_tensor(ref_name, xs[0] if like is None else like, dtypes=DTYPES, contiguous=contiguous)
    for j, x in enumerate(xs):
        x = check_tensor(f"{name}[{j}]", x, contiguous=contiguous)
        if x.dtype != ref.dtype or x.device != ref.device or x.shape != ref.shape:
            raise ValueError(
                f"lidsplit: argument '{name}[{j}]' ({describe(x)}): expected the same shape, dtype and device "
                f"as '{ref_name}' ({describe(ref)})"
            )
    return xs


def _check_weights(weights: object, n: int, like: Tensor, like_name: str = "xs[0]") -> int:
    """Check `weights` for n inputs shaped like `like`; return the number of groups G."""
    allowed = (torch.float32,) if like.dtype == torch.float32 else (torch.float32, like.dtype)
    w = check_tensor("weights", weights, ndims=(1, 2), dtypes=allowed)
    if w.device != like.device:
        raise ValueError(
            f"lidsplit: argument 'weights' ({describe(w)}): expected the device of '{like_name}' ({like.device})"
        )
    if w.shape[-1] != n:
        raise ValueError(
            f"lidsplit: argument 'weights' ({describe(w)}): expected size {n} (the number of inputs) in its "
            "last dimension"
        )
    if w.dim() == 1:
        return 1
    groups = w.shape[0]
    if groups < 1:
        raise ValueError(f"lidsplit: argument 'weights' ({describe(w)}): expected at least one group (row)")
    if like.dim() == 0 or like.shape[0] % groups != 0:
        raise ValueError(
            f"lidsplit: argument 'weights' ({describe(w)}): its {groups} groups must split the leading "
            f"dimension of '{like_name}' ({describe(like)}) into equal slices"
        )
    return groups


# ---- kernels: the C++ side checks everything; the Python checks only run to name a failure -----


def _forward(xs: list[Tensor], weights: Tensor) -> Tensor:
    x0 = xs[0] if xs else _check_list("xs", xs)
    out = torch.empty(x0.shape, dtype=x0.dtype, device=x0.device)
    if x0.numel() == 0:  # (empty tensors may carry any strides; nothing to compute)
        _check_weights(weights, len(_check_list("xs", xs, contiguous=False)), x0)
        return out
    try:
        _C.masked_sum([capsule(x) for x in xs], capsule(weights), capsule(out), stream_of(out))
    except (ValueError, TypeError, BufferError):  # BufferError: DLPack refuses e.g. meta tensors
        _check_weights(weights, len(_check_list("xs", xs)), x0)
        raise
    return out


def _grad_inputs_impl(grad: Tensor, weights: Tensor, n: int) -> list[Tensor]:
    outs = [torch.empty(grad.shape, dtype=grad.dtype, device=grad.device) for _ in range(n)]
    if grad.numel() == 0:
        return outs
    try:
        _C.masked_sum_spread(capsule(grad), capsule(weights), [capsule(o) for o in outs], stream_of(grad))
    except (ValueError, TypeError, BufferError):  # BufferError: DLPack refuses e.g. meta tensors
        _check_weights(weights, n, check_tensor("grad", grad, dtypes=DTYPES), "grad")
        raise
    return outs


def _grad_weights_impl(xs: list[Tensor], grad: Tensor, weights: Tensor) -> Tensor:
    if grad.numel() == 0:
        return torch.zeros(weights.shape, dtype=weights.dtype, device=weights.device)
    out = torch.empty(weights.shape, dtype=torch.float64, device=grad.device)
    ws = None
    if grad.is_cuda:
        groups = 1 if weights.dim() == 1 else weights.shape[0]
        ws = capsule(torch.empty(_C.masked_sum_wgrad_workspace(groups, len(xs)), dtype=torch.float64, device=grad.device))
    try:
        _C.masked_sum_wgrad([capsule(x) for x in xs], capsule(grad), capsule(weights), capsule(out), ws, stream_of(grad))
    except (ValueError, TypeError, BufferError):  # BufferError: DLPack refuses e.g. meta tensors
        _check_weights(weights, len(_check_list("xs", xs, like=grad)), grad, "grad")
        raise
    return out.to(weights.dtype)


# ---- torch.library registration ------------------------------------------------------------------


@torch.library.custom_op("lidsplit::masked_sum", mutates_args=())
def _masked_sum(xs: list[Tensor], weights: Tensor) -> Tensor:
    return _forward(xs, weights)


@_masked_sum.register_fake
def _(xs: list[Tensor], weights: Tensor) -> Tensor:
    xs = _check_list("xs", xs)
    _check_weights(weights, len(xs), xs[0])
    return xs[0].new_empty(xs[0].shape)


@torch.library.custom_op("lidsplit::masked_sum_grad_inputs", mutates_args=())
def _grad_inputs(grad: Tensor, weights: Tensor, n: int) -> list[Tensor]:
    """[weights[..., j] * grad per group for j < n]: the gradient of masked_sum w.r.t. each input."""
    return _grad_inputs_impl(grad, weights, n)


@_grad_inputs.register_fake
def _(grad: Tensor, weights: Tensor, n: int) -> list[Tensor]:
    _check_weights(weights, n, check_tensor("grad", grad, dtypes=DTYPES), "grad")
    return [grad.new_empty(grad.shape) for _ in range(n)]


@torch.library.custom_op("lidsplit::masked_sum_grad_weights", mutates_args=())
def _grad_weights(xs: list[Tensor], grad: Tensor, weights: Tensor) -> Tensor:
    """<xs[j], grad> per group, shaped and typed like weights: the gradient of masked_sum w.r.t. weights."""
    return _grad_weights_impl(xs, grad, weights)


@_grad_weights.register_fake
def _(xs: list[Tensor], grad: Tensor, weights: Tensor) -> Tensor:
    _check_weights(weights, len(_check_list("xs", xs, like=grad)), grad, "grad")
    return weights.new_empty(weights.shape)


def _setup_context(ctx, inputs, output) -> None:
    xs, weights = inputs
    ctx.n = len(xs)
    # The inputs are needed only for the weights' gradient.
    ctx.save_for_backward(weights, *(xs if weights.requires_grad else ()))


def _backward(ctx, grad: Tensor):
    need_xs, need_w = ctx.needs_input_grad
    weights, *xs = ctx.saved_tensors
    grad = grad.contiguous()
    gxs: list[Tensor | None] = [None] * ctx.n
    if any(need_xs):
        gxs = list(torch.ops.lidsplit.masked_sum_grad_inputs(grad, weights, ctx.n))
    gw = torch.ops.lidsplit.masked_sum_grad_weights(xs, grad, weights) if need_w else None
    return gxs, gw


_masked_sum.register_autograd(_backward, setup_context=_setup_context)


# ---- eager fast path (lidsplit.ops._dlpack.plain_eager) ---------------------------------------------


class _MaskedSumFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights: Tensor, *xs: Tensor) -> Tensor:
        ctx.n = len(xs)
        ctx.save_for_backward(weights, *(xs if weights.requires_grad else ()))
        return _forward(list(xs), weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        weights, *xs = ctx.saved_tensors
        need_w, *need_xs = ctx.needs_input_grad
        grad = grad.contiguous()
        gxs: list[Tensor | None] = [None] * ctx.n
        if any(need_xs) and weights.is_cuda:  # which weights are 0 is known only on the device
            gxs = list(_grad_inputs_impl(grad, weights, ctx.n))
        elif any(need_xs):
            # An input whose weights are all 0 gets no gradient (None: nothing allocated, written or
            # propagated into the branch that computed it); the others in one pass over grad.
            rows = weights.reshape(-1, ctx.n)
            live = [j for j, nz in enumerate(rows.ne(0).any(0).tolist()) if nz and need_xs[j]]
            if live:
                w_live = rows[:, live].reshape(*weights.shape[:-1], len(live))
                for j, g in zip(live, _grad_inputs_impl(grad, w_live, len(live))):
                    gxs[j] = g
        gw = _grad_weights_impl(xs, grad, weights) if need_w else None
        return (gw, *gxs)


def masked_sum(xs: Sequence[Tensor], weights: Tensor) -> Tensor:
    """``sum_j weights[..., j] * xs[j]``; weights ``(n,)`` or ``(G, n)`` over G equal batch groups.

    Args:
        xs: n tensors of one shape, dtype (float32, float16, bfloat16 or float64) and device, contiguous.
        weights: ``(n,)``, or ``(G, n)`` with G dividing ``xs[j].shape[0]``; float32 or the dtype of xs,
            on the same device. Exactly-zero entries skip their input (it is never read).

    Returns:
        A new tensor shaped like ``xs[0]``, of its dtype. Differentiable in xs and weights.
    """
    if isinstance(xs, Tensor) or not isinstance(xs, Sequence):
        raise TypeError(f"lidsplit: argument 'xs' must be a list of tensors, got {type(xs).__name__}")
    xs = list(xs)
    if not xs or not all(isinstance(x, Tensor) for x in xs):
        _check_list("xs", xs)  # raises, naming the offending entry
    check_tensor("weights", weights)  # a list of floats is not weights: say so before the dispatcher does
    if not plain_eager((weights, *xs)):
        return torch.ops.lidsplit.masked_sum(xs, weights)
    if torch.is_grad_enabled() and (weights.requires_grad or any(x.requires_grad for x in xs)):
        return _MaskedSumFunction.apply(weights, *xs)
    return _forward(xs, weights)
