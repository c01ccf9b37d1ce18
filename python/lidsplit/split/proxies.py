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
``fisher``        Turner et al. 2020, as Abdelfattah et al. 2021's code: per Conv / Linear output ``a``
                  ``(N, K, ...)`` and ``g = dL/da``, ``F_k = 0.5 mean_n (sum_spatial a g)_nk^2``; score
                  ``sum_l prod(W_l.shape[1:]) sum_k F_lk`` (each channel's value counted once per weight).
================  =======================================================================================

Conventions (``compute_proxy(..., convention=...)``, :data:`CONVENTIONS`). ``"original"`` (default): the
table above, in the model's current mode. ``"zc-split-code"``: the definitions of the ZC-split paper's
released code (brain-bzh/metric_driven_few_shot_nas, ``pkg/metrics``), :data:`CODE_PROXIES`, with every
module in eval mode (BatchNorm with running statistics), as that code's collectors. It differs from the
original papers (2% to 20000% on NB201) in four proxies; ``G`` is its ``(C, P)`` gradient matrix: with
``R = sum(logits)`` (no loss), ``dR/dW`` of every Conv / Linear layer in ``model.modules()`` order (zeros
for one the forward did not reach) reshaped to ``(C, -1)`` and concatenated along columns, ``C`` the
network's width (``rows``; default the gcd of the Conv layers' output channels: ``C`` on NB201 and DARTS):

================  =======================================================================================
``gradnorm``      ``||G||_F``: one global norm of the logit-sum gradient (original: one norm per layer of
                  ``dL/dW``, summed).
``jacob_cov``     ``-sum log(e + 1e-8) + 1/(e + 1e-8)`` over the eigenvalues of ``corrcoef`` of the ``C``
                  rows of ``G`` (original: per-sample input Jacobians, ``1e-5``). The code takes a complex
                  eigendecomposition; here the symmetric one, eigenvalues clamped at 0 as ``jacob_cov``.
``ntk``           condition number of ``G G^T`` (``C x C``, channel by channel; original: TE-NAS's
                  per-sample NTK); ``lambda_min`` clamped as ``ntk`` (the code divides by it as is).
``synflow``       ``synflow(bn=True)``: the BatchNorms kept (eval mode, abs running statistics).
================  =======================================================================================

snip, grasp and linear_regions are the same formulas (in eval mode); fisher is not in that code and
keeps its definition. Over several batches that code pools all batches into one ``G`` (gradnorm: the
norm of the stacked matrices), where a criterion averages per-batch similarities.

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
    "fisher",
    "gradnorm_code",
    "jacob_cov_code",
    "ntk_code",
    "synflow_code",
    "PROXIES",
    "CODE_PROXIES",
    "CONVENTIONS",
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


def _prunable_weight_names(tensors: dict[str, Tensor], model: nn.Module) -> list[str]:
    """The names (keys of ``tensors``, as :func:`_swapped` yields them) of the Conv/Linear weights, a
    shared weight once, in ``model.modules()`` order."""
    by_id = {id(t): n for n, t in tensors.items()}  # the replacements: one object per original tensor
    names = (by_id.get(id(m.weight)) for m in prunable_layers(model))
    return list(dict.fromkeys(n for n in names if n is not None))


@contextmanager
def _swapped(model: nn.Module, *, dtype: torch.dtype | None = None, absolute: bool = False) -> Iterator[dict[str, Tensor]]:
    """Temporarily replace every parameter by a detached leaf (sharing storage unless converted) and
    every buffer by a copy; yields the replacements by parameter / buffer name (the first name of a
    shared tensor, as ``named_parameters``). Restored on exit.

    One walk over ``named_modules`` does it all: on a supernet (thousands of modules, most of them ops
    the current path does not run) each further walk costs as much as a small forward."""

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

    repl: dict[int, Tensor] = {}
    named: dict[str, Tensor] = {}
    saved: list[tuple[dict[str, Any], str, Tensor]] = []
    try:
        for prefix, mod in model.named_modules():  # each module object once, however often it is registered
            for store, is_param in ((mod._parameters, True), (mod._buffers, False)):
                for k, t in list(store.items()):
                    if t is None:
                        continue
                    r = repl.get(id(t))
                    if r is None:
                        r = repl[id(t)] = convert(t, copy=not is_param)
                        named[f"{prefix}.{k}" if prefix else k] = r
                    saved.append((store, k, t))
                    store[k] = r
        yield named
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
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, tensors: dict[str, Tensor], who: str
) -> tuple[list[Tensor], Tensor]:
    """The Conv/Linear weights (replacements, now requiring grad) and the loss on ``(x, y)``."""
    ws = _layer_weights(tensors, model, who)
    loss = loss_fn(_logits(model(x)), y)
    return ws, loss


