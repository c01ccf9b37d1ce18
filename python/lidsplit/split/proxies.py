"""Zero-cost proxies as plain functions of a model and one batch.

Every proxy has the signature ``proxy(model, x, y=None, loss_fn=F.cross_entropy, **options) -> float``
(``y``/``loss_fn`` are ignored by the proxies that do not use a loss) and follows the definition of the
paper that introduced it, as implemented by its authors' code:

================  =======================================================================================
``gradnorm``      Abdelfattah et al. 2021: ``sum_l ||dL/dW_l||_2`` over the weights ``W_l`` of the
                  Conv / Linear layers (one L2 norm per layer, summed).
``snip``          Abdelfattah et al. 2021 (SNIP): ``sum_l sum |W_l * dL/dW_l|``.
``grasp``         Abdelfattah et al. 2021 (GraSP): ``-sum_l sum W_l * (H g)_l`` with ``g = dL/dW`` (detached)
                  and ``H g`` the Hessian-vector product ``d(g . dL/dW)/dW`` (two forward passes).
``synflow``       Abdelfattah et al. 2021 (SynFlow): with every float parameter and buffer replaced by its
                  absolute value, float64, BatchNorm turned into the identity, and an all-ones input of
                  batch 1: ``R = sum(model(1))``, score ``sum_l sum |W_l * dR/dW_l|``.
``jacob_cov``     Mellor et al. 2021 (v1): ``J`` = input gradient of the summed outputs, one row per
                  sample; ``C = corrcoef(J)``; score ``-sum_i log(e_i + 1e-5) + 1/(e_i + 1e-5)`` over the
                  eigenvalues ``e_i`` of ``C``.
``ntk``           Chen et al. 2021 (TE-NAS): ``J`` = per-sample gradient of the sample's summed logits
                  w.r.t. every parameter whose name contains ``"weight"``; NTK ``= J J^T``; score
                  ``lambda_max / lambda_min`` (condition number; lower = more trainable).
``linear_regions``Chen et al. 2021 (TE-NAS): number of distinct activation patterns (sign of every
                  ``nn.ReLU`` output, all layers concatenated) over the batch, divided by the batch size
                  (``normalise=False``: the count).
================  =======================================================================================

"Conv / Linear layers": modules that are instances of ``nn.Conv1d/2d/3d`` (any ``_ConvNd``) or
``nn.Linear``; a weight shared by several layers counts once. Layers the forward did not reach (an
unused op of a supernet) contribute nothing.

State. The model is never modified: during a proxy every parameter of every module is temporarily
replaced (in the module's ``_parameters`` dict) by a detached leaf sharing its storage (never written;
synflow: an abs float64 copy) and every buffer by a copy, and the originals are put back in ``finally``.
So BatchNorm running statistics and ``num_batches_tracked`` are untouched, ``.grad`` fields are never
written (gradients come from ``torch.autograd.grad``), ``requires_grad`` flags are unchanged, and module
identities are kept (supernet forward modes, which are keyed by module, still apply: wrap the call in
``use_path`` / ``use_sum`` ...). A module registered under two names and a parameter shared by two
modules are handled (one replacement per object; ``torch.func.functional_call`` gets the former wrong,
so it is not used). The only other temporary change is synflow switching BatchNorm modules to eval
mode and hooking them to the identity; it is undone in ``finally`` too. Each proxy runs in the model's current train/eval mode (the authors' code runs
the networks in train mode: BatchNorm with batch statistics). A proxy may call the model more than once
(grasp: twice): with ``use_sampled_path`` the path would change between calls; fix it with ``use_path``.

Randomness. None of the proxies draws random numbers itself; a stochastic model (dropout, a sampled
path) does, so every proxy runs under ``torch.random.fork_rng`` seeded with ``seed`` (default 0): the
result is reproducible and the global RNG state is left as it was. ``seed=None`` uses (and advances)
the global RNG.

Degenerate cases raise :class:`DegenerateProxyError` (a ValueError) instead of returning NaN/inf:
jacob_cov when a Jacobian row is constant (correlation undefined), ntk when every gradient is zero,
linear_regions when no ReLU ran, synflow when the float64 score overflows (``log10 > ~308``) or is 0.
Documented finite conventions: jacob_cov clamps the (PSD) correlation eigenvalues at 0 before the
``1e-5`` offset; ntk clamps ``lambda_min`` at ``lambda_max * ntk_floor`` (default ``1e-12``), so a
singular NTK (e.g. batch larger than the number of weights) gives the finite cap ``1/ntk_floor``.

SynFlow range. The score is ``~ (number of layers) x R`` with ``R`` the product of per-layer gains
(``~ 0.5 sqrt(fan_in)`` at the default init), which overflows float32 after ~40 wide layers; float64
holds it up to ``1e308`` (e.g. 100+ layers of gain 10). ``log=True`` returns ``log(score)``. An exact
per-layer rescaling in log space is not possible for networks with biases or skip connections (the
paths through a cell have different lengths), so none is attempted; overflow raises.

:func:`proxy_similarity` turns per-op proxy values into the similarity matrix of the zero-cost-proxy
paper: ``-|m_i - m_j|`` on values normalised as ``(m_i - m_ref) / |m_ref|`` against the full sub-supernet
when a reference is given (the paper does not normalise gradnorm).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from lidsplit.common.errors import LidsplitError

__all__ = [
    "DegenerateProxyError",
    "gradnorm",
    "snip",
    "grasp",
    "synflow",
    "jacob_cov",
    "ntk",
    "linear_regions",
    "PROXIES",
    "compute_proxy",
    "proxy_similarity",
    "prunable_layers",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


class DegenerateProxyError(LidsplitError, ValueError):
    """The proxy is undefined on this model / batch (see the module docstring); a lidsplit user error
    (the command line exits 2 with its message)."""


# ---- helpers ------------------------------------------------------------------------------------


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """Conv (any ``_ConvNd``) and Linear modules with a weight, in ``model.modules()`` order."""
    return [m for m in model.modules() if isinstance(m, (_ConvNd, nn.Linear)) and getattr(m, "weight", None) is not None]


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def _prunable_weight_names(model: nn.Module) -> list[str]:
    names = _param_names(model)
    out: list[str] = []
    for m in prunable_layers(model):
        n = names.get(id(m.weight))
        if n is not None and n not in out:
            out.append(n)
    return out


@contextmanager
def _swapped(model: nn.Module, *, dtype: torch.dtype | None = None, absolute: bool = False) -> Iterator[dict[str, Tensor]]:
    """Temporarily replace every parameter by a detached leaf (sharing storage unless converted) and
    every buffer by a copy; yields the replacements by parameter / buffer name. Restored on exit."""

    def convert(t: Tensor, copy: bool) -> Tensor:
        r = t.detach()
        if r.is_floating_point():
            if absolute:
                r = r.abs()
            if dtype is not None:
                r = r.to(dtype)
        if copy and r.data_ptr() == t.data_ptr():
            r = r.clone()
        return r

    names = [(n, t) for n, t in model.named_parameters()] + [(n, t) for n, t in model.named_buffers()]
    repl: dict[int, Tensor] = {}
    saved: list[tuple[dict[str, Any], str, Tensor]] = []
    try:
        for mod in model.modules():  # each module object once, however often it is registered
            for store, is_param in ((mod._parameters, True), (mod._buffers, False)):
                for k, t in list(store.items()):
                    if t is None:
                        continue
                    r = repl.get(id(t))
                    if r is None:
                        r = repl[id(t)] = convert(t, copy=not is_param)
                    saved.append((store, k, t))
                    store[k] = r
        yield {n: repl[id(t)] for n, t in names}
    finally:
        for store, k, t in reversed(saved):
            store[k] = t


def _logits(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"proxy: the model must return a tensor (or a tuple starting with one), got {type(out).__name__}")


def _device_of(x: Tensor) -> list[int]:
    return [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []


@contextmanager
def _seeded(x: Tensor, seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=_device_of(x)):
        torch.manual_seed(seed)
        yield


def _check_batch(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {tuple(x.shape)}")


def _finite(v: float, name: str) -> float:
    if not math.isfinite(v):
        raise DegenerateProxyError(f"{name}: non-finite score {v}")
    return float(v)


def _weights_and_loss(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, names: list[str], tensors: dict[str, Tensor]
) -> tuple[list[Tensor], Tensor]:
    ws = [tensors[n].requires_grad_(True) for n in names]
    loss = loss_fn(_logits(model(x)), y)
    return ws, loss


def _need_y(y: Tensor | None, name: str) -> Tensor:
    if y is None:
        raise ValueError(f"{name}: needs targets y for the loss")
    return y


# ---- loss-gradient proxies ----------------------------------------------------------------------


def gradnorm(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """Sum over Conv/Linear layers of the L2 norm of ``dL/dW`` (Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "gradnorm")
    names = _prunable_weight_names(model)
    if not names:
        raise DegenerateProxyError("gradnorm: the model has no Conv/Linear layer")
    with _seeded(x, seed), _swapped(model) as tensors:
        ws, loss = _weights_and_loss(model, x, y, loss_fn, names, tensors)
        grads = torch.autograd.grad(loss, ws, allow_unused=True)
    total = sum(float(g.double().norm()) for g in grads if g is not None)
    return _finite(total, "gradnorm")


