"""gradient_gram / gradient_cosine: pairwise similarity of n gradient vectors without concatenating them.

Each of the n gradient vectors is given as a list of P per-parameter tensors (for instance
``[p.grad for p in params]`` after each of n backward passes); the p-th tensors have one shape and dtype
across the n lists, dtypes may differ between parameters (float32, float16, bfloat16, float64), and all
tensors are on one device. ``None`` entries (a parameter that got no gradient) count as zeros.

The kernels stream over the parameters once, reading every element once, and accumulate all n(n+1)/2
dot products in float64; memory beyond the inputs is O(n^2) (CPU: per-thread partials and a small
per-thread chunk buffer; CUDA: 512 x n(n+1)/2 doubles of workspace). The result is a float64 ``(n, n)``
tensor on the gradients' device (the CPU if every entry is None).

Zero vectors: ``gradient_cosine`` defines the cosine with an all-zero vector as 0, on the diagonal too;
every other vector has cosine exactly 1 with itself. The matrix is therefore ``D+ G D+`` with
``D+ = diag(1/sqrt(G_ii))`` (0 where ``G_ii == 0``), its diagonal set to exactly 1 or 0 and the rest
clamped to [-1, 1]; it is NaN-free unless an input holds NaN or Inf or a squared norm overflows float64.

Registered as ``torch.ops.lidsplit.gradient_gram`` / ``gradient_cosine`` with schema
``(Tensor?[] grads, int n) -> Tensor``, the n vectors flattened vector-major (``grads[i * P + p]``); in
plain eager mode the public functions call the same kernel without the dispatcher.
Not differentiable. These back the GM-NAS gradient-matching criterion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lidsplit import _C
from lidsplit.ops._dlpack import capsule, check_tensor, describe, plain_eager, stream_of, to_dlpack

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _flatten(grads: object) -> tuple[list[Tensor | None], int]:
    """The nested gradient lists as one vector-major flat list, and n."""
    if isinstance(grads, Tensor) or not isinstance(grads, Sequence):
        raise TypeError(
            f"lidsplit: argument 'grads' must be a list of n lists of per-parameter tensors, got {type(grads).__name__}"
        )
    if len(grads) == 0:
        raise ValueError("lidsplit: argument 'grads': expected at least one gradient vector, got none")
    flat: list[Tensor | None] = []
    length = None
    for i, g in enumerate(grads):
        if isinstance(g, Tensor) or not isinstance(g, Sequence):
            raise TypeError(
                f"lidsplit: argument 'grads[{i}]' must be a list of per-parameter tensors (or None), "
                f"got {type(g).__name__}"
            )
        if length is None:
            length = len(g)
        elif len(g) != length:
            raise ValueError(
                f"lidsplit: argument 'grads[{i}]': expected {length} per-parameter entries like 'grads[0]', "
                f"got {len(g)}"
            )
        flat.extend(g)
    return flat, len(grads)


def _check(grads: list[Tensor | None], n: int) -> torch.device:
    """Check the flat vector-major list; return the device of the result."""
    if n < 1 or len(grads) % n != 0:
        raise ValueError(f"lidsplit: argument 'grads': {len(grads)} entries do not form n = {n} equal-length vectors")
    P = len(grads) // n
    device = None
    first_name = ""
    for p in range(P):
        ref, ref_name = None, ""
        for i in range(n):
            t = grads[i * P + p]
            if t is None:
                continue
            name = f"grads[{i}][{p}]"
            check_tensor(name, t, dtypes=DTYPES, contiguous=t.numel() > 0)
            if device is None:
                device, first_name = t.device, name
            elif t.device != device:
                raise ValueError(
                    f"lidsplit: argument '{name}' ({describe(t)}): expected the device of '{first_name}' ({device})"
                )
            if ref is None:
                ref, ref_name = t, name
            elif t.shape != ref.shape or t.dtype != ref.dtype:
                raise ValueError(
                    f"lidsplit: argument '{name}' ({describe(t)}): expected the shape and dtype of '{ref_name}' "
                    f"({describe(ref)}): the p-th tensors of all vectors must match"
                )
    return device if device is not None else torch.device("cpu")


def _run(grads: list[Tensor | None], n: int, cosine: bool) -> Tensor:
    # The C++ side checks every tensor; the Python checks run only to name a failure (they cost a few
    # microseconds per tensor, as much as the kernel itself on a network's many tiny parameters).
    present = [t for t in grads if t is not None]
    device = present[0].device if present and isinstance(present[0], Tensor) else torch.device("cpu")
    try:
        out = torch.empty((n, n), dtype=torch.float64, device=device)
        ws = None
        if device.type == "cuda":
            ws = capsule(torch.empty(_C.gradient_gram_workspace(n, len(grads) // n), dtype=torch.float64, device=device))
        caps = [None if t is None else to_dlpack(t) for t in grads]
        _C.gradient_gram(caps, n, capsule(out), ws, cosine, stream_of(out))
    except (ValueError, TypeError, RuntimeError, BufferError, AttributeError):
        _check(grads, n)
        raise
    return out


def _fake(grads: list[Tensor | None], n: int) -> Tensor:
    device = _check(grads, n)
    return torch.empty((n, n), dtype=torch.float64, device=device)


@torch.library.custom_op("lidsplit::gradient_gram", mutates_args=())
def _gradient_gram(grads: list[Tensor | None], n: int) -> Tensor:
    return _run(grads, n, cosine=False)


@torch.library.custom_op("lidsplit::gradient_cosine", mutates_args=())
def _gradient_cosine(grads: list[Tensor | None], n: int) -> Tensor:
    return _run(grads, n, cosine=True)


_gradient_gram.register_fake(_fake)
_gradient_cosine.register_fake(_fake)


def gradient_gram(grads: Sequence[Sequence[Tensor | None]]) -> Tensor:
    """The ``(n, n)`` float64 matrix of dot products of n gradient vectors.

    Args:
        grads: n lists of P per-parameter tensors (or None = zeros); see the module docstring.
    """
    flat, n = _flatten(grads)
    if plain_eager(flat):  # same kernel, without the dispatcher round trip
        return _run(flat, n, cosine=False)
    return torch.ops.lidsplit.gradient_gram(flat, n)


def gradient_cosine(grads: Sequence[Sequence[Tensor | None]]) -> Tensor:
    """The ``(n, n)`` float64 cosine-similarity matrix of n gradient vectors (zero vector: cosine 0).

    Args:
        grads: n lists of P per-parameter tensors (or None = zeros); see the module docstring.
    """
    flat, n = _flatten(grads)
    if plain_eager(flat):
        return _run(flat, n, cosine=True)
    return torch.ops.lidsplit.gradient_cosine(flat, n)