def _layer_weights(tensors: dict[str, Tensor], model: nn.Module, who: str) -> list[Tensor]:
    names = _prunable_weight_names(tensors, model)
    if not names:
        raise DegenerateProxyError(f"{who}: the model has no Conv/Linear layer")
    return [tensors[n].requires_grad_(True) for n in names]


def _need_y(y: Tensor | None, name: str) -> Tensor:
    if y is None:
        raise ValueError(f"{name}: needs targets y for the loss")
    return y


# ---- loss-gradient proxies ----------------------------------------------------------------------


def gradnorm(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """Sum over Conv/Linear layers of the L2 norm of ``dL/dW`` (Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "gradnorm")
    with _seeded(x, seed), _swapped(model) as tensors:
        ws, loss = _weights_and_loss(model, x, y, loss_fn, tensors, "gradnorm")
        grads = torch.autograd.grad(loss, ws, allow_unused=True)
    total = sum(float(g.double().norm()) for g in grads if g is not None)
    return _finite(total, "gradnorm")


def snip(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """``sum |W * dL/dW|`` over Conv/Linear weights (SNIP saliency, Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "snip")
    with _seeded(x, seed), _swapped(model) as tensors:
        ws, loss = _weights_and_loss(model, x, y, loss_fn, tensors, "snip")
        grads = torch.autograd.grad(loss, ws, allow_unused=True)
    total = sum(float((w.detach().double() * g.double()).abs().sum()) for w, g in zip(ws, grads) if g is not None)
    return _finite(total, "snip")


def grasp(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """``-sum W * (H g)`` over Conv/Linear weights, ``g = dL/dW`` (GraSP, Abdelfattah et al. 2021)."""
    _check_batch(x)
    y = _need_y(y, "grasp")
    with _seeded(x, seed):
        with _swapped(model) as tensors:
            ws, loss = _weights_and_loss(model, x, y, loss_fn, tensors, "grasp")
            g = [gi.detach() if gi is not None else None for gi in torch.autograd.grad(loss, ws, allow_unused=True)]
        with _swapped(model) as tensors:  # fresh buffers: the second pass sees the same BN state as the first
            ws, loss = _weights_and_loss(model, x, y, loss_fn, tensors, "grasp")
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
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    with _seeded(x, seed), _swapped(model, dtype=torch.float64, absolute=True) as tensors, _bn_identity(model, identity=not bn):
        ws = _layer_weights(tensors, model, "synflow")
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
    return _correlation_score(jac.reshape(jac.shape[0], -1), 1e-5, "jacob_cov", "Jacobian")


def _correlation_score(rows: Tensor, eps: float, who: str, what: str) -> float:
    """``-sum log(e + eps) + 1/(e + eps)`` over the eigenvalues ``e`` (clamped at 0: the matrix is PSD, a
    negative one is round-off) of the correlation matrix of the rows ``(n, P)``; a constant row raises."""
    j = rows.detach().double().cpu().numpy()
    std = j.std(axis=1)
    bad = np.flatnonzero(std <= 1e-12 * max(1.0, float(np.abs(j).max()))).tolist()
    if bad:
        raise DegenerateProxyError(f"{who}: constant {what} row(s) {bad}: correlation undefined")
    e = np.clip(np.linalg.eigvalsh(np.corrcoef(j)), 0.0, None)
    return _finite(float(-np.sum(np.log(e + eps) + 1.0 / (e + eps))), who)


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
    return _condition_number(jm, ntk_floor, "ntk")


def _condition_number(rows: Tensor, floor: float, who: str) -> float:
    """``lambda_max / lambda_min`` of the Gram matrix ``rows rows^T`` (float64), ``lambda_min`` clamped at
    ``lambda_max * floor``; all-zero rows raise."""
    e = torch.linalg.eigvalsh(rows @ rows.T).cpu().numpy()
    lmax = float(e[-1])
    if not lmax > 0.0:
        raise DegenerateProxyError(f"{who}: every gradient is zero (empty NTK)")
    lmin = max(float(e[0]), lmax * floor)
    return _finite(lmax / lmin, who)


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


# ---- fisher -------------------------------------------------------------------------------------


def fisher(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy, *, seed: int | None = 0) -> float:
    """Fisher (Turner et al. 2020, as Abdelfattah et al. 2021's code): for every Conv/Linear layer ``l``
    with output ``a`` ``(N, K, ...)`` (bias included) and its loss gradient ``g = dL/da``, the per-channel
    ``F_lk = 0.5 * mean_n (sum_spatial a * g)_nk ** 2``; score ``sum_l prod(W_l.shape[1:]) * sum_k F_lk``
    (that code spreads each channel's value over the channel's weights, then sums them). A layer called
    several times adds one term per call (that code keeps only the last call's output); a layer the
    forward did not reach adds nothing."""
    _check_batch(x)
    y = _need_y(y, "fisher")
    acts: list[tuple[nn.Module, Tensor]] = []

    def hook(mod: nn.Module, inp: Any, out: Tensor) -> Tensor:
        acts.append((mod, out))
        return out.clone()  # what follows may work in place (ReLU(inplace=True)); ``out`` stays the layer's

    layers = prunable_layers(model)
    if not layers:
        raise DegenerateProxyError("fisher: the model has no Conv/Linear layer")
    handles = [m.register_forward_hook(hook) for m in set(layers)]
    try:
        with _seeded(x, seed), _swapped(model) as tensors:
            _layer_weights(tensors, model, "fisher")  # the outputs join the graph even when x does not need grad
            loss = loss_fn(_logits(model(x)), y)
            grads = torch.autograd.grad(loss, [a for _, a in acts], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for (mod, a), g in zip(acts, grads):
        if g is None:
            continue
        ag = (a.detach().double() * g.double())
        g_nk = ag.sum(tuple(range(2, ag.dim()))) if ag.dim() > 2 else ag
        per_channel = 0.5 * g_nk.pow(2).mean(0)
        total += float(per_channel.sum()) * math.prod(mod.weight.shape[1:])
    return _finite(total, "fisher")


# ---- the ZC-split paper's code (convention="zc-split-code") --------------------------------------


def _code_rows(model: nn.Module, x: Tensor, rows: int | None, who: str) -> Tensor:
    """The ZC-split code's gradient matrix: ``R = sum(logits)``; for every Conv/Linear layer in
    ``model.modules()`` order ``dR/dW`` (zeros for a layer the forward did not reach) reshaped to
    ``(rows, -1)``, concatenated along columns: ``(rows, P)`` float64. ``rows`` defaults to the greatest
    common divisor of the Conv layers' output channels (NB201 and DARTS: the width ``C``, the code's
    ``net._C``; the stem's ``3C`` of DARTS would not divide its ``C x C`` convolutions)."""
    layers = prunable_layers(model)
    if not layers:
        raise DegenerateProxyError(f"{who}: the model has no Conv/Linear layer")
    if rows is None:
        convs = [m for m in layers if isinstance(m, _ConvNd)] or layers
        rows = math.gcd(*(int(m.weight.shape[0]) for m in convs))
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"{who}: rows must be an int >= 1, got {rows!r}")
    for m in layers:
        if m.weight.numel() % rows:
            raise ValueError(f"{who}: rows={rows} does not divide the {tuple(m.weight.shape)} weight of "
                             f"{type(m).__name__}; pass rows= (the code uses the network's C)")
    with _swapped(model) as tensors:
        by_id = {id(t): t for t in tensors.values()}
        ws = [by_id[id(m.weight)].requires_grad_(True) for m in layers]
        out = _logits(model(x))
        uniq = list({id(w): w for w in ws}.values())
        gs = dict(zip(map(id, uniq), torch.autograd.grad(out.sum(), uniq, allow_unused=True)))
    return torch.cat([(gs[id(w)] if gs[id(w)] is not None else torch.zeros_like(w)).detach().double().reshape(rows, -1)
                      for w in ws], 1)


def gradnorm_code(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn | None = None, *,
                  rows: int | None = None, seed: int | None = 0) -> float:
    """ZC-split code: one Frobenius norm of ``dR/dW`` over all Conv/Linear weights, ``R = sum(logits)``
    (no loss; the original sums one norm per layer of ``dL/dW``). ``rows`` only checks the code's reshape."""
    _check_batch(x)
    with _seeded(x, seed):
        g = _code_rows(model, x, rows, "gradnorm")
    return _finite(float(torch.linalg.vector_norm(g)), "gradnorm")


def jacob_cov_code(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn | None = None, *,
                   rows: int | None = None, seed: int | None = 0) -> float:
    """ZC-split code: ``-sum log(e + 1e-8) + 1/(e + 1e-8)`` over the eigenvalues of the correlation
    matrix of the ``rows`` rows of the weight-gradient matrix of :func:`_code_rows` (the original: the
    per-sample input Jacobians, offset 1e-5)."""
    _check_batch(x)
    with _seeded(x, seed):
        g = _code_rows(model, x, rows, "jacob_cov")
    return _correlation_score(g, 1e-8, "jacob_cov", "weight-gradient")


def ntk_code(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn | None = None, *,
             rows: int | None = None, ntk_floor: float = 1e-12, seed: int | None = 0) -> float:
    """ZC-split code: condition number of the ``rows x rows`` Gram matrix of the weight-gradient matrix of
    :func:`_code_rows` (the batch-summed logit gradient cut into rows, not TE-NAS's per-sample NTK);
    ``lambda_min`` clamped at ``lambda_max * ntk_floor`` (the code divides by it as is)."""
    _check_batch(x)
    with _seeded(x, seed):
        g = _code_rows(model, x, rows, "ntk")
    return _condition_number(g, ntk_floor, "ntk")


def synflow_code(model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn | None = None, *,
                 log: bool = False, seed: int | None = 0) -> float:
    """ZC-split code: SynFlow with the BatchNorms kept (eval mode, abs running statistics): ``synflow(bn=True)``."""
    return synflow(model, x, y, loss_fn, bn=True, log=log, seed=seed)


# ---- registry and similarity --------------------------------------------------------------------

#: the original papers' definitions (``convention="original"``)
PROXIES: dict[str, Callable[..., float]] = {
    "gradnorm": gradnorm,
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "jacob_cov": jacob_cov,
    "ntk": ntk,
    "linear_regions": linear_regions,
    "fisher": fisher,
}

#: ``convention="zc-split-code"``: the ZC-split paper's released code (brain-bzh/metric_driven_few_shot_nas);
#: snip, grasp, linear_regions and fisher (which that code lacks) keep the original definition.
CODE_PROXIES: dict[str, Callable[..., float]] = {
    **PROXIES,
    "gradnorm": gradnorm_code,
    "synflow": synflow_code,
    "jacob_cov": jacob_cov_code,
    "ntk": ntk_code,
}

#: name -> (proxies, runs the model in eval mode)
CONVENTIONS: dict[str, tuple[dict[str, Callable[..., float]], bool]] = {
    "original": (PROXIES, False),
    "zc-split-code": (CODE_PROXIES, True),
}


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode (BatchNorm: running statistics), as the ZC-split code's networks."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, t in modes:
            m.training = t


def compute_proxy(name: str, model: nn.Module, x: Tensor, y: Tensor | None = None, loss_fn: LossFn = F.cross_entropy,
                  *, convention: str = "original", **kw: Any) -> float:
    """The proxy ``name`` of ``convention`` (module docstring): ``original`` runs ``PROXIES[name]`` in the
    model's current mode; ``zc-split-code`` runs ``CODE_PROXIES[name]`` with every module in eval mode."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: unknown {convention!r}; expected one of {list(CONVENTIONS)}")
    table, evaluate = CONVENTIONS[convention]
    if name not in table:
        raise ValueError(f"proxy: unknown {name!r}; expected one of {sorted(table)}")
    if not evaluate:
        return table[name](model, x, y, loss_fn, **kw)
    with _eval_mode(model):
        return table[name](model, x, y, loss_fn, **kw)


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
