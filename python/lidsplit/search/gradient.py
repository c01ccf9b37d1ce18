"""Single-stage (gradient-based) search on supernets: DARTS, GDAS, DrNAS, bi-level, first order.

:func:`gradient_search` with a :class:`GradientSearchConfig` returns a :class:`GradientSearchResult`.

Works on any lidsplit supernet (weight-sharing or weight-entangled: TangleNAS = DrNAS on an entangled
space). Architecture parameters: one ``(n,)`` tensor per edge label (:func:`arch_parameters`), used
through ``use_weighted``:

- ``darts``: ``softmax(alpha)`` (the mixture weights of DARTS).
- ``gdas``: hard Gumbel-softmax with temperature ``tau`` (decayed linearly from ``tau_max`` to
  ``tau_min`` over the search): a one-hot sample forward, the Gumbel-softmax gradient backward
  (straight-through). Only the sampled op of each edge runs (``use_weighted`` inside the sampled
  single-path sub-supernet), as in GDAS.
- ``drnas``: mixture weights sampled from ``Dirichlet(elu(alpha) + 1)`` (reparameterised) at every
  forward, one sample per edge shared by every Choice of the edge (all cells).

Every step: an architecture step on a validation batch (gradient of the validation loss w.r.t. alpha
only; Adam, DrNAS's defaults lr 3e-4, betas (0.5, 0.999), L2 1e-3 on alpha), then a weight step on a
training batch with a fresh sample (SGD or Adam, cosine learning rate, gradient clipping). First-order
only (no unrolled second-order DARTS; DrNAS's progressive partial channels and KL regulariser are
not implemented).

Discretisation (:func:`derive_arch`): per edge, the argmax of alpha over the ops enabled in ``sub``
(per dimension independently on entangled spaces; the argmax of alpha is also that of softmax(alpha)
and of the Dirichlet mean).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.common.batch import model_device, unpack_batch
from lidsplit.supernet import SearchSpace, SubSupernet, search_space, use_weighted
from lidsplit.train.distributed import DataParallel, StepReducer, data_parallel_model, mean_over_ranks, shard_batch
from lidsplit.train.loop import TrainConfig, cosine_lr, make_optimizer
from lidsplit.train.spos import LossFn, classification_loss, cycle_batches

__all__ = ["METHODS", "GradientSearchConfig", "GradientSearchResult", "gradient_search", "arch_parameters",
           "derive_arch", "dirichlet_mean", "sample_weights", "gumbel_softmax_hard"]

METHODS = ("darts", "gdas", "drnas")



def arch_parameters(
    model_or_space: nn.Module | SearchSpace,
    *,
    init_std: float = 1e-3,
    seed: int | None = 0,
    device: torch.device | str | None = None,
) -> dict[str, nn.Parameter]:
    """label -> ``nn.Parameter`` of shape (number of ops,), ``init_std * N(0, 1)`` (seeded; 0 gives
    zeros), in edge order. Use with ``use_weighted(model, alphas, softmax=...)``."""
    space = model_or_space if isinstance(model_or_space, SearchSpace) else search_space(model_or_space)
    if device is None and isinstance(model_or_space, nn.Module):
        device = model_device(model_or_space)
    g = torch.Generator().manual_seed(0 if seed is None else seed)
    return {
        e.label: nn.Parameter((init_std * torch.randn(e.num_ops, generator=g)).to(device))
        for e in space.edges
    }


def derive_arch(alphas: Mapping[str, Tensor], space: SearchSpace, sub: SubSupernet | None = None) -> tuple[int, ...]:
    """Per edge, the enabled op with the largest alpha (ties: the lowest index)."""
    sub = SubSupernet.full(space) if sub is None else sub
    arch = []
    for e, edge in enumerate(space.edges):
        a = alphas[edge.label].detach().double().cpu()
        enabled = sorted(sub.masks[e])
        arch.append(max(enabled, key=lambda j: (float(a[j]), -j)))
    return tuple(arch)


def gumbel_softmax_hard(alpha: Tensor, tau: float, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """A hard Gumbel-softmax sample: (weights exactly one-hot forward with the soft sample's gradient,
    sampled index)."""
    u = torch.rand(alpha.shape, generator=generator, dtype=torch.float64).clamp_(1e-20, 1 - 1e-7)
    gumbel = (-torch.log(-torch.log(u))).to(alpha.device, alpha.dtype)
    soft = F.softmax((alpha + gumbel) / tau, dim=-1)
    index = int(soft.detach().argmax())
    hard = torch.zeros_like(soft)
    hard[index] = 1.0
    return hard + (soft - soft.detach()), index


def sample_weights(
    method: str,
    alphas: Mapping[str, Tensor],
    space: SearchSpace,
    sub: SubSupernet | None = None,
    *,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], bool, SubSupernet | None]:
    """The mixture weights of one forward: (weights per label, softmax flag for use_weighted, the sub
    to use). DrNAS samples use the global torch RNG (seed it, or run inside ``torch.random.fork_rng``)."""
    if method == "darts":
        return dict(alphas), True, sub
    if method == "drnas":
        out = {}
        for e, edge in enumerate(space.edges):
            a = alphas[edge.label]
            conc = F.elu(a) + 1
            if sub is not None and len(sub.masks[e]) < edge.num_ops:
                idx = sorted(sub.masks[e])
                w = torch.zeros_like(a)
                w = w.index_put((torch.tensor(idx, device=a.device),), torch.distributions.Dirichlet(conc[idx]).rsample())
            else:
                w = torch.distributions.Dirichlet(conc).rsample()
            out[edge.label] = w
        return out, False, sub
    if method == "gdas":
        out, arch = {}, []
        for e, edge in enumerate(space.edges):
            a = alphas[edge.label]
            if sub is not None and len(sub.masks[e]) < edge.num_ops:
                off = torch.ones(edge.num_ops, dtype=torch.bool)
                off[sorted(sub.masks[e])] = False
                a = a.masked_fill(off.to(a.device), float("-inf"))
            w, j = gumbel_softmax_hard(a, tau, generator)
            out[edge.label] = w
            arch.append(j)
        return out, False, SubSupernet.from_arch(space, tuple(arch))
    raise ValueError(f"lidsplit: unknown search method {method!r}; choose from {METHODS}")


@dataclass(frozen=True)
class GradientSearchConfig:
    """Hyper-parameters of :func:`gradient_search` (defaults: DrNAS / TangleNAS).

    steps: number of (architecture step, weight step) pairs. optimizer: ``"sgd"`` (momentum,
    nesterov) or ``"adam"`` for the weights, learning rate cosine from ``lr`` to ``lr_min``.
    arch_lr / arch_betas / arch_weight_decay: Adam on alpha (L2 ``arch_weight_decay``).
    tau_max / tau_min: GDAS temperature schedule. warmup_steps: weight steps before architecture steps
    start. seed: alpha init, data-independent sampling.
    """

    method: str = "drnas"
    steps: int = 100
    optimizer: str = "sgd"
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    arch_init_std: float = 1e-3
    tau_max: float = 10.0
    tau_min: float = 0.1
    warmup_steps: int = 0
    seed: int = 0

    def weights(self) -> TrainConfig:
        """The weights' optimiser and learning rate as a ``TrainConfig`` of one "epoch" per step: built by
        the training package's ``make_optimizer``, scheduled by its ``cosine_lr``."""
        return TrainConfig(epochs=self.steps, optimizer=self.optimizer, lr=self.lr, lr_min=self.lr_min,
                           momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay,
                           grad_clip=self.grad_clip, seed=self.seed)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"lidsplit: method must be one of {METHODS}, got {self.method!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"lidsplit: optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ValueError("lidsplit: steps and warmup_steps must be >= 0")