def snip(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """``sum |W * dL/dW|`` over Conv/Linear weights (SNIP saliency, Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "snip")
    names = _prunable_weight_names(model)
    if not names:
        raise DegenerateProxyError("snip: the model has no Conv/Linear layer")
    with _seeded(x, seed), _swapped(model) as tensors:
        ws, loss = _weights_and_loss(model, x, y, loss_fn, names, tensors)
        grads = torch.autograd.grad(loss, ws, allow_unused=True)
    total = sum(float((w.detach().double() * g.double()).abs().sum()) for w, g in zip(ws, grads) if g is not None)
    return _finite(total, "snip")


def grasp(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """``-sum W * (H g)`` over Conv/Linear weights, ``g = dL/dW`` (GraSP, Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "grasp")
    names = _prunable_weight_names(model)
    if not names:
        raise DegenerateProxyError("grasp: the model has no Conv/Linear layer")
    with _seeded(x, seed):
        with _swapped(model) as tensors:
            ws, loss = _weights_and_loss(model, x, y, loss_fn, names, tensors)
            g = [gi.detach() if gi is not None else None for gi in torch.autograd.grad(loss, ws, allow_unused=True)]
        with _swapped(model) as tensors:  # fresh buffers: the second pass sees the same BN state as the first
            ws, loss = _weights_and_loss(model, x, y, loss_fn, names, tensors)
        gf = torch.autograd.grad(loss, ws, create_graph=True, allow_unused=True)
        z = None
        for gi, gfi in zip(g, gf):
            if gi is not None and gfi is not None:
                term = (gi * gfi).sum()
                z = term if z is None else z + term
        if z is None or not z.requires_grad:
            return 0.0
        hg = torch.autograd.grad(z, ws, allow_unused=True)
    total = -sum(float((w.detach().double() * h.double()).sum()) for w, h in zip(ws, hg) if h is not None)
    return _finite(total, "grasp")


# ---- synflow ------------------------------------------------------------------------------------


@contextmanager
def _bn_identity(model: nn.Module, identity: bool = True) -> Iterator[None]:
    """BatchNorms in eval mode (no batch statistics on a batch of 1), and the identity if asked."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    modes = [m.training for m in bns]
    handles = []
    try:
        for m in bns:
            m.training = False
            if identity:
                handles.append(m.register_forward_hook(lambda mod, inp, out: inp[0]))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, t in zip(bns, modes):
            m.training = t


def synflow(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    loss_fn: LossFn | None = None,
    *,
    bn: bool = False,
    log: bool = False,
    seed: int | None = 0,
) -> float:
    """SynFlow (Abdelfattah et al. 2021): abs parameters, float64, all-ones input of batch 1 shaped like
    ``x[0]``, ``R = sum(output)``, score ``sum |W * dR/dW|`` over Conv/Linear weights. ``bn=False``
    (default, as the authors' code) makes every BatchNorm the identity; ``bn=True`` keeps them (eval
    mode, abs running statistics). ``log=True``: return ``log(score)``."""
    _check_batch(x)
    names = _prunable_weight_names(model)
    if not names:
        raise DegenerateProxyError("synflow: the model has no Conv/Linear layer")
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    with _seeded(x, seed), _swapped(model, dtype=torch.float64, absolute=True) as tensors, _bn_identity(model, identity=not bn):
        ws = [tensors[n].requires_grad_(True) for n in names]
        r = _logits(model(ones)).sum()
        if not torch.isfinite(r):
            raise DegenerateProxyError(f"synflow: R = sum(output) = {float(r.detach())} overflows float64")
        grads = torch.autograd.grad(r, ws, allow_unused=True)
    total = sum(float((w.detach() * g).abs().sum()) for w, g in zip(ws, grads) if g is not None)
    if not math.isfinite(total):
        raise DegenerateProxyError("synflow: the score overflows float64")
    if log:
        if total <= 0.0:
            raise DegenerateProxyError("synflow: score 0 (no weight reaches the output); log undefined")
        return math.log(total)
    return total


# ---- jacob_cov / ntk / linear regions ----------------------------------------------------------


def jacob_cov(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn | None = None, *, seed: int | None = 0) -> float:
    """Mellor et al. 2021 (v1): ``-sum log(e + 1e-5) + 1/(e + 1e-5)`` over the eigenvalues of the
    correlation matrix of the per-sample input Jacobians of the summed outputs."""
    _check_batch(x)
    if x.shape[0] < 2:
        raise DegenerateProxyError("jacob_cov: needs a batch of at least 2 samples")
    with _seeded(x, seed), _swapped(model):
        xi = x.detach().clone().requires_grad_(True)
        out = _logits(model(xi))
        (jac,) = torch.autograd.grad(out, xi, grad_outputs=torch.ones_like(out), allow_unused=True)
    if jac is None:
        raise DegenerateProxyError("jacob_cov: the output does not depend on the input")
    j = jac.reshape(jac.shape[0], -1).detach().double().cpu().numpy()
    std = j.std(axis=1)
    if (std <= 1e-12 * max(1.0, float(np.abs(j).max()))).any():
        bad = np.flatnonzero(std <= 1e-12 * max(1.0, float(np.abs(j).max()))).tolist()
        raise DegenerateProxyError(f"jacob_cov: constant Jacobian row(s) {bad}: correlation undefined")
    c = np.corrcoef(j)
    e = np.clip(np.linalg.eigvalsh(c), 0.0, None)
    k = 1e-5
    return _finite(float(-np.sum(np.log(e + k) + 1.0 / (e + k))), "jacob_cov")


def ntk(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    loss_fn: LossFn | None = None,
    *,
    ntk_floor: float = 1e-12,
    batched: bool = False,
    seed: int | None = 0,
) -> float:
    """TE-NAS: condition number ``lambda_max / lambda_min`` of the empirical NTK ``J J^T`` on the
    batch, ``J`` the per-sample gradients of the summed logits w.r.t. the parameters named
    ``*weight*`` (``lambda_min`` clamped at ``lambda_max * ntk_floor``). ``batched=True``: all
    per-sample gradients in one vmapped backward (``is_grads_batched``; falls back to the loop if an op
    cannot be vmapped; not faster on CPU), default one backward per sample."""
    _check_batch(x)
    names = [n for n, p in model.named_parameters() if "weight" in n and p.is_floating_point()]
    if not names:
        raise DegenerateProxyError("ntk: the model has no parameter named '*weight*'")
    with _seeded(x, seed), _swapped(model) as tensors:
        ws = [tensors[n].requires_grad_(True) for n in names]
        out = _logits(model(x))
        n = out.shape[0]
        jm = None
        if batched:  # one vmapped backward for all samples; falls back to a loop if an op cannot vmap
            eye = torch.zeros((n, *out.shape), dtype=out.dtype, device=out.device)
            eye[torch.arange(n), torch.arange(n)] = 1.0
            try:
                gs = torch.autograd.grad(out, ws, grad_outputs=eye, retain_graph=True, allow_unused=True, is_grads_batched=True)
                jm = torch.cat([(g if g is not None else torch.zeros((n, *w.shape), dtype=w.dtype, device=w.device)).reshape(n, -1).double() for g, w in zip(gs, ws)], 1)
            except RuntimeError:
                jm = None
        if jm is None:
            rows = []
            for i in range(n):
                gs = torch.autograd.grad(out[i].sum(), ws, retain_graph=i < n - 1, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(w)).reshape(-1).double() for g, w in zip(gs, ws)]))
            jm = torch.stack(rows)
    e = torch.linalg.eigvalsh(jm @ jm.T).cpu().numpy()
    lmax = float(e[-1])
    if not lmax > 0.0:
        raise DegenerateProxyError("ntk: every gradient is zero (empty NTK)")
    lmin = max(float(e[0]), lmax * ntk_floor)
    return _finite(lmax / lmin, "ntk")


def linear_regions(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    loss_fn: LossFn | None = None,
    *,
    normalise: bool = True,
    activations: tuple[type[nn.Module], ...] = (nn.ReLU,),
    seed: int | None = 0,
) -> float:
    """TE-NAS: distinct activation patterns (``output > 0`` of every ``activations`` module, all layers
    concatenated per sample) among the samples of ``x``; divided by the batch size if ``normalise``."""
    _check_batch(x)
    feats: list[Tensor] = []

    def hook(mod: nn.Module, inp: Any, out: Tensor) -> None:
        feats.append((out > 0).reshape(out.shape[0], -1))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, activations)]
    try:
        with _seeded(x, seed), torch.no_grad():
            with _swapped(model):
                model(x)
    finally:
        for h in handles:
            h.remove()
    if not feats:
        raise DegenerateProxyError(f"linear_regions: no {[a.__name__ for a in activations]} module ran")
    pat = torch.cat([f for f in feats if f.shape[0] == x.shape[0]], 1).cpu().numpy()
    packed = np.packbits(pat, axis=1)
    count = int(np.unique(packed, axis=0).shape[0])
    return count / x.shape[0] if normalise else float(count)


# ---- registry and similarity --------------------------------------------------------------------

PROXIES: dict[str, Callable[..., float]] = {
    "gradnorm": gradnorm,
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "jacob_cov": jacob_cov,
    "ntk": ntk,
    "linear_regions": linear_regions,
}


def compute_proxy(name: str, model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, **kw: Any) -> float:
    """``PROXIES[name](model, x, y, loss_fn, **kw)``."""
    if name not in PROXIES:
        raise ValueError(f"proxy: unknown {name!r}; expected one of {sorted(PROXIES)}")
    return PROXIES[name](model, x, y, loss_fn, **kw)


def proxy_similarity(values: Sequence[float] | np.ndarray | Tensor, reference: float | None = None) -> np.ndarray:
    """Similarity matrix ``S_ij = -|m_i - m_j|`` of per-op proxy values (zero-cost-proxy paper), with
    ``m_i = (v_i - reference) / |reference|`` when a reference value (the full sub-supernet) is given."""
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"values: non-finite proxy values {v.tolist()}")
    if reference is not None:
        if not math.isfinite(reference) or reference == 0.0:
            raise ValueError(f"reference: must be finite and non-zero to normalise, got {reference}")
        v = (v - reference) / abs(reference)
    return -np.abs(v[:, None] - v[None, :])