@dataclass
class GradientSearchResult:
    """The derived architecture (per-edge argmax), its op names, the final alphas, the per-step history."""

    arch: tuple[int, ...]
    names: tuple[str, ...]
    alphas: dict[str, Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _tau(cfg: GradientSearchConfig, step: int) -> float:
    if cfg.steps <= 1:
        return cfg.tau_max
    return cfg.tau_max - (cfg.tau_max - cfg.tau_min) * step / (cfg.steps - 1)


def gradient_search(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                    config: GradientSearchConfig | None = None, *, sub: SubSupernet | None = None,
                    loss_fn: LossFn = classification_loss, alphas: dict[str, nn.Parameter] | None = None,
                    on_step: Callable[[dict[str, Any]], None] | None = None, parallel: DataParallel | None = None,
                    **overrides: Any) -> GradientSearchResult:
    """Bi-level single-stage search of ``model`` (trained in place) inside ``sub`` (default: the whole
    space). ``train_loader`` / ``val_loader`` yield ``(x, y)`` batches (cycled; a ``DataLoaders`` can be
    split as ``loaders.train, loaders.val``). ``config`` fields may also be given as keywords.

    Returns a :class:`GradientSearchResult`: the derived architecture (per-edge argmax), its op names, the
    final alphas, and per-step history (``step``, ``train_loss``, ``val_loss``, ``lr``, ``tau``).

    ``parallel`` (``lidsplit.train.init_data_parallel``): data-parallel over a process group, every rank
    making the same call. Each rank computes its shard of every batch; the weight step runs through
    DistributedDataParallel, the architecture step through the plain model with alpha's gradient averaged
    over the ranks (one all-reduce); BatchNorm statistics are synchronised (``parallel.sync_bn``). The
    mixture samples are the same on every rank (same seeds), checked every step; the history holds the
    global batch's losses. The result equals one process's up to float rounding.
    """
    cfg = GradientSearchConfig(**overrides) if config is None else (
        dataclasses.replace(config, **overrides) if overrides else config)
    space = search_space(model)
    if sub is not None and sub.space != space:
        raise ValueError("lidsplit: sub belongs to another search space")
    device = model_device(model)
    if alphas is None:
        alphas = arch_parameters(space, init_std=cfg.arch_init_std, seed=cfg.seed, device=device)
    missing = [lb for lb in space.labels if lb not in alphas]
    if missing:
        raise KeyError(f"lidsplit: alphas missing for edges {missing}")
    params = [p for p in model.parameters() if p.requires_grad]
    wcfg = cfg.weights()
    w_opt = make_optimizer(model, wcfg)
    a_params = [alphas[lb] for lb in space.labels]
    a_opt = torch.optim.Adam(a_params, lr=cfg.arch_lr, betas=cfg.arch_betas, weight_decay=cfg.arch_weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_it, val_it = cycle_batches(train_loader), cycle_batches(val_loader)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    was_training = model.training
    model.train()
    devices = [device] if device.type == "cuda" else []
    if parallel is not None and parallel.world_size == 1:
        parallel = None
    wrapping = ExitStack()
    try:
        net = wrapping.enter_context(data_parallel_model(model, parallel)) if parallel is not None else model
        reducer = StepReducer(parallel, device) if parallel is not None else None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            for step in range(cfg.steps):
                tau = _tau(cfg, step)
                rec: dict[str, float] = {"step": step, "tau": tau}
                if step >= cfg.warmup_steps:
                    xv, yv = unpack_batch(next(val_it), device)
                    xv, yv, wv = shard_batch(xv, yv, parallel)
                    w, sm, s = sample_weights(cfg.method, alphas, space, sub, tau=tau, generator=gen)
                    if reducer is not None:
                        reducer.check(step, w)
                    with use_weighted(model, w, softmax=sm, sub=s):  # not through DDP: alpha's gradient only
                        lv = loss_fn(model(xv), yv)
                    grads = torch.autograd.grad(lv if wv == 1.0 else lv * wv, a_params, allow_unused=True)
                    if parallel is not None:
                        grads = mean_over_ranks(grads, parallel)
                    a_opt.zero_grad(set_to_none=True)
                    for p, g in zip(a_params, grads):
                        p.grad = g
                    a_opt.step()
                    rec["val_loss"] = float(lv.detach())
                lr = cosine_lr(wcfg, step, 1)
                for gr in w_opt.param_groups:
                    gr["lr"] = lr
                xt, yt = unpack_batch(next(train_it), device)
                xt, yt, wt = shard_batch(xt, yt, parallel)
                w, sm, s = sample_weights(cfg.method, {k: v.detach() for k, v in alphas.items()}, space, sub,
                                          tau=tau, generator=gen)
                if reducer is not None:
                    reducer.check(step, w)
                with use_weighted(model, w, softmax=sm, sub=s):
                    lt = loss_fn(net(xt), yt)
                w_opt.zero_grad(set_to_none=True)
                (lt if wt == 1.0 else lt * wt).backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.grad_clip)
                w_opt.step()
                rec["train_loss"] = float(lt.detach())
                rec["lr"] = lr
                if reducer is not None:  # the global batches' losses
                    nv = float(xv.shape[0]) if "val_loss" in rec else 0.0
                    tot = reducer.sum([rec.get("val_loss", 0.0) * nv, nv, rec["train_loss"] * xt.shape[0],
                                            float(xt.shape[0])])
                    if "val_loss" in rec:
                        rec["val_loss"] = tot[0] / tot[1]
                    rec["train_loss"] = tot[2] / tot[3]
                history.append(rec)
                if on_step is not None:
                    on_step(dict(rec))
    finally:
        wrapping.close()
        model.train(was_training)
    arch = derive_arch(alphas, space, sub)
    return GradientSearchResult(arch, space.names(arch), {k: v.detach().clone() for k, v in alphas.items()}, history,
                        time.perf_counter() - t0)


def dirichlet_mean(alphas: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DrNAS's expected mixture weights: the mean of ``Dirichlet(elu(alpha) + 1)`` per edge."""
    out = {}
    for k, a in alphas.items():
        c = F.elu(a.detach()) + 1
        out[k] = c / c.sum()
    return out
